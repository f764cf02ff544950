"""write_segment_members: the table ends up equal to a fresh computation, other segments
untouched, and a failing segment writes nothing."""

from __future__ import annotations

from datetime import datetime

import duckdb
import pytest
import yaml

from orchestrator.config import ProjectConfig
from orchestrator.segments.materialize import write_segment_members
from orchestrator.segments.spec import SegmentSpec
from orchestrator.warehouse.errors import DATABASE_ERRORS
from orchestrator.warehouse.schema import create_activation_schema, create_source_schema
from tests.postgres import open_warehouse
from tests.segments.conftest import VALID_SEGMENT

T1 = datetime(2026, 6, 1, 6, 0)
T2 = datetime(2026, 6, 2, 6, 0)


@pytest.fixture(params=["duckdb", "postgres"])
def con(request: pytest.FixtureRequest) -> duckdb.DuckDBPyConnection:
    """DuckDB in memory, or a real PostgreSQL database (tests/postgres.py)."""
    if request.param == "postgres":
        con = open_warehouse(request.getfixturevalue("postgres_url"))
        request.addfinalizer(con.close)
    else:
        con = duckdb.connect(":memory:")
    create_source_schema(con)
    create_activation_schema(con)
    for cid, country in [(1, "FR"), (2, "FR"), (3, "DE"), (4, "FR")]:
        con.execute(
            "INSERT INTO customers (customer_id, email, country, created_at) VALUES (?, ?, ?, ?)",
            [cid, f"c{cid}@example.com", country, datetime(2025, 1, 1)],
        )
    for cid in (1, 2, 3):
        con.execute(
            "INSERT INTO events (event_id, customer_id, event_type, occurred_at, value) "
            "VALUES (?, ?, 'purchase', ?, 10)",
            [f"e{cid}", cid, datetime(2026, 5, 20)],
        )
    return con


def _spec(project: ProjectConfig, **changes: object) -> SegmentSpec:
    data = {**yaml.safe_load(VALID_SEGMENT), **changes}
    if data.get("audience") is None:
        data.pop("audience")
    return SegmentSpec.model_validate(data, context={"project": project})


def _rows(con: duckdb.DuckDBPyConnection) -> set[tuple]:
    return set(
        con.execute(
            "SELECT segment, customer_id, computed_at FROM activation.segment_members"
        ).fetchall()
    )


def test_rerun_keeps_exactly_the_current_members_and_leaves_other_segments(
    con, project: ProjectConfig
) -> None:
    spec = _spec(project)  # FR with a purchase in 90 days
    other = _spec(
        project,
        name="everyone",
        audience=None,
        sql="SELECT customer_id FROM activation.src_customers",
    )
    assert write_segment_members(con, other, T1) == 4
    assert write_segment_members(con, spec, T1) == 2
    assert _rows(con) >= {("recent_buyers_fr", 1, T1), ("recent_buyers_fr", 2, T1)}

    con.execute("UPDATE customers SET country = 'DE' WHERE customer_id = 1")  # leaves
    con.execute(
        "INSERT INTO events (event_id, customer_id, event_type, occurred_at, value) "
        "VALUES ('e4', 4, 'purchase', ?, 5)",  # joins
        [datetime(2026, 6, 1)],
    )
    assert write_segment_members(con, spec, T2) == 2
    assert {r for r in _rows(con) if r[0] == "recent_buyers_fr"} == {
        ("recent_buyers_fr", 2, T2),
        ("recent_buyers_fr", 4, T2),
    }
    assert {r for r in _rows(con) if r[0] == "everyone"} == {
        ("everyone", c, T1) for c in (1, 2, 3, 4)
    }


def test_a_failing_segment_writes_nothing(con, project: ProjectConfig) -> None:
    spec = _spec(project)
    write_segment_members(con, spec, T1)
    before = _rows(con)
    broken = _spec(
        project,
        audience=None,
        sql="SELECT CAST(country AS BIGINT) AS customer_id FROM activation.src_customers",
    )
    with pytest.raises(DATABASE_ERRORS):
        write_segment_members(con, broken, T2)
    assert _rows(con) == before
    assert write_segment_members(con, spec, T2) == 2  # the connection is usable afterwards
