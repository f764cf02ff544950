"""Copy a DuckDB warehouse's own tables into PostgreSQL (the demo and bench on a server, the
tests' differential runs): same schemas, names, column types and rows.

:func:`copy_duckdb_to_postgres` reads the base tables of every schema but ``activation`` (the
product's own tables are rebuilt by the product on the server), creates each on the server
with the shared DDL rendered for PostgreSQL (a table in DuckDB's ``main`` lands in the
server's default schema, ``public``), and streams the rows in with ``COPY ... FROM STDIN``
(psycopg), a batch at a time. Existing tables of the same name are replaced.

:func:`temp_relation` puts rows computed in Python (e.g. phone hashes) where the shared SQL can
read them, on either backend: a registered Arrow table on DuckDB, a temporary table filled by
``COPY`` on PostgreSQL.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

import duckdb
import pyarrow as pa

from orchestrator.model.views import quote_ident
from orchestrator.warehouse.errors import DATABASE_ERRORS
from orchestrator.warehouse.product_schema import is_duckdb

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


#: Arrow types of the column types :func:`temp_relation` takes (DuckDB's names).
_ARROW_TYPES = {
    "BIGINT": pa.int64(),
    "UBIGINT": pa.uint64(),
    "INTEGER": pa.int32(),
    "VARCHAR": pa.string(),
    "DOUBLE": pa.float64(),
    "BOOLEAN": pa.bool_(),
    "TIMESTAMP": pa.timestamp("us"),
}


@contextmanager
def temp_relation(
    con: Any, name: str, columns: Mapping[str, str], values: Mapping[str, Sequence[Any]]
) -> Iterator[str]:
    """For the ``with`` block, a relation ``name`` (a plain identifier written by our code)
    the shared SQL on ``con`` can read, holding ``values`` (column name -> values, all of one
    length) with the SQL types ``columns`` (column name -> a type of :data:`_ARROW_TYPES`, in
    order). DuckDB: an Arrow table registered under ``name`` (no copy); PostgreSQL: a
    temporary table (``UBIGINT`` rendered ``BIGINT``: a value must fit a signed 64-bit
    integer there) filled with ``COPY``, dropped at the end (in the caller's transaction when
    one is open). Yields ``name``.

    Raises:
        KeyError: a type outside :data:`_ARROW_TYPES` (DuckDB).
        psycopg.Error: the server refused the table or the rows.
    """
    if is_duckdb(con):
        table = pa.table({c: pa.array(values[c], _ARROW_TYPES[t]) for c, t in columns.items()})
        con.register(name, table)
        try:
            yield name
        finally:
            con.unregister(name)
        return
    body = ", ".join(f"{quote_ident(c)} {t}" for c, t in columns.items())
    con.execute(f"CREATE TEMP TABLE {quote_ident(name)} ({body})")
    try:
        cols = ", ".join(quote_ident(c) for c in columns)
        rows = zip(*(values[c] for c in columns), strict=True)
        statement = f"COPY {quote_ident(name)} ({cols}) FROM STDIN"
        with con.raw.cursor() as cursor, cursor.copy(statement) as copy:
            for row in rows:
                copy.write_row(row)
        yield name
    finally:
        # in a transaction that failed, the table goes with its rollback: nothing to drop
        with contextlib.suppress(*DATABASE_ERRORS):
            con.execute(f"DROP TABLE IF EXISTS {quote_ident(name)}")


__all__ = ["copy_duckdb_to_postgres", "copy_rows", "temp_relation"]
