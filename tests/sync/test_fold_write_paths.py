"""The fold writes acknowledged rows one of two ways (one upsert, or an update of the rows held
plus an insert of new ones, chosen by size): both leave exactly the same tables."""

from __future__ import annotations

import shutil

import pytest

from orchestrator.sync import state
from orchestrator.sync.diff import PENDING_HASH
from tests.sync.helpers import write_journal
from tests.sync.test_compact_ack import full_tables
from tests.sync.test_state import DEST, SEG, K, fold, line
from tests.sync.test_state import wh as wh


def journal_lines() -> list[dict]:
    """New rows, held rows updated with and without a new ref, a remove, a lost answer, and a
    subject seen in two runs (so the last-row window runs too)."""
    return [
        line("ack", "add", K[0], destination_ref="ref0"),
        line("ack", "add", K[1]),
        line("ack", "update", K[2], fields_hash="h2"),  # held: keeps ref-old
        line("ack", "update", K[3], fields_hash="h3", destination_ref="ref3"),
        line("ack", "remove", K[4], remove_reason="left_segment"),
        line("intent", "add", K[5]),
        line("ack", "add", K[6], run="r1"),
        line("ack", "add", K[6], run="r2", fields_hash="h6"),
    ]


@pytest.mark.parametrize("last_window", [False, True])
def test_both_ways_of_writing_acks_give_the_same_tables(wh, tmp_path, monkeypatch, last_window):
    lines = journal_lines() if last_window else journal_lines()[:-1]
    results = {}
    for split in (False, True):
        copy = tmp_path / f"{split}.duckdb"
        shutil.copy(wh, copy)
        write_journal(copy, SEG, DEST, lines)
        monkeypatch.setattr(state, "_prefers_split", lambda *_a, split=split: split)
        stats = fold(copy)
        results[split] = (full_tables(copy), stats)
    assert results[False] == results[True]
    held = {row[2]: (row[3], row[4]) for row in results[True][0]["sync_state"]}
    assert held[K[2]] == ("ref-old", "h2") and held[K[3]] == ("ref3", "h3")
    assert held[K[0]] == ("ref0", "h-new") and held[K[5]] == (None, PENDING_HASH)
    assert K[4] not in held
    assert held[K[6]] == ((None, "h6") if last_window else (None, "h-new"))


def test_a_journal_acknowledging_most_of_the_pair_takes_the_split(wh, tmp_path, monkeypatch):
    seen: list[bool] = []
    real = state._prefers_split
    monkeypatch.setattr(state, "_prefers_split", lambda *a: seen.append(real(*a)) or seen[-1])
    for n in (2, 1):
        write_journal(wh, SEG, DEST, [line("ack", "add", K[i]) for i in range(n)])
        fold(wh)
    assert seen == [True, False]  # 2 acks for 3 rows held; then 1 ack for 4 held
