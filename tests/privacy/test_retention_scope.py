"""retention_clock_sql(within): the clock of the customers in scope is the full clock's,
restricted to them (the scope only filters before aggregating)."""

from datetime import timedelta

import duckdb

from orchestrator.config import SourceRetention
from orchestrator.privacy.retention import (
    RETENTION_CLOCK_SQL,
    retention_clock_sql,
    retention_params,
)
from orchestrator.warehouse.schema import create_source_schema
from tests.conftest import AS_OF


def test_scoped_clock_equals_the_full_clock_restricted_to_the_scope() -> None:
    con = duckdb.connect(":memory:")
    create_source_schema(con)
    for cid in range(1, 9):
        contact = AS_OF - timedelta(days=100 * cid) if cid % 3 == 0 else None
        con.execute(
            "INSERT INTO customers VALUES (?, ?, 'FR', 'France', ?, ?)",
            [cid, f"person{cid}@example.com", AS_OF - timedelta(days=400 * cid), contact],
        )
    for cid, days in [(1, 10), (2, 2000), (2, 1500), (4, 1200), (5, -3), (7, 30), (8, 1096)]:
        con.execute(
            "INSERT INTO events VALUES (?, ?, 'purchase', ?, 'inv', 'sku', 'item', 1, 2.0, 2.0)",
            [f"e{cid}-{days}", cid, AS_OF - timedelta(days=days)],
        )
    con.execute("CREATE TEMP TABLE scope AS SELECT unnest([2, 3, 5, 8, 42]) AS customer_id")
    params = retention_params(SourceRetention(), AS_OF)
    full = con.execute(f"SELECT * FROM ({RETENTION_CLOCK_SQL})", params).fetchall()
    scoped = con.execute(f"SELECT * FROM ({retention_clock_sql('scope')})", params).fetchall()
    assert sorted(scoped) == sorted(row for row in full if row[0] in {2, 3, 5, 8})
    assert {row[3] for row in scoped} == {True, False}  # both outcomes are exercised
