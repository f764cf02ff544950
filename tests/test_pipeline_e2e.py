"""The whole graph through the real Dagster definitions, checked against an independent oracle.

One run of ``all_segments_job`` with its asset checks (in process: its 33 steps each in a child
process would take minutes on two cores; ``tests/test_sync_e2e.py`` runs syncs under the
multiprocess executor), on a temporary copy of the demo warehouse built from the shipped real
data, with the mock destinations running. Then, for each example segment: the audience in the
warehouse equals the plain-Python oracle (subject keys, consent references, exclusions by
reason), the materialization metadata documents the processing, the destinations hold exactly
the audience (read through the mock's control API), and no raw email reached the Dagster
instance.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import dagster as dg
import duckdb
import pytest

from orchestrator.audience import EXCLUSION_REASONS
from orchestrator.config import ProjectConfig
from orchestrator.segments.spec import SegmentSpec
from tests.conftest import AS_OF
from tests.e2e_harness import (
    EMAIL_RE,
    EXAMPLE_SEGMENTS,
    E2EProject,
    RunOutcome,
    e2e_project,
    emails_in_files,
    event_log_text,
    md5_hex,
    project_specs,
    run_assets,
)
from tests.oracle import ExpectedAudience, expected_audiences, read_sources

AUDIENCE_COLUMNS = ["subject_key", "google_key", "customer_id", "email", "legal_basis"]
AUDIENCE_COLUMNS += ["consent_ref"]


@dataclass(frozen=True)
class Pipeline:
    """One materialization of the whole graph and the oracle's view of the same warehouse."""

    project: E2EProject
    config: ProjectConfig
    specs: dict[str, SegmentSpec]
    run: RunOutcome
    expected: dict[str, ExpectedAudience]


@pytest.fixture(scope="module")
def pipeline(
    tmp_path_factory: pytest.TempPathFactory, demo_warehouse_template: Path
) -> Iterator[Pipeline]:
    config, specs = project_specs()
    with e2e_project(tmp_path_factory.mktemp("pipeline"), demo_warehouse_template) as project:
        run = run_assets(project.warehouse, AS_OF)
        expected = expected_audiences(project.warehouse, specs, config, AS_OF)
        yield Pipeline(project, config, specs, run, expected)


def warehouse_rows(warehouse: Path, sql: str, params: list) -> list[tuple]:
    con = duckdb.connect(str(warehouse), read_only=True)
    try:
        return con.execute(sql, params).fetchall()
    finally:
        con.close()


def test_the_example_segments_are_the_ones_tested(pipeline: Pipeline) -> None:
    assert sorted(pipeline.specs) == list(EXAMPLE_SEGMENTS)


def test_the_whole_graph_materializes(pipeline: Pipeline) -> None:
    assert pipeline.run.success, pipeline.run.failed
    expected = {f"{kind}/{sid}" for sid in EXAMPLE_SEGMENTS for kind in ("segment", "audience")} | {
        f"sync/{sid}/{entry.destination}"
        for sid, spec in pipeline.specs.items()
        for entry in spec.destinations
    }
    expected.add("privacy/erasure_receipts")  # open requests are honoured before any sync
    assert set(pipeline.run.metadata) == expected


def test_every_asset_check_passes(pipeline: Pipeline) -> None:
    checks = pipeline.run.checks
    assert {key.split(":")[0] for key in checks} >= {
        f"{kind}/{sid}" for sid in EXAMPLE_SEGMENTS for kind in ("audience",)
    }
    assert [key for key, passed in sorted(checks.items()) if not passed] == []


@pytest.mark.parametrize("sid", EXAMPLE_SEGMENTS)
def test_audience_equals_the_oracle(pipeline: Pipeline, sid: str) -> None:
    expected = pipeline.expected[sid]
    warehouse = pipeline.project.warehouse
    members = warehouse_rows(
        warehouse,
        "SELECT customer_id FROM activation.segment_members WHERE segment = ?",
        [sid],
    )
    assert {row[0] for row in members} == expected.segment_members
    rows = warehouse_rows(
        warehouse,
        f"SELECT {', '.join(AUDIENCE_COLUMNS)} FROM activation.audience_members WHERE segment = ?",
        [sid],
    )
    audience = {row[0]: row for row in rows}
    assert {key: row[-1] for key, row in audience.items()} == expected.consent_refs
    assert audience == {
        key: (m.subject_key, m.google_key, m.customer_id, m.email, m.legal_basis, m.consent_ref)
        for key, m in expected.members.items()
    }
    exclusions = warehouse_rows(
        warehouse,
        "SELECT customer_id, reason FROM activation.audience_exclusions WHERE segment = ?",
        [sid],
    )
    assert dict(exclusions) == expected.exclusions
    assert expected.members and expected.exclusions  # the comparison is not vacuous


