"""Compiled segments run on DuckDB and pick exactly the customers written by hand below."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone

import duckdb
import pytest
import yaml

from orchestrator.config import ProjectConfig
from orchestrator.segments.compiler import compile_segment, conditions_summary
from orchestrator.segments.spec import SegmentSpec
from orchestrator.warehouse.schema import create_source_schema
from tests.postgres import open_warehouse
from tests.source_layout import layout_project

AS_OF = datetime(2024, 6, 1)

CUSTOMERS = [
    # customer_id, country, created_at, last_contact_at
    (1, "FR", "2024-01-10 09:00", "2024-05-01 10:00"),
    (2, "DE", "2024-02-01 23:30", None),
    (3, "GB", "2024-03-01 00:00", "2024-05-20 08:00"),
    (4, None, "2024-04-01 12:00", None),
    (5, "NO", "2024-05-01 12:00", None),
]
EVENTS = [
    # event_id, customer_id, type, occurred_at, invoice, stock, description, qty, price, value
    ("e1", 1, "purchase", "2024-05-25 10:00", "A", "M1", "White Mug", 2, 5.0, 10.0),
    ("e2", 1, "purchase", "2024-05-25 10:00", "A", "B7", "Red Bag", 1, 20.0, 20.0),
    ("e3", 2, "purchase", "2024-01-15 11:00", "B", "M2", "BLUE MUG", 10, 10.0, 100.0),
    ("e4", 2, "purchase", "2024-03-01 10:00", "C", "L1", "Lamp 50% off", 1, 50.0, 50.0),
    ("e5", 2, "refund", "2024-03-05 09:00", "CC", "L1", "Lamp 50% off", -1, 50.0, -50.0),
    ("e6", 3, "purchase", "2024-02-29 23:59", "D", "C1", "Candle", 3, 2.0, 6.0),
    ("e7", 3, "purchase", "2024-05-31 08:00", None, "X1", None, 1, 1.0, 1.0),
    ("e8", 3, "purchase", "2024-05-31 09:00", None, "X2", "tea_towel", 1, 1.0, 1.0),
]


@pytest.fixture(scope="module", params=["duckdb", "postgres"])
def con(request: pytest.FixtureRequest) -> Iterator[duckdb.DuckDBPyConnection]:
    """The hand-written rows in DuckDB, and in a real PostgreSQL (tests/postgres.py)."""
    if request.param == "postgres":
        connection = open_warehouse(request.getfixturevalue("postgres_module_url"))
    else:
        connection = duckdb.connect(":memory:")
    create_source_schema(connection)
    connection.executemany(
        "INSERT INTO customers VALUES (?, ?, ?, ?, ?, ?)",
        [(cid, None, country, None, created, last) for cid, country, created, last in CUSTOMERS],
    )
    connection.executemany("INSERT INTO events VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", EVENTS)
    yield connection
    connection.close()


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> ProjectConfig:
    """The repository's project with the model of the layout these tests build by hand."""
    return layout_project(tmp_path_factory.mktemp("layout"))


def _spec(project: ProjectConfig, audience_yaml: str) -> SegmentSpec:
    data = {
        "name": "test_segment",
        "description": "test",
        "owner": "crm-team@example.com",
        "purpose": "email_marketing",
        "legal_basis": "consent",
        "retention_days": 30,
        "schedule": "0 6 * * *",
        "audience": yaml.safe_load(audience_yaml),
        "destinations": [{"destination": "mailchimp", "audience_id": "a1", "mode": "mirror"}],
    }
    return SegmentSpec.model_validate(data, context={"project": project})


def _members(con: duckdb.DuckDBPyConnection, spec: SegmentSpec, as_of: datetime = AS_OF) -> set:
    query = compile_segment(spec, as_of)
    rows = con.execute(query.sql, query.params).fetchall()
    assert len(rows) == len({row[0] for row in rows}), "customer ids must be distinct"
    return {row[0] for row in rows}


