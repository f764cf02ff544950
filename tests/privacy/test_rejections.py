"""Refusals are visible: a platform refusing rows fails the sync's ``rejections`` check (WARN by
default, ERROR for a refused privacy removal, thresholds from ``activation.yaml``), and the
reasons show in the sync's metadata with hash samples only."""

from __future__ import annotations

import re
from datetime import datetime
from pathlib import Path

import dagster as dg
import duckdb
import pytest

from orchestrator.config import RejectionPolicy
from orchestrator.privacy.checks import evaluate_rejections
from orchestrator.sync.rejection_summary import summarize_rejections
from orchestrator.warehouse.connect import connect
from tests.conftest import AS_OF
from tests.e2e_harness import EMAIL_RE, e2e_project, run_assets, segment_keys

SEGMENT, DESTINATION = "recent_buyers_eu", "mailchimp"
REASON = "Member in compliance state (injected)"
#: The Mailchimp client appends the platform's error code to its words.
RECORDED_REASON = f"{REASON} (ERROR_GENERIC)"


def _check_evaluation(run_id: str, name: str) -> dg.AssetCheckEvaluation:
    with dg.DagsterInstance.get() as instance:
        records = instance.all_logs(run_id, of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION)
    found = [r.dagster_event.event_specific_data for r in records]
    (evaluation,) = [e for e in found if e.asset_check_key.name == name]
    return evaluation


@pytest.mark.slow
def test_refused_rows_fail_the_check_with_reasons_and_hashes_in_metadata(
    tmp_path: Path, demo_warehouse_template: Path
) -> None:
    with e2e_project(tmp_path, demo_warehouse_template) as project:
        first = run_assets(project.warehouse, AS_OF, selection=segment_keys(SEGMENT)[:2])
        assert first.success
        with duckdb.connect(str(project.warehouse), read_only=True) as con:
            refused = [
                email
                for (email,) in con.execute(
                    "SELECT email FROM activation.audience_members WHERE segment = ? "
                    "ORDER BY subject_key LIMIT 2",
                    [SEGMENT],
                ).fetchall()
            ]
        project.mock.add_fault(
            "mailchimp",
            {"method": "POST"},
            {"type": "reject_rows", "values": refused, "error": REASON},
        )

        everything = [*segment_keys(SEGMENT), dg.AssetKey(["sync", SEGMENT, DESTINATION])]
        outcome = run_assets(project.warehouse, AS_OF, selection=everything)

        sync = outcome.metadata[f"sync/{SEGMENT}/{DESTINATION}"]
        assert sync["refused_now"] == 2
        assert sync["refused_by_reason"] == {RECORDED_REASON: 2}
        samples = sync["refused_samples"].split(", ")
        assert len(samples) == 2 and all(re.fullmatch("[0-9a-f]{12}", s) for s in samples)
        assert not EMAIL_RE.search(str(sync))
        assert outcome.checks[f"sync/{SEGMENT}/{DESTINATION}:rejections"] is False
        evaluation = _check_evaluation(outcome.run_id, "rejections")
        assert evaluation.severity == dg.AssetCheckSeverity.WARN
        assert REASON in (evaluation.description or "")
        assert not EMAIL_RE.search(str(evaluation.metadata))


def _seed(con: duckdb.DuckDBPyConnection, rows: list[tuple[str, str, bool]]) -> None:
    at = datetime(2026, 11, 29, 6)
    for key, operation, permanent in rows:
        con.execute(
            "INSERT INTO activation.sync_rejections (segment, destination, subject_key, "
            "fields_hash, operation, reason, permanent, rejected_at) "
            "VALUES (?, ?, ?, 'h', ?, 'refused', ?, ?)",
            [SEGMENT, DESTINATION, key, operation, permanent, at],
        )


def test_a_refused_privacy_removal_is_an_error_whatever_the_threshold(tmp_path: Path) -> None:
    objector, other = "a" * 64, "b" * 64
    with connect(tmp_path / "w.duckdb") as con:
        _seed(con, [(objector, "remove", True), (other, "add", True)])
        con.execute(
            "INSERT INTO activation.suppression_list VALUES (?, NULL, 'objection', ?)",
            [objector, datetime(2026, 11, 1)],
        )
        summary = summarize_rejections(con, segment=SEGMENT, destination=DESTINATION)

    lenient = RejectionPolicy(max_permanent=100)
    result = evaluate_rejections(summary, lenient)

    assert summary.privacy_removals == 1 and summary.permanent == 2
    assert result.passed is False
    assert result.severity == dg.AssetCheckSeverity.ERROR
    assert result.metadata["privacy_removals_refused"].value == 1


def test_permanent_refusals_within_the_threshold_pass_and_above_it_use_its_severity(
    tmp_path: Path,
) -> None:
    with connect(tmp_path / "w.duckdb") as con:
        _seed(con, [(c * 64, "add", True) for c in "cde"] + [("f" * 64, "add", False)])
        summary = summarize_rejections(con, segment=SEGMENT, destination=DESTINATION)

    assert evaluate_rejections(summary, RejectionPolicy(max_permanent=3)).passed
    strict = evaluate_rejections(
        summary, RejectionPolicy(max_permanent=2, permanent_severity="error")
    )
    assert strict.passed is False and strict.severity == dg.AssetCheckSeverity.ERROR
    default = evaluate_rejections(summary, RejectionPolicy())
    assert default.passed is False and default.severity == dg.AssetCheckSeverity.WARN
    assert default.metadata["by_reason"].value == {"refused": 4}
