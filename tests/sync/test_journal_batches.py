"""Journal batch lines: one intent line per batch (not one per row), answers as at most one ack
and one reject line, and they fold exactly like the per-row lines of older journals."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from orchestrator.sync.engine import run_sync
from orchestrator.warehouse.connect import connect
from tests.sync.helpers import (
    MemoryDestination,
    fake_emails,
    journal_texts,
    new_warehouse,
    set_audience,
    write_journal,
)
from tests.sync.test_state import K, fold, line, tables
from tests.sync.test_state import wh as wh

SEG, DEST = "loyal", "news"


def _batch(kind: str, op: str, keys: list[str], seq: int = 0, **per_row) -> dict:
    """A batch line as the engine writes it (per-row values as arrays)."""
    n = len(keys)
    return {
        "run": "r1",
        "seq": seq,
        "kind": kind,
        "op": op,
        "remove_reason": per_row.pop("remove_reason", None),
        "at": "2025-01-16T09:00:00",
        "subject_keys": keys,
        "fields_hashs": ["h-new"] * n,
        "destination_refs": per_row.pop("destination_refs", [None] * n),
        "reasons": per_row.pop("reasons", [None] * n),
        "permanents": per_row.pop("permanents", [False] * n),
    }


def test_batch_lines_fold_like_per_row_lines(wh, tmp_path: Path) -> None:
    shutil.copy(wh, tmp_path / "per_row.duckdb")
    per_row = [
        line("intent", "add", K[0]),
        line("ack", "add", K[0], destination_ref="ref0"),
        line("intent", "add", K[1]),
        line("reject", "add", K[1], reason="looks fake", permanent=True),
        line("intent", "add", K[5]),  # no answer: pending
        line("intent", "remove", K[2], seq=1, remove_reason="erasure"),
        line("ack", "remove", K[2], seq=1, remove_reason="erasure"),
        line("intent", "remove", K[3], seq=1, remove_reason="erasure"),
        line("reject", "remove", K[3], seq=1, remove_reason="erasure", reason="busy"),
    ]
    batches = [
        _batch("intent", "add", [K[0], K[1], K[5]]),
        _batch("ack", "add", [K[0]], destination_refs=["ref0"]),
        _batch("reject", "add", [K[1]], reasons=["looks fake"], permanents=[True]),
        _batch("intent", "remove", [K[2], K[3]], seq=1, remove_reason="erasure"),
        _batch("ack", "remove", [K[2]], seq=1, remove_reason="erasure"),
        _batch(
            "reject", "remove", [K[3]], seq=1, remove_reason="erasure", reasons=["busy"],
            permanents=[False],
        ),
    ]  # fmt: skip
    write_journal(tmp_path / "per_row.duckdb", SEG, DEST, per_row)
    write_journal(wh, SEG, DEST, batches)
    old_stats = fold(tmp_path / "per_row.duckdb")
    new_stats = fold(wh)
    assert old_stats == new_stats and (new_stats.acked, new_stats.pending) == (2, 1)
    assert tables(wh) == tables(tmp_path / "per_row.duckdb")
    assert any(row[2] == K[5] for row in tables(wh)["sync_state"])  # pending is held


def test_the_engine_journals_one_intent_line_per_batch(tmp_path: Path) -> None:
    path = tmp_path / "wh.duckdb"
    new_warehouse(path, fake_emails(10))
    with connect(path) as con:
        set_audience(con, SEG, range(1, 8))
    seen: list[list[dict]] = []

    def snapshot(_seq: int) -> None:  # the warehouse is closed between calls
        seen.append([json.loads(text) for text in journal_texts(path, SEG, DEST)])

    client = MemoryDestination(max_batch_size=3, refuse=set())
    report = run_sync(
        path, tmp_path / "state", segment=SEG, destination=DEST, audience_id="a", mode="mirror",
        fields={}, kind="ad", client=client, on_batch=snapshot,
    )  # fmt: skip
    assert report.adds == 7 and report.api_calls == 3
    # one window: the three intents were committed before the first call; the answers are
    # written with the fold, after the last call
    assert all(
        [(ln["seq"], ln["kind"]) for ln in lines] == [(s, "intent") for s in range(3)]
        for lines in seen
    )
    assert [len(ln["subject_keys"]) for ln in seen[-1]] == [3, 3, 1]
    assert journal_texts(path, SEG, DEST) == []  # folded and deleted at the end
