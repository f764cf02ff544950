"""The source model: a warehouse laid out and named differently, mapped by configuration alone,
gives the same audiences; a model that does not match the warehouse says what is wrong."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import duckdb
import pytest

from orchestrator.audience import build_segment_audience
from orchestrator.config import ProjectConfig, load_project_config
from orchestrator.model.spec import SourceModel
from orchestrator.model.views import SourceModelError, refresh_source_views
from orchestrator.segments.loader import load_segments
from orchestrator.segments.materialize import write_segment_members
from orchestrator.warehouse.schema import create_activation_schema, create_source_schema
from tests.conftest import AS_OF, REPO

#: The demo's tables as another company would hold them: other schemas, other table and column
#: names, the consent platform's own words for statuses and purposes.
RELAYOUT_SQL = """
CREATE SCHEMA dpo; CREATE SCHEMA site; CREATE SCHEMA consent;
CREATE TABLE crm.people AS
    SELECT contact_id AS person_no, email_address AS mail, country, country_name,
           signed_up_at AS created_at, last_interaction_at AS last_contact_at,
           now() AS imported_at, loyalty_tier, lifetime_value, preferred_store,
           contact_id % 2 = 0 AS vip
    FROM crm.contacts;
CREATE TABLE site.clicks AS
    SELECT event_uuid AS click_id, visitor_customer_id AS person_no, action AS what,
           happened_at AS at, sku, page_path
    FROM web.events;
CREATE TABLE shop.lines AS
    SELECT line_id, contact_id AS person_no,
           CASE line_type WHEN 'SALE' THEN 'purchase' ELSE 'refund' END AS kind,
           ordered_at AS ts, order_no AS invoice_no, stock_code, description, quantity,
           unit_price_gbp AS unit_price, line_total_gbp AS amount
    FROM shop.order_lines;
CREATE TABLE consent.log AS
    SELECT record_id AS id, contact_id AS person_no,
           CASE purpose_name WHEN 'newsletter' THEN 'NEWSLETTER' ELSE 'ADS_PERSONALISATION' END
               AS purpose_name,
           consent_status AS state, captured_at AS at, collection_point AS channel,
           policy_version AS notice
    FROM cmp.consent_events
    UNION ALL
    SELECT 'unmapped-' || record_id, contact_id, 'NEWSLETTER', 'PENDING', captured_at
           + INTERVAL 1 SECOND, collection_point, policy_version
    FROM cmp.consent_events;
CREATE TABLE dpo.requests AS
    SELECT ticket_id AS ticket, contact_id AS person_no, requester_email AS hashed_mail,
           CASE ticket_type WHEN 'DELETE_MY_DATA' THEN 'DELETE_ME' ELSE 'STOP_MARKETING' END
               AS kind,
           opened_at
    FROM support.privacy_tickets;
