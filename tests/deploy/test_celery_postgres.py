"""The shipped ``deploy/`` instance, tried for real: Dagster on PostgreSQL (run, event log and
schedule storage), the queued run coordinator with its concurrency limits, and the Celery
executor with a Redis broker and two workers, each a process of its own.

PostgreSQL and Redis are started from Debian's packages in temporary folders; the daemon and
the workers are real processes (``dagster-daemon run``, ``dagster-celery worker start``); the
demo's segment jobs are launched with ``dagster job launch`` (queued, then launched by the
daemon), then an erasure request is recorded and the privacy sensor's run removes the person.
The destinations (mock servers) must hold exactly each audience (the plain-Python oracle) and,
after the privacy run, not the person.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import duckdb
import pytest
import yaml

from destinations.mock.testing import running_mock
from orchestrator.privacy.requests import record_request
from orchestrator.privacy.sensor import PRIVACY_JOB
from orchestrator.pseudonymize import google_key, subject_key
from tests.conftest import AS_OF, REPO
from tests.deploy.helpers import assert_destinations_hold_the_audiences
from tests.e2e_harness import md5_hex, project_specs
from tests.oracle import expected_audiences
from tests.servers import running_postgres, running_redis

pytestmark = pytest.mark.slow
BIN = Path(sys.executable).parent
RUNS_TIMEOUT_S = 420


def _start(cmd: list[str], env: dict[str, str], log: Path, cwd: Path) -> subprocess.Popen:
    with open(log, "wb") as out:
        return subprocess.Popen(
            cmd, env=env, cwd=cwd, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )


def _signal_group(pgid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, sig)


def _stop(proc: subprocess.Popen) -> None:
    """Stop a process group started by :func:`_start`: SIGTERM, then SIGKILL to the whole group
    (the daemon's code server outlives a SIGTERM of the daemon and would be left behind)."""
    _signal_group(proc.pid, signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=20)
    _signal_group(proc.pid, signal.SIGKILL)
    proc.wait()


def _run_config(sid: str, spec) -> dict:
    ops = [f"segment__{sid}"]  # builds segment/<sid> and audience/<sid>
    ops += [f"sync__{sid}__{entry.destination}" for entry in spec.destinations]
    return {"ops": {op: {"config": {"as_of": AS_OF.isoformat()}} for op in ops}}


def _wait(predicate, timeout_s: float, what: str, poll_s: float = 2.0):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(poll_s)
    raise AssertionError(f"timed out after {timeout_s:.0f} s waiting for {what}")


@pytest.fixture
def deployment(tmp_path: Path, demo_warehouse_template: Path) -> Iterator[dict]:
    """PostgreSQL, Redis, the mock destinations, the daemon and two Celery workers, with the
    environment every process shares; yields that environment plus the paths."""
    warehouse, home = tmp_path / "warehouse.duckdb", tmp_path / "dagster_home"
    shutil.copyfile(demo_warehouse_template, warehouse)
    home.mkdir()
    shutil.copyfile(REPO / "deploy" / "dagster.yaml", home / "dagster.yaml")
    with (
        running_postgres("dagster") as pg,
        running_redis(tmp_path / "redis") as redis,
        running_mock(tmp_path / "mock") as mock,
        pytest.MonkeyPatch.context() as patch,
    ):
        env = {
            "DAGSTER_HOME": str(home),
            "DAGSTER_PG_USERNAME": pg.user,
            "DAGSTER_PG_PASSWORD": pg.password,
            "DAGSTER_PG_HOST": pg.host,
            "DAGSTER_PG_PORT": str(pg.port),
            "DAGSTER_PG_DB": pg.dbname,
            "ACTIVATION_EXECUTOR": "celery",
            "ACTIVATION_CELERY_BROKER": redis.url(0),
            "ACTIVATION_CELERY_BACKEND": redis.url(1),
            "ACTIVATION_PROJECT_DIR": str(REPO),
            "ACTIVATION_WAREHOUSE": str(warehouse),
            "ACTIVATION_STATE_DIR": str(tmp_path / "state"),
            "META_BASE_URL": mock.meta_url,
            "META_ACCESS_TOKEN": mock.meta_token,
            "MAILCHIMP_BASE_URL": mock.mailchimp_url,
            "MAILCHIMP_API_KEY": mock.mailchimp_token,
        }
        for name, value in env.items():
            patch.setenv(name, value)
        for name in ("ACTIVATION_SEGMENTS_DIR", "ACTIVATION_CONFIG"):
            patch.delenv(name, raising=False)
        worker_yaml = tmp_path / "celery_worker.yaml"
        worker_config = {"broker": redis.url(0), "backend": redis.url(1)}
        worker_yaml.write_text(yaml.safe_dump({"execution": {"config": worker_config}}))
        # the workers start `celery` by name: the virtualenv's bin first on the PATH
        full_env = {**os.environ, **env, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}
        workspace = REPO / "deploy" / "workspace.yaml"
        procs = [
            _start([str(BIN / "dagster-daemon"), "run", "-w", str(workspace)], full_env,
                   tmp_path / "daemon.log", tmp_path),
        ]  # fmt: skip
        for n in (1, 2):
            cmd = [str(BIN / "dagster-celery"), "worker", "start", "-A", "dagster_celery.app",
                   "-y", str(worker_yaml), "--name", f"worker{n}",
                   "--", "--concurrency=1"]  # fmt: skip
            procs.append(_start(cmd, full_env, tmp_path / f"worker{n}.log", tmp_path))
        try:
            yield {
                "env": full_env,
                "warehouse": warehouse,
                "mock": mock,
                "workspace": workspace,
                "tmp": tmp_path,
            }
        finally:
            for proc in procs:
                _stop(proc)


@pytest.mark.timeout(900)
def test_segment_jobs_and_the_privacy_run_on_celery_workers_and_postgres(deployment):
    config, specs = project_specs()
    tmp, env, mock = deployment["tmp"], deployment["env"], deployment["mock"]
    launches = []
    for sid, spec in sorted(specs.items()):
        run_config = tmp / f"{sid}.yaml"
        run_config.write_text(yaml.safe_dump(_run_config(sid, spec)))
        cmd = [str(BIN / "dagster"), "job", "launch", "-w", str(deployment["workspace"]),
               "-j", f"{sid}_job", "-c", str(run_config)]  # fmt: skip
        launches.append(
            subprocess.Popen(cmd, env=env, cwd=tmp, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        )
    for launch in launches:
        _out, err = launch.communicate(timeout=180)
        assert launch.returncode == 0, err.decode()[-2000:]

    with dg.DagsterInstance.get() as instance:

        def segment_runs() -> list[dg.DagsterRun] | None:
            done = [r for r in instance.get_runs() if r.tags.get("segment") and r.is_finished]
            return done if len(done) == len(specs) else None

        runs = _wait(segment_runs, RUNS_TIMEOUT_S, "the segment jobs")
        # the privacy sensor may still run the demo's own requests: let every run finish
        # before this process opens the warehouse (one DuckDB writer at a time)
        _wait(
            lambda: all(r.is_finished for r in instance.get_runs()),
            RUNS_TIMEOUT_S,
            "every run to finish",
        )
        failed = [r.job_name for r in runs if r.status != dg.DagsterRunStatus.SUCCESS]
        assert not failed, (failed, (tmp / "daemon.log").read_text()[-3000:])
        assert "postgres" in type(instance.run_storage).__module__

    expected = expected_audiences(deployment["warehouse"], specs, config, AS_OF)
    assert_destinations_hold_the_audiences(mock, config, specs, expected, specs)
    worked = [(tmp / f"worker{n}.log").read_text() for n in (1, 2)]
    assert all("execute_plan" in log and "succeeded" in log for log in worked), "a worker idled"

    _erase_and_check(deployment, config, specs, expected)


def _erase_and_check(deployment, config, specs, expected) -> None:
    """Record an erasure for a member of a Mailchimp audience; the privacy sensor's run (on
    the workers) removes the person from every destination."""
    mock = deployment["mock"]
    sid, entry = next(
        (sid, entry)
        for sid, spec in sorted(specs.items())
        for entry in spec.destinations
        if config.destinations[entry.destination].kind.value == "email" and expected[sid].emails
    )
    email = sorted(expected[sid].emails)[0]
    keys = {subject_key(email), google_key(email)}
    request_id = record_request(deployment["warehouse"], email, "erasure")

    def gone() -> bool:
        statuses = {c["status"] for c in mock.mailchimp_members(entry.audience_id)
                    if c["hash"] == md5_hex(email)}  # fmt: skip
        in_meta = any(
            keys & set(mock.meta_members(e.audience_id))
            for spec in specs.values()
            for e in spec.destinations
            if config.destinations[e.destination].kind.value == "ad"
        )
        return statuses == {"forgotten"} and not in_meta  # only the hash is kept

    _wait(gone, 180, "the privacy sensor's run to remove the person", poll_s=3)
    with dg.DagsterInstance.get() as instance:
        _wait(lambda: all(r.is_finished for r in instance.get_runs()), 180, "the privacy run")
        runs = [r for r in instance.get_runs() if r.job_name == PRIVACY_JOB]
        assert any(r.status == dg.DagsterRunStatus.SUCCESS for r in runs)
    con = duckdb.connect(str(deployment["warehouse"]), read_only=True)
    try:
        receipts = con.execute(
            "SELECT destination, outcome FROM activation.erasure_receipts WHERE request_id = ?",
            [request_id],
        ).fetchall()
    finally:
        con.close()
    assert receipts and {outcome for _, outcome in receipts} == {"ok"}, receipts
