"""The send loop with batches built ahead in a background thread, journaled a window at a time:
the journal holds each batch's intent before its call, the answers of every earlier window,
and nothing past the batch's window; a failed call stops everything after it and the intents
journaled ahead for batches never called are withdrawn; a partly refused batch takes the
per-row path (the all-acknowledged line is tested in test_compact_ack.py)."""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from destinations.base import RemoveReason, RowResult
from destinations.errors import TransientError
from orchestrator.sync import engine
from orchestrator.sync.diff import PENDING_HASH
from orchestrator.sync.engine import _make_batch, _result_lines, run_sync
from orchestrator.warehouse.connect import connect
from tests.sync.helpers import (
    MemoryDestination,
    fake_emails,
    journal_texts,
    new_warehouse,
    set_audience,
    state_keys,
)

SEG, DEST = "loyal", "ads"


@dataclass
class JournalWatcher(MemoryDestination):
    """Reads the journal at each call: what was durable when the request went out (the
    warehouse is closed during calls, so it can be read then)."""

    warehouse: Path | None = None
    seen: list[list[dict]] = field(default_factory=list)

    def _enter(self, op: str, rows, reason: str | None = None) -> None:
        texts = journal_texts(self.warehouse, SEG, DEST)
        self.seen.append([json.loads(line) for line in texts])
        super()._enter(op, rows, reason)


@pytest.fixture
def wh(tmp_path: Path) -> Path:
    path = tmp_path / "wh.duckdb"
    new_warehouse(path, fake_emails(12))
    with connect(path) as con:
        set_audience(con, SEG, range(1, 12))  # 11 members: 6 batches of 2, the last of 1
    return path


def _sync(wh: Path, tmp_path: Path, client: MemoryDestination):
    client.warehouse = wh
    return run_sync(
        wh,
        tmp_path / "state",
        segment=SEG,
        destination=DEST,
        audience_id="aud",
        mode="mirror",
        fields={},
        kind="ad",
        client=client,
    )


@pytest.mark.parametrize("window_rows", [4, 20_000])
def test_each_call_finds_its_intent_journaled_and_nothing_past_its_window(
    wh, tmp_path, monkeypatch, window_rows
):
    monkeypatch.setattr(engine, "JOURNAL_WINDOW_ROWS", window_rows)
    per_window = engine.window_batches(2)  # 2 batches of 2 rows, or all 6 in one window
    client = JournalWatcher(max_batch_size=2)
    _sync(wh, tmp_path, client)
    assert len(client.seen) == 6
    sent_so_far: list[str] = []
    for n, lines in enumerate(client.seen):
        window_end = (n // per_window + 1) * per_window
        intents = [line["seq"] for line in lines if line["kind"] == "intent"]
        acks = [line["seq"] for line in lines if line["kind"] == "ack"]
        assert intents == list(range(min(window_end, 6)))
        assert acks == list(range(n // per_window * per_window))  # earlier windows' answers
        (mine,) = [line for line in lines if line["kind"] == "intent" and line["seq"] == n]
        sent_so_far += mine["subject_keys"]
        assert len(mine["subject_keys"]) == (2 if n < 5 else 1)
    assert len(set(sent_so_far)) == 11 and set(sent_so_far) == set(state_keys(wh, SEG, DEST))
    assert journal_texts(wh, SEG, DEST) == []


def test_a_failed_call_stops_the_run_with_nothing_after_it_journaled(wh, tmp_path):
    error = TransientError("memory", "server error", 503)
    client = JournalWatcher(max_batch_size=2, fail_on_call=3, error=error)
    with pytest.raises(TransientError):
        _sync(wh, tmp_path, client)
    assert len(client.calls) == 3  # no call after the failed one
    held = state_keys(wh, SEG, DEST)
    assert sorted(held.values()).count(PENDING_HASH) == 2  # only the failed batch: unknown
    assert len(held) == 6  # two acknowledged batches + the failed one; batches 4-6 unsent
    assert not [t for t in threading.enumerate() if t.name == "sync-prefetch"]


def test_a_partly_refused_batch_still_takes_the_per_row_path():
    keys = [f"{i:064x}" for i in range(3)]
    cols = {
        "subject_key": keys,
        "send_key": keys,
        "destination_ref": [None] * 3,
        "fields_hash": list("abc"),
    }
    batch = _make_batch("remove", RemoveReason.ERASURE.value, cols, [], "ad")
    answers = [RowResult(keys[0], True), RowResult(keys[1], False, None, "x@example.com bad", True)]
    lines, rejected = _result_lines("r", 0, batch, answers, "2025-01-01T00:00:00")
    ack, reject = (json.loads(line.text) for line in lines)
    assert (
        rejected == 1 and ack["subject_keys"] == [keys[0]] and reject["subject_keys"] == [keys[1]]
    )
    assert reject["reasons"] == ["<email> bad"] and reject["permanents"] == [True]
