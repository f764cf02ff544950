"""A withdrawal recorded while a sync of the same segment runs is applied within minutes
(case P6), end to end: a segment job whose send is slowed by a ``429`` with ``Retry-After``
(mock fault injection) holds the pair lock while the withdrawal is recorded. Either the same
job started again waits for the running sync and then removes the person, or, with no second
run, ``privacy_changes_sensor`` waits for the running job and launches the follow-up that
removes them. Real Definitions, instance, warehouse and mock."""

from __future__ import annotations

import threading
import time
from datetime import datetime, timedelta

import dagster as dg
import duckdb
import pytest
from dagster_duckdb import DuckDBResource

from orchestrator.assets import segment_key, sync_key
from orchestrator.privacy.late_changes import (
    CHANGES_SENSOR,
    held_withdrawn,
    plan_follow_ups,
)
from orchestrator.pseudonymize import subject_key
from orchestrator.settings import Settings
from tests.privacy.helpers import (
    ADS,
    AS_OF,
    ERIN,
    ERIN_ID,
    LATER_IDS,
    LIST,
    MAIL,
    META_AUD,
    add_customer,
    load_defs,
    run_segments,
)
from tests.privacy.test_erasure import mailchimp_member

RETRY_AFTER_S = 20

CASES = {
    # segment, purpose, platform, path of the send to slow down, is Erin still held?
    MAIL: ("email_marketing", "mailchimp", f"lists/{LIST}$"),
    ADS: ("ad_targeting", "meta", f"{META_AUD}/users$"),
}


def _run_config(sid: str) -> dict:
    destinations = {MAIL: ["mailchimp"], ADS: ["meta_ads", "meta_ads_eu"]}[sid]
    keys = [segment_key(sid), *(sync_key(sid, d) for d in destinations)]
    config = {"config": {"as_of": AS_OF.isoformat()}}
    return {"ops": {key.to_python_identifier(): config for key in keys}}


def _held(mock, sid: str) -> bool:
    if sid == MAIL:
        return mailchimp_member(mock, ERIN)["status"] == "subscribed"
    return subject_key(ERIN) in mock.meta_members(META_AUD)


def _tick(defs: dg.Definitions, instance: dg.DagsterInstance, project: Settings, cursor=None):
    sensor = defs.resolve_sensor_def(CHANGES_SENSOR)
    context = dg.build_sensor_context(
        instance=instance,
        cursor=cursor,
        resources={"warehouse": DuckDBResource(database=str(project.warehouse_path))},
    )
    return sensor(context), context.cursor


def _write(project: Settings, sql: str, params: list) -> None:
    con = duckdb.connect(str(project.warehouse_path))
    try:
        con.execute(sql, params)
    finally:
        con.close()


def _wait_for_throttled_send(mock, platform: str, path: str, since: int) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if any(
            r["status"] == 429 and path.rstrip("$") in r["path"]
            for r in mock.requests_log(platform, since_id=since)
        ):
            return
        time.sleep(0.2)
    raise AssertionError("the slowed send never happened")


def mail_people_job() -> dg.JobDefinition:
    """The segment job of the mail segment (reconstructable, for a multiprocess run)."""
    return load_defs().resolve_job_def(f"{MAIL}_job")


def _start_throttled_run(project: Settings, mock, defs: dg.Definitions, instance, sid: str):
    """Run ``sid``'s job in a thread with its first send throttled (``429`` + Retry-After);
    returns (thread, results list) once the throttled call happened: the pair lock is held."""
    _, platform, path = CASES[sid]
    con = duckdb.connect(str(project.warehouse_path))
    try:  # a newcomer gives the sync something to send, which the platform throttles
        add_customer(con, LATER_IDS[0], "newcomer@example.org", AS_OF - timedelta(days=1))
    finally:
        con.close()
    log = mock.requests_log(platform)
    since = log[-1]["id"] if log else 0
    throttle = {"type": "status", "status": 429, "headers": {"Retry-After": str(RETRY_AFTER_S)}}
    mock.add_fault(platform, {"method": "POST", "path": path}, throttle)
    job = defs.resolve_job_def(f"{sid}_job")
    results: list[dg.ExecuteInProcessResult] = []
    thread = threading.Thread(
        target=lambda: results.append(
            job.execute_in_process(
                run_config=_run_config(sid), instance=instance, raise_on_error=False
            )
        )
    )
    thread.start()
    _wait_for_throttled_send(mock, platform, path, since)
    return thread, results


def _withdraw(project: Settings, purpose: str) -> None:
    _write(
        project,
        "INSERT INTO consents VALUES (?, ?, ?, 'withdrawn', ?, 'preference_centre', 'v3')",
        [f"w-{ERIN_ID}-{purpose}", ERIN_ID, purpose, AS_OF - timedelta(minutes=1)],
    )


@pytest.mark.parametrize("sid", [MAIL, ADS])
def test_a_withdrawal_recorded_during_a_sync_is_applied_by_a_follow_up_run(
    privacy_project: Settings, mock_destinations, sid: str
) -> None:
    mock, defs = mock_destinations, load_defs()
    with dg.DagsterInstance.get() as instance:
        run_segments(defs, instance)
        assert _held(mock, sid)
        started = datetime.now()
        running, first = _start_throttled_run(privacy_project, mock, defs, instance, sid)
        try:
            _withdraw(privacy_project, CASES[sid][0])  # while the sync waits out Retry-After
            waiting, cursor = _tick(defs, instance, privacy_project)
            assert isinstance(waiting, dg.SkipReason), waiting  # a run of the job is in flight
        finally:
            running.join(timeout=180)
        assert first and first[0].success
        assert _held(mock, sid)  # the running sync did not know
        requests, cursor = _tick(defs, instance, privacy_project, cursor)
        assert [r.job_name for r in requests] == [f"{sid}_job"]
        follow_up = defs.resolve_job_def(requests[0].job_name).execute_in_process(
            run_config=_run_config(sid), instance=instance, tags=requests[0].tags
        )
        assert follow_up.success
        assert not _held(mock, sid)
        assert datetime.now() - started < timedelta(minutes=5)
        done, _ = _tick(defs, instance, privacy_project, cursor)
        assert isinstance(done, dg.SkipReason) and "no destination holds" in done.skip_message


