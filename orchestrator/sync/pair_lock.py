"""One sync per (segment, destination) at a time, across processes and machines: a lease row.

The lock is a row of ``activation.pair_locks`` in the warehouse, beside the state and journal
it protects: ``segment``, ``destination`` (primary key), ``owner`` (a random token per holder),
``host`` and ``pid`` of the holder, ``process_started`` (the holder's start time from
``/proc/<pid>/stat``, so a reused pid is not mistaken for it; NULL off Linux),
``acquired_at`` and ``heartbeat_at`` (naive UTC) and ``lease_s`` (seconds).

- **Acquire** (compare-and-swap, no transaction needed): ``INSERT ... ON CONFLICT DO
  NOTHING`` creates the row when nobody holds the pair (one statement: of two runs inserting at
  once, the server lets exactly one in). Otherwise the holder's row is read; it is taken over
  only when its holder is gone: its heartbeat is older than its lease (any machine), or it
  names this host and its process no longer runs (a crash here is recovered at once, without
  waiting out the lease). The takeover is ``UPDATE ... WHERE owner = <theirs> AND heartbeat_at
  = <theirs>``: it changes one row only if nobody took or renewed the row since it was read
  (on PostgreSQL, a second taker waits for the first's row lock, then finds the row changed
  and updates nothing). A live holder: :class:`SyncInProgressError` names it and when its
  lease ends.
- **Heartbeat**: while held, a daemon thread renews ``heartbeat_at`` every quarter lease, in
  short connections (never across the holder's HTTP calls).
- **Fence**: every journal write checks, in its own transaction, that this holder still owns
  the row (:meth:`HeldPairLock.fence`); a holder whose lease was taken over (paused for longer
  than its lease, cut off from the warehouse) stops before its next call instead of writing
  next to the new holder. On PostgreSQL the check is ``SELECT ... FOR UPDATE``: the row stays
  locked until the journal write commits, so a takeover waits for it and the new holder's first
  fold sees those lines (DuckDB needs no row lock: one process at a time opens the file for
  writing). Its call in flight, if any, was journaled as an intent, which the new holder folds
  as ``pending`` (unknown outcome) and resends: time, never correctness.
- **Release**: delete the row (only if still ours).

Why a lease row rather than the alternatives: DuckDB has no advisory locks; PostgreSQL's
advisory locks belong to a session, so holding one across a sync means keeping a connection
open across every HTTP call (what the sync must never do on DuckDB, and what a
transaction-pooling proxy such as PgBouncer breaks on Postgres), a machine that vanishes holds
it until the server notices the dead TCP connection, and they carry no owner to name in an
error. A row lock (``SELECT ... FOR UPDATE``) held for the whole sync has the same session
problem. Dagster's concurrency pools (the ``deploy/`` instance sets one per destination) only
order runs launched by one Dagster instance: the CLI, privacy request handling and the bench
call the sync directly, and a pool slot of a run whose machine vanished is only freed when run
monitoring marks the run failed. The row works the same on both backends with the same
statements (the fence's row lock is the one PostgreSQL-only clause) and serves every caller.
Clocks: the lease is compared with this machine's clock, so machines sharing a warehouse should
keep their clocks within a small fraction of the lease (NTP).
"""

from __future__ import annotations

import contextlib
import os
import secrets
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb

from orchestrator.sync.journal import check_pair
from orchestrator.warehouse.connect import connect
from orchestrator.warehouse.errors import DATABASE_ERRORS
from orchestrator.warehouse.product_schema import is_duckdb
from orchestrator.warehouse.target import Warehouse, as_target

#: Seconds a holder's row stays valid without a heartbeat (then another run may take it).
DEFAULT_LEASE_S = 120.0

#: How long to wait between attempts while another holder has the lock (s).
_RETRY_S = 0.5


class SyncInProgressError(RuntimeError):
    """Another process (here or on another machine) is syncing the same (segment, destination)."""


class PairLockLost(SyncInProgressError):
    """This holder's lease ran out and another run took the pair over: stop sending."""


