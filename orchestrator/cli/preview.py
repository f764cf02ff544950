"""``activation preview``: what a segment's run would do, computed without changing anything.

The same code as a real run (``compile_segment``, ``build_audience``, ``compute_diff``) works
on the warehouse's own data, in a place whose changes are thrown away. On DuckDB that is an
in-memory database laid over the warehouse (:func:`overlay`):

- the warehouse file is attached READ_ONLY (catalog ``wh``) and every table or view of its
  ``main`` schema is a view of the same name in the in-memory ``main`` schema;
- the in-memory ``activation`` schema gets the product's tables, filled from the warehouse's
  (the segment's rows of per-segment tables such as ``sync_state``, its destinations' rows of
  per-destination tables such as ``destination_suppressions``, all of the others such as
  ``suppression_list``), except the segment's members, audience and exclusions, recomputed;
- a journal left by a crashed sync (its lines of ``activation.sync_journal``) is copied and
  folded into that in-memory state (a real run folds it first too); the warehouse keeps it.

So the preview writes nothing to the warehouse and sends nothing. It needs
the warehouse's read lock: while a run writes the file it waits (up to ``lock_timeout_s``).

On PostgreSQL (:func:`rolled_back`) the stages run in ONE transaction of their own on the
server, rolled back at the end whatever happens: the source views, the address forms, the
segment's members, audience and exclusions, a folded journal, the departures and the diff's
temporary tables are written there and seen only by that transaction (PostgreSQL's DDL is
transactional), then discarded. The stages' own transactions become savepoints inside it
(:class:`_Savepoints`), so none of their commits reaches the server. Other sessions never see
the preview's rows; a sync running meanwhile is not blocked by it (row locks only on the rows
the preview rewrites: the segment's audience rows, which a sync reads without locking).

Shown per destination: the subjects a real sync would add, update and remove (removes by
reason), and ``api_calls``, the fewest calls a real sync would make (the sum over send groups
of ceil(rows / rows one call carries): the platform's maximum batch size, one row per call for
Mailchimp archives and erasures, none for Meta updates; retries not counted). Remove send keys
(the address an email platform is told to archive) are not computed.
"""

from __future__ import annotations

import random
import tempfile
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import duckdb

from destinations.base import RemoveReason, min_calls
from destinations.registry import platform_max_batch_size, platform_rows_per_call
from orchestrator.audience import build_segment_audience
from orchestrator.config import ProjectConfig
from orchestrator.consent import segment_counted_purposes
from orchestrator.consent_signals import as_mapping, signals_for
from orchestrator.model.spec import DEFAULT_MODEL, SourceModel
from orchestrator.model.views import refresh_source_views
from orchestrator.phone import phone_platform_for
from orchestrator.privacy.retention import create_departures_table, track_departures
from orchestrator.segments.loader import LoadedSegment
from orchestrator.segments.materialize import write_segment_members
from orchestrator.segments.spec import DestinationEntry
from orchestrator.settings import duckdb_config
from orchestrator.sync.diff import DiffParams, compute_diff
from orchestrator.sync.rejections import pending_rows, stuck_rows
from orchestrator.sync.state import fold_journal, journal_line_count
from orchestrator.warehouse.product_schema import (
    DEFAULT_PRODUCT_SCHEMA,
    product_schema_of,
    with_product_schema,
)
from orchestrator.warehouse.schema import create_activation_schema
from orchestrator.warehouse.target import Warehouse, WarehouseTarget, as_target

WAREHOUSE_CATALOG = "wh"
#: ``activation`` tables the preview recomputes for the segment instead of copying.
#: Tables the preview rebuilds instead of copying (``customer_keys``, the pseudonym cache, is
#: refreshed for the customers the preview needs: copying all of it could be most customers).
RECOMPUTED = frozenset(
    {"segment_members", "audience_members", "audience_exclusions", "customer_keys"}
)


@dataclass(frozen=True)
class DestinationPreview:
    """What a sync of the segment to one destination would send (subject counts).

    ``removes_by_reason``: RemoveReason value -> count. ``api_calls``: the fewest calls
    (``destinations.registry.platform_rows_per_call`` rows each, at most ``max_batch_size``).
    ``journal_folded``: a crashed run's journal was counted in. ``removes_deferred``: removes
    the destination refused before, not sent until their back-off ends; ``rekeys``: subjects
    re-keyed (old form removed, new form added); ``pending``: rows of unknown outcome; ``stuck``:
    what the destination does not take and why
    (:class:`orchestrator.sync.rejections.StuckGroup` as dicts).
    """

    destination: str
    platform: str
    kind: str
    mode: str
    audience_id: str
    adds: int
    updates: int
    removes: int
    unchanged: int
    kept: int
    suppressed: int
    skipped_rejected: int
    removes_by_reason: dict[str, int]
    api_calls: int
    max_batch_size: int
    journal_folded: bool = False
    removes_deferred: int = 0
    rekeys: int = 0
    pending: int = 0
    stuck: list[dict[str, object]] = field(default_factory=list)


