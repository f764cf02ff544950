"""Bulk export of a query's rows to a Parquet file, on either backend (the diff's send groups).

DuckDB writes the file itself (``COPY (<query>) TO <path> (FORMAT parquet)``). PostgreSQL
streams the rows to the client through a server-side cursor, ``_BATCH_ROWS`` at a time, and
pyarrow writes them (one row group per batch), so the client never holds the whole result.
Column types follow the query's (DuckDB type names of :mod:`orchestrator.warehouse.postgres`);
a text column stays text even when every value is NULL.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import psycopg
import pyarrow as pa
import pyarrow.parquet as pq

from orchestrator.warehouse.product_schema import is_duckdb

_BATCH_ROWS = 50_000

_ARROW_TYPES = {
    "VARCHAR": pa.string(),
    "BIGINT": pa.int64(),
    "INTEGER": pa.int32(),
    "SMALLINT": pa.int16(),
    "DOUBLE": pa.float64(),
    "FLOAT": pa.float32(),
    "BOOLEAN": pa.bool_(),
    "TIMESTAMP": pa.timestamp("us"),
    "DATE": pa.date32(),
}


def export_parquet(con: Any, query: str, params: Sequence[Any], path: Path) -> None:
    """Write the rows of ``query`` (shared SQL, ``params`` bound) to the Parquet file ``path``.

    Raises:
        duckdb.Error / psycopg.Error: the query fails (no file is left on PostgreSQL).
    """
    if is_duckdb(con):
        con.execute(f"COPY ({query}) TO ? (FORMAT parquet)", [*params, str(path)])
        return
    from orchestrator.warehouse.postgres import _bind, duckdb_type_name

    (statement,), names = con.rendered(query)
    idle = con.raw.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
    # a server-side cursor lives in a transaction: the caller's (begin()), else its own
    scope = con.raw.transaction() if idle else contextlib.nullcontext()
    with scope, psycopg.RawServerCursor(con.raw, "activation_export") as cursor:
        cursor.itersize = _BATCH_ROWS
        cursor.execute(statement, _bind(names, params))
        writer: pq.ParquetWriter | None = None
        try:
            while True:
                rows = cursor.fetchmany(_BATCH_ROWS)
                if writer is None:
                    schema = pa.schema(
                        [
                            (
                                c.name,
                                _ARROW_TYPES.get(duckdb_type_name(c.type_display), pa.string()),
                            )
                            for c in cursor.description
                        ]
                    )
                    writer = pq.ParquetWriter(str(path), schema)
                if not rows:
                    break
                columns = list(zip(*rows, strict=True))
                writer.write_table(
                    pa.table(
                        [
                            pa.array(col, type=f.type)
                            for col, f in zip(columns, schema, strict=True)
                        ],
                        schema=schema,
                    )
                )
        except BaseException:
            if writer is not None:
                writer.close()
            Path(path).unlink(missing_ok=True)
            raise
        writer.close()


__all__ = ["export_parquet"]
