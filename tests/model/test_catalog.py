"""The committed catalog: written from the warehouse by `activation catalog`, read (never the
warehouse) by validation, the JSON Schema and the Dagster definitions; drift between the two
fails the segments that use a changed column and warns about the rest."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import duckdb
import pytest
import yaml
from click.testing import CliRunner

from orchestrator.cli import cli
from orchestrator.config import load_project_config
from orchestrator.model.catalog import build_catalog, live_drift
from orchestrator.segments.jsonschema import segment_json_schema
from orchestrator.segments.loader import SegmentValidationError, load_segment_text
from orchestrator.settings import Settings
from tests.conftest import REPO
from tests.model.test_views import RELAYOUT_MODEL, RELAYOUT_SQL

TIER_SEGMENT = """\
name: gold_tier
description: Gold loyalty tier members who bought in the last year
owner: crm-team@example.com
purpose: email_marketing
legal_basis: consent
retention_days: 30
schedule: "0 6 * * *"
audience:
  all:
    - trait: loyalty_tier
      eq: gold
    - event: purchase
      within_days: 365
destinations:
  - destination: mailchimp
    audience_id: "g0ld"
    mode: mirror
    fields: {TIER: loyalty_tier}
"""

UNTOUCHED_SEGMENT = (
    TIER_SEGMENT.replace("gold_tier", "all_buyers")
    .replace(
        """    - trait: loyalty_tier
      eq: gold