@dataclass(frozen=True)
class SegmentPreview:
    """A segment's preview: ``members`` of the segment, ``audience`` (with a legal basis),
    ``excluded`` (reason -> count, every reason present), one entry per destination."""

    segment: str
    as_of: datetime
    members: int
    audience: int
    excluded: dict[str, int]
    destinations: list[DestinationPreview] = field(default_factory=list)


def _quote(identifier: str) -> str:
    return '"' + identifier.replace('"', '""') + '"'


def _attach(con: duckdb.DuckDBPyConnection, path: Path, timeout_s: float) -> None:
    """Attach the warehouse read-only, retrying while a writer holds its lock."""
    if not path.is_file():
        raise FileNotFoundError(f"warehouse not found: {path}")
    deadline, delay = time.monotonic() + timeout_s, 0.05
    while True:
        try:
            con.execute(f"ATTACH ? AS {WAREHOUSE_CATALOG} (READ_ONLY)", [str(path)])
            return
        except duckdb.IOException as error:
            remaining = deadline - time.monotonic()
            if "lock" not in str(error).lower() or remaining <= 0:
                raise
            time.sleep(min(remaining, delay * random.uniform(0.5, 1.0)))
            delay = min(delay * 2, 2.0)


def _relations(con: duckdb.DuckDBPyConnection, catalog: str, schema: str) -> list[str]:
    rows = con.execute(
        "SELECT table_name FROM information_schema.tables"
        " WHERE table_catalog = ? AND table_schema = ? ORDER BY table_name",
        [catalog, schema],
    ).fetchall()
    return [name for (name,) in rows]


def _warehouse_schemas(con: duckdb.DuckDBPyConnection) -> list[str]:
    """The warehouse's schemas other than the product's own (the company's tables)."""
    rows = con.execute(
        "SELECT DISTINCT table_schema FROM information_schema.tables"
        " WHERE table_catalog = ? AND table_schema <> 'activation' ORDER BY 1",
        [WAREHOUSE_CATALOG],
    ).fetchall()
    return [name for (name,) in rows]


def _warehouse_relations(con: duckdb.DuckDBPyConnection, schema: str) -> list[str]:
    return _relations(con, WAREHOUSE_CATALOG, schema)


def _columns(con: duckdb.DuckDBPyConnection, table: str) -> set[str]:
    rows = con.execute(
        "SELECT column_name FROM information_schema.columns"
        " WHERE table_catalog = ? AND table_schema = 'activation' AND table_name = ?",
        [WAREHOUSE_CATALOG, table],
    ).fetchall()
    return {name for (name,) in rows}


def _copy_state(con: duckdb.DuckDBPyConnection, segment: str, destinations: list[str]) -> None:
    """Copy the warehouse's ``activation`` tables into the overlay's (same names).

    Every table the product defines is copied, so state added by later features counts too,
    with two limits to keep big tables small: a table with a ``segment`` column keeps this
    segment's rows, one with only a ``destination`` column keeps its destinations' rows. The
    segment's own :data:`RECOMPUTED` tables are not copied: the preview rebuilds them.
    """
    schema = product_schema_of(con)  # the statements below say activation: rewritten
    ours = set(_relations(con, "memory", schema))
    marks = ", ".join("?" for _ in destinations) or "NULL"
    for table in _warehouse_relations(con, schema):
        if table in RECOMPUTED or table not in ours:
            continue
        columns = _columns(con, table)
        where, params = "true", []
        if "segment" in columns:
            where, params = "segment = ?", [segment]
        elif "destination" in columns:
            where, params = f"destination IN ({marks})", list(destinations)
        con.execute(
            f"INSERT INTO activation.{_quote(table)} BY NAME SELECT * FROM "
            f"{WAREHOUSE_CATALOG}.activation.{_quote(table)} WHERE {where}",
            params,
        )


