"""Fixtures for the ``activation`` command: a runner, a broken segments folder, a subprocess
helper running the installed console script."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from orchestrator.config import CATALOG_FILE, load_project_config
from orchestrator.warehouse.target import Warehouse, WarehouseTarget
from tests.conftest import REPO
from tests.postgres import PASSWORD_ENV, postgres_copy_of, warehouse_config

AS_OF_TEXT = "2026-11-29T06:00:00"

BROKEN_SEGMENT = """\
name: broken_one
description: retention_days is negative and the purpose is not declared
owner: crm-team@example.com
purpose: email_marketing
legal_basis: consent
retention_days: -3
schedule: "0 6 * * *"
audience:
  trait: country
  in: [FR]
destinations:
  - destination: mailchimp
    audience_id: "zz1"
    mode: mirror
"""


@pytest.fixture
def runner() -> CliRunner:
    """Click's runner (stdout and stderr kept apart)."""
    return CliRunner()


@pytest.fixture
def broken_dir(tmp_path: Path) -> Path:
    """A segments folder with one valid example and one file with a bad field."""
    folder = tmp_path / "segments"
    folder.mkdir()
    example = REPO / "segments" / "recent_buyers_eu.yaml"
    (folder / "recent_buyers_eu.yaml").write_text(example.read_text(encoding="utf-8"))
    (folder / "broken_one.yaml").write_text(BROKEN_SEGMENT)
    return folder


def activation_command() -> list[str]:
    """The installed console script when present, else ``python -m orchestrator.cli``."""
    script = Path(sys.executable).with_name("activation")
    return [str(script)] if script.exists() else [sys.executable, "-m", "orchestrator.cli"]


def run_activation(
    *args: str, env: dict[str, str] | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """Run ``activation ARGS`` in a subprocess from the repository root."""
    return subprocess.run(
        [*activation_command(), *args],
        capture_output=True,
        text=True,
        cwd=REPO,
        env={**os.environ, **(env or {})},
        timeout=timeout,
        check=False,
    )


def postgres_project(folder: Path, url: str) -> Path:
    """The repository's ``activation.yaml`` (and its catalog) in ``folder`` with ``warehouse:``
    naming the PostgreSQL database at ``url`` (password from the tests' variable)."""
    data = yaml.safe_load((REPO / "activation.yaml").read_text(encoding="utf-8"))
    data["warehouse"] = {"kind": "postgres", "url": url, "password_env": PASSWORD_ENV}
    folder.mkdir(parents=True, exist_ok=True)
    config = folder / "activation.yaml"
    config.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    shutil.copyfile(REPO / CATALOG_FILE, folder / CATALOG_FILE)
    return config


@pytest.fixture(params=["duckdb", "postgres"])
def cli_warehouse(
    request: pytest.FixtureRequest,
    project_env: dict[str, str],
    warehouse: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> Warehouse:
    """The demo warehouse the commands use, on each backend: the DuckDB file of
    ``project_env``, or a PostgreSQL database holding the same tables, named by
    ``warehouse:`` of the project config (``ACTIVATION_CONFIG``)."""
    if request.param == "duckdb":
        return warehouse
    url = request.getfixturevalue("postgres_url")
    config = postgres_project(tmp_path / "pg_project", url)
    monkeypatch.setenv("ACTIVATION_CONFIG", str(config))
    project_env["ACTIVATION_CONFIG"] = str(config)
    postgres_copy_of(warehouse, url, load_project_config(config)).close()
    warehouse.unlink()  # the server is the only warehouse
    return WarehouseTarget(warehouse_config(url))
