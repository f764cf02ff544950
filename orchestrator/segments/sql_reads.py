"""Which source columns a ``sql:`` segment reads, from DuckDB's own view of the query.

Three sources, united (erring on the side of declaring more, never less):

1. DuckDB's optimized plan (``EXPLAIN (FORMAT JSON)``) with filter pushdown turned off, so
   every column a table scan produces, including those only used in ``WHERE``, is listed in
   the scan's ``Projections``. The binder expands whole-row references there: ``CAST(c AS
   VARCHAR)`` and ``{'a': c}`` (struct packing) read every column of ``c``; ``COLUMNS(*)``
   every column it matches.
2. The parse tree (``json_serialize_sql``): every ``*`` (``*``, ``c.*``, ``COLUMNS(*)``) reads
   every column of its table (of every table in the statement when it names none), even when
   the optimizer would drop what an outer query does not use; every column reference names a
   column of its table (of every table that has a column of that name when unqualified).
3. Nothing else: a query DuckDB cannot plan is refused before this runs.

Columns are ``table.column``, ``table`` being the role of a canonical view of the source model
(``customers`` for ``activation.src_customers``, ``events`` for ``activation.src_events``) or a
table of the connection's ``main`` schema (the default source tables, which are the same roles).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import duckdb

if TYPE_CHECKING:
    from orchestrator.segments.catalog import Catalog

#: Optimizers turned off while planning, so no column read by a filter disappears into a
#: scan's ``Filters`` (DuckDB 2.0 option ``disabled_optimizers``).
_DISABLED_OPTIMIZERS = "filter_pushdown,statistics_propagation,empty_result_pullup"


def columns_read(con: duckdb.DuckDBPyConnection, query: str) -> frozenset[str]:
    """``table.column`` of every source column ``query`` reads (see the module docstring).

    ``con``: a connection holding the canonical views as tables in ``activation`` and/or the
    source tables in ``main`` (empty is fine; :func:`bind_catalog`); its
    ``disabled_optimizers`` setting is changed for the planning and restored.

    Raises:
        duckdb.Error: the query does not bind against the tables.
    """
    tables = _table_columns(con)
    return _from_plan(con, query, tables) | _from_parse_tree(con, query, tables)


def _table_columns(con: duckdb.DuckDBPyConnection) -> dict[str, tuple[str, ...]]:
    rows = con.execute(
        "SELECT c.table_name, list(c.column_name ORDER BY c.column_index) "
        "FROM duckdb_columns() AS c JOIN duckdb_tables() AS t "
        "ON t.schema_name = c.schema_name AND t.table_name = c.table_name "
        "WHERE (c.schema_name = 'main' OR (c.schema_name = 'activation' "
        "AND c.table_name LIKE 'src\\_%' ESCAPE '\\')) AND NOT c.internal "
        "GROUP BY c.table_name"
    ).fetchall()
    return {table.lower(): tuple(c.lower() for c in columns) for table, columns in rows}


def _role(table: str) -> str:
    """``customers`` for ``src_customers`` (a canonical view), the name itself otherwise."""
    return table.removeprefix("src_")


def bind_catalog(con: duckdb.DuckDBPyConnection, catalog: Catalog | None) -> None:
    """Empty tables to bind a ``sql:`` segment against: the canonical views of the catalog's
    warehouse as tables ``activation.src_<view>`` (columns and types of ``catalog.columns``),
    or, when the catalog has no columns, the default source tables with their canonical views
    materialized as empty tables of the same shape (so a query plan names the view it read).
    """
    if catalog is not None and catalog.columns:
        con.execute("CREATE SCHEMA activation")
        for view, columns in catalog.columns.items():
            body = ", ".join(f'"{name}" {kind}' for name, kind in columns.items())
            con.execute(f"CREATE TABLE activation.src_{view} ({body})")
        return
    from orchestrator.warehouse.schema import create_source_schema

    create_source_schema(con)
    views = con.execute(
        "SELECT view_name FROM duckdb_views() WHERE schema_name = 'activation' "
        "AND view_name LIKE 'src\\_%' ESCAPE '\\' AND NOT internal"
    ).fetchall()
    for (view,) in views:
        con.execute(
            f'CREATE TABLE activation."_{view}" AS SELECT * FROM activation."{view}" LIMIT 0'
        )
        con.execute(f'DROP VIEW activation."{view}"')
        con.execute(f'ALTER TABLE activation."_{view}" RENAME TO "{view}"')


def _from_plan(
    con: duckdb.DuckDBPyConnection, query: str, tables: dict[str, tuple[str, ...]]
) -> frozenset[str]:
    (previous,) = con.execute("SELECT current_setting('disabled_optimizers')").fetchone()
    con.execute(f"SET disabled_optimizers = '{_DISABLED_OPTIMIZERS}'")
    try:
        (_, plan), *_ = con.execute(f"EXPLAIN (FORMAT JSON) {query}").fetchall()
    finally:
        con.execute("SET disabled_optimizers = ?", [previous or ""])
    found: set[str] = set()
    for info in _nodes(json.loads(plan), "extra_info"):
        table = str(info.get("Table") or "").rsplit(".", 1)[-1].lower()
        if table not in tables:
            continue
        projections = info.get("Projections") or []
        for column in [projections] if isinstance(projections, str) else projections:
            if column.lower() in tables[table]:
                found.add(f"{_role(table)}.{column.lower()}")
    return frozenset(found)


def _from_parse_tree(
    con: duckdb.DuckDBPyConnection, query: str, tables: dict[str, tuple[str, ...]]
) -> frozenset[str]:
    (text,) = con.execute("SELECT json_serialize_sql(?)", [query]).fetchone()
    tree = json.loads(text)
    aliases: dict[str, str] = {}
    for node in _dicts(tree):
        if node.get("type") == "BASE_TABLE" and str(node.get("table_name", "")).lower() in tables:
            table = str(node["table_name"]).lower()
            aliases[table] = table
            if node.get("alias"):
                aliases[str(node["alias"]).lower()] = table
    used = sorted(set(aliases.values()))
    found: set[str] = set()
    for node in _dicts(tree):
        if node.get("class") == "STAR":
            relation = str(node.get("relation_name") or "").lower()
            for table in [aliases[relation]] if relation in aliases else used:
                found |= {f"{_role(table)}.{column}" for column in tables[table]}
        elif node.get("class") == "COLUMN_REF" and node.get("column_names"):
            parts = [str(part).lower() for part in node["column_names"]]
            column, qualifier = parts[-1], parts[-2] if len(parts) > 1 else ""
            candidates = [aliases[qualifier]] if qualifier in aliases else used
            found |= {f"{_role(t)}.{column}" for t in candidates if column in tables[t]}
            if len(parts) == 1 and column in aliases:  # a bare table name: the whole row
                table = aliases[column]
                found |= {f"{_role(table)}.{c}" for c in tables[table]}
    return frozenset(found)


def _dicts(node: Any) -> Iterator[dict[str, Any]]:
    stack = [node]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            yield item
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)


def _nodes(plan: Any, key: str) -> Iterator[dict[str, Any]]:
    for node in _dicts(plan):
        if isinstance(node.get(key), dict):
            yield node[key]


class SqlSandbox:
    """An in-memory DuckDB database holding the (empty) canonical views of ``catalog``
    (:func:`bind_catalog`), with external access disabled (no file, URL or attached
    database), opened on first use and shared by every ``sql:`` segment validated with it: one
    connection per load instead of one per file.

    Use as a context manager; pass it to validation as ``context["sql_sandbox"]``.
    """

    def __init__(self, catalog: Catalog | None = None) -> None:
        self._catalog = catalog
        self._con: duckdb.DuckDBPyConnection | None = None
        self._reads: dict[str, frozenset[str]] = {}

    def columns_read(self, query: str) -> frozenset[str]:
        """:func:`columns_read` of ``query`` in the sandbox, computed once per query."""
        if query not in self._reads:
            self._reads[query] = columns_read(self.connection(), query)
        return self._reads[query]

    def connection(self) -> duckdb.DuckDBPyConnection:
        """The sandbox connection (created with the catalog's views on first call)."""
        if self._con is None:
            self._con = duckdb.connect(":memory:", config={"enable_external_access": False})
            bind_catalog(self._con, self._catalog)
        return self._con

    def close(self) -> None:
        """Close the connection if one was opened."""
        if self._con is not None:
            self._con.close()
            self._con = None

    def __enter__(self) -> SqlSandbox:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()
