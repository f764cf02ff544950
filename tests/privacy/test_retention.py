"""Source retention: the clock is the person's own last action (never a row's import or update),
the durations come from activation.yaml, and expired people never enter an audience; departures
from a destination keep their first date."""

import shutil
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

import dagster as dg
import duckdb
import pytest
import yaml
from dagster_duckdb import DuckDBResource
from pydantic import ValidationError

from orchestrator.assets import build_segment_asset, segment_op_name
from orchestrator.config import ProjectConfig, SourceRetention, load_project_config
from orchestrator.privacy.retention import (
    source_retention_summary,
    track_departures,
)
from orchestrator.segments.loader import load_segments
from orchestrator.warehouse.schema import create_activation_schema, create_source_schema
from tests.conftest import AS_OF, REPO
from tests.postgres import open_warehouse

THREE_YEARS = SourceRetention()


def ago(days: float) -> datetime:
    return AS_OF - timedelta(days=days)


@pytest.fixture(params=["duckdb", "postgres"])
def con(request: pytest.FixtureRequest) -> Iterator[duckdb.DuckDBPyConnection]:
    """An empty warehouse with the default source tables: in-memory DuckDB, or a fresh
    PostgreSQL database."""
    if request.param == "postgres":
        connection = open_warehouse(request.getfixturevalue("postgres_url"))
    else:
        connection = duckdb.connect(":memory:")
    create_source_schema(connection)
    create_activation_schema(connection)
    yield connection
    connection.close()


def customer(con, cid: int, created: datetime, contact: datetime | None = None) -> None:
    con.execute(
        "INSERT INTO customers VALUES (?, ?, 'FR', 'France', ?, ?)",
        [cid, f"person{cid}@example.com", created, contact],
    )


def purchase(con, cid: int, at: datetime) -> None:
    con.execute(
        "INSERT INTO events VALUES (?, ?, 'purchase', ?, 'inv', 'sku', 'item', 1, 2.0, 2.0)",
        [f"e{cid}-{at.isoformat()}", cid, at],
    )


def expired_ids(con, retention: SourceRetention = THREE_YEARS) -> set[int]:
    from orchestrator.privacy.retention import RETENTION_CLOCK_SQL, retention_params

    rows = con.execute(
        f"SELECT customer_id FROM ({RETENTION_CLOCK_SQL}) WHERE expired",
        retention_params(retention, AS_OF),
    ).fetchall()
    return {row[0] for row in rows}


def test_clock_is_the_last_action_of_the_person(con) -> None:
    customer(con, 1, ago(1095))  # prospect collected exactly 3 years ago: expired
    customer(con, 2, ago(1094))  # a day younger: kept
    customer(con, 3, ago(3000), contact=ago(100))  # old prospect who replied recently: kept
    customer(con, 4, ago(5))  # re-imported row of an old customer: created_at is not an action
    purchase(con, 4, ago(1200))
    customer(con, 5, ago(3000))  # customer who bought recently: kept
    purchase(con, 5, ago(1200))
    purchase(con, 5, ago(30))
    customer(con, 6, ago(3000), contact=AS_OF + timedelta(days=1))  # contact after as_of
    customer(con, 7, ago(3000))  # a purchase after as_of does not count
    purchase(con, 7, AS_OF + timedelta(hours=1))
    con.execute(  # a refund is not a purchase, a consent grant is not a contact
        "INSERT INTO events VALUES ('r8', 8, 'refund', ?, 'inv', 'sku', 'x', -1, 2.0, -2.0)",
        [ago(10)],
    )
    customer(con, 8, ago(2000))
    con.execute(
        "INSERT INTO consents VALUES ('c8', 8, 'email_marketing', 'granted', ?, 'form', 'v1')",
        [ago(10)],
    )
    assert expired_ids(con) == {1, 4, 6, 7, 8}
    summary = source_retention_summary(con, THREE_YEARS, AS_OF)
    assert (summary.checked, summary.expired) == (8, 5)
    assert (summary.expired_prospects, summary.expired_customers) == (4, 1)
    assert summary.oldest_clock_at == ago(3000)