""",
        "",
    )
    .replace('"g0ld"', '"a11"')
    .replace("    fields: {TIER: loyalty_tier}\n", "")
)


@pytest.fixture
def project_dir(tmp_path: Path, demo_warehouse_template: Path, monkeypatch) -> Path:
    """A project on the relaid-out demo warehouse: activation.yaml with the model, two
    segments (one using the custom trait loyalty_tier), no catalog file yet."""
    root = tmp_path / "project"
    (root / "segments").mkdir(parents=True)
    config = yaml.safe_load((REPO / "activation.yaml").read_text(encoding="utf-8"))
    config["source"] = RELAYOUT_MODEL
    (root / "activation.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    (root / "segments" / "gold_tier.yaml").write_text(TIER_SEGMENT)
    (root / "segments" / "all_buyers.yaml").write_text(UNTOUCHED_SEGMENT)
    warehouse = tmp_path / "warehouse.duckdb"
    shutil.copyfile(demo_warehouse_template, warehouse)
    with duckdb.connect(str(warehouse)) as con:
        con.execute(RELAYOUT_SQL)
    monkeypatch.setenv("ACTIVATION_PROJECT_DIR", str(root))
    monkeypatch.setenv("ACTIVATION_WAREHOUSE", str(warehouse))
    monkeypatch.setenv("ACTIVATION_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.delenv("ACTIVATION_CATALOG", raising=False)
    return root


def _catalog(runner: CliRunner, *args: str) -> object:
    return runner.invoke(cli, ["catalog", *args], catch_exceptions=False)


def test_catalog_writes_the_warehouse_traits_types_and_fields(project_dir: Path) -> None:
    result = _catalog(CliRunner())
    assert result.exit_code == 0, result.output
    written = json.loads((project_dir / "catalog.json").read_text())
    assert written["traits"]["loyalty_tier"] == "text"
    assert written["traits"]["vip"] == "boolean"
    assert "imported_at" not in written["traits"] and "email" not in written["traits"]
    assert written["event_types"] == [
        "add_to_cart",
        "checkout_started",
        "page_view",
        "purchase",
        "refund",
    ]
    assert written["event_fields"]["quantity"] == "integer"
    assert written["relations"]["customers"] == ["crm.people"]


def test_validation_reads_the_catalog_file_and_lists_valid_names(project_dir: Path) -> None:
    assert _catalog(CliRunner()).exit_code == 0
    project = load_project_config(project_dir / "activation.yaml")
    spec = load_segment_text(TIER_SEGMENT, "gold_tier.yaml", project)
    assert spec.catalog.traits["loyalty_tier"] == "text"
    with pytest.raises(SegmentValidationError) as caught:
        load_segment_text(TIER_SEGMENT.replace("loyalty_tier\n", "tier\n"), "t.yaml", project)
    message = str(caught.value)
    assert "unknown trait 'tier'" in message and "loyalty_tier" in message and "vip" in message
    with pytest.raises(SegmentValidationError) as caught:
        load_segment_text(TIER_SEGMENT.replace("eq: gold", "gte: 3"), "t.yaml", project)
    assert "operator 'gte' does not apply to trait 'loyalty_tier' (text)" in str(caught.value)


def test_json_schema_follows_the_catalog_names_and_column_types(project_dir: Path) -> None:
    assert _catalog(CliRunner()).exit_code == 0
    catalog = load_project_config(project_dir / "activation.yaml").catalog
    trait = segment_json_schema(catalog)["$defs"]["TraitCondition"]
    assert "loyalty_tier" in trait["properties"]["trait"]["enum"]
    assert "vip" in trait["properties"]["trait"]["description"]
    rules = {
        tuple(rule["if"]["properties"]["trait"]["enum"]): rule["then"]["propertyNames"]["enum"]
        for rule in trait["allOf"]
    }
    boolean = next(ops for names, ops in rules.items() if "vip" in names)
    assert boolean == ["trait", "eq", "is_null"]


def test_validation_schema_and_definitions_load_with_the_warehouse_absent(
    project_dir: Path,
) -> None:
    from orchestrator.definitions import build_definitions

    assert _catalog(CliRunner()).exit_code == 0
    settings = Settings.from_env()
    settings.warehouse_path.unlink()
    project = load_project_config(settings.config_path)
    spec = load_segment_text(TIER_SEGMENT, "gold_tier.yaml", project)
    assert spec.catalog.traits["loyalty_tier"] == "text"
    with pytest.raises(SegmentValidationError, match="unknown trait 'tier'"):
        load_segment_text(TIER_SEGMENT.replace("loyalty_tier\n", "tier\n"), "t.yaml", project)
    trait = segment_json_schema(project.catalog)["$defs"]["TraitCondition"]
    assert "loyalty_tier" in trait["properties"]["trait"]["enum"]
    defs = build_definitions(settings, project)
    keys = {key.to_user_string() for key in defs.resolve_all_asset_keys()}
    assert "segment/gold_tier" in keys and "audience/gold_tier" in keys
    assert not settings.warehouse_path.exists()


def test_dropping_a_used_column_fails_that_segment_and_an_added_one_warns(
    project_dir: Path,
) -> None:
    runner = CliRunner()
    assert _catalog(runner).exit_code == 0
    assert _catalog(runner, "--check").exit_code == 0
    settings = Settings.from_env()
    with duckdb.connect(str(settings.warehouse_path)) as con:
        con.execute("ALTER TABLE crm.people DROP COLUMN loyalty_tier")
        con.execute("ALTER TABLE crm.people ADD COLUMN favourite_colour VARCHAR")

    result = runner.invoke(cli, ["catalog", "--check"])
    assert result.exit_code == 1
    assert (
        "error: segment gold_tier: column customers.loyalty_tier (VARCHAR) is gone from the "
        "warehouse; used by " in result.output
    )
    assert "gold_tier.yaml" in result.output and "all_buyers" not in result.output
    assert "warning: new column customers.favourite_colour (VARCHAR)" in result.output

    project = load_project_config(settings.config_path)
    from orchestrator.segments.loader import load_segments

    loaded = load_segments(settings.segments_dir, project)
    segments = {sid: (s.spec, str(s.path)) for sid, s in loaded.specs.items()}
    with duckdb.connect(str(settings.warehouse_path)) as con:
        drift = live_drift(con, project, segments)
    assert set(drift.errors) == {"gold_tier"}


def test_a_retyped_used_column_fails_the_segment(project_dir: Path) -> None:
    runner = CliRunner()
    assert _catalog(runner).exit_code == 0
    settings = Settings.from_env()
    with duckdb.connect(str(settings.warehouse_path)) as con:
        con.execute("ALTER TABLE crm.people ALTER COLUMN loyalty_tier TYPE INTEGER USING 1")
    result = runner.invoke(cli, ["catalog", "--check"])
    assert result.exit_code == 1
    assert "customers.loyalty_tier is now INTEGER, was VARCHAR" in result.output


def test_event_types_of_a_type_column_are_capped_and_reported(project_dir: Path) -> None:
    project = load_project_config(project_dir / "activation.yaml")
    with duckdb.connect(str(Settings.from_env().warehouse_path)) as con:
        built = build_catalog(con, project, cap=1)
    assert built.catalog.event_types_capped and built.capped == {"order_lines": 2, "site": 3}
    assert len(built.catalog.event_types) == 2  # one per type column


def test_a_model_error_names_the_config_file_line_and_field(project_dir: Path) -> None:
    config = project_dir / "activation.yaml"
    config.write_text(config.read_text().replace("email: mail", "email: e_mail"))
    result = CliRunner().invoke(cli, ["catalog"])
    assert result.exit_code == 1
    line = next(text for text in result.output.splitlines() if "source.customers.email" in text)
    number = next(
        i for i, text in enumerate(config.read_text().splitlines(), 1) if "e_mail" in text
    )
    assert line.startswith(f"{config}:{number} source.customers.email: column 'e_mail'")
    assert "mail (VARCHAR)" in line