@contextmanager
def overlay(
    warehouse_path: Path,
    segment: str,
    destinations: list[str],
    lock_timeout_s: float = 60,
    *,
    model: SourceModel = DEFAULT_MODEL,
    purposes: Iterable[str] = (),
    product_schema: str = DEFAULT_PRODUCT_SCHEMA,
) -> Iterator[duckdb.DuckDBPyConnection]:
    """An in-memory connection laid over the warehouse (see the module docstring), with the
    canonical views of ``model`` (:mod:`orchestrator.model.views`) over the company's tables.
    ``product_schema``: the schema of the product's tables in the warehouse (and in the
    overlay: the connection is :func:`orchestrator.warehouse.product_schema.
    with_product_schema`'s).

    Raises:
        SourceModelError: ``model`` does not match the warehouse.
        FileNotFoundError: no warehouse file at ``warehouse_path``.
        duckdb.IOException: the warehouse stayed locked for ``lock_timeout_s`` seconds.
    """
    con = with_product_schema(duckdb.connect(":memory:", config=duckdb_config()), product_schema)
    try:
        _attach(con, Path(warehouse_path), lock_timeout_s)
        for schema in _warehouse_schemas(con):
            con.execute(f"CREATE SCHEMA IF NOT EXISTS {_quote(schema)}")
            for name in _warehouse_relations(con, schema):
                con.execute(
                    f"CREATE VIEW {_quote(schema)}.{_quote(name)} AS "
                    f"SELECT * FROM {WAREHOUSE_CATALOG}.{_quote(schema)}.{_quote(name)}"
                )
        create_activation_schema(con)
        create_departures_table(con)
        _copy_state(con, segment, destinations)
        refresh_source_views(con, model, purposes)
        yield con
    finally:
        con.close()


class _Savepoints:
    """A PostgreSQL connection inside the preview's transaction whose ``begin`` / ``commit``
    / ``rollback`` (the methods, or the statements ``BEGIN`` / ``COMMIT`` / ``ROLLBACK``) are
    ``SAVEPOINT`` / ``RELEASE`` / ``ROLLBACK TO`` (a stage's transaction nested in the
    preview's, never committing it); everything else is the connection's."""

    def __init__(self, con: Any) -> None:
        self._con = con
        self._depth = 0

    def execute(self, sql: str, params: Any = None) -> Any:
        control = {"BEGIN": self.begin, "COMMIT": self.commit, "ROLLBACK": self.rollback}
        word = sql.strip().rstrip(";").strip().upper()
        if word in control:
            control[word]()
            return self
        return self._con.execute(sql, params)

    def begin(self) -> None:
        self._depth += 1
        self._con.raw.execute(f"SAVEPOINT preview_{self._depth}")

    def commit(self) -> None:
        self._con.raw.execute(f"RELEASE SAVEPOINT preview_{self._depth}")
        self._depth -= 1

    def rollback(self) -> None:
        self._con.raw.execute(f"ROLLBACK TO SAVEPOINT preview_{self._depth}")
        self._con.raw.execute(f"RELEASE SAVEPOINT preview_{self._depth}")
        self._depth -= 1

    def __getattr__(self, name: str) -> Any:
        return getattr(self._con, name)


@contextmanager
def rolled_back(target: WarehouseTarget, project: ProjectConfig) -> Iterator[Any]:
    """A PostgreSQL session of ``target`` inside one transaction that is rolled back when the
    block ends (see the module docstring), with ``project``'s source views and address forms
    made there first.

    Raises:
        orchestrator.warehouse.errors.WarehouseError: unreachable, wrong password, missing
            grant, timeout (naming the warehouse, never the password).
        SourceModelError: the source model does not match the warehouse.
    """
    from orchestrator.warehouse.address_forms import prepare_address_forms
    from orchestrator.warehouse.connect import connect

    with connect(target) as con:  # the product's tables and functions only: no project yet
        con.begin()
        try:
            nested = _Savepoints(con)
            refresh_source_views(nested, project.source, project.purposes)
            prepare_address_forms(nested)
            create_departures_table(nested)
            yield nested
        finally:
            con.rollback()


@contextmanager
def _session(
    warehouse: Warehouse,
    loaded: LoadedSegment,
    project: ProjectConfig,
    lock_timeout_s: float,
) -> Iterator[Any]:
    """Where the preview of ``loaded`` runs: the DuckDB :func:`overlay`, or the PostgreSQL
    transaction of :func:`rolled_back`."""
    target = as_target(warehouse, project)
    if target.kind == "postgres":
        with rolled_back(target, project) as con:
            yield con
        return
    names = [entry.destination for entry in loaded.spec.destinations]
    with overlay(
        target.duckdb_path,
        loaded.spec.id,
        names,
        lock_timeout_s,
        model=project.source,
        purposes=project.purposes,
        product_schema=project.product_schema,
    ) as con:
        yield con