DROP TABLE crm.contacts; DROP TABLE shop.order_lines; DROP TABLE web.events;
DROP TABLE cmp.consent_events; DROP TABLE support.privacy_tickets;
"""

RELAYOUT_MODEL = {
    "customers": {
        "table": "crm.people",
        "key": "person_no",
        "email": "mail",
        "traits": {"exclude": ["imported_at"]},
        "collected_at": "created_at",
        "own_action_columns": ["last_contact_at"],
    },
    "events": [
        {
            "name": "order_lines",
            "table": "shop.lines",
            "key": "person_no",
            "id": "line_id",
            "time": "ts",
            "type_column": "kind",
            "value": "amount",
            "order": "invoice_no",
            "fields": ["invoice_no", "stock_code", "description", "quantity", "unit_price"],
        },
        {
            "name": "site",
            "table": "site.clicks",
            "key": "person_no",
            "id": "click_id",
            "time": "at",
            "type_column": "what",
            "fields": ["sku", "page_path"],
        },
    ],
    "own_action_events": ["purchase", "add_to_cart", "checkout_started"],
    "consents": {
        "table": "consent.log",
        "columns": {
            "consent_id": "id",
            "customer_id": "person_no",
            "purpose": "purpose_name",
            "status": "state",
            "recorded_at": "at",
            "source": "channel",
            "notice_version": "notice",
        },
        "status_values": {"granted": ["OPT_IN"], "withdrawn": ["OPT_OUT"]},
        "purpose_values": {
            "email_marketing": ["NEWSLETTER"],
            "ad_targeting": ["ADS_PERSONALISATION"],
        },
        "ours": {
            "sources": ["checkout_form", "preference_center", "cookie_banner", "unsubscribe_link"]
        },
    },
    "privacy_requests": {
        "table": "dpo.requests",
        "columns": {
            "request_id": "ticket",
            "customer_id": "person_no",
            "subject_key": "hashed_mail",
            "request_type": "kind",
            "received_at": "opened_at",
        },
        "type_values": {"erasure": ["DELETE_ME"], "objection": ["STOP_MARKETING"]},
    },
}


def _audiences(path: Path, project: ProjectConfig, as_of: datetime) -> dict[str, set[tuple]]:
    """Every shipped segment's audience (subject key, legal basis, consent ref) and exclusions."""
    loaded = load_segments(REPO / "segments", project)
    assert loaded.ok, loaded.errors
    out: dict[str, set[tuple]] = {}
    with duckdb.connect(str(path)) as con:
        create_activation_schema(con)
        refresh_source_views(con, project.source, project.purposes)
        for sid, seg in sorted(loaded.specs.items()):
            write_segment_members(con, seg.spec, as_of)
            build_segment_audience(con, seg.spec, project, as_of)
            out[sid] = set(
                con.execute(
                    "SELECT 'in', subject_key, legal_basis, consent_ref "
                    "FROM activation.audience_members WHERE segment = ? UNION ALL "
                    "SELECT 'out', CAST(customer_id AS VARCHAR), reason, '' "
                    "FROM activation.audience_exclusions WHERE segment = ?",
                    [sid, sid],
                ).fetchall()
            )
    return out


def test_a_renamed_warehouse_mapped_by_the_model_gives_identical_audiences(
    tmp_path: Path, demo_warehouse_template: Path
) -> None:
    project = load_project_config(REPO / "activation.yaml")
    before = tmp_path / "before.duckdb"
    after = tmp_path / "after.duckdb"
    before.write_bytes(demo_warehouse_template.read_bytes())
    after.write_bytes(demo_warehouse_template.read_bytes())
    with duckdb.connect(str(after)) as con:
        con.execute(RELAYOUT_SQL)
    remapped = project.model_copy(update={"source": SourceModel.model_validate(RELAYOUT_MODEL)})

    expected = _audiences(before, project, AS_OF)
    got = _audiences(after, remapped, AS_OF)

    assert got == expected
    assert all(any(row[0] == "in" for row in rows) for rows in expected.values())


def _legacy(tmp_path: Path) -> duckdb.DuckDBPyConnection:
    con = duckdb.connect(str(tmp_path / "w.duckdb"))
    create_source_schema(con)
    return con


def _model(**changes: object) -> SourceModel:
    data = {
        "customers": {"table": "main.customers", "collected_at": "created_at"},
        "events": [
            {
                "name": "events",
                "table": "main.events",
                "time": "occurred_at",
                "type_column": "event_type",
            }
        ],
        "consents": {"table": "main.consents"},
    }
    for dotted, value in changes.items():
        node: dict = data
        *parents, last = dotted.split("__")
        for part in parents:
            node = node[part][0] if isinstance(node[part], list) else node[part]
        node[last] = value
    return SourceModel.model_validate(data)


def test_a_missing_column_names_the_field_and_what_the_warehouse_has(tmp_path: Path) -> None:
    con = _legacy(tmp_path)
    with pytest.raises(SourceModelError) as caught:
        refresh_source_views(con, _model(customers__email="mail"), ())
    problem = next(p for p in caught.value.problems if p.loc[-1] == "email")
    assert problem.loc == ("source", "customers", "email")
    assert "'mail' is not in main.customers" in problem.message
    assert "email (VARCHAR)" in problem.message and "country (VARCHAR)" in problem.message


