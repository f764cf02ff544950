"""Folding the journal into sync_state: acks, rejects, unknown outcomes, idempotence."""

from __future__ import annotations

import pytest

from orchestrator.sync import journal
from orchestrator.sync.diff import PENDING_HASH
from orchestrator.sync.state import fold_journal
from orchestrator.warehouse.connect import connect
from orchestrator.warehouse.errors import DATABASE_ERRORS
from orchestrator.warehouse.target import Warehouse
from tests.postgres import both_backends
from tests.sync.helpers import T0, journal_texts, new_warehouse, query, write_journal

SEG, DEST = "loyal", "news"
K = [f"{i:064x}" for i in range(1, 8)]  # stand-in subject keys


def line(kind: str, op: str, key: str, seq: int = 0, run: str = "r1", **extra) -> dict:
    return {
        "run": run,
        "seq": seq,
        "kind": kind,
        "op": op,
        "subject_key": key,
        "fields_hash": extra.pop("fields_hash", "h-new"),
        "destination_ref": extra.pop("destination_ref", None),
        "remove_reason": extra.pop("remove_reason", None),
        "reason": extra.pop("reason", None),
        "permanent": extra.pop("permanent", False),
        "at": "2025-01-16T09:00:00",
    }


pytestmark = both_backends  # the fold is the one backend branch of the sync (JSON parsing)


@pytest.fixture
def wh(empty_warehouse: Warehouse) -> Warehouse:
    path = empty_warehouse
    new_warehouse(path, [])
    with connect(path) as con:
        for key in (K[2], K[3], K[4]):
            con.execute(
                "INSERT INTO activation.sync_state VALUES (?, ?, ?, 'ref-old', 'h-old', ?)",
                [SEG, DEST, key, T0],
            )
    return path


_COLUMNS = {
    "sync_state": "segment, destination, subject_key, destination_ref, fields_hash",
    "sync_rejections": (
        "segment, destination, subject_key, fields_hash, operation, reason, permanent"
    ),
    "destination_suppressions": "destination, subject_key, status",
}


def tables(path: Warehouse) -> dict[str, list]:
    return {
        table: query(path, f"SELECT {cols} FROM activation.{table} ORDER BY {cols}")
        for table, cols in _COLUMNS.items()
    }


def fold(wh: Warehouse, kind: str = "email"):
    with connect(wh) as con:
        return fold_journal(con, segment=SEG, destination=DEST, kind=kind)


def test_fold_applies_acks_rejects_and_unknown_outcomes(wh, tmp_path):
    write_journal(
        wh,
        SEG,
        DEST,
        [
            line("intent", "add", K[0]),
            line("ack", "add", K[0], destination_ref="ref0"),
            line("intent", "add", K[1]),
            line("reject", "add", K[1], reason="looks fake", permanent=True),
            line("intent", "remove", K[2], seq=1, remove_reason="erasure"),
            line("ack", "remove", K[2], seq=1, remove_reason="erasure"),
            line("intent", "update", K[3], seq=2),
            line("ack", "update", K[3], seq=2),
            line("intent", "add", K[5], seq=3),  # sent, answer lost
            line("intent", "remove", K[4], seq=3, remove_reason="left_segment"),  # same
        ],
    )
    stats = fold(wh)
    state = {row[2]: (row[3], row[4]) for row in tables(wh)["sync_state"]}
    assert state == {
        K[0]: ("ref0", "h-new"),
        K[3]: ("ref-old", "h-new"),  # an update without a new ref keeps the old one
        K[4]: ("ref-old", PENDING_HASH),
        K[5]: (None, PENDING_HASH),
    }
    assert tables(wh)["sync_rejections"] == [(SEG, DEST, K[1], "h-new", "add", "looks fake", True)]
    assert tables(wh)["destination_suppressions"] == [(DEST, K[2], "forgotten")]
    assert (stats.acked, stats.rejected, stats.pending) == (3, 1, 2)
    assert journal_texts(wh, SEG, DEST) == []


def test_folding_the_same_journal_twice_changes_nothing(wh, tmp_path):
    write_journal(
        wh,
        SEG,
        DEST,
        [
            line("ack", "add", K[0]),
            line("reject", "add", K[1], reason="no", permanent=True),
            line("ack", "remove", K[2], remove_reason="objection"),
            line("intent", "add", K[5]),
        ],
    )
    keep = journal_texts(wh, SEG, DEST)
    fold(wh)
    once = tables(wh)
    write_journal(wh, SEG, DEST, keep)  # the same lines again (a file journal imported twice)
    fold(wh)
    assert tables(wh) == once
    assert once["destination_suppressions"] == [(DEST, K[2], "unsubscribed")]


