"""Copy a DuckDB warehouse's own tables into PostgreSQL (the demo and bench on a server, the
tests' differential runs): same schemas, names, column types and rows.

:func:`copy_duckdb_to_postgres` reads the base tables of every schema but ``activation`` (the
product's own tables are rebuilt by the product on the server), creates each on the server
with the shared DDL rendered for PostgreSQL (a table in DuckDB's ``main`` lands in the
server's default schema, ``public``), and streams the rows in with ``COPY ... FROM STDIN``
(psycopg), a batch at a time. Existing tables of the same name are replaced.
"""

from __future__ import annotations

from typing import Any

import duckdb

from orchestrator.model.views import quote_ident

_BATCH_ROWS = 10_000


def _tables(duck: duckdb.DuckDBPyConnection) -> list[tuple[str, str]]:
    return duck.execute(
        "SELECT table_schema, table_name FROM information_schema.tables "
        "WHERE table_type = 'BASE TABLE' AND table_schema <> 'activation' "
        "AND table_catalog = current_database() ORDER BY table_schema, table_name"
    ).fetchall()


def _columns(duck: duckdb.DuckDBPyConnection, schema: str, table: str) -> list[tuple[str, str]]:
    return duck.execute(
        "SELECT column_name, data_type FROM information_schema.columns "
        "WHERE table_schema = ? AND table_name = ? AND table_catalog = current_database() "
        "ORDER BY ordinal_position",
        [schema, table],
    ).fetchall()


def copy_rows(duck: duckdb.DuckDBPyConnection, pg: Any, relation: str, columns: list[str]) -> int:
    """Append the rows of ``relation`` (``schema.table`` in both warehouses; DuckDB's ``main``
    is PostgreSQL's default schema) from ``duck`` to ``pg`` with ``COPY ... FROM STDIN``;
    return the count."""
    schema, table = relation.split(".")
    target = (
        quote_ident(table) if schema == "main" else f"{quote_ident(schema)}.{quote_ident(table)}"
    )
    cols = ", ".join(quote_ident(c) for c in columns)
    result = duck.execute(f"SELECT {cols} FROM {quote_ident(schema)}.{quote_ident(table)}")
    count = 0
    with pg.raw.cursor() as cursor, cursor.copy(f"COPY {target} ({cols}) FROM STDIN") as copy:
        while rows := result.fetchmany(_BATCH_ROWS):
            for row in rows:
                copy.write_row(row)
            count += len(rows)
    return count


def copy_duckdb_to_postgres(duck: duckdb.DuckDBPyConnection, pg: Any) -> dict[str, int]:
    """Copy every source table of ``duck`` into ``pg`` (a :class:`orchestrator.warehouse.
    postgres.PostgresConnection`); return rows copied per ``schema.table``.

    Raises:
        sqlglot.errors.UnsupportedError / NonPortableSQL: a column type PostgreSQL has no
            form of (a DuckDB struct or map).
        psycopg.Error: the server refused the DDL or the rows.
    """
    copied: dict[str, int] = {}
    for schema, table in _tables(duck):
        name = f"{quote_ident(schema)}.{quote_ident(table)}"
        columns = _columns(duck, schema, table)
        if schema != "main":
            pg.execute(f"CREATE SCHEMA IF NOT EXISTS {quote_ident(schema)}")
        pg.execute(f"DROP TABLE IF EXISTS {name}")
        body = ", ".join(f"{quote_ident(c)} {kind}" for c, kind in columns)
        pg.execute(f"CREATE TABLE {name} ({body})")
        copied[f"{schema}.{table}"] = copy_rows(
            duck, pg, f"{schema}.{table}", [c for c, _ in columns]
        )
    return copied


__all__ = ["copy_duckdb_to_postgres", "copy_rows"]