def test_a_text_time_column_and_a_text_key_are_refused(tmp_path: Path) -> None:
    con = _legacy(tmp_path)
    con.execute("CREATE TABLE web AS SELECT '7' AS uid, '2026-01-01' AS ts, 'x' AS kind")
    model = _model().model_copy(
        update={
            "events": (
                *_model().events,
                SourceModel.model_validate(
                    {
                        **RELAYOUT_MODEL,
                        "events": [
                            {
                                "name": "web",
                                "table": "main.web",
                                "key": "uid",
                                "time": "ts",
                                "type_column": "kind",
                            }
                        ],
                    }
                ).events[0],
            )
        }
    )
    with pytest.raises(SourceModelError) as caught:
        refresh_source_views(con, model, ())
    messages = {p.loc: p.message for p in caught.value.problems}
    assert "is VARCHAR, not a timestamp or date" in messages[("source", "events", 1, "time")]
    assert "must be an integer" in messages[("source", "events", 1, "key")]


def test_a_missing_table_is_reported_and_nothing_changes(tmp_path: Path) -> None:
    con = _legacy(tmp_path)
    before = con.execute("SELECT count(*) FROM activation.src_customers").fetchone()
    with pytest.raises(SourceModelError) as caught:
        refresh_source_views(con, _model(customers__table="crm.contacts"), ())
    assert caught.value.problems[0].loc == ("source", "customers", "table")
    assert "crm.contacts cannot be read" in str(caught.value)
    assert con.execute("SELECT count(*) FROM activation.src_customers").fetchone() == before


def test_unmapped_consent_values_are_never_read_as_consent(tmp_path: Path) -> None:
    con = _legacy(tmp_path)
    con.execute(
        "INSERT INTO customers VALUES (1, 'a@example.com', 'FR', 'France', '2026-01-01', NULL);"
        "INSERT INTO consents VALUES ('c1', 1, 'email_marketing', 'granted', '2026-01-02', "
        "'web', 'v1'), ('c2', 1, 'email_marketing', 'maybe', '2026-01-03', 'web', 'v1')"
    )
    rows = con.execute("SELECT consent_id, status FROM activation.src_consents").fetchall()
    assert rows == [("c1", "granted")]


def test_a_consent_not_collected_under_our_notice_is_unproven(tmp_path: Path) -> None:
    con = _legacy(tmp_path)
    con.execute(
        "INSERT INTO consents VALUES ('c1', 1, 'email_marketing', 'granted', '2026-01-02', "
        "'web', 'v1'), ('c2', 2, 'email_marketing', 'granted', '2026-01-02', 'partner', 'p7')"
    )
    model = _model(consents__ours={"sources": ["web"], "notice_versions": ["v1"]})
    refresh_source_views(con, model, ())
    rows = con.execute(
        "SELECT consent_id, notice_version FROM activation.src_consents ORDER BY 1"
    ).fetchall()
    assert rows == [("c1", "v1"), ("c2", None)]  # no notice of ours: the audience says unproven


def test_a_non_unique_customer_key_is_refused(tmp_path: Path) -> None:
    con = _legacy(tmp_path)
    con.execute("CREATE TABLE crm_dupes AS SELECT 7 AS id, 'a@example.com' AS email")
    con.execute("INSERT INTO crm_dupes VALUES (7, 'b@example.com')")
    model = _model(customers__table="main.crm_dupes", customers__key="id")
    model = model.model_copy(
        update={"customers": model.customers.model_copy(update={"collected_at": None})}
    )
    with pytest.raises(SourceModelError) as caught:
        refresh_source_views(con, model, ())
    (problem,) = caught.value.problems
    assert problem.loc == ("source", "customers", "key")
    assert "'id' is not unique in main.crm_dupes: 1 value(s) have several rows (e.g. 7)" in (
        problem.message
    )


def test_unmapped_consent_values_are_counted(tmp_path: Path) -> None:
    from orchestrator.model.views import unmapped_counts

    con = _legacy(tmp_path)
    con.execute(
        "INSERT INTO consents VALUES ('c1', 1, 'email_marketing', 'granted', '2026-01-02', "
        "'web', 'v1'), ('c2', 1, 'email_marketing', 'maybe', '2026-01-03', 'web', 'v1'), "
        "('c3', 2, 'email_marketing', 'maybe', '2026-01-03', 'web', 'v1')"
    )
    assert unmapped_counts(con, _model(), ()) == {"status='maybe'": 2}
