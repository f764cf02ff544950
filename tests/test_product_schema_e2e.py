"""A project whose product schema is not ``activation`` (``warehouse.product_schema``), end to
end on DuckDB through the real Definitions: segments, audiences, diffs and syncs to the mock
destinations, then an erasure request carried to every destination by the privacy sensor and
job. Every product table lives in the configured schema; no ``activation`` schema is ever
made; the company's tables are byte for byte what they were; the lineage metadata and the
register name the configured schema."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import duckdb
import pytest
import yaml
from faker import Faker

from orchestrator.cli.preview import preview_segment
from orchestrator.config import load_project_config
from orchestrator.privacy.receipts import receipt_for
from orchestrator.privacy.register import render_register_markdown
from orchestrator.privacy.requests import record_request
from orchestrator.privacy.sensor import PRIVACY_JOB, SENSOR_NAME
from orchestrator.pseudonymize import subject_key
from orchestrator.segments.loader import load_segments
from orchestrator.settings import Settings
from orchestrator.warehouse.resources import ProductDuckDBResource
from orchestrator.warehouse.schema import SOURCE_DDL
from tests.privacy.helpers import (
    ADS,
    AS_OF,
    ERIN,
    ERIN_ID,
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