OPERATOR_CASES = [
    ("{trait: country, eq: FR}", {1}),
    ("{trait: country, eq: 'NO'}", {5}),
    ("{trait: country, in: [FR, DE]}", {1, 2}),
    ("{not: {trait: country, eq: FR}}", {2, 3, 4, 5}),  # unknown country counts as not FR
    ("{trait: country, is_null: true}", {4}),
    ("{trait: country, is_null: false}", {1, 2, 3, 5}),
    ("{trait: created_at, gte: 2024-02-01}", {2, 3, 4, 5}),
    ("{trait: created_at, lte: 2024-02-01}", {1, 2}),  # the whole last day
    ("{trait: created_at, between: [2024-02-01, 2024-03-01]}", {2, 3}),
    ("{trait: created_at, eq: 2024-03-01}", {3}),
    ("{trait: last_contact_at, gte: '2024-05-10T00:00:00'}", {3}),
    ("{not: {trait: last_contact_at, lte: 2024-05-10}}", {2, 3, 4, 5}),
    ("{trait: customer_id, between: [2, 4]}", {2, 3, 4}),
    ("{trait: customer_id, gte: 4}", {4, 5}),
    ("{trait: customer_id, in: [1, 5]}", {1, 5}),
    ("{event: purchase}", {1, 2, 3}),
    ("{event: refund}", {2}),
    ("{event: purchase, within_days: 30}", {1, 3}),
    ("{event: purchase, between: [2024-01-01, 2024-02-29]}", {2, 3}),  # 23:59 on the last day
    ("{event: purchase, between: [2024-03-01, 2024-05-24]}", {2}),
    ("{event: purchase, at_least: 2}", {2, 3}),  # same invoice counts once; none counts alone
    ("{event: purchase, at_least: 3}", {3}),
    ("{event: purchase, total_value: {gte: 100}}", {2}),
    ("{event: purchase, total_value: {lte: 30}}", {1, 3}),
    ("{event: purchase, total_value: {between: [9, 30]}}", {1}),
    ("{event: purchase, where: [{field: description, contains: mug}]}", {1, 2}),
    ("{event: purchase, where: [{field: description, contains: '%'}]}", {2}),
    ("{event: purchase, where: [{field: description, contains: p_5}]}", set()),  # no wildcard
    ("{event: purchase, where: [{field: description, contains: _to}]}", {3}),
    ("{event: purchase, where: [{field: quantity, gte: 3}]}", {2, 3}),
    ("{event: purchase, where: [{field: unit_price, between: [10, 20]}]}", {1, 2}),
    ("{event: purchase, where: [{field: stock_code, in: [M1, Z9]}]}", {1}),
    ("{event: purchase, where: [{field: description, is_null: true}]}", {3}),
    ("{event: purchase, where: [{field: invoice_no, eq: A}]}", {1}),
    ("{event: purchase, where: [{field: value, lte: 6}, {field: quantity, eq: 3}]}", {3}),
    ("{any: [{trait: country, eq: GB}, {event: refund}]}", {2, 3}),
    ("{all: [{trait: country, in: [FR, DE]}, {not: {event: refund}}]}", {1}),
    ("{not: {any: [{trait: country, eq: FR}, {event: purchase}]}}", {4, 5}),
    ("{not: {not: {trait: country, eq: FR}}}", {1}),
    (
        "{all: [{event: purchase, at_least: 1}, {not: {event: purchase, at_least: 2}}]}",
        {1},
    ),
]


@pytest.mark.parametrize(("audience", "expected"), OPERATOR_CASES)
def test_operator_selects_the_expected_customers(
    con: duckdb.DuckDBPyConnection, project: ProjectConfig, audience: str, expected: set
) -> None:
    assert _members(con, _spec(project, audience)) == expected


