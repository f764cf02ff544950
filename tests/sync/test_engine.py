"""run_sync with an in-memory destination: batching, dry runs, errors, rejections, locking.

The HTTP behaviour (real clients against the mock servers, crashes) is in test_integration.py.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from destinations.errors import TransientError
from orchestrator.sync.diff import PENDING_HASH
from orchestrator.sync.engine import MassRemovalError, preview_diff, run_sync
from orchestrator.sync.pair_lock import SyncInProgressError, pair_lock
from orchestrator.warehouse.connect import connect
from orchestrator.warehouse.target import Warehouse
from tests.postgres import both_backends
from tests.sync.helpers import (
    MemoryDestination,
    fake_emails,
    journal_texts,
    key_of,
    new_warehouse,
    query,
    set_audience,
    state_keys,
)

SEG, DEST = "loyal", "ads"


@pytest.fixture
def wh(empty_warehouse: Warehouse) -> Warehouse:
    path = empty_warehouse
    new_warehouse(path, fake_emails(10))
    with connect(path) as con:
        set_audience(con, SEG, range(1, 6))
    return path


def sync(wh: Path, tmp_path: Path, client: MemoryDestination, **kw):
    args = {"segment": SEG, "destination": DEST, "audience_id": "aud", "mode": "mirror"}
    args.update(fields={}, kind="ad", client=client, **kw)
    return run_sync(wh, tmp_path / "state", **args)


@both_backends
def test_sync_sends_in_batches_and_records_what_was_acknowledged(wh, tmp_path):
    client = MemoryDestination(max_batch_size=2)
    report = sync(wh, tmp_path, client)
    assert client.calls == [("add", 2, None), ("add", 2, None), ("add", 1, None)]
    assert report.adds == 5 and report.api_calls == report.min_api_calls == 3
    assert set(state_keys(wh, SEG, DEST)) == set(client.members)
    assert journal_texts(wh, SEG, DEST) == []  # folded and deleted
    assert not any((tmp_path / "state" / "scratch").rglob("*.parquet"))


@both_backends
def test_dry_run_sends_nothing_and_changes_nothing(wh, tmp_path):
    report = preview_diff(
        wh, tmp_path / "state", segment=SEG, destination=DEST, mode="mirror", fields={},
        kind="ad", max_batch_size=2,
    )  # fmt: skip
    assert (report.adds, report.min_api_calls, report.api_calls) == (5, 3, 0)
    assert report.dry_run and state_keys(wh, SEG, DEST) == {}


@both_backends
def test_a_failing_call_keeps_what_was_acknowledged_and_raises(wh, tmp_path):
    error = TransientError("memory", "server error", 503)
    client = MemoryDestination(max_batch_size=2, fail_on_call=2, error=error)
    with pytest.raises(TransientError):
        sync(wh, tmp_path, client)
    held = state_keys(wh, SEG, DEST)
    synced = {k for k, h in held.items() if h != PENDING_HASH}
    assert synced == set(client.members) and len(synced) == 2
    assert sum(h == PENDING_HASH for h in held.values()) == 2  # the failed batch: unknown
    client.fail_on_call = None
    report = sync(wh, tmp_path, client)
    assert report.adds == 3  # the 2 unknown rows again, and the one never sent
    assert set(state_keys(wh, SEG, DEST)) == set(client.members)
    assert PENDING_HASH not in state_keys(wh, SEG, DEST).values()


@both_backends
def test_permanent_refusals_are_recorded_and_not_retried_each_run(wh, tmp_path):
    with connect(wh) as con:
        refused = key_of(con, 3)
    client = MemoryDestination(max_batch_size=10, refuse={refused})
    report = sync(wh, tmp_path, client)
    assert report.rejected == 1 and refused not in state_keys(wh, SEG, DEST)
    reasons = query(wh, "SELECT reason, permanent FROM activation.sync_rejections")
    assert reasons == [("<email> fake", True)]  # the platform's echoed address is masked
    again = sync(wh, tmp_path, client)
    assert (again.skipped_rejected, again.adds, again.api_calls) == (1, 0, 0)


@both_backends
def test_removes_go_first_with_their_reason(wh, tmp_path):
    client = MemoryDestination(max_batch_size=10)
    sync(wh, tmp_path, client)
    with connect(wh) as con:
        set_audience(con, SEG, [2, 3, 4, 5, 6])
        con.execute("INSERT INTO privacy_requests VALUES ('r1', 1, NULL, 'erasure', now())")
    report = sync(wh, tmp_path, client)
    assert client.calls[1:] == [("remove", 1, "erasure"), ("add", 1, None)]
    assert report.removes_by_reason["erasure"] == 1
    assert set(state_keys(wh, SEG, DEST)) == set(client.members)


@both_backends
def test_a_segment_that_suddenly_matches_nobody_does_not_empty_the_destination(
    empty_warehouse, tmp_path
):
    """A typo that empties a segment must not remove everyone from the ad account; privacy
    removals still go through, and an explicit override sends the shrink."""
    path = empty_warehouse
    new_warehouse(path, fake_emails(30))
    with connect(path) as con:
        set_audience(con, SEG, range(1, 25))
    client = MemoryDestination(max_batch_size=100)
    sync(path, tmp_path, client)
    with connect(path) as con:
        set_audience(con, SEG, [])
        con.execute("INSERT INTO privacy_requests VALUES ('r1', 1, NULL, 'erasure', now())")
    held = set(client.members)
    with pytest.raises(MassRemovalError, match="would remove 23 of the 24 members"):
        sync(path, tmp_path, client)
    assert set(client.members) == held and len(client.calls) == 1  # nothing sent
    assert set(state_keys(path, SEG, DEST)) == held
    report = sync(path, tmp_path, client, allow_mass_removal=True)
    assert report.removes == 24 and client.members == {}
    assert report.removes_by_reason["erasure"] == 1


@both_backends
def test_a_few_members_leaving_is_not_a_mass_removal(wh, tmp_path):
    client = MemoryDestination(max_batch_size=100)
    sync(wh, tmp_path, client)
    with connect(wh) as con:
        set_audience(con, SEG, [])  # 5 of 5 leave: below the 10-row floor
    assert sync(wh, tmp_path, client).removes == 5


@both_backends
def test_a_second_sync_of_the_same_pair_is_refused_while_one_runs(wh, tmp_path):
    with (
        pair_lock(wh, SEG, DEST),
        pytest.raises(SyncInProgressError, match=r"already running \(held by process \d+"),
    ):
        sync(wh, tmp_path, MemoryDestination())
    assert sync(wh, tmp_path, MemoryDestination()).adds == 5  # released on exit


def test_the_warehouse_is_not_held_during_calls(wh, tmp_path):
    opened: list[int] = []

    class Probe(MemoryDestination):
        def add(self, audience_id, rows):
            # Another process (like a Dagster step) opens the file for writing mid-sync.
            code = f"import duckdb; duckdb.connect({str(wh)!r}).close()"
            opened.append(subprocess.run([sys.executable, "-c", code]).returncode)
            return super().add(audience_id, rows)

    client = Probe(max_batch_size=10)
    sync(wh, tmp_path, client)
    assert opened == [0] and len(client.members) == 5
