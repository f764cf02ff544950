"""SQLite persistence for the mock destinations (one file under the state directory).

Everything the mock knows lives here, so a restart on the same state directory keeps Meta
audiences, Mailchimp list members, the request log, violation counters and queued faults.
One connection is shared by the server threads and every call holds a lock, which keeps each
operation atomic (fault matching, batch application) without per-thread connections.

Tables (all keyed by platform where it matters):
- ``meta_members(audience_id TEXT, hash TEXT)``: current members of each Meta audience.
- ``mc_members(list_id, hash, email, status, merge_fields, last_changed)``: Mailchimp contacts;
  ``hash`` is md5(lowercase email), ``email`` is NULL once the contact is forgotten.
- ``requests(id, platform, method, path, query, status, fault, at, values_json)``: request log.
- ``violations(platform, kind, count)`` and ``violation_samples(platform, kind, sample)``.
- ``faults(id, platform, method, path_regex, nth, seen, action_json)``: queued faults.
"""

from __future__ import annotations

import json
import re
import sqlite3
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

DB_FILENAME = "mock_destinations.sqlite3"
MAX_SAMPLES_PER_KIND = 20

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta_audiences (
    audience_id TEXT PRIMARY KEY, created_at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS meta_members (
    audience_id TEXT NOT NULL, hash TEXT NOT NULL, added_at REAL NOT NULL,
    PRIMARY KEY (audience_id, hash)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS mc_lists (
    list_id TEXT PRIMARY KEY, created_at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS mc_members (
    list_id TEXT NOT NULL, hash TEXT NOT NULL, email TEXT, status TEXT NOT NULL,
    merge_fields TEXT NOT NULL DEFAULT '{}', last_changed TEXT NOT NULL,
    PRIMARY KEY (list_id, hash)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS requests (
    id INTEGER PRIMARY KEY AUTOINCREMENT, platform TEXT NOT NULL, method TEXT NOT NULL,
    path TEXT NOT NULL, query TEXT NOT NULL, status INTEGER, fault TEXT, at REAL NOT NULL,
    values_json TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS violations (
    platform TEXT NOT NULL, kind TEXT NOT NULL, count INTEGER NOT NULL,
    PRIMARY KEY (platform, kind));
CREATE TABLE IF NOT EXISTS violation_samples (
    id INTEGER PRIMARY KEY AUTOINCREMENT, platform TEXT NOT NULL, kind TEXT NOT NULL,
    sample TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS faults (
    id INTEGER PRIMARY KEY AUTOINCREMENT, platform TEXT NOT NULL, method TEXT,
    path_regex TEXT, nth INTEGER NOT NULL, seen INTEGER NOT NULL DEFAULT 0,
    action_json TEXT NOT NULL);
"""


@dataclass(frozen=True)
class McMember:
    """One Mailchimp contact as stored: ``hash`` = md5(lowercase email); ``email`` is None
    once forgotten; ``status`` one of subscribed, unsubscribed, cleaned, pending, archived,
    forgotten; ``merge_fields`` name -> value; ``last_changed`` ISO-8601 UTC."""

    list_id: str
    hash: str
    email: str | None
    status: str
    merge_fields: dict[str, Any]
    last_changed: str

    def as_dict(self) -> dict[str, Any]:
        """Control-API shape: hash, email_address, status, merge_fields, last_changed."""
        return {
            "hash": self.hash,
            "email_address": self.email,
            "status": self.status,
            "merge_fields": self.merge_fields,
            "last_changed": self.last_changed,
        }


@dataclass(frozen=True)
class QueuedFault:
    """A fault that fired: its id, platform and the action (dict, see ``faults.py``)."""

    id: int
    platform: str
    action: dict[str, Any]


def utc_now_iso() -> str:
    """Current UTC time as ``YYYY-MM-DDTHH:MM:SS+00:00`` (Mailchimp's timestamp format)."""
    return time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime())


class Store:
    """Thread-safe access to the mock's SQLite file ``<state_dir>/mock_destinations.sqlite3``.

    Every public method takes the lock and commits before returning. Raises
    ``sqlite3.Error`` on I/O problems.
    """

    def __init__(self, state_dir: Path) -> None:
        state_dir.mkdir(parents=True, exist_ok=True)
        self.path = state_dir / DB_FILENAME
        self._lock = threading.Lock()
        self._con = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self._con.execute("PRAGMA journal_mode=WAL")
        self._con.execute("PRAGMA synchronous=NORMAL")
        self._con.executescript(_SCHEMA)

    def close(self) -> None:
        """Close the connection (further calls raise ``sqlite3.ProgrammingError``)."""
        with self._lock:
            self._con.close()

    def _tx(self) -> _Transaction:
        return _Transaction(self._lock, self._con)

    # --- Meta -----------------------------------------------------------------------------
    def meta_apply(self, audience_id: str, hashes: Sequence[str], *, add: bool) -> None:
        """Add (``add=True``) or remove hashes in one transaction; both are idempotent."""
        now = time.time()
        with self._tx() as con:
            self._ensure(con, "meta_audiences", "audience_id", audience_id, now)
            if add:
                con.executemany(
                    "INSERT OR IGNORE INTO meta_members VALUES (?, ?, ?)",
                    [(audience_id, h, now) for h in hashes],
                )
            else:
                con.executemany(
                    "DELETE FROM meta_members WHERE audience_id = ? AND hash = ?",
                    [(audience_id, h) for h in hashes],
                )

    def meta_members(self, audience_id: str) -> list[str]:
        """Sorted member hashes of an audience ([] if unknown)."""
        with self._tx() as con:
            rows = con.execute(
                "SELECT hash FROM meta_members WHERE audience_id = ? ORDER BY hash",
                (audience_id,),
            ).fetchall()
        return [r[0] for r in rows]

    def meta_count(self, audience_id: str) -> int:
        """Exact member count of an audience (creates the audience on first use)."""
        with self._tx() as con:
            self._ensure(con, "meta_audiences", "audience_id", audience_id, time.time())
            row = con.execute(
                "SELECT count(*) FROM meta_members WHERE audience_id = ?", (audience_id,)
            ).fetchone()
        return int(row[0])

    # --- Mailchimp ------------------------------------------------------------------------
    def mc_get(self, list_id: str, member_hash: str) -> McMember | None:
        """The stored contact, or None if the list never had it."""
        with self._tx() as con:
            row = con.execute(
                "SELECT list_id, hash, email, status, merge_fields, last_changed FROM mc_members"
                " WHERE list_id = ? AND hash = ?",
                (list_id, member_hash),
            ).fetchone()
        return _member(row) if row else None

    def mc_get_many(self, list_id: str, hashes: Iterable[str]) -> dict[str, McMember]:
        """Stored contacts among ``hashes``, keyed by hash."""
        wanted = list(dict.fromkeys(hashes))
        found: dict[str, McMember] = {}
        with self._tx() as con:
            for start in range(0, len(wanted), 500):
                chunk = wanted[start : start + 500]
                marks = ",".join("?" * len(chunk))
                rows = con.execute(
                    "SELECT list_id, hash, email, status, merge_fields, last_changed"
                    f" FROM mc_members WHERE list_id = ? AND hash IN ({marks})",
                    (list_id, *chunk),
                ).fetchall()
                found.update({r[1]: _member(r) for r in rows})
        return found

    def mc_put_many(self, members: Sequence[McMember]) -> None:
        """Insert or replace contacts in one transaction (creates their lists)."""
        now = time.time()
        with self._tx() as con:
            for list_id in {m.list_id for m in members}:
                self._ensure(con, "mc_lists", "list_id", list_id, now)
            con.executemany(
                "INSERT OR REPLACE INTO mc_members VALUES (?, ?, ?, ?, ?, ?)",
                [
                    (
                        m.list_id,
                        m.hash,
                        m.email,
                        m.status,
                        json.dumps(m.merge_fields),
                        m.last_changed,
                    )
                    for m in members
                ],
            )

    def mc_members(self, list_id: str) -> list[McMember]:
        """All contacts of a list (any status, forgotten included), sorted by hash."""
        with self._tx() as con:
            self._ensure(con, "mc_lists", "list_id", list_id, time.time())
            rows = con.execute(
                "SELECT list_id, hash, email, status, merge_fields, last_changed FROM mc_members"
                " WHERE list_id = ? ORDER BY hash",
                (list_id,),
            ).fetchall()
        return [_member(r) for r in rows]

    def mc_status_counts(self, list_id: str) -> dict[str, int]:
        """Number of contacts per status in a list (creates the list on first use)."""
        with self._tx() as con:
            self._ensure(con, "mc_lists", "list_id", list_id, time.time())
            rows = con.execute(
                "SELECT status, count(*) FROM mc_members WHERE list_id = ? GROUP BY status",
                (list_id,),
            ).fetchall()
        return {status: int(n) for status, n in rows}

    # --- request log, violations, faults ----------------------------------------------------
    def log_request(
        self,
        platform: str,
        method: str,
        path: str,
        query: str,
        status: int | None,
        fault: str | None,
        values: list[Any],
    ) -> None:
        """Append one request to the log (``status`` None when the connection was dropped)."""
        with self._tx() as con:
            con.execute(
                "INSERT INTO requests (platform, method, path, query, status, fault, at,"
                " values_json) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (platform, method, path, query, status, fault, time.time(), json.dumps(values)),
            )

    def requests(
        self, platform: str, *, since_id: int = 0, with_values: bool = True
    ) -> list[dict[str, Any]]:
        """Logged requests of a platform with id > ``since_id``, oldest first.

        Each: ``{"id", "method", "path", "query", "status", "fault", "at", "values"}``.
        """
        with self._tx() as con:
            rows = con.execute(
                "SELECT id, method, path, query, status, fault, at, values_json FROM requests"
                " WHERE platform = ? AND id > ? ORDER BY id",
                (platform, since_id),
            ).fetchall()
        keys = ("id", "method", "path", "query", "status", "fault", "at")
        out = []
        for row in rows:
            entry = dict(zip(keys, row[:7], strict=True))
            entry["values"] = json.loads(row[7]) if with_values else None
            out.append(entry)
        return out

    def add_violations(self, platform: str, kind: str, samples: Sequence[str]) -> None:
        """Count ``len(samples)`` violations of ``kind``; keep the first few samples.

        Samples must already be redacted (hash prefixes, never raw emails)."""
        if not samples:
            return
        with self._tx() as con:
            con.execute(
                "INSERT INTO violations VALUES (?, ?, ?) ON CONFLICT (platform, kind)"
                " DO UPDATE SET count = count + excluded.count",
                (platform, kind, len(samples)),
            )
            kept = con.execute(
                "SELECT count(*) FROM violation_samples WHERE platform = ? AND kind = ?",
                (platform, kind),
            ).fetchone()[0]
            room = max(0, MAX_SAMPLES_PER_KIND - kept)
            con.executemany(
                "INSERT INTO violation_samples (platform, kind, sample) VALUES (?, ?, ?)",
                [(platform, kind, s) for s in samples[:room]],
            )

    def violations(self, platform: str) -> tuple[dict[str, int], dict[str, list[str]]]:
        """(counts by kind, samples by kind) for a platform."""
        with self._tx() as con:
            counts = con.execute(
                "SELECT kind, count FROM violations WHERE platform = ?", (platform,)
            ).fetchall()
            samples = con.execute(
                "SELECT kind, sample FROM violation_samples WHERE platform = ? ORDER BY id",
                (platform,),
            ).fetchall()
        by_kind: dict[str, list[str]] = {}
        for kind, sample in samples:
            by_kind.setdefault(kind, []).append(sample)
        return {k: int(n) for k, n in counts}, by_kind

    def add_fault(
        self, platform: str, method: str | None, path_regex: str | None, nth: int, action: dict
    ) -> int:
        """Queue one fault; returns its id."""
        with self._tx() as con:
            cur = con.execute(
                "INSERT INTO faults (platform, method, path_regex, nth, action_json)"
                " VALUES (?, ?, ?, ?, ?)",
                (platform, method, path_regex, nth, json.dumps(action)),
            )
        return int(cur.lastrowid or 0)

    def list_faults(self, platform: str) -> list[dict[str, Any]]:
        """Queued faults: ``{"id", "method", "path", "nth", "seen", "action"}`` in queue order."""
        with self._tx() as con:
            rows = con.execute(
                "SELECT id, method, path_regex, nth, seen, action_json FROM faults"
                " WHERE platform = ? ORDER BY id",
                (platform,),
            ).fetchall()
        return [
            {
                "id": r[0],
                "method": r[1],
                "path": r[2],
                "nth": r[3],
                "seen": r[4],
                "action": json.loads(r[5]),
            }
            for r in rows
        ]

    def clear_faults(self, platform: str) -> int:
        """Drop the platform's queued faults; returns how many were dropped."""
        with self._tx() as con:
            cur = con.execute("DELETE FROM faults WHERE platform = ?", (platform,))
        return cur.rowcount

    def take_fault(self, platform: str, method: str, path: str) -> QueuedFault | None:
        """Count this request against the queued faults and consume the one that fires.

        Faults are visited in queue order. Each matching fault (same method or none given,
        ``re.search(path_regex, path)`` or none given) counts the request as seen, unless an
        earlier fault already claimed it; the fault whose ``seen`` reaches ``nth`` fires and is
        deleted. So two queued faults with ``nth=1`` hit two consecutive requests.
        """
        with self._tx() as con:
            rows = con.execute(
                "SELECT id, method, path_regex, nth, seen, action_json FROM faults"
                " WHERE platform = ? ORDER BY id",
                (platform,),
            ).fetchall()
            for fid, f_method, f_regex, nth, seen, action_json in rows:
                if f_method and f_method.upper() != method:
                    continue
                if f_regex and not re.search(f_regex, path):
                    continue
                if seen + 1 >= nth:
                    con.execute("DELETE FROM faults WHERE id = ?", (fid,))
                    return QueuedFault(fid, platform, json.loads(action_json))
                con.execute("UPDATE faults SET seen = seen + 1 WHERE id = ?", (fid,))
        return None

    def reset(self, platform: str) -> None:
        """Wipe everything of one platform (``"meta"``, ``"mailchimp"`` or ``"google"``; the
        Google audiences themselves are wiped by ``google_api.reset``)."""
        member_tables = {
            "meta": ("meta_audiences", "meta_members"),
            "mailchimp": ("mc_lists", "mc_members"),
        }.get(platform, ())
        with self._tx() as con:
            for table in member_tables:
                con.execute(f"DELETE FROM {table}")  # table names are constants above
            for table in ("requests", "violations", "violation_samples", "faults"):
                con.execute(f"DELETE FROM {table} WHERE platform = ?", (platform,))

    @staticmethod
    def _ensure(con: sqlite3.Connection, table: str, key: str, value: str, now: float) -> None:
        con.execute(
            f"INSERT OR IGNORE INTO {table} ({key}, created_at) VALUES (?, ?)", (value, now)
        )


class _Transaction:
    """Hold the store lock and run one BEGIN IMMEDIATE ... COMMIT (ROLLBACK on error)."""

    def __init__(self, lock: threading.Lock, con: sqlite3.Connection) -> None:
        self._lock = lock
        self._con = con

    def __enter__(self) -> sqlite3.Connection:
        self._lock.acquire()
        try:
            self._con.execute("BEGIN IMMEDIATE")
        except BaseException:
            self._lock.release()
            raise
        return self._con

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        try:
            self._con.execute("ROLLBACK" if exc_type else "COMMIT")
        finally:
            self._lock.release()


def _member(row: Sequence[Any]) -> McMember:
    return McMember(row[0], row[1], row[2], row[3], json.loads(row[4] or "{}"), row[5])
