"""The Article 30 register lists every segment's purpose, legal basis, recipients and retention;
a new segment file appears in it with no other edit; the Dagster definitions carry the register
asset, the checks beside their assets, and definition metadata and lineage on every asset."""

import csv
import io
import shutil
from pathlib import Path

import dagster as dg
import pytest

from orchestrator.config import load_project_config
from orchestrator.privacy.register import (
    CSV_COLUMNS,
    REGISTER_KEY,
    render_register_csv,
    render_register_markdown,
)
from orchestrator.segments.loader import load_segments
from orchestrator.settings import Settings
from tests.conftest import REPO

PROJECT = load_project_config(REPO / "activation.yaml")

NEW_SEGMENT = """\
name: Winter Prospects
description: People in Ireland, for a winter catalogue email
owner: team:crm
purpose: email_marketing
legal_basis: consent
retention_days: 45
schedule: "0 9 * * MON"
audience:
  trait: country
  in: [IE]
destinations:
  - destination: mailchimp
    audience_id: "ffee001122"
    mode: mirror
    fields: {COUNTRY: country_name}
"""


def specs(segments_dir: Path = REPO / "segments"):
    loaded = load_segments(segments_dir, PROJECT)
    assert not loaded.errors
    return loaded.specs


def csv_rows(text: str) -> dict[str, dict[str, str]]:
    rows = list(csv.DictReader(io.StringIO(text)))
    return {row["activity"]: row for row in rows}


def test_every_segment_is_an_activity_with_purpose_basis_recipients_retention() -> None:
    loaded = specs()
    rows = csv_rows(render_register_csv(PROJECT, loaded))
    assert set(rows) == set(loaded)
    for sid, seg in loaded.items():
        spec, row = seg.spec, rows[sid]
        assert row["purpose"] == spec.purpose
        assert row["purpose_description"] == PROJECT.purposes[spec.purpose].description
        article = "6(1)(a)" if spec.legal_basis == "consent" else "6(1)(f)"
        assert article in row["legal_basis"]
        for entry in spec.destinations:
            dest = PROJECT.destinations[entry.destination]
            assert f"{entry.destination} ({dest.platform}" in row["recipients"]
            assert f"country {dest.country}" in row["recipients"]
            assert dest.transfer_safeguard in row["third_country_transfers"]
        assert f"at most {spec.retention_days} days after leaving" in row["retention"]
        validity = PROJECT.purposes[spec.purpose].consent_validity_days
        assert f"counts for {validity} days" in row["retention"]
        assert f"{PROJECT.retention.prospect_days} days" in row["retention"]
        assert row["controller"] == PROJECT.controller.name
        assert "SHA-256" in row["security_measures"]
        assert row["source_file"] == f"segments/{seg.path.name}", "no absolute local path"


def test_personal_data_follow_the_fields_actually_used() -> None:
    rows = csv_rows(render_register_csv(PROJECT, specs()))
    ads = rows["mug_buyers_60d"]["personal_data"]
    assert "pseudonymized (SHA-256)" in ads
    assert "used to select: purchase events: description (sales.description)" in ads
    assert "email address (sent to email platforms" not in ads
    assert "country" not in ads  # neither a condition nor a field of that segment
    email = rows["recent_buyers_eu"]["personal_data"]
    assert "used to select: country" in email
    assert "sent to mailchimp as COUNTRY: country" in email
    assert "pseudonymized" not in email
    sql = rows["loyal_no_refund_sql"]["personal_data"]
    assert "events: order_id (sales.order_no, returns.order_no)" in sql
    # a query over the events view reads every event source, the web's included
    assert "events: event_type (" in sql and "web.events.action" in sql
    assert rows["mug_buyers_60d"]["data_subjects"] == "customers (at least one purchase)"
    assert "prospects" in rows["loyal_no_refund_sql"]["data_subjects"]


def test_markdown_names_controller_and_each_activity() -> None:
    loaded = specs()
    text = render_register_markdown(PROJECT, loaded)
    assert text.startswith("# Record of processing activities (GDPR Article 30(1))")
    assert PROJECT.controller.contact in text
    for sid, seg in loaded.items():
        assert f"### {sid}" in text
        line = next(x for x in text.splitlines() if x.startswith(f"| {sid} |"))
        assert f"| {seg.spec.legal_basis} |" in line
        assert f"| {seg.spec.retention_days} days |" in line
    assert "## Security measures" in text


def test_a_new_segment_file_changes_the_register_alone(tmp_path: Path) -> None:
    folder = tmp_path / "segments"
    shutil.copytree(REPO / "segments", folder)
    before = render_register_csv(PROJECT, specs(folder))
    (folder / "winter_prospects.yaml").write_text(NEW_SEGMENT, encoding="utf-8")
    after_specs = specs(folder)
    rows = csv_rows(render_register_csv(PROJECT, after_specs))
    assert "winter_prospects" not in csv_rows(before)
    row = rows["winter_prospects"]
    assert row["purpose"] == "email_marketing" and "6(1)(a)" in row["legal_basis"]
    assert "at most 45 days" in row["retention"]
    assert "audience ffee001122" in row["recipients"]
    assert "sent to mailchimp as COUNTRY: country" in row["personal_data"]
    assert "prospects" in row["data_subjects"]
    assert "### winter_prospects" in render_register_markdown(PROJECT, after_specs)
    header = next(csv.reader(io.StringIO(before)))
    assert tuple(header) == CSV_COLUMNS


