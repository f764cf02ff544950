"""PostgreSQL plans the stages' statements from statistics: a table the shared SQL creates
with ``CREATE [TEMP] TABLE ... AS`` is analyzed at once (PostgreSQL never analyzes a temporary
table by itself)."""

from __future__ import annotations

import pytest

from tests.postgres import open_warehouse


def _numbers(con: object, first: int, last: int) -> None:
    """A table ``numbers (k)`` of ``first..last``, made outside the shared SQL."""
    con.raw.execute(  # type: ignore[attr-defined]
        f"CREATE TABLE numbers AS SELECT g AS k FROM generate_series({first}, {last}) AS g"
    )


def _reltuples(con: object, name: str) -> float:
    (tuples,) = con.execute(  # type: ignore[attr-defined]
        "SELECT reltuples FROM pg_class WHERE relname = ? ORDER BY oid DESC LIMIT 1", [name]
    ).fetchone()
    return float(tuples)


@pytest.mark.parametrize(
    "create",
    [
        "CREATE TEMP TABLE scratch AS SELECT k FROM numbers",
        "CREATE OR REPLACE TEMP TABLE scratch AS SELECT k FROM numbers WHERE k <= 5000",
        "CREATE TABLE IF NOT EXISTS activation.scratch AS SELECT k FROM numbers",
    ],
)
def test_a_table_created_as_select_has_statistics(postgres_url: str, create: str) -> None:
    con = open_warehouse(postgres_url)
    try:
        _numbers(con, 1, 5000)
        con.execute(create)
        assert _reltuples(con, "scratch") == 5000
    finally:
        con.close()
