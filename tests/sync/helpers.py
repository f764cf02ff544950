"""Small warehouse builders for the sync tests: synthetic people only (Faker, example.com)."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime

import duckdb
from faker import Faker

from destinations.base import CallStats, RemoveReason, Row, RowResult
from orchestrator.pseudonymize import google_key, normalize_email, subject_key
from orchestrator.warehouse.connect import connect
from orchestrator.warehouse.schema import create_activation_schema, create_source_schema
from orchestrator.warehouse.target import Warehouse, WarehouseTarget

T0 = datetime(2025, 1, 15, 12, 0, 0)


def fake_emails(n: int, seed: int = 7) -> list[str]:
    """``n`` distinct synthetic addresses at example.com/example.org, messy case included."""
    fake = Faker()
    fake.seed_instance(seed)
    out: list[str] = []
    while len(out) < n:
        email = (
            f"{fake.user_name()}{len(out)}@{fake.random_element(['example.com', 'example.org'])}"
        )
        out.append(email.upper() if len(out) % 5 == 0 else email)
    return out


def new_warehouse(where: Warehouse, emails: Sequence[str]) -> None:
    """Create source + activation tables and one customer per email (ids 1..n, country GB) in
    ``where`` (a DuckDB file or a PostgreSQL target)."""
    with connect(where) as con:
        create_source_schema(con)
        create_activation_schema(con)
        if emails:
            con.executemany(
                "INSERT INTO customers VALUES (?, ?, 'GB', 'United Kingdom', ?, NULL)",
                [(i + 1, e, T0) for i, e in enumerate(emails)],
            )


def set_audience(con: duckdb.DuckDBPyConnection, segment: str, customer_ids: Iterable[int]) -> None:
    """Replace the segment's ``audience_members`` with the given customers (keys from Python)."""
    con.execute("DELETE FROM activation.audience_members WHERE segment = ?", [segment])
    rows = []
    for cid in customer_ids:
        (email,) = con.execute(
            "SELECT email FROM customers WHERE customer_id = ?", [cid]
        ).fetchone()
        rows.append(
            (
                segment,
                subject_key(email),
                google_key(email),
                cid,
                normalize_email(email),
                "consent",
                f"c{cid}",
                T0,
            )
        )
    if rows:
        con.executemany(
            "INSERT INTO activation.audience_members VALUES (?, ?, ?, ?, ?, ?, ?, ?)", rows
        )


def key_of(con: duckdb.DuckDBPyConnection, customer_id: int) -> str:
    """The subject key of a customer (Python reference implementation)."""
    (email,) = con.execute(
        "SELECT email FROM customers WHERE customer_id = ?", [customer_id]
    ).fetchone()
    return subject_key(email)


def state_keys(where: Warehouse, segment: str, destination: str) -> dict[str, str]:
    """subject_key -> fields_hash held in sync_state for the pair."""
    return dict(
        query(
            where,
            "SELECT subject_key, fields_hash FROM activation.sync_state"
            " WHERE segment = ? AND destination = ?",
            [segment, destination],
        )
    )


def query(where: Warehouse, sql: str, params: Sequence[object] = ()) -> list[tuple]:
    """The rows of ``sql`` (shared SQL) in the warehouse ``where`` (either backend)."""
    with connect(where) as con:
        return con.execute(sql, list(params)).fetchall()


@dataclass
class MemoryDestination:
    """An in-memory Destination for engine unit tests (the HTTP tests use the mock server).

    ``members``: send_key -> fields. ``refuse``: subject keys refused for good on add.
    ``fail_on_call``: 1-based call number that raises ``error`` instead of answering.
    """

    max_batch_size: int = 2
    name: str = "memory"
    kind: str = "ad"
    members: dict[str, dict] = field(default_factory=dict)
    refuse: set[str] = field(default_factory=set)
    fail_on_call: int | None = None
    error: Exception | None = None
    calls: list[tuple[str, int, str | None]] = field(default_factory=list)
    stats: CallStats = field(default_factory=CallStats)

    def _enter(self, op: str, rows: Sequence[Row], reason: str | None = None) -> None:
        assert 0 < len(rows) <= self.max_batch_size
        self.stats.calls += 1
        self.calls.append((op, len(rows), reason))
        if self.fail_on_call == self.stats.calls:
            raise self.error

    def add(self, audience_id: str, rows: Sequence[Row]) -> list[RowResult]:
        self._enter("add", rows)
        out = []
        for r in rows:
            if r.subject_key in self.refuse:
                out.append(RowResult(r.subject_key, False, None, "bad@example.com fake", True))
            else:
                self.members[r.send_key] = dict(r.fields)
                out.append(RowResult(r.subject_key, True))
        return out

    def update(self, audience_id: str, rows: Sequence[Row]) -> list[RowResult]:
        self._enter("update", rows)
        for r in rows:
            self.members[r.send_key] = dict(r.fields)
        return [RowResult(r.subject_key, True) for r in rows]

    def remove(
        self, audience_id: str, rows: Sequence[Row], reason: RemoveReason
    ) -> list[RowResult]:
        self._enter("remove", rows, reason.value)
        for r in rows:
            self.members.pop(r.send_key, None)
        return [RowResult(r.subject_key, True) for r in rows]

    def member_count(self, audience_id: str) -> int | None:
        return len(self.members)


def write_journal(
    path: Warehouse, segment: str, destination: str, lines: Iterable[dict | str]
) -> None:
    """Append journal lines (dicts, or encoded JSON text) to the warehouse's journal table."""
    from orchestrator.sync import journal

    encoded = []
    for line in lines:
        text = line if isinstance(line, str) else journal.line_encoder()(line)
        head = json.loads(text)
        encoded.append(journal.JournalLine(head["run"], head["seq"], head["kind"], text))
    with connect(path) as con:
        journal.append_lines(con, segment, destination, encoded)


def journal_texts(where: Warehouse, segment: str, destination: str) -> list[str]:
    """The pair's journal lines not yet folded, in the order written (DuckDB: its row ids;
    PostgreSQL, which has none: by time written, run, batch, intent before answers)."""
    order = (
        "rowid"
        if not isinstance(where, WarehouseTarget) or where.kind == "duckdb"
        else "written_at, run, seq, CASE kind WHEN 'intent' THEN 0 WHEN 'ack' THEN 1 ELSE 2 END"
    )
    rows = query(
        where,
        f"SELECT line FROM activation.sync_journal WHERE segment = ? AND destination = ? "
        f"ORDER BY {order}",
        [segment, destination],
    )
    return [text for (text,) in rows]