@dataclass(frozen=True)
class LockHolder:
    """A row of ``activation.pair_locks`` (see the module docstring)."""

    owner: str
    host: str
    pid: int
    process_started: str | None
    acquired_at: datetime
    heartbeat_at: datetime
    lease_s: float

    def expires_at(self) -> datetime:
        """When the lease ends unless renewed (naive UTC)."""
        return self.heartbeat_at + timedelta(seconds=self.lease_s)

    def describe(self) -> str:
        """Who holds the lock, since when, until when (no secret: the owner token is left out)."""
        return (
            f"held by process {self.pid} on host {self.host} since "
            f"{self.acquired_at:%Y-%m-%d %H:%M:%S} UTC; its lease ends at "
            f"{self.expires_at():%H:%M:%S} UTC unless it sends a heartbeat"
        )


def _utc_now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


def process_started(pid: int) -> str | None:
    """The start time of process ``pid`` in clock ticks since boot (``/proc/<pid>/stat`` field
    22), or None when unknown (no such process, not Linux)."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text[text.rfind(")") + 2 :].split()[19]


def _holder_gone_here(holder: LockHolder, host: str) -> bool:
    """True when ``holder`` ran on this host and its process is gone (or the pid was reused)."""
    if holder.host != host:
        return False
    started = process_started(holder.pid)
    return started is None or (
        holder.process_started is not None and started != holder.process_started
    )


def _stale(holder: LockHolder, host: str, now: datetime) -> bool:
    return holder.expires_at() <= now or _holder_gone_here(holder, host)


_INSERT_SQL = """
    INSERT INTO activation.pair_locks (segment, destination, owner, host, pid, process_started,
                                       acquired_at, heartbeat_at, lease_s)
    VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
    ON CONFLICT (segment, destination) DO NOTHING
"""

_TAKE_OVER_SQL = """
    UPDATE activation.pair_locks SET owner = ?, host = ?, pid = ?, process_started = ?,
        acquired_at = ?, heartbeat_at = ?, lease_s = ?
    WHERE segment = ? AND destination = ? AND owner = ? AND heartbeat_at = ?
"""

_SELECT_SQL = """
    SELECT owner, host, pid, process_started, acquired_at, heartbeat_at, lease_s
    FROM activation.pair_locks WHERE segment = ? AND destination = ?
