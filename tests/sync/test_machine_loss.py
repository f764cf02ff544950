"""Lose the machine, not just the process: a sync killed mid-send whose scratch folder is then
deleted is finished by another process with another folder, from what the warehouse holds
(journal and lock included); and two runs of one pair started at once from two processes
with their own folders: one runs, the other stops with a clear message.

Real Mailchimp client and mock server (HTTP on loopback), a real DuckDB file or a real
PostgreSQL database, real processes (SIGKILL). What the destination holds is read through the
mock's control API.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from destinations.mock.testing import running_mock
from orchestrator.pseudonymize import subject_key
from orchestrator.sync.diff import PENDING_HASH
from orchestrator.sync.state import fold_journal
from orchestrator.warehouse.connect import connect
from orchestrator.warehouse.target import Warehouse, WarehouseTarget
from tests.postgres import both_backends
from tests.sync.helpers import T0, fake_emails, new_warehouse, query, set_audience, state_keys

SEG, MC, LIST = "loyal", "mailchimp", "list01"
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def mock(tmp_path_factory):
    with running_mock(tmp_path_factory.mktemp("mock")) as handle:
        yield handle


@pytest.fixture
def wh(empty_warehouse: Warehouse, mock) -> Warehouse:
    mock.reset()
    new_warehouse(empty_warehouse, fake_emails(24, seed=5))
    return empty_warehouse


def _machine(wh: Warehouse, folder: Path, mock, *, die_after: int = 0, delay_s: float = 0.0):
    """Start the sync in another process with its own state folder (a "machine"); a
    PostgreSQL warehouse is passed as its URL (the password in the environment)."""
    where = wh.config.url if isinstance(wh, WarehouseTarget) else str(wh)
    cmd = [sys.executable, "-m", "tests.sync.machine_runner", where, str(folder)]
    cmd += [mock.mailchimp_url, mock.mailchimp_token, LIST, "2", str(die_after), str(delay_s)]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.Popen(
        cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def _finish(proc: subprocess.Popen) -> tuple[int, str]:
    _out, err = proc.communicate(timeout=120)
    return proc.returncode, err


def _emails(wh: Warehouse, customer_ids) -> dict[str, str]:
    """subject key -> email of the given customers."""
    wanted = set(customer_ids)
    rows = query(wh, "SELECT customer_id, email FROM customers")
    return {subject_key(e): e for cid, e in rows if cid in wanted}


def _at_mailchimp(mock) -> dict[str, str]:
    """subject key -> status of every member the mock list holds."""
    return {subject_key(m["email_address"]): m["status"] for m in mock.mailchimp_members(LIST)}


def _subscribed(mock) -> set[str]:
    return {k for k, status in _at_mailchimp(mock).items() if status == "subscribed"}


def _suppressions(wh: Warehouse) -> dict[str, str]:
    return dict(query(wh, "SELECT subject_key, status FROM activation.destination_suppressions"))


def _privacy_changes(wh: Warehouse) -> None:
    """Customer 3 withdraws consent, customer 4 asks for erasure, 1 and 2 leave, 13-20 join."""
    with connect(wh) as con:
        con.execute(
            "INSERT INTO activation.audience_exclusions VALUES (?, 3, 'withdrawn', ?)", [SEG, T0]
        )
        con.execute("INSERT INTO privacy_requests VALUES ('r1', 4, NULL, 'erasure', ?)", [T0])
        set_audience(con, SEG, [*range(5, 13), *range(13, 21)])


#: Batches of 2, removes first: [erasure 4], [withdrawn 3], [left 1, 2], [add 13, 14], ...;
#: journal windows of two batches. 1: the erasure applied, unanswered; 4: the first window's
#: answers written, the second's (a removal and the adds of 13 and 14) applied, unanswered.
@both_backends
@pytest.mark.parametrize("die_after", [1, 4])
def test_a_sync_killed_with_its_machine_is_finished_by_another(wh, tmp_path, mock, die_after):
    with connect(wh) as con:
        set_audience(con, SEG, range(1, 13))
    first = _machine(wh, tmp_path / "machine0", mock)
    assert _finish(first)[0] == 0
    _privacy_changes(wh)

    lost = tmp_path / "machine1"
    killed = _machine(wh, lost, mock, die_after=die_after)
    assert _finish(killed)[0] == -signal.SIGKILL
    shutil.rmtree(lost)  # the machine is gone, with its disk

    with connect(wh) as con:  # what the next run does first, on any machine
        fold_journal(con, segment=SEG, destination=MC, kind="email")
    held = state_keys(wh, SEG, MC)
    claimed = {k for k, h in held.items() if h != PENDING_HASH}
    assert claimed <= _subscribed(mock)  # nothing over-claimed
    assert _subscribed(mock) <= set(held)  # nothing there we could not remove later

    with connect(wh) as con:  # 13 and 14 (added by the lost run, if it got there) leave
        set_audience(con, SEG, [*range(5, 13), *range(15, 21)])
    other = _machine(wh, tmp_path / "machine2", mock)
    code, err = _finish(other)
    assert code == 0, err
    audience = _emails(wh, [*range(5, 13), *range(15, 21)])
    assert _subscribed(mock) == set(audience)  # destination == audience
    assert sorted(state_keys(wh, SEG, MC)) == sorted(audience)
    assert PENDING_HASH not in state_keys(wh, SEG, MC).values()
    (withdrawn,), (erased,) = _emails(wh, [3]), _emails(wh, [4])
    assert _at_mailchimp(mock)[withdrawn] == "unsubscribed"
    assert erased not in _at_mailchimp(mock)  # permanently deleted: no removal lost
    assert _suppressions(wh) == {withdrawn: "unsubscribed", erased: "forgotten"}
    assert not {k for k, s in _at_mailchimp(mock).items() if s == "subscribed"} - set(audience)


@both_backends
def test_two_runs_of_one_pair_from_two_machines_one_runs_one_stops(wh, tmp_path, mock):
    with connect(wh) as con:
        set_audience(con, SEG, range(1, 21))  # 10 batches of 2, 0.2 s each: about 2 s
    runs = [_machine(wh, tmp_path / f"machine{i}", mock, delay_s=0.2) for i in (1, 2)]
    outcomes = sorted(_finish(run) for run in runs)
    (ok, _), (refused, message) = outcomes
    assert (ok, refused) == (0, 3)
    assert "a sync of loyal -> mailchimp is already running (held by process" in message
    assert "on host" in message and "lease ends at" in message
    audience = _emails(wh, range(1, 21))
    assert _subscribed(mock) == set(audience)
    assert sorted(state_keys(wh, SEG, MC)) == sorted(audience)
    assert PENDING_HASH not in state_keys(wh, SEG, MC).values()
    sent = [v for r in mock.requests_log("mailchimp") for v in (r["values"] or [])]
    assert len(sent) == 20  # every member sent once: the refused run sent nothing
    with connect(wh) as con:
        assert con.execute("SELECT count(*) FROM activation.pair_locks").fetchone() == (0,)
        assert con.execute("SELECT count(*) FROM activation.sync_journal").fetchone() == (0,)
