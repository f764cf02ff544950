"""Render the source model into canonical views in the product's schema, and keep them fresh.

Every reader (segment compiler, audience, diff, checks, explain, retention, register, demo
summary, bench) reads these views, never the company's tables or column names directly:

``activation.src_customers``
    customer_id BIGINT (the declared key), email VARCHAR (raw), one column per trait under the
    warehouse's own name and type, collected_at TIMESTAMP (NULL when not declared),
    last_own_action_at TIMESTAMP (the latest of the declared own-action columns, NULL when
    none), own_action_times TIMESTAMP[] (every declared own-action column's value, in declared
    order, NULLs kept; empty when none): the retention clock drops the values after its as-of
    per column before taking the latest, so a future-dated column never hides an older valid
    one.
``activation.src_events``
    event_id VARCHAR, customer_id BIGINT, event_type VARCHAR, occurred_at TIMESTAMP, value
    DOUBLE (NULL when the source has none), order_id VARCHAR (NULL when none), is_purchase
    BOOLEAN (the declared purchase type), own_action BOOLEAN (moves the retention clock), then
    every declared field under its own name (NULL in sources without it): a UNION ALL of the
    event sources.
``activation.src_consents``
    consent_id, customer_id BIGINT, purpose (a declared purpose), status (``granted`` |
    ``withdrawn``), recorded_at TIMESTAMP, source, notice_version (NULL when the consent was not
    collected under our own notice: unproven): the mapped consent log, rows whose purpose or
    status do not map left out, UNION ALL the product's own ``activation.consent_intake``.
``activation.src_privacy_requests``
    request_id, customer_id BIGINT, subject_key (as recorded: a key or an address), request_type
    (``erasure`` | ``objection``), received_at TIMESTAMP: the mapped requests UNION ALL
    ``activation.request_intake``.

The SQL is plain and portable (CAST, CASE, UNION ALL, greatest; one list literal for
``own_action_times``), with quoted identifiers and
literals doubled-quoted, so another dialect can run it. The views read the company's tables in
place; nothing is copied.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import duckdb
import yaml

from orchestrator.model.spec import (
    CONSENT_COLUMNS,
    CUSTOMER_RESERVED,
    REQUEST_COLUMNS,
    ConsentsModel,
    CustomersModel,
    EventSource,
    RequestsModel,
    SourceModel,
    _Relation,
)
from orchestrator.warehouse.errors import DATABASE_ERRORS, MISSING_RELATION_ERRORS
from orchestrator.warehouse.product_schema import product_schema_of

SCHEMA = "activation"
CUSTOMERS_VIEW = f"{SCHEMA}.src_customers"
EVENTS_VIEW = f"{SCHEMA}.src_events"
CONSENTS_VIEW = f"{SCHEMA}.src_consents"
REQUESTS_VIEW = f"{SCHEMA}.src_privacy_requests"

INTAKE_DDL = f"""
CREATE SCHEMA IF NOT EXISTS {SCHEMA};
CREATE TABLE IF NOT EXISTS {SCHEMA}.consent_intake (
    consent_id     VARCHAR PRIMARY KEY,
    customer_id    BIGINT,
    subject_key    VARCHAR NOT NULL,
    purpose        VARCHAR NOT NULL,
    status         VARCHAR NOT NULL,
    recorded_at    TIMESTAMP NOT NULL,
    source         VARCHAR,
    notice_version VARCHAR
);
CREATE TABLE IF NOT EXISTS {SCHEMA}.source_views (
    view_name  VARCHAR PRIMARY KEY,
    definition VARCHAR NOT NULL
);
CREATE TABLE IF NOT EXISTS {SCHEMA}.request_intake (
    request_id   VARCHAR PRIMARY KEY,
    customer_id  BIGINT,
    subject_key  VARCHAR,
    request_type VARCHAR NOT NULL,
    received_at  TIMESTAMP NOT NULL
);
"""

#: Warehouse type families, by DuckDB type name prefix.
_INTEGER = (
    "TINYINT",
    "SMALLINT",
    "INTEGER",
    "BIGINT",
    "HUGEINT",
    "UTINYINT",
    "USMALLINT",
    "UINTEGER",
    "UBIGINT",
    "UHUGEINT",
)
_TIME = ("TIMESTAMP", "DATE")


@dataclass(frozen=True)
class ModelProblem:
    """One problem of the declaration against the warehouse: ``loc`` is the field path in
    ``activation.yaml`` (e.g. ``("source", "customers", "email")``), ``message`` says what
    is wrong, what the warehouse has, and how to fix it."""

    loc: tuple[str | int, ...]
    message: str


class SourceModelError(ValueError):
    """The source model does not match the warehouse; ``problems`` lists every mismatch."""

    def __init__(self, problems: Sequence[ModelProblem]) -> None:
        self.problems = list(problems)
        super().__init__("\n".join(_field(p.loc) + ": " + p.message for p in self.problems))

    def located(self, config_path: Path) -> list[str]:
        """One line per problem, ``<config file>:<line> <field>: <message>``; the line is the
        field's own (or its nearest parent's) in the config file."""
        from orchestrator.segments.loader import node_line

        try:
            root = yaml.compose(Path(config_path).read_text(encoding="utf-8"))
        except (OSError, yaml.YAMLError):
            root = None
        return [
            f"{config_path}:{node_line(root, p.loc) if root is not None else 1} "
            f"{_field(p.loc)}: {p.message}"
            for p in self.problems
        ]


def _field(loc: Iterable[str | int]) -> str:
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


def quote_ident(name: str) -> str:
    """A double-quoted SQL identifier (standard SQL; DuckDB and PostgreSQL)."""
    return '"' + name.replace('"', '""') + '"'


def quote_literal(value: str) -> str:
    """A single-quoted SQL string literal (standard SQL)."""
    return "'" + value.replace("'", "''") + "'"


def describe_relation(con: duckdb.DuckDBPyConnection, relation: _Relation) -> dict[str, str]:
    """Column name -> warehouse type name (e.g. ``BIGINT``, ``VARCHAR``, ``TIMESTAMP``) of a
    declared table or SELECT, in column order.

    Raises:
        duckdb.Error: the table is missing or the SELECT does not run.
    """
    cursor = con.execute(f"SELECT * FROM {relation.relation_sql()} AS s LIMIT 0")
    return {row[0]: str(row[1]) for row in cursor.description}


@dataclass(frozen=True)
class Introspection:
    """Columns of every declared relation: ``customers`` and ``consents`` and ``requests``
    (None when not declared) are name -> type mappings, ``events`` one per source."""

    customers: Mapping[str, str]
    events: tuple[Mapping[str, str], ...]
    consents: Mapping[str, str]
    requests: Mapping[str, str] | None


def introspect(con: duckdb.DuckDBPyConnection, model: SourceModel) -> Introspection:
    """Read the columns of every declared relation from the warehouse.

    Raises:
        SourceModelError: a table or SELECT is missing or does not run (every such problem,
            with the warehouse's own message).
    """
    problems: list[ModelProblem] = []

    def read(relation: _Relation, loc: tuple[str | int, ...]) -> dict[str, str]:
        try:
            return describe_relation(con, relation)
        except DATABASE_ERRORS as error:
            first = str(error).strip().splitlines()[0]
            what = "table" if relation.table else "select"
            problems.append(
                ModelProblem((*loc, what), f"{relation.described()} cannot be read: {first}")
            )
            return {}

    customers = read(model.customers, ("source", "customers"))
    events = tuple(read(s, ("source", "events", i)) for i, s in enumerate(model.events))
    consents = read(model.consents, ("source", "consents"))
    requests = (
        read(model.privacy_requests, ("source", "privacy_requests"))
        if model.privacy_requests
        else None
    )
    if problems:
        raise SourceModelError(problems)
    return Introspection(customers, events, consents, requests)


def trait_columns(customers: CustomersModel, columns: Mapping[str, str]) -> list[str]:
    """The trait columns of the customers relation, in table order (``all`` and exclude) or
    in declared order (a list)."""
    if customers.listed_traits():
        return list(customers.listed_traits())
    skip = {customers.key, customers.email, *customers.excluded_traits()}
    return [name for name in columns if name not in skip]


def check_model(model: SourceModel, found: Introspection, purposes: Iterable[str]) -> None:
    """Check the declaration against the warehouse's columns and types.

    Raises:
        SourceModelError: every missing column, wrongly typed column (a non-integer customer
            key, a time column that is not a timestamp or date), trait or field name colliding
            with a column the views set themselves, field typed differently in two sources,
            and purpose mapping naming an undeclared purpose.
    """
    problems = list(_customer_problems(model.customers, found.customers))
    field_types: dict[str, tuple[str, int]] = {}
    for index, (source, columns) in enumerate(zip(model.events, found.events, strict=True)):
        problems += _event_problems(source, columns, ("source", "events", index))
        for name in source.fields:
            kind = columns.get(name)
            if kind is None:
                continue
            if name in field_types and field_types[name][0] != kind:
                other = model.events[field_types[name][1]].name
                problems.append(
                    ModelProblem(
                        ("source", "events", index, "fields"),
                        f"field {name!r} is {kind} here but {field_types[name][0]} in event "
                        f"source {other!r}: cast one of them in a 'select' so both agree",
                    )
                )
            field_types.setdefault(name, (kind, index))
    problems += _mapping_problems(model.consents, found.consents, CONSENT_COLUMNS, "consents")
    declared = set(purposes)
    for purpose in model.consents.purpose_values:
        if purpose not in declared:
            problems.append(
                ModelProblem(
                    ("source", "consents", "purpose_values", purpose),
                    f"{purpose!r} is not a declared purpose (declared: "
                    f"{', '.join(sorted(declared))})",
                )
            )
    if model.privacy_requests is not None and found.requests is not None:
        problems += _mapping_problems(
            model.privacy_requests, found.requests, REQUEST_COLUMNS, "privacy_requests"
        )
    if problems:
        raise SourceModelError(problems)


def _missing(column: str, columns: Mapping[str, str], relation: _Relation) -> str:
    have = ", ".join(f"{name} ({kind})" for name, kind in columns.items()) or "no columns"
    return (
        f"column {column!r} is not in {relation.described()}; it has: {have}. "
        "Name one of these columns or fix the table"
    )


def _customer_problems(model: CustomersModel, columns: Mapping[str, str]) -> list[ModelProblem]:
    loc = ("source", "customers")
    problems = []
    for role in ("key", "email", "collected_at"):
        column = getattr(model, role)
        if column is not None and column not in columns:
            problems.append(ModelProblem((*loc, role), _missing(column, columns, model)))
    key_type = columns.get(model.key)
    if key_type is not None and not key_type.startswith(_INTEGER):
        problems.append(
            ModelProblem(
                (*loc, "key"),
                f"the customer key {model.key!r} is {key_type}; it must be an integer column "
                "(map a text key to an integer in a 'select')",
            )
        )
    for index, column in enumerate(model.own_action_columns):
        if column not in columns:
            problems.append(
                ModelProblem((*loc, "own_action_columns", index), _missing(column, columns, model))
            )
        elif not columns[column].startswith(_TIME):
            problems.append(_not_time((*loc, "own_action_columns", index), column, columns))
    if model.collected_at in columns and not columns[model.collected_at].startswith(_TIME):
        problems.append(_not_time((*loc, "collected_at"), model.collected_at, columns))
    for index, trait in enumerate(model.listed_traits()):
        if trait not in columns:
            problems.append(ModelProblem((*loc, "traits", index), _missing(trait, columns, model)))
    for trait in trait_columns(model, columns):
        if trait in CUSTOMER_RESERVED:
            problems.append(
                ModelProblem(
                    (*loc, "traits"),
                    f"trait {trait!r} has the name of a column the model sets itself "
                    f"({', '.join(CUSTOMER_RESERVED)}): exclude it or rename it in a 'select'",
                )
            )
    return problems


def _not_time(loc: tuple[str | int, ...], column: str, columns: Mapping[str, str]) -> ModelProblem:
    return ModelProblem(
        loc,
        f"column {column!r} is {columns[column]}, not a timestamp or date: cast it in a "
        "'select' (e.g. CAST(col AS TIMESTAMP)) or name a timestamp column",
    )


def _event_problems(
    source: EventSource, columns: Mapping[str, str], loc: tuple[str | int, ...]
) -> list[ModelProblem]:
    problems = []
    for role in ("key", "time", "type_column", "id", "value", "order"):
        column = getattr(source, role)
        if column is not None and column not in columns:
            problems.append(ModelProblem((*loc, role), _missing(column, columns, source)))
    if source.time in columns and not columns[source.time].startswith(_TIME):
        problems.append(_not_time((*loc, "time"), source.time, columns))
    if source.key in columns and not columns[source.key].startswith(_INTEGER):
        problems.append(
            ModelProblem(
                (*loc, "key"),
                f"the customer key {source.key!r} is {columns[source.key]}; it must be an "
                "integer column matching the customers key",
            )
        )
    for index, name in enumerate(source.fields):
        if name not in columns:
            problems.append(ModelProblem((*loc, "fields", index), _missing(name, columns, source)))
        elif name == "value" and source.value != "value":
            problems.append(
                ModelProblem(
                    (*loc, "fields", index),
                    "a field named 'value' must be the source's value column (declare value: "
                    "value) or be renamed in a 'select'",
                )
            )
    return problems


def _mapping_problems(
    model: ConsentsModel | RequestsModel,
    columns: Mapping[str, str],
    canonical: tuple[str, ...],
    role: str,
) -> list[ModelProblem]:
    problems = []
    for name in canonical:
        column = model.column(name)
        if column not in columns:
            loc: tuple[str | int, ...] = ("source", role, "columns", name)
            if name not in model.columns:
                loc = ("source", role, "columns")
            problems.append(ModelProblem(loc, f"{name}: " + _missing(column, columns, model)))
    time_role = "recorded_at" if role == "consents" else "received_at"
    column = model.column(time_role)
    if column in columns and not columns[column].startswith(_TIME):
        problems.append(_not_time(("source", role, "columns", time_role), column, columns))
    return problems


def render_views(
    model: SourceModel, found: Introspection, purposes: Iterable[str]
) -> dict[str, str]:
    """View name -> ``SELECT`` text of each canonical view (module docstring), for a model
    already checked by :func:`check_model`."""
    return {
        CUSTOMERS_VIEW: _customers_sql(model.customers, found.customers),
        EVENTS_VIEW: _events_sql(model, found.events),
        CONSENTS_VIEW: _consents_sql(model.consents, purposes),
        REQUESTS_VIEW: _requests_sql(model.privacy_requests),
    }


def _col(name: str) -> str:
    return "s." + quote_ident(name)


def _customers_sql(model: CustomersModel, columns: Mapping[str, str]) -> str:
    own = [_col(name) for name in model.own_action_columns]
    last_own = (
        "CAST(NULL AS TIMESTAMP)"
        if not own
        else f"CAST({own[0] if len(own) == 1 else 'greatest(' + ', '.join(own) + ')'} AS TIMESTAMP)"
    )
    times = f"CAST([{', '.join(f'CAST({c} AS TIMESTAMP)' for c in own)}] AS TIMESTAMP[])"
    collected = (
        f"CAST({_col(model.collected_at)} AS TIMESTAMP)"
        if model.collected_at
        else "CAST(NULL AS TIMESTAMP)"
    )
    select = [
        f"CAST({_col(model.key)} AS BIGINT) AS customer_id",
        f"CAST({_col(model.email)} AS VARCHAR) AS email",
        *(f"{_col(t)} AS {quote_ident(t)}" for t in trait_columns(model, columns)),
        f"{collected} AS collected_at",
        f"{last_own} AS last_own_action_at",
        f"{times} AS own_action_times",
    ]
    return "SELECT " + ",\n       ".join(select) + f"\nFROM {model.relation_sql()} AS s"


def _event_fields(model: SourceModel, found: Sequence[Mapping[str, str]]) -> dict[str, str]:
    fields: dict[str, str] = {}
    for source, columns in zip(model.events, found, strict=True):
        for name in source.fields:
            if name != "value":
                fields.setdefault(name, columns[name])
    return fields


def _events_sql(model: SourceModel, found: Sequence[Mapping[str, str]]) -> str:
    fields = _event_fields(model, found)
    own_types = sorted({model.purchase_event, *model.own_action_events})
    parts = []
    for source in model.events:
        event_type = (
            f"CAST({_col(source.type_column)} AS VARCHAR)"
            if source.type_column
            else f"CAST({quote_literal(str(source.type))} AS VARCHAR)"
        )
        event_id = (
            f"CAST({_col(source.id)} AS VARCHAR)"
            if source.id
            else f"{quote_literal(source.name + ':')} || CAST({_col(source.key)} AS VARCHAR)"
            f" || ':' || CAST({_col(source.time)} AS VARCHAR) || ':' || {event_type}"
        )
        select = [
            f"{event_id} AS event_id",
            f"CAST({_col(source.key)} AS BIGINT) AS customer_id",
            f"{event_type} AS event_type",
            f"CAST({_col(source.time)} AS TIMESTAMP) AS occurred_at",
            f"CAST({_col(source.value) if source.value else 'NULL'} AS DOUBLE) AS value",
            f"CAST({_col(source.order) if source.order else 'NULL'} AS VARCHAR) AS order_id",
            f"coalesce({event_type} = {quote_literal(model.purchase_event)}, false) AS is_purchase",
            f"coalesce({event_type} IN ({', '.join(map(quote_literal, own_types))}), false)"
            " AS own_action",
            *(
                f"{_col(name)} AS {quote_ident(name)}"
                if name in source.fields
                else f"CAST(NULL AS {kind}) AS {quote_ident(name)}"
                for name, kind in fields.items()
            ),
        ]
        parts.append("SELECT " + ",\n       ".join(select) + f"\nFROM {source.relation_sql()} AS s")
    return "\nUNION ALL\n".join(parts)


def _case(column: str, mapping: Mapping[str, Sequence[str]]) -> str:
    whens = " ".join(
        f"WHEN {quote_literal(word)} THEN {quote_literal(canonical)}"
        for canonical, words in mapping.items()
        for word in words
    )
    return f"CASE CAST({column} AS VARCHAR) {whens} END"


def _words(mapping: Mapping[str, Sequence[str]]) -> str:
    return ", ".join(quote_literal(word) for words in mapping.values() for word in words) or "NULL"


def consent_purpose_values(
    model: ConsentsModel, purposes: Iterable[str]
) -> dict[str, tuple[str, ...]]:
    """Declared purpose -> the source's purpose names (default: the purpose's own name)."""
    return {purpose: model.purpose_values.get(purpose, (purpose,)) for purpose in purposes}


def consent_mapped_sql(model: ConsentsModel, purposes: Iterable[str]) -> str:
    """SQL condition over ``s`` true for a source consent row whose purpose and status map.
    With no ``purpose_values`` declared, the source's purpose names are ours and every purpose
    passes (a consent for an undeclared purpose then simply matches no segment)."""
    status = f"CAST({_col(model.column('status'))} AS VARCHAR) IN ({_words(model.status_values)})"
    if not model.purpose_values:
        return status
    purpose_map = consent_purpose_values(model, purposes)
    return (
        f"CAST({_col(model.column('purpose'))} AS VARCHAR) IN ({_words(purpose_map)}) AND {status}"
    )


def _purpose_sql(model: ConsentsModel, purposes: Iterable[str]) -> str:
    column = _col(model.column("purpose"))
    if not model.purpose_values:
        return f"CAST({column} AS VARCHAR)"
    return _case(column, consent_purpose_values(model, purposes))


def _consents_sql(model: ConsentsModel, purposes: Iterable[str]) -> str:
    purposes = list(purposes)
    notice = f"CAST({_col(model.column('notice_version'))} AS VARCHAR)"
    source = f"CAST({_col(model.column('source'))} AS VARCHAR)"
    ours = []
    if model.ours.sources:
        ours.append(f"{source} IN ({', '.join(map(quote_literal, model.ours.sources))})")
    if model.ours.notice_versions:
        ours.append(f"{notice} IN ({', '.join(map(quote_literal, model.ours.notice_versions))})")
    notice_sql = f"CASE WHEN {' AND '.join(ours)} THEN {notice} END" if ours else notice
    select = [
        f"CAST({_col(model.column('consent_id'))} AS VARCHAR) AS consent_id",
        f"CAST({_col(model.column('customer_id'))} AS BIGINT) AS customer_id",
        f"{_purpose_sql(model, purposes)} AS purpose",
        f"{_case(_col(model.column('status')), model.status_values)} AS status",
        f"CAST({_col(model.column('recorded_at'))} AS TIMESTAMP) AS recorded_at",
        f"{source} AS source",
        f"{notice_sql} AS notice_version",
    ]
    mapped = (
        "SELECT " + ",\n       ".join(select) + f"\nFROM {model.relation_sql()} AS s\n"
        f"WHERE {consent_mapped_sql(model, purposes)}"
    )
    intake = (
        f"SELECT {', '.join(CONSENT_COLUMNS)}\nFROM {SCHEMA}.consent_intake\n"
        "WHERE customer_id IS NOT NULL"
    )
    return f"{mapped}\nUNION ALL\n{intake}"


def _requests_sql(model: RequestsModel | None) -> str:
    intake = f"SELECT {', '.join(REQUEST_COLUMNS)}\nFROM {SCHEMA}.request_intake"
    if model is None:
        return intake
    select = [
        f"CAST({_col(model.column('request_id'))} AS VARCHAR) AS request_id",
        f"CAST({_col(model.column('customer_id'))} AS BIGINT) AS customer_id",
        f"CAST({_col(model.column('subject_key'))} AS VARCHAR) AS subject_key",
        f"{_case(_col(model.column('request_type')), model.type_values)} AS request_type",
        f"CAST({_col(model.column('received_at'))} AS TIMESTAMP) AS received_at",
    ]
    mapped = (
        "SELECT " + ",\n       ".join(select) + f"\nFROM {model.relation_sql()} AS s\n"
        f"WHERE CAST({_col(model.column('request_type'))} AS VARCHAR) "
        f"IN ({_words(model.type_values)})"
    )
    return f"{mapped}\nUNION ALL\n{intake}"


def check_unique_key(con: duckdb.DuckDBPyConnection, customers: CustomersModel) -> None:
    """The customers key must name one row per person (one scan of the relation).

    Raises:
        SourceModelError: some key value has several rows (the count and one example key).
    """
    key = _col(customers.key)
    duplicated, example = con.execute(
        f"SELECT count(*), min(k) FROM (SELECT {key} AS k FROM {customers.relation_sql()} AS s "
        f"WHERE {key} IS NOT NULL GROUP BY {key} HAVING count(*) > 1)"
    ).fetchone()
    if duplicated:
        raise SourceModelError(
            [
                ModelProblem(
                    ("source", "customers", "key"),
                    f"{customers.key!r} is not unique in {customers.described()}: "
                    f"{duplicated} value(s) have several rows (e.g. {example}); the customers "
                    "model needs one row per person: name a unique key or deduplicate in a "
                    "'select'",
                )
            ]
        )


def unmapped_counts(
    con: duckdb.DuckDBPyConnection, model: SourceModel, purposes: Iterable[str]
) -> dict[str, int]:
    """Consent rows the view leaves out because their purpose or status does not map, by
    ``column=value`` (e.g. ``{"status='LATER'": 12}``): never read as consent, reported by
    ``activation catalog``."""
    consents = model.consents
    out: dict[str, int] = {}
    checks = [("status", model.consents.status_values)]
    if consents.purpose_values:
        checks.append(("purpose", consent_purpose_values(consents, purposes)))
    for role, mapping in checks:
        column = f"CAST({_col(consents.column(role))} AS VARCHAR)"
        rows = con.execute(
            f"SELECT {column} AS v, count(*) FROM {consents.relation_sql()} AS s "
            f"WHERE {column} IS NULL OR {column} NOT IN ({_words(mapping)}) "
            f"GROUP BY {column} ORDER BY v"
        ).fetchall()
        out.update({f"{consents.column(role)}={value!r}": count for value, count in rows})
    return out


def create_intake_tables(con: duckdb.DuckDBPyConnection) -> None:
    """Create the product's intake tables if missing (idempotent):
    ``activation.consent_intake`` (consent_id, customer_id BIGINT NULL when no customer had
    the address, subject_key, purpose, status, recorded_at, source, notice_version) and
    ``activation.request_intake`` (request_id, customer_id, subject_key, request_type,
    received_at): what the product records itself (``activation withdraw``, ``forget``,
    ``object``), never written into the company's tables; and ``activation.source_views``
    (view_name, definition: the SELECT each canonical view was last created from, so an
    unchanged view is not rewritten)."""
    con.execute(INTAKE_DDL)


def _installed(con: duckdb.DuckDBPyConnection) -> tuple[set[str], dict[str, str]]:
    """The canonical views the warehouse has, and the SELECT each was last created from."""
    views = {
        f"{SCHEMA}.{name}"  # as the shared SQL names it, whatever the product schema is called
        for (name,) in con.execute(
            "SELECT table_name FROM information_schema.tables "
            "WHERE table_catalog = current_database() AND table_schema = ? "
            "AND table_type = 'VIEW'",
            [product_schema_of(con)],
        ).fetchall()
    }
    try:
        rendered = dict(
            con.execute(f"SELECT view_name, definition FROM {SCHEMA}.source_views").fetchall()
        )
    except MISSING_RELATION_ERRORS:  # a warehouse no step has written to yet
        rendered = {}
    return views, rendered


def _stale_views(
    con: duckdb.DuckDBPyConnection, model: SourceModel, purposes: list[str]
) -> dict[str, str]:
    """View name -> SELECT for every canonical view missing or created from another SELECT."""
    views, rendered = _installed(con)
    return {
        name: select
        for name, select in render_views(model, introspect(con, model), purposes).items()
        if name not in views or rendered.get(name) != select
    }


def source_views_current(
    con: duckdb.DuckDBPyConnection, model: SourceModel, purposes: Iterable[str]
) -> bool:
    """True when every canonical view exists and was created from the SELECT ``model`` renders
    today (reads only: usable on a read-only connection). False also when the model does not
    match the warehouse, so that :func:`refresh_source_views` says what is wrong."""
    try:
        return not _stale_views(con, model, list(purposes))
    except (ValueError, KeyError, *DATABASE_ERRORS):  # SourceModelError is a ValueError
        return False


def refresh_source_views(
    con: duckdb.DuckDBPyConnection, model: SourceModel, purposes: Iterable[str]
) -> bool:
    """Check ``model`` against the warehouse and (re)create the canonical views; return True
    when a view changed. A view whose text is unchanged is left alone (no catalog write).

    Raises:
        SourceModelError: the declaration does not match the warehouse (nothing is changed).
    """
    purposes = list(purposes)
    create_intake_tables(con)
    found = introspect(con, model)
    check_model(model, found, purposes)
    views, rendered = _installed(con)
    changed = False
    for name, select in render_views(model, found, purposes).items():
        if name in views and rendered.get(name) == select:
            continue
        if name == CUSTOMERS_VIEW:
            check_unique_key(con, model.customers)
        con.execute(f"CREATE OR REPLACE VIEW {name} AS {select}")
        con.execute(
            f"INSERT INTO {SCHEMA}.source_views VALUES (?, ?) ON CONFLICT (view_name) "
            "DO UPDATE SET definition = excluded.definition",
            [name, select],
        )
        changed = True
    return changed