"""


@dataclass
class HeldPairLock:
    """The pair lock this process holds (from :func:`pair_lock`)."""

    warehouse_path: Warehouse
    segment: str
    destination: str
    owner: str
    lease_s: float
    lock_timeout_s: float

    def fence(self, con: duckdb.DuckDBPyConnection) -> None:
        """Check on ``con`` (inside the caller's transaction) that this holder still owns the
        row; journal writes call it before inserting.

        Raises:
            PairLockLost: the row is gone or belongs to another run.
        """
        locking = "" if is_duckdb(con) else " FOR UPDATE"
        row = con.execute(_SELECT_SQL + locking, [self.segment, self.destination]).fetchone()
        if row is None or row[0] != self.owner:
            holder = "" if row is None else f" ({LockHolder(*row).describe()})"
            raise PairLockLost(
                f"the lock of {self.segment} -> {self.destination} was taken over by another "
                f"run after this one's lease of {self.lease_s:.0f} s ran out{holder}; this run "
                "stopped before its next call (the next run resends what is unconfirmed)"
            )

    def heartbeat(self) -> None:
        """Renew the lease in a short connection.

        Raises:
            PairLockLost: the lock was taken over.
        """
        with connect(self.warehouse_path, timeout_s=self.lock_timeout_s) as con:
            (count,) = con.execute(
                "UPDATE activation.pair_locks SET heartbeat_at = ? "
                "WHERE segment = ? AND destination = ? AND owner = ?",
                [_utc_now(), self.segment, self.destination, self.owner],
            ).fetchone()
        if count == 0:
            raise PairLockLost(f"the lock of {self.segment} -> {self.destination} was lost")

    def release(self) -> None:
        """Delete the row if it is still ours."""
        with connect(self.warehouse_path, timeout_s=self.lock_timeout_s) as con:
            con.execute(
                "DELETE FROM activation.pair_locks "
                "WHERE segment = ? AND destination = ? AND owner = ?",
                [self.segment, self.destination, self.owner],
            )


def _try_acquire(
    con: duckdb.DuckDBPyConnection, lock: HeldPairLock, host: str, pid: int
) -> LockHolder | None:
    """One attempt (see the module docstring); returns None when acquired, else the live
    holder (a holder with an empty owner: the row changed under this attempt, try again)."""
    pair = [lock.segment, lock.destination]
    now = _utc_now()
    mine = [lock.owner, host, pid, process_started(pid), now, now, lock.lease_s]
    changed = LockHolder("", host, pid, None, now, now, 0.0)
    try:
        (inserted,) = con.execute(_INSERT_SQL, [*pair, *mine]).fetchone()
        if inserted:
            return None
        row = con.execute(_SELECT_SQL, pair).fetchone()
        if row is None:  # released since the insert: try again
            return changed
        holder = LockHolder(*row)
        if not _stale(holder, host, now):
            return holder
        (taken,) = con.execute(
            _TAKE_OVER_SQL, [*mine, *pair, holder.owner, holder.heartbeat_at]
        ).fetchone()
    except (duckdb.TransactionException, duckdb.ConstraintException):
        # DuckDB: another connection of this process wrote the row first: try again
        return changed
    return None if taken else changed


def acquire(
    warehouse_path: Warehouse,
    segment: str,
    destination: str,
    *,
    lease_s: float = DEFAULT_LEASE_S,
    wait_s: float = 0.0,
    lock_timeout_s: float = 60,
) -> HeldPairLock:
    """Take the pair's lock (see the module docstring), waiting up to ``wait_s`` seconds for a
    live holder to finish. Call :meth:`HeldPairLock.release` when done (or use
    :func:`pair_lock`).

    Raises:
        SyncInProgressError: a live holder still had it after ``wait_s`` (the message names its
            host, process and lease).
        ValueError: a bad pair name or a lease under one second.
        duckdb.IOException: the DuckDB file stayed locked for ``lock_timeout_s``.
        orchestrator.warehouse.errors.WarehouseError: PostgreSQL unreachable, refused.
    """
    check_pair(segment, destination)
    if lease_s < 1:
        raise ValueError("lease_s must be at least 1 second")
    lock = HeldPairLock(
        as_target(warehouse_path),
        segment,
        destination,
        secrets.token_hex(16),
        lease_s,
        lock_timeout_s,
    )
    host, pid = socket.gethostname(), os.getpid()
    deadline = time.monotonic() + wait_s
    while True:
        with connect(lock.warehouse_path, timeout_s=lock_timeout_s) as con:
            holder = _try_acquire(con, lock, host, pid)
        if holder is None:
            return lock
        if time.monotonic() >= deadline:
            raise SyncInProgressError(
                f"a sync of {segment} -> {destination} is already running ({holder.describe()})"
                if holder.owner
                else f"a sync of {segment} -> {destination} is starting in this process"
            )
        time.sleep(_RETRY_S)


def _beat(lock: HeldPairLock, stop: threading.Event) -> None:
    """Renew the lease every quarter lease until ``stop``; a lost lock ends the loop (the next
    journal write's fence stops the sync), a locked warehouse is tried again next time."""
    while not stop.wait(lock.lease_s / 4):
        try:
            lock.heartbeat()
        except PairLockLost:
            return
        except DATABASE_ERRORS:
            continue


@contextmanager
def pair_lock(
    warehouse_path: Warehouse,
    segment: str,
    destination: str,
    *,
    lease_s: float = DEFAULT_LEASE_S,
    wait_s: float = 0.0,
    lock_timeout_s: float = 60,
) -> Iterator[HeldPairLock]:
    """Hold the pair's lock for a ``with`` block, renewing its lease in a daemon thread; the row
    is deleted on exit (a failed deletion leaves it to expire). Raises as :func:`acquire`."""
    lock = acquire(
        warehouse_path,
        segment,
        destination,
        lease_s=lease_s,
        wait_s=wait_s,
        lock_timeout_s=lock_timeout_s,
    )
    stop = threading.Event()
    beat = threading.Thread(target=_beat, args=(lock, stop), name="pair-lock-heartbeat")
    beat.daemon = True
    beat.start()
    try:
        yield lock
    finally:
        stop.set()
        beat.join()
        with contextlib.suppress(*DATABASE_ERRORS):
            lock.release()


__all__ = [
    "DEFAULT_LEASE_S",
    "HeldPairLock",
    "LockHolder",
    "PairLockLost",
    "SyncInProgressError",
    "acquire",
    "pair_lock",
    "process_started",
]
