"""The catalog file: what the warehouse holds for the declared source model, committed like a
lock file beside ``activation.yaml`` (``catalog.json``).

``activation catalog`` reads the model's canonical views (:mod:`orchestrator.model.views`) and
writes the traits and event fields with their value types, the distinct event types (at most
:data:`MAX_EVENT_TYPES` per type column, the cap reported), and the canonical views' columns.
Validation, the JSON Schema, the Dagster definitions and the CLI read only that file
(:func:`orchestrator.config.load_project_config`), so loading them never opens the warehouse.

Drift (:func:`compare`): at each segment build, and with ``activation catalog --check`` in CI,
the live warehouse is compared with the file. A column a segment uses that is missing or has
another type fails that segment (naming the column and the segment files using it); any other
difference (a new column, a new event type, an unused column changed) is a warning.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import duckdb

from orchestrator.config import ProjectConfig
from orchestrator.model.spec import SourceModel
from orchestrator.model.views import (
    CUSTOMERS_VIEW,
    EVENTS_VIEW,
    check_unique_key,
    refresh_source_views,
    unmapped_counts,
)
from orchestrator.segments.catalog import Catalog, ValueType, value_type_of
from orchestrator.segments.spec import (
    AllCondition,
    AnyCondition,
    EventCondition,
    NotCondition,
    SegmentSpec,
    TraitCondition,
)

#: Distinct values of one type column kept in the catalog; more are reported, not listed.
MAX_EVENT_TYPES = 200
#: Columns of ``activation.src_customers`` that are not traits.
NOT_TRAITS = ("email", "collected_at", "last_own_action_at", "own_action_times")
#: Columns of ``activation.src_events`` that are not event fields (``value`` is one).
NOT_FIELDS = (
    "event_id",
    "customer_id",
    "event_type",
    "occurred_at",
    "order_id",
    "is_purchase",
    "own_action",
)


@dataclass(frozen=True)
class CatalogBuild:
    """What :func:`build_catalog` found: the ``catalog``, the type columns whose distinct values
    passed the cap (``capped``: source name -> distinct count), columns left out because no
    condition can compare their type (``skipped``: ``view.column`` -> warehouse type), and
    consent rows whose values map to nothing (``unmapped_consents``, see
    :func:`orchestrator.model.views.unmapped_counts`)."""

    catalog: Catalog
    capped: dict[str, int] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)
    unmapped_consents: dict[str, int] = field(default_factory=dict)


def _view_columns(con: duckdb.DuckDBPyConnection, view: str) -> dict[str, str]:
    cursor = con.execute(f"SELECT * FROM {view} LIMIT 0")
    return {row[0]: str(row[1]) for row in cursor.description}


def build_catalog(
    con: duckdb.DuckDBPyConnection, project: ProjectConfig, cap: int = MAX_EVENT_TYPES
) -> CatalogBuild:
    """Refresh the canonical views from ``project.source`` and read the catalog from them.

    Raises:
        orchestrator.model.views.SourceModelError: the model does not match the warehouse.
    """
    model = project.source
    refresh_source_views(con, model, project.purposes)
    check_unique_key(con, model.customers)
    customers = _view_columns(con, CUSTOMERS_VIEW)
    events = _view_columns(con, EVENTS_VIEW)
    skipped: dict[str, str] = {}
    traits = _typed(customers, NOT_TRAITS, "customers", skipped)
    declared = dict.fromkeys(name for source in model.events for name in source.fields)
    fields = _typed(
        {name: events[name] for name in declared if name in events}, NOT_FIELDS, "events", skipped
    )
    by_source, capped = _event_types(con, model, cap)
    catalog = Catalog(
        traits=traits,
        event_types=tuple(sorted({t for types in by_source.values() for t in types})),
        event_types_capped=bool(capped),
        event_fields=fields,
        columns={"customers": customers, "events": events},
        relations=_relations(model),
        sensitive=project.catalog.sensitive,
        sensitive_values=project.catalog.sensitive_values,
        event_sources=by_source,
    )
    return CatalogBuild(catalog, capped, skipped, unmapped_counts(con, model, project.purposes))


def _typed(
    columns: Mapping[str, str], excluded: Iterable[str], view: str, skipped: dict[str, str]
) -> dict[str, ValueType]:
    out: dict[str, ValueType] = {}
    for name, kind in columns.items():
        if name in excluded:
            continue
        value_type = value_type_of(kind)
        if value_type is None:
            skipped[f"{view}.{name}"] = kind
        else:
            out[name] = value_type
    return out


def _event_types(
    con: duckdb.DuckDBPyConnection, model: SourceModel, cap: int
) -> tuple[dict[str, tuple[str, ...]], dict[str, int]]:
    """Event source name -> its sorted event types (the fixed type, or the type column's
    values, at most ``cap``), and the capped columns (source name -> distinct count)."""
    by_source: dict[str, tuple[str, ...]] = {}
    capped: dict[str, int] = {}
    for source in model.events:
        if source.type is not None:
            by_source[source.name] = (source.type,)
            continue
        column = '"' + str(source.type_column).replace('"', '""') + '"'
        rows = con.execute(
            f"SELECT DISTINCT CAST({column} AS VARCHAR) AS t FROM {source.relation_sql()} AS s "
            f"WHERE {column} IS NOT NULL ORDER BY t LIMIT {int(cap) + 1}"
        ).fetchall()
        values = [value for (value,) in rows]
        if len(values) > cap:
            (count,) = con.execute(
                f"SELECT count(DISTINCT {column}) FROM {source.relation_sql()} AS s"
            ).fetchone()
            capped[source.name] = int(count)
            values = values[:cap]
        by_source[source.name] = tuple(values)
    return by_source, capped


def _relations(model: SourceModel) -> dict[str, tuple[str, ...]]:
    return {
        "customers": (model.customers.described(),),
        "events": tuple(source.described() for source in model.events),
        "consents": (model.consents.described(),),
        "privacy_requests": (
            (model.privacy_requests.described(),) if model.privacy_requests else ()
        ),
    }


def render_catalog(catalog: Catalog) -> str:
    """The catalog as committed: indented JSON in build order (table order), final newline."""
    return json.dumps(catalog.model_dump(mode="json"), indent=2) + "\n"


def write_catalog(path: Path, catalog: Catalog) -> None:
    """Write ``catalog`` to ``path`` (replacing it whole: written aside, then renamed)."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(render_catalog(catalog), encoding="utf-8")
    tmp.replace(path)