def test_a_file_journal_of_an_earlier_version_is_imported_torn_last_line_left_out(wh, tmp_path):
    path = journal.file_journal_path(tmp_path / "state", SEG, DEST)
    path.parent.mkdir(parents=True)
    encode = journal.line_encoder()
    path.write_text(
        encode(line("ack", "add", K[0])) + "\n"
        + '{"run":"r1","seq":1,"kind":"ack","op":"add","subject_key":"'
    )  # fmt: skip
    with connect(wh) as con:
        assert journal.import_file_journal(con, tmp_path / "state", SEG, DEST) == 1
    assert not path.exists()
    fold(wh)
    assert {row[2] for row in tables(wh)["sync_state"]} == {K[0], K[2], K[3], K[4]}


def test_ad_destinations_record_no_suppressions(wh, tmp_path):
    write_journal(wh, SEG, DEST, [line("ack", "remove", K[2], remove_reason="erasure")])
    fold(wh, kind="ad")
    assert tables(wh)["destination_suppressions"] == []
    assert K[2] not in {row[2] for row in tables(wh)["sync_state"]}


def test_later_lines_win_across_runs(wh, tmp_path):
    write_journal(
        wh,
        SEG,
        DEST,
        [
            line("ack", "add", K[0], run="r1"),
            line("intent", "remove", K[0], run="r2", remove_reason="left_segment"),
            line("ack", "remove", K[0], run="r2", remove_reason="left_segment"),
        ],
    )
    fold(wh)
    assert K[0] not in {row[2] for row in tables(wh)["sync_state"]}


def test_a_malformed_journal_is_kept_and_nothing_applied(wh, tmp_path):
    write_journal(wh, SEG, DEST, [line("ack", "add", K[0])])
    with connect(wh) as con:
        journal.append_lines(con, SEG, DEST, [journal.JournalLine("r1", 1, "ack", "not json")])
    before = tables(wh)
    with pytest.raises(DATABASE_ERRORS):
        fold(wh)
    assert tables(wh) == before and len(journal_texts(wh, SEG, DEST)) == 2


def test_a_refused_remove_that_later_goes_through_leaves_no_rejection(wh, tmp_path):
    # found by a trial: the retried remove succeeded, the destination and sync_state agreed,
    # and the rejection report still said the destination refused it
    refusal = {"remove_reason": "consent_withdrawn", "fields_hash": "h-old"}
    write_journal(
        wh,
        SEG,
        DEST,
        [
            line("intent", "remove", K[2], **refusal),
            line("reject", "remove", K[2], reason="cannot remove", permanent=True, **refusal),
            line("intent", "add", K[6], fields_hash="h-a"),
            line("reject", "add", K[6], fields_hash="h-a", reason="bad value", permanent=True),
        ],
    )
    fold(wh, kind="ad")
    refused = [(r[2], r[4]) for r in tables(wh)["sync_rejections"]]
    assert refused == sorted([(K[2], "remove"), (K[6], "add")])
    write_journal(
        wh,
        SEG,
        DEST,
        [
            line("intent", "remove", K[2], run="r2", **refusal),
            line("ack", "remove", K[2], run="r2", **refusal),
            line("intent", "add", K[6], run="r2", fields_hash="h-b"),  # values fixed upstream
            line("ack", "add", K[6], run="r2", fields_hash="h-b"),
        ],
    )
    fold(wh, kind="ad")
    assert tables(wh)["sync_rejections"] == []
    assert {row[2]: row[4] for row in tables(wh)["sync_state"]} == {
        K[3]: "h-old",
        K[4]: "h-old",
        K[6]: "h-b",
    }


def test_a_rejection_after_an_ack_in_the_same_journal_is_kept(wh, tmp_path):
    write_journal(
        wh,
        SEG,
        DEST,
        [
            line("ack", "add", K[0], fields_hash="h-a"),
            line("reject", "update", K[0], seq=1, fields_hash="h-b", reason="no", permanent=True),
        ],
    )
    fold(wh, kind="ad")
    assert [(r[2], r[3], r[4]) for r in tables(wh)["sync_rejections"]] == [(K[0], "h-b", "update")]


def test_a_fold_failing_midway_applies_nothing_and_keeps_the_lines(wh, tmp_path):
    write_journal(
        wh,
        SEG,
        DEST,
        [
            line("ack", "add", K[0]),  # written to sync_state first...
            line("ack", "remove", K[2], remove_reason="left_segment"),  # ...and this delete
            # ...then recording this refusal fails (a row without its hash: NOT NULL)
            line("reject", "add", K[1], fields_hash=None, reason="no", permanent=True),
        ],
    )
    before, lines = tables(wh), journal_texts(wh, SEG, DEST)
    with pytest.raises(DATABASE_ERRORS):
        fold(wh)
    assert tables(wh) == before
    assert journal_texts(wh, SEG, DEST) == lines