def test_prospect_and_customer_durations_are_separate(con) -> None:
    customer(con, 1, ago(400))  # prospect
    customer(con, 2, ago(400))  # customer
    purchase(con, 2, ago(400))
    assert expired_ids(con, SourceRetention(prospect_days=365, customer_days=730)) == {1}
    assert expired_ids(con, SourceRetention(prospect_days=730, customer_days=365)) == {2}


def test_durations_come_from_activation_yaml(tmp_path: Path) -> None:
    shipped = load_project_config(REPO / "activation.yaml")
    assert shipped.retention == SourceRetention(prospect_days=1095, customer_days=1095)
    data = yaml.safe_load((REPO / "activation.yaml").read_text())
    data.pop("retention")
    assert ProjectConfig.model_validate(data).retention == THREE_YEARS  # CNIL default
    data["retention"] = {"prospect_days": 0}
    with pytest.raises(ValidationError, match="prospect_days"):
        ProjectConfig.model_validate(data)


def test_audience_asset_excludes_expired_people_with_the_configured_duration(
    tmp_path: Path, demo_warehouse_template: Path
) -> None:
    path = tmp_path / "warehouse.duckdb"
    shutil.copyfile(demo_warehouse_template, path)
    shipped = load_project_config(REPO / "activation.yaml")
    short = shipped.model_copy(update={"retention": SourceRetention(customer_days=60)})
    loaded = load_segments(REPO / "segments", short).specs["one_time_buyers"]
    result = dg.materialize(
        [build_segment_asset(loaded, short)],
        resources={"warehouse": DuckDBResource(database=str(path))},
        run_config={
            "ops": {segment_op_name("one_time_buyers"): {"config": {"as_of": AS_OF.isoformat()}}}
        },
    )
    (audience,) = [
        e for e in result.get_asset_materialization_events() if e.asset_key.path[0] == "audience"
    ]
    expired = audience.materialization.metadata["excluded_retention_expired"].value
    assert expired > 0
    with duckdb.connect(str(path)) as con:
        (stale,) = con.execute(
            """
            SELECT count(*) FROM activation.audience_members m
            WHERE m.segment = 'one_time_buyers' AND NOT EXISTS (
                SELECT 1 FROM shop.order_lines e WHERE e.contact_id = m.customer_id
                  AND e.line_type = 'SALE' AND e.ordered_at > ? AND e.ordered_at <= ?)
              AND NOT EXISTS (  -- the website's own actions (the model's own_action_events)
                SELECT 1 FROM web.events w WHERE w.visitor_customer_id = m.customer_id
                  AND w.action IN ('add_to_cart', 'checkout_started')
                  AND w.happened_at > ? AND w.happened_at <= ?)
              AND coalesce((SELECT last_interaction_at FROM crm.contacts c
                            WHERE c.contact_id = m.customer_id), TIMESTAMP '1900-01-01') <= ?
            """,
            [ago(60), AS_OF, ago(60), AS_OF, ago(60)],
        ).fetchone()
        (reasons,) = con.execute(
            "SELECT count(*) FROM activation.audience_exclusions "
            "WHERE segment = 'one_time_buyers' AND reason = 'retention_expired'"
        ).fetchone()
    assert stale == 0  # nobody whose last action is 60 days old or more
    assert reasons == expired


def test_a_departure_keeps_its_first_date(con) -> None:
    con.execute(
        "INSERT INTO activation.sync_state VALUES ('s', 'd', ?, NULL, 'h', ?)", ["aa" * 32, AS_OF]
    )
    track_departures(con, segment="s", destination="d", now=AS_OF)
    track_departures(con, segment="s", destination="d", now=AS_OF + timedelta(days=5))
    rows = con.execute("SELECT subject_key, left_at FROM activation.departures").fetchall()
    assert rows == [("aa" * 32, AS_OF)]
    con.execute("DELETE FROM activation.sync_state")
    track_departures(con, segment="s", destination="d", now=AS_OF + timedelta(days=6))
    assert con.execute("SELECT count(*) FROM activation.departures").fetchone() == (0,)