def test_values_are_bound_never_pasted(project: ProjectConfig) -> None:
    spec = _spec(
        project,
        """
all:
  - {trait: country_name, in: [ZZ, "x'); DROP TABLE customers; --"]}
  - event: purchase
    within_days: 37
    at_least: 4
    total_value: {between: [123.5, 9876]}
    where: [{field: description, contains: zanzibar}, {field: stock_code, eq: QQ777}]
""",
    )
    query = compile_segment(spec, AS_OF)
    literals = set(re.findall(r"'[^']*'", query.sql))
    assert literals == {"'event:'"}  # the only literal is the compiler's own constant
    for value in ("ZZ", "DROP", "37", "123.5", "9876", "zanzibar", "QQ777"):
        assert value not in query.sql
    assert "zanzibar" in query.params
    assert "x'); DROP TABLE customers; --" in query.params
    assert AS_OF - timedelta(days=37) in query.params
    assert query.sql.count("?") == len(query.params)


def test_aware_as_of_is_compared_in_utc(
    con: duckdb.DuckDBPyConnection, project: ProjectConfig
) -> None:
    spec = _spec(project, "{event: purchase, within_days: 1}")
    # Events of customer 3 at 2024-05-31 08:00 and 09:00 (naive UTC).
    # 10:30 at UTC+02:00 is 08:30 UTC: the window starts 2024-05-31 08:30, the 09:00 event is in.
    as_of = datetime(2024, 6, 1, 10, 30, tzinfo=timezone(timedelta(hours=2)))
    assert _members(con, spec, as_of) == {3}
    assert _members(con, spec, datetime(2024, 6, 1, 10, 30)) == set()
    assert _members(con, spec, datetime(2024, 6, 1, 9, 0, tzinfo=UTC)) == {3}
    assert _members(con, spec, datetime(2024, 6, 1, 9, 0, 1, tzinfo=UTC)) == set()


def test_events_after_as_of_do_not_count(
    con: duckdb.DuckDBPyConnection, project: ProjectConfig
) -> None:
    """A replayed run sees the warehouse as it was at ``as_of``: later events are ignored by
    every event condition, negated ones included."""
    bought = _spec(project, "{event: purchase, at_least: 1}")
    never = _spec(project, "{not: {event: purchase}}")
    before_any = datetime(2024, 1, 1)
    assert _members(con, bought, before_any) == set()
    assert _members(con, never, before_any) == {1, 2, 3, 4, 5}
    # Customer 3 ordered on 2024-02-29 23:59; one minute earlier they had not.
    assert 3 not in _members(con, bought, datetime(2024, 2, 29, 23, 58))
    assert 3 in _members(con, bought, datetime(2024, 2, 29, 23, 59))


def test_sql_segment_is_wrapped_distinct_without_nulls(
    con: duckdb.DuckDBPyConnection, project: ProjectConfig
) -> None:
    data = yaml.safe_load(
        """
name: sql_segment
description: from SQL
owner: data-team@example.com
purpose: email_marketing
legal_basis: consent
retention_days: 30
schedule: "0 6 * * *"
sql: |
  SELECT customer_id FROM activation.src_events WHERE event_type = 'purchase'
  UNION ALL SELECT NULL::BIGINT AS customer_id;
destinations: [{destination: mailchimp, audience_id: a1, mode: mirror}]
"""
    )
    spec = SegmentSpec.model_validate(data, context={"project": project})
    query = compile_segment(spec, AS_OF)
    assert query.params == []
    assert _members(con, spec) == {1, 2, 3}


def test_conditions_summary_reads_like_the_yaml(project: ProjectConfig) -> None:
    spec = _spec(
        project,
        """
all:
  - {trait: country, in: [FR, DE]}
  - event: purchase
    within_days: 90
    at_least: 2
    total_value: {gte: 100}
    where: [{field: description, contains: mug}]
  - not: {event: refund}
""",
    )
    assert conditions_summary(spec) == [
        "country in FR, DE",
        "purchase in the last 90 days where description contains 'mug', at least 2 orders,"
        " total value >= 100 GBP",
        "not (refund)",
    ]
