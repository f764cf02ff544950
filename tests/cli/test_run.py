"""``activation run``: a segment's job on the Dagster instance, live progress, a clear summary,
and Ctrl-C ending the run as canceled (and the next run converging)."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import dagster as dg
import pytest
from click.testing import CliRunner

from orchestrator.cli import cli
from tests.cli.conftest import AS_OF_TEXT, activation_command
from tests.conftest import REPO
from tests.e2e_harness import _definitions_module

SEGMENT = "recent_buyers_eu"
LIST_ID = "a1b2c3d4e5"


@pytest.fixture
def run_env(project_env: dict[str, str], mock_destinations, monkeypatch) -> dict[str, str]:
    """The project environment plus the mock destinations' URLs and tokens."""
    env = {
        **project_env,
        "META_BASE_URL": mock_destinations.meta_url,
        "META_ACCESS_TOKEN": mock_destinations.meta_token,
        "MAILCHIMP_BASE_URL": mock_destinations.mailchimp_url,
        "MAILCHIMP_API_KEY": mock_destinations.mailchimp_token,
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    _definitions_module(Path(env["ACTIVATION_WAREHOUSE"]))
    return env


def _runs(home: str) -> list[dg.DagsterRun]:
    os.environ["DAGSTER_HOME"] = home
    with dg.DagsterInstance.get() as instance:
        return list(instance.get_runs())


def test_run_sends_shows_progress_and_is_in_the_run_history(
    runner: CliRunner, run_env: dict[str, str], mock_destinations
) -> None:
    result = runner.invoke(cli, ["run", SEGMENT, "--as-of", AS_OF_TEXT])

    assert result.exit_code == 0, result.output
    assert "succeeded" in result.output
    assert "sync/mailchimp" in result.output  # the step table, with what the sync did
    assert "@" not in result.output  # no address printed
    members = mock_destinations.mailchimp_members(LIST_ID)
    assert len(members) > 0
    assert f"+{len(members)} -0 ~0, 0 rejected" in result.output, result.output
    # the sync's checks run in its step: the row keeps the counts and says how the checks went
    assert f"sync/mailchimp: +{len(members)} -0 ~0, 0 rejected" in result.output  # summary
    assert "0 rejected;" in result.output and "3 check(s)" in result.output  # table (wrapped)
    (run,) = _runs(run_env["DAGSTER_HOME"])
    assert run.job_name == f"{SEGMENT}_job"
    assert run.status == dg.DagsterRunStatus.SUCCESS
    assert run.run_id in result.output


def test_dry_run_in_a_subprocess_sends_nothing(run_env: dict[str, str], mock_destinations) -> None:
    done = subprocess.run(
        [*activation_command(), "run", SEGMENT, "--dry-run", "--as-of", AS_OF_TEXT],
        capture_output=True,
        text=True,
        cwd=REPO,
        env={**os.environ, **run_env},
        timeout=240,
        check=False,
    )

    assert done.returncode == 0, done.stdout + done.stderr
    assert "dry run" in done.stdout and "succeeded" in done.stdout
    writes = [r for r in mock_destinations.requests_log("mailchimp") if r["method"] != "GET"]
    assert writes == []
    assert mock_destinations.mailchimp_members(LIST_ID) == []


def test_unknown_segment_is_one_line_and_exit_1(runner: CliRunner, run_env) -> None:
    result = runner.invoke(cli, ["run", "no_such_segment"])

    assert result.exit_code == 1
    assert "unknown segment 'no_such_segment'" in result.output
    assert _runs(run_env["DAGSTER_HOME"]) == []


def test_a_failed_step_is_summarised_and_exits_1(
    runner: CliRunner, run_env: dict[str, str], mock_destinations
) -> None:
    # The list refuses every call with a permanent error (a wrong token, say).
    mock_destinations.add_fault(
        "mailchimp", {"method": "POST"}, {"type": "status", "status": 403}, times=5
    )

    result = runner.invoke(cli, ["run", SEGMENT, "--as-of", AS_OF_TEXT])

    assert result.exit_code == 1, result.output
    assert "FAILED" in result.output
    assert "step failed: sync__recent_buyers_eu__mailchimp" in result.output
    (run,) = _runs(run_env["DAGSTER_HOME"])
    assert run.status == dg.DagsterRunStatus.FAILURE


def _wait_for_a_send(mock_destinations, timeout_s: float = 120) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if any(r["method"] == "POST" for r in mock_destinations.requests_log("mailchimp")):
            return
        time.sleep(0.2)
    raise AssertionError("the sync never called the list")


def test_ctrl_c_cancels_the_run_cleanly_and_the_next_run_converges(
    run_env: dict[str, str], mock_destinations
) -> None:
    # The first batch is applied, then its answer never comes in time: Ctrl-C lands mid-call.
    mock_destinations.add_fault(
        "mailchimp", {"method": "POST"}, {"type": "timeout_after_apply", "seconds": 60}
    )
    proc = subprocess.Popen(
        [*activation_command(), "run", SEGMENT, "--as-of", AS_OF_TEXT],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=REPO,
        env={**os.environ, **run_env},
        start_new_session=True,
    )
    try:
        _wait_for_a_send(mock_destinations)
        time.sleep(0.5)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)

    assert proc.returncode == 130, out + err
    assert "interrupted (Ctrl-C): the run was canceled, not crashed" in out
    assert "Traceback" not in out + err
    (run,) = _runs(run_env["DAGSTER_HOME"])
    assert run.status == dg.DagsterRunStatus.CANCELED

    mock_destinations.clear_faults()
    again = subprocess.run(
        [*activation_command(), "run", SEGMENT, "--as-of", AS_OF_TEXT],
        capture_output=True,
        text=True,
        cwd=REPO,
        env={**os.environ, **run_env},
        timeout=240,
        check=False,
    )
    assert again.returncode == 0, again.stdout + again.stderr
    members = mock_destinations.mailchimp_members(LIST_ID)
    assert len(members) > 0
    assert all(m["status"] == "subscribed" for m in members)