@pytest.fixture
def definitions(tmp_path: Path) -> dg.Definitions:
    from orchestrator.definitions import build_definitions

    folder = tmp_path / "segments"
    shutil.copytree(REPO / "segments", folder)
    (folder / "winter_prospects.yaml").write_text(NEW_SEGMENT, encoding="utf-8")
    settings = Settings(
        project_dir=REPO,
        segments_dir=folder,
        config_path=REPO / "activation.yaml",
        warehouse_path=tmp_path / "warehouse.duckdb",
        state_dir=tmp_path / "state",
    )
    return build_definitions(settings, PROJECT)


def test_register_asset_renders_markdown_in_the_ui(definitions: dg.Definitions) -> None:
    graph = definitions.resolve_asset_graph()
    node = graph.get(REGISTER_KEY)
    assert node.group_name == "privacy"
    # The filed record is per purpose; each segment is a campaign row of its purpose.
    assert "| winter_prospects |" in node.description
    result = dg.materialize([definitions.resolve_assets_def(REGISTER_KEY)])
    (event,) = result.get_asset_materialization_events()
    register = event.materialization.metadata["register"]
    assert isinstance(register, dg.MarkdownMetadataValue)
    assert "| winter_prospects |" in register.value
    assert "first version recorded" in event.materialization.metadata["changes"].value
    assert event.materialization.metadata["version"].value.startswith("v-")


def test_checks_sit_beside_the_assets_they_guard(definitions: dg.Definitions) -> None:
    graph = definitions.resolve_asset_graph()
    checks = {(k.asset_key.to_user_string(), k.name) for k in graph.asset_check_keys}
    mine = {
        c
        for c in checks
        if c[1] != "requests_deadline"  # part of the privacy requests work
    }
    expected = {
        ("warehouse/customers", "source_retention"),
        ("warehouse/consents", "consent_proof"),
        ("warehouse/consents", "consent_purposes_declared"),
        ("privacy/processing_register", "no_unregistered_sync_state"),
        ("segment_file_errors", "segment_files_valid"),
    }
    for sid, seg in specs().items():
        expected.add((f"audience/{sid}", "legal_basis_valid"))
        if any(PROJECT.destinations[e.destination].kind == "ad" for e in seg.spec.destinations):
            expected.add((f"audience/{sid}", "no_raw_identifier"))
        for entry in seg.spec.destinations:
            expected.add((f"sync/{sid}/{entry.destination}", "destination_retention"))
            expected.add((f"sync/{sid}/{entry.destination}", "reconciliation"))
            expected.add((f"sync/{sid}/{entry.destination}", "rejections"))
    expected |= {
        ("audience/winter_prospects", "legal_basis_valid"),
        ("sync/winter_prospects/mailchimp", "destination_retention"),
        ("sync/winter_prospects/mailchimp", "reconciliation"),
        ("sync/winter_prospects/mailchimp", "rejections"),
    }
    assert mine == expected
    blocking = {
        (k.asset_key.to_user_string(), k.name)
        for k in graph.asset_check_keys
        if graph.get_check_spec(k).blocking
    }
    assert {c for c in blocking if c[0].startswith("audience/")} == {
        c for c in expected if c[0].startswith("audience/")
    }


def test_every_segment_asset_has_definition_metadata_and_lineage(
    definitions: dg.Definitions,
) -> None:
    graph = definitions.resolve_asset_graph()
    keys = [k for k in graph.get_all_asset_keys() if k.path[0] in ("segment", "audience", "sync")]
    assert len(keys) == 8 + 8 + 8  # seven shipped segments and the new one, one destination each
    for key in keys:
        metadata = graph.get(key).metadata
        for name in ("purpose", "legal_basis", "retention_days", "owner", "source_file"):
            assert name in metadata, (key, name)
        lineage = metadata["dagster/column_lineage"]
        assert lineage.deps_by_column, key
    segment = graph.get(dg.AssetKey(["segment", "winter_prospects"])).metadata
    deps = segment["dagster/column_lineage"].deps_by_column["customer_id"]
    assert dg.TableColumnDep(dg.AssetKey(["warehouse", "customers"]), "contact_id") in deps


def test_what_each_segment_reads_comes_from_every_event_source_it_reaches() -> None:
    """The cart abandoners read web events and order lines: the record of their purpose lists
    both sources' own columns, not purchases only."""
    rows = csv_rows(render_register_csv(PROJECT, specs()))
    carts = rows["cart_abandoners"]["personal_data"]
    assert (
        "used to select: add_to_cart events and when (web.events.visitor_customer_id, "
        "web.events.happened_at, web.events.action)" in carts
    )
    assert "used to select: purchase events and when (sales.contact_id, sales.ordered_at)" in carts
    assert "refund" not in carts and "returns." not in carts  # no return is read
    record = render_register_markdown(PROJECT, specs())
    carts_md = record.split("### cart_abandoners", 1)[1].split("\n### ", 1)[0]
    assert "web.events.action" in carts_md
