"""A project whose product schema is not ``activation`` (``warehouse.product_schema``), end to
end on DuckDB through the real Definitions: segments, audiences, diffs and syncs to the mock
destinations, then an erasure request carried to every destination by the privacy sensor and
job. Every product table lives in the configured schema; no ``activation`` schema is ever
made; the company's tables are byte for byte what they were; the lineage metadata and the
register name the configured schema. On a real PostgreSQL server, the stages ported to it
(segment, audience and their checks) through the same Dagster definitions."""

from __future__ import annotations

import os
from pathlib import Path

import dagster as dg
import duckdb
import psycopg
import pytest
import yaml
from faker import Faker

from orchestrator.assets import audience_key, segment_key
from orchestrator.cli.preview import preview_segment
from orchestrator.config import load_project_config
from orchestrator.definitions import ALL_SEGMENTS_JOB
from orchestrator.privacy.receipts import receipt_for
from orchestrator.privacy.register import render_register_markdown
from orchestrator.privacy.requests import record_request
from orchestrator.privacy.sensor import PRIVACY_JOB, SENSOR_NAME
from orchestrator.pseudonymize import subject_key
from orchestrator.segments.loader import load_segments
from orchestrator.settings import Settings
from orchestrator.warehouse.postgres import PostgresTarget, connect_postgres
from orchestrator.warehouse.resources import PostgresResource, ProductDuckDBResource
from orchestrator.warehouse.schema import SOURCE_DDL
from orchestrator.warehouse.transfer import copy_duckdb_to_postgres
from tests.postgres import PASSWORD_ENV
from tests.privacy.helpers import (
    ADS,
    AS_OF,
    ERIN,
    ERIN_ID,
    MAIL,
    META_AUD,
    OTHERS,
    add_customer,
    load_defs,
    run_segments,
    write_config,
    write_segments,
)

OURS = "reverse_etl"
#: The company's tables the privacy project's model reads (schema ``main``).
USER_TABLES = ("customers", "events", "consents", "privacy_requests")


def _write_warehouse(path: Path) -> None:
    """The privacy project's company tables only (Erin and three synthetic others): no
    product schema yet."""
    from datetime import timedelta

    fake = Faker()
    fake.seed_instance(4242)
    emails = {ERIN_ID: ERIN}
    emails.update({cid: f"{fake.user_name()}{cid}@example.com" for cid in OTHERS})
    con = duckdb.connect(str(path))
    try:
        con.execute(SOURCE_DDL)  # the company's tables, nothing of the product's
        for cid, email in emails.items():
            add_customer(con, cid, email, AS_OF - timedelta(days=10))
    finally:
        con.close()


def _user_tables(path: Path) -> dict[str, list[tuple]]:
    """Every table of the company's schema ``main`` and its rows."""
    con = duckdb.connect(str(path), read_only=True)
    try:
        names = con.execute(
            "SELECT table_name FROM duckdb_tables() WHERE schema_name = 'main'"
        ).fetchall()
        return {
            name: sorted(con.execute(f"SELECT * FROM main.{name}").fetchall(), key=repr)
            for (name,) in names
        }
    finally:
        con.close()


def _tables_by_schema(path: Path) -> dict[str, set[str]]:
    con = duckdb.connect(str(path), read_only=True)
    try:
        found: dict[str, set[str]] = {}
        for schema, name in con.execute(
            "SELECT schema_name, table_name FROM duckdb_tables() "
            "UNION ALL SELECT schema_name, view_name FROM duckdb_views() WHERE NOT internal"
        ).fetchall():
            found.setdefault(schema, set()).add(name)
        schemas = {s for (s,) in con.execute("SELECT schema_name FROM duckdb_schemas()").fetchall()}
    finally:
        con.close()
    return {schema: found.get(schema, set()) for schema in schemas}


