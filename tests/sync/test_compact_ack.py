"""The compact ``ack`` line of an all-acknowledged batch (``whole_batch``, no per-row arrays but
the platform's refs): it folds to exactly the tables the per-row line gives, next to older
journal formats, after a crash, and twice."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import duckdb
import pytest

from destinations.base import RemoveReason, Row, RowResult
from orchestrator.sync import journal
from orchestrator.sync.diff import PENDING_HASH
from orchestrator.sync.engine import _intent_line, _make_batch, _result_lines
from tests.sync.helpers import write_journal
from tests.sync.test_state import DEST, SEG, K, fold, line, tables
from tests.sync.test_state import wh as wh


def result_texts(*args) -> tuple[list[str], int]:
    """``_result_lines`` with each line's JSON text."""
    lines, rejected = _result_lines(*args)
    return [ln.text for ln in lines], rejected


AT = "2025-01-16T10:00:00"


def full_tables(path: Path) -> dict[str, list]:
    """Every column of the three folded tables (timestamps included), sorted."""
    con = duckdb.connect(str(path), read_only=True)
    try:
        return {
            t: con.execute(f"SELECT * FROM activation.{t} ORDER BY ALL").fetchall()
            for t in ("sync_state", "sync_rejections", "destination_suppressions")
        }
    finally:
        con.close()


def make_batch(kind: str, op: str = "add", reason: str | None = None, keys=None):
    keys = keys or [K[0], K[1], K[5], K[6]]
    n = len(keys)
    sends = list(keys) if kind == "ad" else [f"p{i}@example.com" for i in range(n)]
    if kind == "ad":
        sends[1] = f"{99:064x}"  # a Google key: remembered as the ref
    cols = {
        "subject_key": keys,
        "send_key": sends,
        "destination_ref": [None, None, "ref-2", None][:n] + [None] * max(0, n - 4),
        "fields_hash": [f"h{i}" for i in range(n)],
    }
    if kind == "email":
        cols["f0"] = ["GB"] * n
    return _make_batch(op, reason, cols, ["COUNTRY"] if kind == "email" else [], kind)


def answers(batch, kind: str) -> list[RowResult]:
    """Every row acknowledged; an email platform names some members (its own member id)."""
    return [
        RowResult(k, True, destination_ref=(f"md5-{i}" if kind == "email" and i % 2 else None))
        for i, k in enumerate(batch.subject_keys)
    ]


def fold_copy(wh: Path, tmp_path: Path, name: str, lines: list[str], kind: str):
    """Fold ``lines`` into a copy of ``wh``; returns the copy's tables and the stats."""
    copy = tmp_path / f"{name}.duckdb"
    shutil.copy(wh, copy)
    write_journal(copy, SEG, DEST, lines)
    stats = fold(copy, kind=kind)
    return full_tables(copy), stats


@pytest.mark.parametrize("kind", ["ad", "email"])
def test_an_all_acknowledged_batch_writes_a_compact_line(kind):
    batch = make_batch(kind)
    (compact,), rejected = result_texts("r", 3, batch, answers(batch, kind), AT)
    fields = json.loads(compact)
    assert rejected == 0 and fields["whole_batch"] is True and fields["kind"] == "ack"
    assert "subject_keys" not in fields and "fields_hashs" not in fields
    if kind == "ad":  # nothing new from the platform: the intent's refs hold
        assert "destination_refs" not in fields
    else:
        assert fields["destination_refs"] == [None, "md5-1", "ref-2", "md5-3"]
        assert batch.rows[0] == Row(K[0], "p0@example.com", {"COUNTRY": "GB"}, None)
    assert not any(key in compact for key in batch.subject_keys)  # the intent holds them


@pytest.mark.parametrize("kind", ["ad", "email"])
@pytest.mark.parametrize("op", ["add", "update", "remove"])
def test_the_compact_line_folds_like_the_per_row_line(wh, tmp_path, kind, op):
    reason = RemoveReason.OBJECTION.value if op == "remove" else None
    batch = make_batch(kind, op, reason, keys=[K[2], K[3], K[5], K[0]])
    acked = answers(batch, kind)
    intent = _intent_line("r", 0, batch, AT)
    (compact,), _ = result_texts("r", 0, batch, acked, "2025-01-16T10:00:05")
    per_row, _ = result_texts("r", 0, batch, acked[::-1], "2025-01-16T10:00:05")
    assert "subject_keys" in json.loads(per_row[0])  # reversed answers: the per-row path
    new, new_stats = fold_copy(wh, tmp_path, "compact", [intent, compact], kind)
    old, old_stats = fold_copy(wh, tmp_path, "per_row", [intent, *per_row], kind)
    assert new == old and new_stats == old_stats and new_stats.acked == 4
    state = {row[2]: row for row in new["sync_state"]}
    if op == "remove":
        assert not {K[2], K[3], K[5], K[0]} & set(state)
        assert len(new["destination_suppressions"]) == (4 if kind == "email" else 0)
    else:
        assert state[K[0]][4] == "h3" and str(state[K[0]][5]) == "2025-01-16 10:00:05"


def test_compact_lines_next_to_older_lines_and_a_crash(wh, tmp_path):
    """Per-row lines of an older version (run r0), then a run r1 whose batch 0 was all acked
    (compact line) and whose batch 1 was sent when the process died (intent only)."""
    encode = journal.line_encoder()
    first = make_batch("email", keys=[K[0], K[1]])
    second = make_batch("email", keys=[K[5], K[6]])
    lines = [
        encode(line("intent", "add", K[0], run="r0")),
        encode(line("ack", "add", K[0], run="r0", fields_hash="h-old0", destination_ref="x")),
        encode(line("intent", "add", K[6], run="r0")),
        encode(line("ack", "add", K[6], run="r0", fields_hash="h-old6")),
        _intent_line("r1", 0, first, AT),
        *result_texts("r1", 0, first, answers(first, "email"), AT)[0],
        _intent_line("r1", 1, second, AT),
    ]
    write_journal(wh, SEG, DEST, lines)
    stats = fold(wh)
    state = {row[2]: (row[3], row[4]) for row in tables(wh)["sync_state"]}
    assert state == {
        K[0]: (None, "h0"),  # r1's compact ack wins over r0's line (only the last counts)
        K[1]: ("md5-1", "h1"),
        K[2]: ("ref-old", "h-old"),  # untouched
        K[3]: ("ref-old", "h-old"),
        K[4]: ("ref-old", "h-old"),
        K[5]: (None, PENDING_HASH),  # sent, answer lost
        K[6]: (None, PENDING_HASH),  # acked in r0, then sent again in r1 with no answer
    }
    assert (stats.acked, stats.pending) == (2, 2)
    once = full_tables(wh)
    write_journal(wh, SEG, DEST, lines)  # the same lines again: folding again is harmless
    fold(wh)
    assert full_tables(wh) == once


def test_a_compact_ack_without_its_intent_claims_nothing(wh, tmp_path):
    batch = make_batch("ad")
    (compact,), _ = result_texts("r", 7, batch, answers(batch, "ad"), AT)
    other = _intent_line("r", 6, batch, AT)  # another batch's intent: not this line's rows
    write_journal(wh, SEG, DEST, [other, compact])
    before = tables(wh)["sync_state"]
    stats = fold(wh)
    assert stats.acked == 0 and stats.pending == 4
    after = {row[2]: row[4] for row in tables(wh)["sync_state"]}
    assert {after[k] for k in batch.subject_keys} == {PENDING_HASH}
    assert len(after) == len(before) + 4  # the pending K[0], K[1], K[5], K[6]; nothing acked
