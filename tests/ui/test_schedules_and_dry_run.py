"""What the Dagster UI offers besides the graph: one schedule per segment (stopped unless the
segment says otherwise) and the dry run through run config (``dry_run: true``)."""

from __future__ import annotations

import json
from pathlib import Path

import dagster as dg
import duckdb
import pytest
from click.testing import CliRunner

from orchestrator.assets import RECEIPTS_KEY
from orchestrator.cli import cli
from orchestrator.config import load_project_config
from orchestrator.definitions import build_definitions
from orchestrator.privacy.receipts import receipt_for
from orchestrator.privacy.requests import record_request
from orchestrator.settings import Settings
from tests.conftest import AS_OF, REPO

SEGMENT = "recent_buyers_eu"  # one mailchimp destination, mode mirror
SEGMENT_ASSET_PREFIXES = ("segment", "sync")


def _settings(segments_dir: Path, warehouse: Path, state_dir: Path) -> Settings:
    return Settings(REPO, segments_dir, REPO / "activation.yaml", warehouse, state_dir)


def _segment_file(folder: Path, name: str, extra: str, audience_id: str) -> None:
    example = (REPO / "segments" / "recent_buyers_eu.yaml").read_text(encoding="utf-8")
    text = example.replace("name: recent_buyers_eu", f"name: {name}")
    text = text.replace('audience_id: "a1b2c3d4e5"', f'audience_id: "{audience_id}"')
    text = text.replace("timezone: Europe/Paris\n", "")  # the default applies
    assert text != example
    (folder / f"{name}.yaml").write_text(text + extra, encoding="utf-8")


def test_one_schedule_per_segment_stopped_unless_asked(tmp_path: Path, warehouse: Path) -> None:
    folder = tmp_path / "segments"
    folder.mkdir()
    _segment_file(folder, "quiet_one", "", "aud1")
    _segment_file(folder, "eager_one", "timezone: America/New_York\nschedule_running: true\n", "a2")
    project = load_project_config(REPO / "activation.yaml")
    defs = build_definitions(_settings(folder, warehouse, tmp_path / "state"), project)
    quiet = defs.resolve_schedule_def("quiet_one_schedule")
    eager = defs.resolve_schedule_def("eager_one_schedule")
    assert quiet.cron_schedule == eager.cron_schedule == "0 6 * * *"
    assert quiet.execution_timezone == "Europe/Paris"
    assert eager.execution_timezone == "America/New_York"
    assert quiet.default_status is dg.DefaultScheduleStatus.STOPPED
    assert eager.default_status is dg.DefaultScheduleStatus.RUNNING
    assert quiet.job_name == "quiet_one_job" and eager.job_name == "eager_one_job"
    names = {s.name for s in defs.schedules or ()}
    # One schedule per segment, plus the privacy checks' own (which sends nothing).
    assert names == {"quiet_one_schedule", "eager_one_schedule", "privacy_checks_schedule"}


def test_shipped_segments_schedules_all_start_stopped(tmp_path: Path, warehouse: Path) -> None:
    project = load_project_config(REPO / "activation.yaml")
    defs = build_definitions(_settings(REPO / "segments", warehouse, tmp_path / "s"), project)
    # Segment schedules send: all stopped. The privacy checks' schedule sends nothing: running.
    schedules = [s for s in defs.schedules or () if s.job_name != "privacy_checks_job"]
    assert len(schedules) == len(list((REPO / "segments").glob("*.yaml")))
    assert {s.default_status for s in schedules} == {dg.DefaultScheduleStatus.STOPPED}
    checks = defs.resolve_schedule_def("privacy_checks_schedule")
    assert checks.default_status is dg.DefaultScheduleStatus.RUNNING


def test_privacy_sensors_run_by_default_and_are_the_only_running_automations(
    tmp_path: Path, warehouse: Path
) -> None:
    """Requests and withdrawals must reach destinations without anyone switching a sensor on;
    nothing else starts on its own (a new segment never sends by surprise: the privacy changes
    sensor only launches a segment a destination already holds someone for)."""
    project = load_project_config(REPO / "activation.yaml")
    defs = build_definitions(_settings(REPO / "segments", warehouse, tmp_path / "s"), project)
    sensors = list(defs.sensors or ())
    running = [s for s in sensors if s.default_status is dg.DefaultSensorStatus.RUNNING]
    # The alerts sensor runs too, but launches nothing (it posts to a webhook).
    launching = sorted(s.name for s in running if s.targets)
    assert launching == ["privacy_changes_sensor", "privacy_requests_sensor"]
    assert {s.name for s in running if not s.targets} == {"activation_alerts_sensor"}


def _dry_run_config(job: dg.JobDefinition) -> dict:
    as_of = AS_OF.isoformat()
    config = {"as_of": as_of, "dry_run": True}
    # The segment (and audience) and sync steps take RunConfig; other assets in the job do not.
    ours = [n.name for n in job.graph.nodes if n.name.split("__")[0] in SEGMENT_ASSET_PREFIXES]
    assert len(ours) >= 2
    ops = {name: {"config": config} for name in ours}
    # The job first honours open privacy requests; in a dry run that step only counts them.
    ops[RECEIPTS_KEY.to_python_identifier()] = {"config": {"dry_run": True}}
    return {"ops": ops}


@pytest.mark.slow
def test_dry_run_through_run_config_sends_nothing(
    tmp_path: Path,
    project_env: dict[str, str],
    warehouse: Path,
    mock_destinations,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The mock is running and configured: a sync that ignored dry_run would reach it.
    monkeypatch.setenv("MAILCHIMP_BASE_URL", mock_destinations.mailchimp_url)
    monkeypatch.setenv("MAILCHIMP_API_KEY", mock_destinations.mailchimp_token)
    state = Path(project_env["ACTIVATION_STATE_DIR"])
    project = load_project_config(REPO / "activation.yaml")
    defs = build_definitions(_settings(REPO / "segments", warehouse, state), project)
    job = defs.resolve_job_def(f"{SEGMENT}_job")

    preview = CliRunner().invoke(
        cli, ["preview", SEGMENT, "--as-of", AS_OF.isoformat(), "--format", "json"]
    )
    assert preview.exit_code == 0, preview.output
    predicted = json.loads(preview.stdout)[0]["destinations"][0]

    request_id = record_request(warehouse, "dry.run.tester@example.org", "erasure")
    with dg.DagsterInstance.ephemeral() as instance:
        result = job.execute_in_process(run_config=_dry_run_config(job), instance=instance)
        assert result.success
        receipts = instance.get_latest_materialization_event(RECEIPTS_KEY)
        assert receipts.asset_materialization.metadata["open_requests"].value >= 1
        sync_key = dg.AssetKey(["sync", SEGMENT, "mailchimp"])
        event = instance.get_latest_materialization_event(sync_key)
        meta = event.asset_materialization.metadata

    assert meta["dry_run"].value is True
    assert meta["adds"].value == predicted["adds"] > 0
    assert meta["api_calls"].value == 0
    # Nothing sent: no write request at all (a check may read the list's member count).
    writes = [r for r in mock_destinations.requests_log("mailchimp") if r["method"] != "GET"]
    assert writes == []
    assert mock_destinations.mailchimp_members("a1b2c3d4e5") == []
    with duckdb.connect(str(warehouse), read_only=True) as con:
        (synced,) = con.execute("SELECT count(*) FROM activation.sync_state").fetchone()
    assert synced == 0
    assert receipt_for(warehouse, request_id)["complete"] is False  # still open, untouched