@pytest.fixture
def custom_project(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, dagster_home: Path, mock_destinations
) -> Settings:
    config = write_config(tmp_path / "activation.yaml")
    data = yaml.safe_load(config.read_text(encoding="utf-8"))
    data["warehouse"] = {"kind": "duckdb", "product_schema": OURS}
    config.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    mock = mock_destinations
    env = {
        "ACTIVATION_PROJECT_DIR": str(tmp_path),
        "ACTIVATION_WAREHOUSE": str(tmp_path / "warehouse.duckdb"),
        "ACTIVATION_STATE_DIR": str(tmp_path / "state"),
        "ACTIVATION_SEGMENTS_DIR": str(write_segments(tmp_path / "segments")),
        "ACTIVATION_CONFIG": str(config),
        "DAGSTER_HOME": str(dagster_home),
        "META_BASE_URL": mock.meta_url,
        "META_ACCESS_TOKEN": mock.meta_token,
        "MAILCHIMP_BASE_URL": mock.mailchimp_url,
        "MAILCHIMP_API_KEY": mock.mailchimp_token,
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    _write_warehouse(tmp_path / "warehouse.duckdb")
    return Settings.from_env()


def test_a_configured_product_schema_holds_every_product_table_end_to_end(
    custom_project: Settings, mock_destinations
) -> None:
    settings, mock = custom_project, mock_destinations
    wh = settings.warehouse_path
    project = load_project_config(settings.config_path)
    assert project.product_schema == OURS
    before = _user_tables(wh)
    defs = load_defs()
    resource = defs.resources["warehouse"]
    assert isinstance(resource, ProductDuckDBResource) and resource.product_schema == OURS
    with dg.DagsterInstance.get() as instance:
        run_segments(defs, instance)  # segment -> audience -> diff -> sync, every pair
        erin = subject_key(ERIN)
        assert erin in mock.meta_members(META_AUD)
        assert len(mock.meta_members(META_AUD)) == 1 + len(OTHERS)

        request_id = record_request(wh, ERIN, "erasure", project=project)
        sensor = defs.resolve_sensor_def(SENSOR_NAME)
        context = dg.build_sensor_context(instance=instance, resources={"warehouse": resource})
        run_request = sensor(context)
        assert isinstance(run_request, dg.RunRequest), run_request
        result = defs.resolve_job_def(PRIVACY_JOB).execute_in_process(
            run_config=run_request.run_config, instance=instance, tags=run_request.tags
        )
        assert result.success
    assert erin not in mock.meta_members(META_AUD)
    receipt = receipt_for(wh, request_id, project=project)
    assert receipt["complete"] and receipt["status"] == "complete"

    tables = _tables_by_schema(wh)
    assert "activation" not in tables, "the default-named schema was made"
    assert {
        "segment_members",
        "audience_members",
        "customer_keys",
        "sync_journal",
        "sync_state",
        "pair_locks",
        "request_intake",
        "suppression_list",
        "erasure_receipts",
        "src_customers",
        "src_consents",
    } <= tables[OURS]
    assert set(USER_TABLES) <= set(before)
    assert tables["main"] == set(before)  # nothing of ours among the company's tables
    assert _user_tables(wh) == before  # and their rows untouched

    con = duckdb.connect(str(wh), read_only=True)
    try:
        (suppressed,) = con.execute(
            f"SELECT count(*) FROM {OURS}.suppression_list WHERE subject_key = ?", [erin]
        ).fetchone()
    finally:
        con.close()
    assert suppressed == 1

    # the preview reads the sync state from the configured schema: nothing left to send
    loaded = load_segments(settings.segments_dir, project).specs[ADS]
    preview = preview_segment(wh, settings.state_dir, loaded, project, AS_OF)
    assert preview.audience == len(OTHERS) and preview.excluded["erasure_requested"] == 1
    for destination in preview.destinations:
        assert (destination.adds, destination.updates, destination.removes) == (0, 0, 0)
    assert "activation" not in _tables_by_schema(wh)


def test_lineage_metadata_and_register_name_the_configured_schema(
    custom_project: Settings,
) -> None:
    project = load_project_config(custom_project.config_path)
    defs = load_defs()
    graph = defs.get_repository_def().asset_graph
    consents = graph.get(dg.AssetKey(["warehouse", "consents"])).metadata["tables"]
    requests = graph.get(dg.AssetKey(["warehouse", "privacy_requests"])).metadata["tables"]
    assert f"{OURS}.consent_intake" in consents and f"{OURS}.request_intake" in requests
    assert "activation." not in consents + requests
    register = render_register_markdown(project, [])
    assert f"{OURS}.customer_keys" in register and "activation.customer_keys" not in register


@pytest.fixture
def custom_postgres_project(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    dagster_home: Path,
    mock_destinations,
    postgres_url: str,
) -> Settings:
    """The same project on a real PostgreSQL server holding the company's tables (copied from
    the DuckDB fixture through a session that prepares nothing of the product's)."""
    config = write_config(tmp_path / "activation.yaml")
    data = yaml.safe_load(config.read_text(encoding="utf-8"))
    data["warehouse"] = {
        "kind": "postgres",
        "url": postgres_url,
        "password_env": PASSWORD_ENV,
        "product_schema": OURS,
    }
    config.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    mock = mock_destinations
    env = {
        "ACTIVATION_PROJECT_DIR": str(tmp_path),
        "ACTIVATION_STATE_DIR": str(tmp_path / "state"),
        "ACTIVATION_SEGMENTS_DIR": str(write_segments(tmp_path / "segments")),
        "ACTIVATION_CONFIG": str(config),
        "DAGSTER_HOME": str(dagster_home),
        "META_BASE_URL": mock.meta_url,
        "META_ACCESS_TOKEN": mock.meta_token,
        "MAILCHIMP_BASE_URL": mock.mailchimp_url,
        "MAILCHIMP_API_KEY": mock.mailchimp_token,
    }
    monkeypatch.delenv("ACTIVATION_WAREHOUSE", raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    source = tmp_path / "company.duckdb"
    _write_warehouse(source)
    duck = duckdb.connect(str(source), read_only=True)
    plain = connect_postgres(postgres_url, os.environ[PASSWORD_ENV])
    try:
        copy_duckdb_to_postgres(duck, plain)
    finally:
        duck.close()
        plain.close()
    return Settings.from_env()


def _postgres_state(url: str) -> tuple[set[str], set[str], dict[str, str]]:
    """Schemas, tables of the product schema, and md5 of every company table's rows, read
    through a plain psycopg session (no rewrite)."""
    target = PostgresTarget.from_url(url)
    with psycopg.connect(
        host=target.host, port=target.port, dbname=target.dbname, user=target.user,
        password=os.environ[PASSWORD_ENV], autocommit=True,
    ) as raw:  # fmt: skip
        schemas = {s for (s,) in raw.execute("SELECT nspname FROM pg_namespace").fetchall()}
        ours = {
            t
            for (t,) in raw.execute(
                "SELECT table_name FROM information_schema.tables WHERE table_schema = %s", [OURS]
            ).fetchall()
        }
        company = raw.execute(
            "SELECT table_schema, table_name FROM information_schema.tables "
            "WHERE table_type = 'BASE TABLE' AND table_schema NOT IN "
            "('pg_catalog', 'information_schema', %s)",
            [OURS],
        ).fetchall()
        digests = {
            f"{s}.{t}": raw.execute(
                f"SELECT md5(coalesce(string_agg(x::text, '|' ORDER BY x::text), '')) "
                f'FROM "{s}"."{t}" AS x'
            ).fetchone()[0]
            for s, t in company
        }
    return schemas, ours, digests


def test_a_configured_product_schema_on_postgres_through_dagster(
    custom_postgres_project: Settings, postgres_url: str
) -> None:
    """The segment and audience steps and their checks on PostgreSQL (the stages ported to
    it; the sync's SQL is not yet): the Dagster resource carries the product schema."""
    _, _, before = _postgres_state(postgres_url)
    assert set(USER_TABLES) <= {name.split(".")[1] for name in before}
    defs = load_defs()
    resource = defs.resources["warehouse"]
    assert isinstance(resource, PostgresResource) and resource.product_schema == OURS
    keys = [key(sid) for sid in (ADS, MAIL) for key in (segment_key, audience_key)]
    config = {"config": {"as_of": AS_OF.isoformat()}}
    with dg.DagsterInstance.get() as instance:
        result = defs.resolve_job_def(ALL_SEGMENTS_JOB).execute_in_process(
            # segment__<sid> builds both assets: its config serves the audience too
            run_config={
                "ops": {segment_key(sid).to_python_identifier(): config for sid in (ADS, MAIL)}
            },
            instance=instance,
            asset_selection=keys,
        )
    assert result.success
    checks = [
        e.event_specific_data
        for e in result.all_events
        if e.event_type == dg.DagsterEventType.ASSET_CHECK_EVALUATION
    ]
    assert checks and all(check.passed for check in checks)

    schemas, ours, after = _postgres_state(postgres_url)
    assert "activation" not in schemas, "the default-named schema was made"
    assert {
        "segment_members",
        "audience_members",
        "customer_keys",
        "address_forms",
        "src_customers",
        "suppression_list",
    } <= ours
    assert after == before  # the company's tables: the same tables, the same rows
    target = PostgresTarget.from_url(postgres_url)
    with psycopg.connect(
        host=target.host, port=target.port, dbname=target.dbname, user=target.user,
        password=os.environ[PASSWORD_ENV], autocommit=True,
    ) as raw:  # fmt: skip
        members = raw.execute(
            f"SELECT segment, count(*) FROM {OURS}.audience_members GROUP BY 1 ORDER BY 1"
        ).fetchall()
    assert members == [(ADS, 1 + len(OTHERS)), (MAIL, 1 + len(OTHERS))]