def test_the_same_job_started_again_waits_for_the_running_sync_and_applies_the_withdrawal(
    privacy_project: Settings, mock_destinations
) -> None:
    """The case as reported: the second run used to fail on the pair lock."""
    mock, defs = mock_destinations, load_defs()
    with dg.DagsterInstance.get() as instance:
        run_segments(defs, instance)
        running, first = _start_throttled_run(privacy_project, mock, defs, instance, MAIL)
        try:
            _withdraw(privacy_project, "email_marketing")
            # As Dagster runs it: each step in its own process (two runs' steps in one
            # process would share one DuckDB instance, which no deployment does).
            second = dg.execute_job(
                dg.reconstructable(mail_people_job),
                instance=instance,
                run_config=_run_config(MAIL),
                raise_on_error=False,
            )
        finally:
            running.join(timeout=180)
        assert first and first[0].success
        failures = [e.event_specific_data for e in second.all_events if e.is_step_failure]
        assert second.success, failures
        assert not _held(mock, MAIL)
        done, _ = _tick(defs, instance, privacy_project)
        assert isinstance(done, dg.SkipReason)


def test_only_the_purpose_withdrawn_counts_and_ties_favour_the_withdrawal(
    privacy_project: Settings,
) -> None:
    defs = load_defs()
    with dg.DagsterInstance.get() as instance:
        run_segments(defs, instance)
    at = AS_OF - timedelta(minutes=5)
    for status in ("withdrawn", "granted"):  # same instant: the withdrawal is the safe reading
        _write(
            privacy_project,
            "INSERT INTO consents VALUES (?, ?, 'ad_targeting', ?, ?, 'crm', 'v3')",
            [f"tie-{status}", ERIN_ID, status, at],
        )
    con = duckdb.connect(str(privacy_project.warehouse_path), read_only=True)
    try:
        waiting = held_withdrawn(con, {ADS: "ad_targeting", MAIL: "email_marketing"})
    finally:
        con.close()
    assert waiting == {ADS: 1}


def test_a_withdrawal_recorded_with_the_command_is_seen_under_a_typed_address(
    privacy_project: Settings,
) -> None:
    """``activation withdraw`` writes the product's intake, never the company's consent log:
    the sensor reads the model's consent view, which merges it, so the person shows up; the
    address is read as typed (``mailto:``, other case) on the intake path."""
    from click.testing import CliRunner

    from orchestrator.cli import cli

    defs = load_defs()
    with dg.DagsterInstance.get() as instance:
        run_segments(defs, instance)
    result = CliRunner().invoke(
        cli, ["withdraw", f"mailto:{ERIN.upper()}", "--purpose", "ad_targeting"]
    )
    assert result.exit_code == 0, result.output
    con = duckdb.connect(str(privacy_project.warehouse_path), read_only=True)
    try:
        (in_log,) = con.execute(
            "SELECT count(*) FROM main.consents WHERE source = 'activation withdraw'"
        ).fetchone()
        waiting = held_withdrawn(con, {ADS: "ad_targeting", MAIL: "email_marketing"})
    finally:
        con.close()
    assert in_log == 0 and waiting == {ADS: 1}


def test_follow_ups_wait_for_running_jobs_and_are_spaced() -> None:
    now = datetime(2026, 11, 29, 6, 0)
    five = timedelta(minutes=5)
    assert plan_follow_ups({"a": 1, "b": 2}, {}, {"b"}, now, five) == (["a"], {"a": now})
    recent = {"a": now - timedelta(minutes=2)}
    assert plan_follow_ups({"a": 1}, recent, set(), now, five) == ([], recent)
    old = {"a": now - timedelta(minutes=6), "gone": now}
    assert plan_follow_ups({"a": 1}, old, set(), now, five) == (["a"], {"a": now})


def test_a_segment_whose_token_is_unset_is_not_launched_and_the_others_are(
    privacy_project: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Dagster refuses a run whose destination variable is unset, and one refused request
    would stop the tick's other launches: the sensor leaves that segment out, naming the
    variable, and launches it once the variable is set."""
    defs = load_defs()
    with dg.DagsterInstance.get() as instance:
        run_segments(defs, instance)
        for purpose in ("ad_targeting", "email_marketing"):
            _write(
                privacy_project,
                "INSERT INTO consents VALUES (?, ?, ?, 'withdrawn', ?, 'crm', 'v3')",
                [f"w-{purpose}", ERIN_ID, purpose, AS_OF - timedelta(minutes=5)],
            )
        monkeypatch.delenv("META_ACCESS_TOKEN")
        requests, cursor = _tick(defs, instance, privacy_project)
        assert [r.job_name for r in requests] == [f"{MAIL}_job"]
        monkeypatch.setenv("META_ACCESS_TOKEN", "set-again")
        later, _ = _tick(defs, instance, privacy_project, cursor)
    assert [r.job_name for r in later] == [f"{ADS}_job"]
