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

Columns are ``table.column`` of the source tables in the connection's ``main`` schema.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import duckdb

#: Optimizers turned off while planning, so no column read by a filter disappears into a
#: scan's ``Filters`` (DuckDB 2.0 option ``disabled_optimizers``).
_DISABLED_OPTIMIZERS = "filter_pushdown,statistics_propagation,empty_result_pullup"


def columns_read(con: duckdb.DuckDBPyConnection, query: str) -> frozenset[str]:
    """``table.column`` of every source column ``query`` reads (see the module docstring).

    ``con``: a connection holding the source tables (empty is fine) in ``main``; its
    ``disabled_optimizers`` setting is changed for the planning and restored.

    Raises:
        duckdb.Error: the query does not bind against the tables.
    """
    tables = _table_columns(con)
    return _from_plan(con, query, tables) | _from_parse_tree(con, query, tables)


def _table_columns(con: duckdb.DuckDBPyConnection) -> dict[str, tuple[str, ...]]:
    rows = con.execute(
        "SELECT table_name, list(column_name ORDER BY column_index) FROM duckdb_columns() "
        "WHERE schema_name = 'main' AND NOT internal GROUP BY table_name"
    ).fetchall()
    return {table.lower(): tuple(c.lower() for c in columns) for table, columns in rows}


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
                found.add(f"{table}.{column.lower()}")
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
                found |= {f"{table}.{column}" for column in tables[table]}
        elif node.get("class") == "COLUMN_REF" and node.get("column_names"):
            parts = [str(part).lower() for part in node["column_names"]]
            column, qualifier = parts[-1], parts[-2] if len(parts) > 1 else ""
            candidates = [aliases[qualifier]] if qualifier in aliases else used
            found |= {f"{t}.{column}" for t in candidates if column in tables[t]}
            if len(parts) == 1 and column in aliases:  # a bare table name: the whole row
                found |= {f"{aliases[column]}.{c}" for c in tables[aliases[column]]}
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
    """An in-memory DuckDB database holding the (empty) source tables, with external access
    disabled (no file, URL or attached database), opened on first use and shared by every
    ``sql:`` segment validated with it: one connection per load instead of one per file.

    Use as a context manager; pass it to validation as ``context["sql_sandbox"]``.
    """

    def __init__(self) -> None:
        self._con: duckdb.DuckDBPyConnection | None = None
        self._reads: dict[str, frozenset[str]] = {}

    def columns_read(self, query: str) -> frozenset[str]:
        """:func:`columns_read` of ``query`` in the sandbox, computed once per query."""
        if query not in self._reads:
            self._reads[query] = columns_read(self.connection(), query)
        return self._reads[query]

    def connection(self) -> duckdb.DuckDBPyConnection:
        """The sandbox connection (created with the source schema on first call)."""
        if self._con is None:
            from orchestrator.warehouse.schema import create_source_schema

            self._con = duckdb.connect(":memory:", config={"enable_external_access": False})
            create_source_schema(self._con)
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