# --- drift ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Drift:
    """Differences between the live warehouse and the committed catalog.

    ``errors``: segment id -> messages (a column the segment uses is missing or retyped; its
    build fails). ``warnings``: messages about any other difference.
    """

    errors: dict[str, list[str]]
    warnings: list[str]

    @property
    def ok(self) -> bool:
        return not self.errors


def segment_columns(spec: SegmentSpec) -> set[tuple[str, str]]:
    """The canonical columns a segment reads, as (``customers`` | ``events``, column): traits
    in conditions and merge fields, event fields in ``where``, ``value`` for ``total_value``,
    ``order_id`` for ``at_least``; for a ``sql:`` segment every catalog column named in it."""
    used: set[tuple[str, str]] = set()
    for entry in spec.destinations:
        used.update(("customers", trait) for trait in entry.fields.values())
    if spec.sql is not None:
        words = set(re.findall(r"[A-Za-z_][A-Za-z0-9_]*", spec.sql))
        for view, columns in spec.catalog.columns.items():
            used.update((view, name) for name in columns if name in words)
        return used
    stack = [spec.audience]
    while stack:
        condition = stack.pop()
        if isinstance(condition, TraitCondition):
            used.add(("customers", condition.trait))
        elif isinstance(condition, EventCondition):
            used.update(("events", where.field) for where in condition.where or ())
            if condition.total_value is not None:
                used.add(("events", "value"))
            if condition.at_least > 1:
                used.add(("events", "order_id"))
        elif isinstance(condition, AllCondition):
            stack.extend(condition.all_)
        elif isinstance(condition, AnyCondition):
            stack.extend(condition.any_)
        elif isinstance(condition, NotCondition):
            stack.append(condition.not_)
    return used


def compare(
    live: Catalog, committed: Catalog, segments: Mapping[str, tuple[SegmentSpec, str]]
) -> Drift:
    """Compare the ``live`` catalog (just built) with the ``committed`` one for ``segments``
    (segment id -> (spec, its file as shown to the user)). See the module docstring."""
    broken: dict[tuple[str, str], str] = {}
    warnings: list[str] = []
    for view, columns in committed.columns.items():
        now = live.columns.get(view, {})
        for name, kind in columns.items():
            if name not in now:
                broken[(view, name)] = f"column {view}.{name} ({kind}) is gone from the warehouse"
            elif now[name] != kind:
                broken[(view, name)] = f"column {view}.{name} is now {now[name]}, was {kind}"
        for name in now.keys() - columns.keys():
            warnings.append(f"new column {view}.{name} ({now[name]}): run `activation catalog`")
    new_types = sorted(set(live.event_types) - set(committed.event_types))
    if new_types:
        warnings.append(f"new event types {', '.join(new_types)}: run `activation catalog`")
    gone_types = sorted(set(committed.event_types) - set(live.event_types))
    if gone_types and not live.event_types_capped:
        warnings.append(f"event types no longer seen: {', '.join(gone_types)}")
    users: dict[tuple[str, str], list[str]] = {}
    for spec, path in segments.values():
        for column in segment_columns(spec):
            users.setdefault(column, []).append(path)
    errors: dict[str, list[str]] = {}
    for column, message in sorted(broken.items()):
        files = users.get(column)
        if not files:
            warnings.append(f"{message} (no segment uses it)")
            continue
        for sid, (spec, _path) in sorted(segments.items()):
            if column in segment_columns(spec):
                errors.setdefault(sid, []).append(
                    f"{message}; used by {', '.join(files)}: fix the warehouse or the model, "
                    "then run `activation catalog`"
                )
    return Drift(errors, warnings)


def live_drift(
    con: duckdb.DuckDBPyConnection,
    project: ProjectConfig,
    segments: Mapping[str, tuple[SegmentSpec, str]],
) -> Drift:
    """Build the catalog from the live warehouse and :func:`compare` it with the committed one
    (``project.catalog``). A project without a committed catalog file (its catalog has no
    ``columns``) has nothing to compare: no drift.

    Raises:
        orchestrator.model.views.SourceModelError: the model does not match the warehouse.
    """
    if not project.catalog.columns:
        return Drift({}, [])
    live = build_catalog(con, project).catalog
    return compare(live, project.catalog, segments)