def _fold_copy(con: duckdb.DuckDBPyConnection, params: DiffParams) -> bool:
    """Fold the copy of a crashed run's journal into the in-memory state; True when one
    existed."""
    p = params
    if not journal_line_count(con, [p.segment, p.destination]):
        return False
    fold_journal(con, segment=p.segment, destination=p.destination, kind=p.kind)
    return True


def _destination(
    con: duckdb.DuckDBPyConnection,
    state_dir: Path,
    scratch: Path,
    loaded: LoadedSegment,
    entry: DestinationEntry,
    project: ProjectConfig,
    as_of: datetime,
) -> DestinationPreview:
    """The steps of :func:`orchestrator.sync.engine.run_sync` before sending, on the overlay."""
    spec = loaded.spec
    dest = project.destinations[entry.destination]
    params = DiffParams(
        spec.id,
        entry.destination,
        str(entry.mode),
        str(dest.kind),
        dest.normalization,
        dict(entry.fields),
        spec.purpose,
        spec.retention_days,
        as_of,
        tuple(segment_counted_purposes(spec, project)[1:]),
        signals=as_mapping(signals_for(project, spec.purpose, dest.platform)),
        phone_platform=phone_platform_for(dest.platform, str(dest.kind)),
    )
    folded = _fold_copy(con, params)
    track_departures(con, segment=spec.id, destination=entry.destination, now=as_of)
    pair_scratch = scratch / entry.destination
    pair_scratch.mkdir()
    plan = compute_diff(con, params, pair_scratch)
    size = platform_max_batch_size(dest.platform)
    groups: list[tuple[str, RemoveReason | None, int]] = [
        ("remove", RemoveReason(reason), n) for reason, n in plan.removes_by_reason.items()
    ]
    groups += [
        ("add", None, plan.counts["add"] + plan.counts["rekey"]),
        ("update", None, plan.counts["update"]),
    ]
    c = plan.counts
    stuck = [g.as_dict() for g in stuck_rows(con, spec.id, entry.destination)]
    return DestinationPreview(
        destination=entry.destination,
        platform=dest.platform,
        kind=str(dest.kind),
        mode=str(entry.mode),
        audience_id=entry.audience_id,
        adds=c["add"],
        updates=c["update"],
        removes=c["remove"],
        unchanged=c["unchanged"],
        kept=c["kept"],
        suppressed=c["suppressed"],
        skipped_rejected=c["skipped_rejected"],
        removes_by_reason=dict(plan.removes_by_reason),
        api_calls=sum(
            min_calls(n, platform_rows_per_call(dest.platform, op, reason), size)
            for op, reason, n in groups
        ),
        max_batch_size=size,
        journal_folded=folded,
        removes_deferred=c["remove_deferred"],
        rekeys=c["rekey"],
        pending=pending_rows(con, spec.id, entry.destination),
        stuck=stuck,
    )


def preview_segment(
    warehouse_path: Warehouse,
    state_dir: Path,
    loaded: LoadedSegment,
    project: ProjectConfig,
    as_of: datetime,
    *,
    lock_timeout_s: float = 60,
) -> SegmentPreview:
    """Members, audience, exclusions by reason and, per destination, the sends a run of
    ``loaded`` at ``as_of`` (naive UTC) would make. Changes nothing (see the module docstring).

    ``warehouse_path``: a DuckDB file, or a :class:`~orchestrator.warehouse.target.
    WarehouseTarget` (DuckDB or PostgreSQL).

    Raises:
        FileNotFoundError: no warehouse file.
        ValueError: the segment's purpose does not accept its legal basis.
        duckdb.Error: the warehouse is locked for ``lock_timeout_s`` or a table is missing.
        orchestrator.warehouse.errors.WarehouseError: a PostgreSQL warehouse unreachable,
            refusing the password or a grant, or timed out.
    """
    spec = loaded.spec
    with (
        tempfile.TemporaryDirectory(prefix="activation-preview-") as tmp,
        _session(warehouse_path, loaded, project, lock_timeout_s) as con,
    ):
        members = write_segment_members(con, loaded.spec, as_of)
        stats = build_segment_audience(con, spec, project, as_of)
        destinations = [
            _destination(con, Path(state_dir), Path(tmp), loaded, entry, project, as_of)
            for entry in spec.destinations
        ]
    return SegmentPreview(spec.id, as_of, members, stats.members, stats.excluded, destinations)


__all__ = [
    "DestinationPreview",
    "SegmentPreview",
    "overlay",
    "platform_max_batch_size",
    "preview_segment",
    "rolled_back",
]
