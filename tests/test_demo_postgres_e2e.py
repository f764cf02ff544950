"""``make demo WAREHOUSE=postgres`` end to end: the demo's entry point on a PostgreSQL warehouse
(a database of the tests' server), every segment synced to the mock destinations, which then
hold exactly the audiences the warehouse computed; a second run finds nothing to send."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import requests

from orchestrator.warehouse.local_postgres import PASSWORD_ENV
from tests.conftest import REPO
from tests.e2e_harness import md5_hex, project_specs
from tests.postgres import PASSWORD_ENV as TEST_PASSWORD_ENV
from tests.postgres import open_warehouse
from tests.servers import free_port


def _demo_env(tmp_path: Path, port: int) -> dict[str, str]:
    """The environment of ``make demo WAREHOUSE=postgres`` with every folder in ``tmp_path``
    and the mock destinations on ``port``; the password in the demo's variable."""
    base = f"http://127.0.0.1:{port}"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ACTIVATION_", "DAGSTER_"))}
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copyfile(REPO / "orchestrator" / "dagster_home" / "dagster.yaml", home / "dagster.yaml")
    return {
        **env,
        "ACTIVATION_PROJECT_DIR": str(REPO),
        "ACTIVATION_STATE_DIR": str(tmp_path / "state"),
        "DAGSTER_HOME": str(home),
        PASSWORD_ENV: os.environ[TEST_PASSWORD_ENV],
        "META_BASE_URL": f"{base}/meta",
        "META_ACCESS_TOKEN": "mock-meta-token",
        "MAILCHIMP_BASE_URL": f"{base}/mailchimp/3.0",
        "MAILCHIMP_API_KEY": "mock-mailchimp-token",
        "GOOGLE_BASE_URL": f"{base}/google",
        "GOOGLE_ACCESS_TOKEN": "mock-google-token",
    }


def _held(port: int, platform: str, audience_id: str) -> list:
    url = f"http://127.0.0.1:{port}/{platform}/_control/audiences/{audience_id}"
    answer = requests.get(url, timeout=10)
    answer.raise_for_status()
    return answer.json()["members"]


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_the_demo_runs_on_postgres_and_a_second_run_sends_nothing(
    postgres_url: str, tmp_path: Path
) -> None:
    port = free_port()
    env = _demo_env(tmp_path, port)
    demo = [sys.executable, "-m", "orchestrator.demo", "--mock-port", str(port),
            "--mock-state-dir", str(tmp_path / "mock")]  # fmt: skip
    on_postgres = ["--warehouse", "postgres", "--postgres-url", postgres_url,
                   "--postgres-dir", str(tmp_path / "postgres")]  # fmt: skip
    try:
        first = subprocess.run(
            [*demo, *on_postgres], env=env, cwd=REPO, capture_output=True, text=True, timeout=600
        )
        assert first.returncode == 0, first.stdout[-4000:] + first.stderr[-4000:]
        assert "built into PostgreSQL" in first.stdout
        assert re.search(r"run \w+: success, .* [1-9]\d* batches sent", first.stdout)

        project, specs = project_specs()
        con = open_warehouse(postgres_url)
        try:
            for sid, spec in specs.items():
                rows = con.execute(
                    "SELECT subject_key, email FROM activation.audience_members WHERE segment = ?",
                    [sid],
                ).fetchall()
                for entry in spec.destinations:
                    if project.destinations[entry.destination].kind.value == "ad":
                        held = _held(port, "meta", entry.audience_id)
                        assert held == sorted(key for key, _ in rows), sid
                    else:
                        contacts = _held(port, "mailchimp", entry.audience_id)
                        subscribed = {c["hash"] for c in contacts if c["status"] == "subscribed"}
                        assert subscribed == {md5_hex(email) for _, email in rows}, sid
            (held_state,) = con.execute("SELECT count(*) FROM activation.sync_state").fetchone()
            assert held_state > 0, "what the destinations acknowledged is in the warehouse"
        finally:
            con.close()

        second = subprocess.run(
            [*demo, *on_postgres], env=env, cwd=REPO, capture_output=True, text=True, timeout=600
        )
        assert second.returncode == 0, second.stdout[-4000:] + second.stderr[-4000:]
        assert "reusing PostgreSQL" in second.stdout
        runs = re.findall(r"run \w+: success, .*", second.stdout)
        assert len(runs) == 2 and all("0 batches sent" in line for line in runs), runs
        for output in (first, second):
            assert env[PASSWORD_ENV] not in output.stdout + output.stderr
    finally:
        subprocess.run([*demo, "--stop-mock"], env=env, cwd=REPO, capture_output=True, timeout=60)
