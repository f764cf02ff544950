"""Installed, not checked out: ``pip install .`` (not editable) into a fresh virtualenv, then
``dagster definitions validate`` and a segment job run from another working directory, with
the project folder (segments, ``activation.yaml``, the warehouse under ``.data/``) given by
``ACTIVATION_PROJECT_DIR`` alone. The repository is not on the path: anything in the code that
assumed its layout would fail here.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from destinations.mock.testing import running_mock
from tests.conftest import AS_OF, REPO
from tests.deploy.helpers import assert_destinations_hold_the_audiences
from tests.e2e_harness import project_specs
from tests.oracle import expected_audiences

pytestmark = pytest.mark.slow
SEGMENT = "recent_buyers_eu"


def _clean_env(**extra: str) -> dict[str, str]:
    """The environment without this checkout's traces (virtualenv, PYTHONPATH, ACTIVATION_*)."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("ACTIVATION_", "DAGSTER_", "PYTHON", "VIRTUAL_ENV"))
    }
    return {**env, **extra}


@pytest.mark.timeout(600)
def test_the_installed_package_validates_and_runs_a_job_from_elsewhere(
    tmp_path: Path, demo_warehouse_template: Path
) -> None:
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    pip = subprocess.run(
        [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", str(REPO)],
        capture_output=True, text=True, timeout=480, env=_clean_env(),
    )  # fmt: skip
    assert pip.returncode == 0, pip.stderr[-3000:]

    project, elsewhere, home = tmp_path / "project", tmp_path / "elsewhere", tmp_path / "home"
    shutil.copytree(REPO / "segments", project / "segments")
    shutil.copyfile(REPO / "activation.yaml", project / "activation.yaml")
    (project / ".data").mkdir()
    shutil.copyfile(demo_warehouse_template, project / ".data" / "warehouse.duckdb")
    elsewhere.mkdir()
    home.mkdir()
    env = _clean_env(ACTIVATION_PROJECT_DIR=str(project), DAGSTER_HOME=str(home))

    where = subprocess.run(
        [str(venv / "bin" / "python"), "-c", "import orchestrator; print(orchestrator.__file__)"],
        cwd=elsewhere, env=env, capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert where.stdout.startswith(str(venv)), where.stdout  # the installed copy, not REPO

    dagster = str(venv / "bin" / "dagster")
    validate = subprocess.run(
        [dagster, "definitions", "validate", "-m", "orchestrator.definitions"],
        cwd=elsewhere, env=env, capture_output=True, text=True, timeout=180,
    )  # fmt: skip
    assert validate.returncode == 0, validate.stdout[-2000:] + validate.stderr[-2000:]

    config, specs = project_specs()
    ops = [f"segment__{SEGMENT}"]  # builds segment/<sid> and audience/<sid>
    ops += [f"sync__{SEGMENT}__{entry.destination}" for entry in specs[SEGMENT].destinations]
    run_config = elsewhere / "run.yaml"
    run_config.write_text(
        yaml.safe_dump({"ops": {op: {"config": {"as_of": AS_OF.isoformat()}} for op in ops}})
    )
    with running_mock(tmp_path / "mock") as mock:
        env |= {
            "META_BASE_URL": mock.meta_url,
            "META_ACCESS_TOKEN": mock.meta_token,
            "MAILCHIMP_BASE_URL": mock.mailchimp_url,
            "MAILCHIMP_API_KEY": mock.mailchimp_token,
        }
        run = subprocess.run(
            [dagster, "job", "execute", "-m", "orchestrator.definitions", "-j",
             f"{SEGMENT}_job", "-c", str(run_config)],
            cwd=elsewhere, env=env, capture_output=True, text=True, timeout=300,
        )  # fmt: skip
        assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
        expected = expected_audiences(project / ".data" / "warehouse.duckdb", specs, config, AS_OF)
        assert_destinations_hold_the_audiences(mock, config, specs, expected, [SEGMENT])
    assert not (REPO / ".data" / "state" / "scratch" / SEGMENT).exists()
