"""The pair lock row: held by one run at a time; a holder on another machine keeps it while its
lease runs and loses it after; a dead holder on this host is replaced at once; a run whose lock
was taken over writes nothing more to the journal."""

from __future__ import annotations

import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import pytest

from orchestrator.sync import journal
from orchestrator.sync.pair_lock import (
    PairLockLost,
    SyncInProgressError,
    acquire,
    pair_lock,
)
from orchestrator.warehouse.connect import connect
from orchestrator.warehouse.target import Warehouse
from tests.postgres import both_backends, warehouse_target
from tests.sync.helpers import new_warehouse

SEG, DEST = "loyal", "ads"


@pytest.fixture
def wh(empty_warehouse: Warehouse) -> Warehouse:
    new_warehouse(empty_warehouse, [])
    return empty_warehouse


def _plant(wh: Warehouse, *, host: str, pid: int, age_s: float, lease_s: float = 60) -> None:
    """A lock row as another holder left it, its last heartbeat ``age_s`` seconds ago."""
    beat = datetime.now(UTC).replace(tzinfo=None) - timedelta(seconds=age_s)
    with connect(wh) as con:
        con.execute(
            "INSERT INTO activation.pair_locks VALUES (?, ?, 'theirs', ?, ?, NULL, ?, ?, ?)",
            [SEG, DEST, host, pid, beat, beat, lease_s],
        )


def _owner(wh: Warehouse) -> str | None:
    with connect(wh) as con:
        row = con.execute("SELECT owner FROM activation.pair_locks").fetchone()
    return None if row is None else row[0]


@both_backends
def test_a_live_holder_on_another_machine_keeps_the_pair(wh):
    _plant(wh, host="other-machine", pid=4242, age_s=5)
    with pytest.raises(SyncInProgressError) as caught:
        acquire(wh, SEG, DEST)
    message = str(caught.value)
    assert "held by process 4242 on host other-machine" in message and "lease ends at" in message
    assert "theirs" not in message  # the owner token is not shown


@both_backends
def test_a_holder_whose_lease_ran_out_is_replaced(wh):
    _plant(wh, host="other-machine", pid=4242, age_s=61)
    lock = acquire(wh, SEG, DEST)
    assert _owner(wh) == lock.owner
    lock.release()
    assert _owner(wh) is None


@both_backends
def test_a_dead_holder_on_this_host_is_replaced_at_once(wh):
    _plant(wh, host=socket.gethostname(), pid=2**22 + 17, age_s=0)  # no such process
    with pair_lock(wh, SEG, DEST) as lock:
        assert _owner(wh) == lock.owner


@both_backends
def test_waiting_gives_up_with_the_holder_named(wh):
    with pair_lock(wh, SEG, DEST), pytest.raises(SyncInProgressError, match="already running"):
        acquire(wh, SEG, DEST, wait_s=1.0)


@both_backends
def test_a_run_whose_lock_was_taken_over_writes_no_more_journal(wh):
    lock = acquire(wh, SEG, DEST, lease_s=1)
    with connect(wh) as con:  # its lease ran out; another run took the pair over
        con.execute("UPDATE activation.pair_locks SET owner = 'next-run'")
    line = journal.JournalLine("r1", 0, "intent", '{"run":"r1","seq":0,"kind":"intent"}')
    with connect(wh) as con, pytest.raises(PairLockLost, match="taken over"):
        con.begin()
        lock.fence(con)
        journal.append_lines(con, SEG, DEST, [line])
    with connect(wh) as con:
        assert journal.line_count(con, SEG, DEST) == 0
    with pytest.raises(PairLockLost):
        lock.heartbeat()


def _race(wh: Warehouse, runs: int = 6) -> list[object]:
    """``runs`` threads asking for the pair at the same instant: each one's lock or error."""
    gate = threading.Barrier(runs)

    def attempt() -> object:
        gate.wait()
        try:
            return acquire(wh, SEG, DEST)
        except SyncInProgressError as error:
            return error

    with ThreadPoolExecutor(runs) as pool:
        return list(pool.map(lambda _: attempt(), range(runs)))


@both_backends
def test_of_runs_racing_for_a_free_pair_exactly_one_gets_it(wh):
    outcomes = _race(wh)
    won = [o for o in outcomes if not isinstance(o, Exception)]
    assert len(won) == 1 and _owner(wh) == won[0].owner


@both_backends
def test_of_runs_racing_to_take_over_an_expired_lease_exactly_one_gets_it(wh):
    _plant(wh, host="other-machine", pid=4242, age_s=61)
    outcomes = _race(wh)
    won = [o for o in outcomes if not isinstance(o, Exception)]
    assert len(won) == 1 and _owner(wh) == won[0].owner


def test_a_takeover_waits_for_the_journal_write_the_holder_has_begun(postgres_url):
    """PostgreSQL: the fence locks the row until the holder's journal write commits, so the
    run taking the pair over starts after it and its first fold sees those lines (DuckDB:
    one process at a time has the file open for writing)."""
    wh = warehouse_target(postgres_url)
    new_warehouse(wh, [])
    lock = acquire(wh, SEG, DEST, lease_s=1)
    line = journal.JournalLine("r1", 0, "intent", '{"run":"r1","seq":0,"kind":"intent"}')
    taken: list[object] = []
    with connect(wh) as con:
        con.begin()
        lock.fence(con)  # the holder's write has begun (its lease runs out meanwhile)
        journal.append_lines(con, SEG, DEST, [line])
        time.sleep(1.2)
        taker = threading.Thread(target=lambda: taken.append(acquire(wh, SEG, DEST)))
        taker.start()
        taker.join(1.0)
        assert taker.is_alive() and taken == []  # waiting for the holder's row lock
        con.commit()
    taker.join(10)
    assert len(taken) == 1 and _owner(wh) == taken[0].owner
    with connect(wh) as con:
        assert journal.line_count(con, SEG, DEST) == 1  # the holder's intent is kept