@pytest.mark.parametrize("sid", EXAMPLE_SEGMENTS)
def test_materialization_metadata_counts(pipeline: Pipeline, sid: str) -> None:
    expected = pipeline.expected[sid]
    segment = pipeline.run.metadata[f"segment/{sid}"]
    audience = pipeline.run.metadata[f"audience/{sid}"]
    assert segment["dagster/row_count"] == len(expected.segment_members)
    assert audience["dagster/row_count"] == len(expected.members)
    counts = expected.excluded_counts(EXCLUSION_REASONS)
    assert {reason: audience[f"excluded_{reason}"] for reason in EXCLUSION_REASONS} == counts
    assert audience["excluded_total"] == len(expected.exclusions)
    for entry in pipeline.specs[sid].destinations:
        sync = pipeline.run.metadata[f"sync/{sid}/{entry.destination}"]
        assert (sync["adds"], sync["removes"], sync["updates"]) == (len(expected.members), 0, 0)
        assert sync["rejected"] == 0
        assert sync["api_calls"] == sync["min_api_calls"] > 0


@pytest.mark.parametrize("sid", EXAMPLE_SEGMENTS)
def test_audience_metadata_documents_the_processing(pipeline: Pipeline, sid: str) -> None:
    spec = pipeline.specs[sid]
    metadata = pipeline.run.metadata[f"audience/{sid}"]
    assert metadata["purpose"] == spec.purpose
    assert metadata["legal_basis"] == str(spec.legal_basis)
    assert metadata["retention_days"] == spec.retention_days
    schema = metadata["dagster/column_schema"]
    assert [column.name for column in schema.columns] == AUDIENCE_COLUMNS
    lineage = metadata["dagster/column_lineage"].deps_by_column
    assert set(lineage) == set(AUDIENCE_COLUMNS)
    # the company's own column names: the demo's contacts table holds ``email_address``
    customers_email = dg.TableColumnDep(dg.AssetKey(["warehouse", "customers"]), "email_address")
    for column in ("subject_key", "google_key", "email"):
        assert lineage[column] == [customers_email]
    assert {dep.asset_key.to_user_string() for dep in lineage["consent_ref"]} == {
        "warehouse/consents",
        "warehouse/events",
    }


def test_no_raw_email_reaches_the_dagster_instance(pipeline: Pipeline) -> None:
    # Segment owners and the controller's contact are team addresses, not data subjects.
    allowed = {spec.owner.lower() for spec in pipeline.specs.values()}
    allowed.add(pipeline.config.controller.contact.lower())
    text = event_log_text(pipeline.project.dagster_home)
    assert "ASSET_MATERIALIZATION" in text and len(text) > 10_000  # the scan reads real records
    assert {m.lower() for m in EMAIL_RE.findall(text)} <= allowed
    assert {m.lower() for m in emails_in_files(pipeline.project.dagster_home)} <= allowed
    customer_emails = {m.email for e in pipeline.expected.values() for m in e.members.values()}
    assert not any(email in text.lower() for email in customer_emails)


@pytest.mark.parametrize("sid", EXAMPLE_SEGMENTS)
def test_destinations_hold_exactly_the_audience(pipeline: Pipeline, sid: str) -> None:
    expected = pipeline.expected[sid]
    mock = pipeline.project.mock
    for entry in pipeline.specs[sid].destinations:
        kind = pipeline.config.destinations[entry.destination].kind.value
        if kind == "ad":
            assert mock.meta_members(entry.audience_id) == sorted(expected.members)
            continue
        contacts = mock.mailchimp_members(entry.audience_id)
        subscribed = {c["hash"] for c in contacts if c["status"] == "subscribed"}
        assert subscribed == {md5_hex(email) for email in expected.emails}
        assert len(contacts) == len(subscribed)
        traits = traits_by_email(pipeline, expected)
        for contact in contacts:
            person = traits[contact["hash"]]
            merge = {tag: _text(person[trait]) for tag, trait in entry.fields.items()}
            assert contact["merge_fields"] == merge


def _text(value: object) -> str:
    return "" if value is None else str(value)


def traits_by_email(pipeline: Pipeline, expected: ExpectedAudience) -> dict[str, dict]:
    """Subscriber hash -> the member's traits, read from the company's own tables through the
    model's mapping in plain Python (the oracle's reading)."""
    with duckdb.connect(str(pipeline.project.warehouse), read_only=True) as con:
        customers = read_sources(con, pipeline.config.source).customers
    return {md5_hex(m.email): customers[m.customer_id] for m in expected.members.values()}


def test_no_violation_at_the_destinations(pipeline: Pipeline) -> None:
    mock = pipeline.project.mock
    assert mock.violations("meta")["raw_identifier"] == 0
    mailchimp = mock.violations("mailchimp")
    assert (mailchimp["resubscribe"], mailchimp["forgotten_resubscribe"]) == (0, 0)
