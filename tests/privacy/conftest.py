"""Fixtures of the privacy tests: the small project of :mod:`tests.privacy.helpers`, on a
DuckDB file (the default) or on a real PostgreSQL database: a test runs on both with
``@pytest.mark.parametrize("backend", BACKENDS)``, which overrides the ``backend`` fixture."""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestrator.config import ProjectConfig, load_project_config
from orchestrator.settings import Settings
from orchestrator.warehouse.target import Warehouse, WarehouseTarget
from tests.postgres import PASSWORD_ENV, postgres_copy_of, warehouse_config
from tests.privacy.helpers import REPO, write_config, write_segments, write_warehouse

#: The warehouse backends a privacy test proves its behaviour on.
BACKENDS = ["duckdb", "postgres"]


@pytest.fixture
def backend() -> str:
    """The warehouse backend of the privacy project: ``duckdb`` unless a test parametrizes
    ``backend``."""
    return "duckdb"


def privacy_warehouse(
    backend: str,
    tmp_path: Path,
    request: pytest.FixtureRequest,
    project: ProjectConfig | None = None,
) -> tuple[Warehouse, dict[int, str]]:
    """The synthetic warehouse of :func:`tests.privacy.helpers.write_warehouse` on
    ``backend``: a DuckDB file in ``tmp_path``, or a fresh PostgreSQL database holding the
    same rows (with ``project``'s source views). Returns the warehouse and the emails."""
    path = tmp_path / "warehouse.duckdb"
    emails = write_warehouse(path)
    if backend != "postgres":
        return path, emails
    url = request.getfixturevalue("postgres_url")
    postgres_copy_of(path, url, project).close()
    path.unlink()
    return WarehouseTarget(warehouse_config(url)), emails


@pytest.fixture
def privacy_env(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    dagster_home: Path,
    backend: str,
    request: pytest.FixtureRequest,
) -> Settings:
    """Environment for the real Definitions: temp warehouse, state, segments and config
    (destinations not configured). ``backend`` ``postgres``: ``warehouse:`` names a fresh
    database on the test server, holding the same rows."""
    warehouse = None
    if backend == "postgres":
        url = request.getfixturevalue("postgres_url")
        warehouse = {"kind": "postgres", "url": url, "password_env": PASSWORD_ENV}
    env = {
        "ACTIVATION_PROJECT_DIR": str(REPO),
        "ACTIVATION_WAREHOUSE": str(tmp_path / "warehouse.duckdb"),
        "ACTIVATION_STATE_DIR": str(tmp_path / "state"),
        "ACTIVATION_SEGMENTS_DIR": str(write_segments(tmp_path / "segments")),
        "ACTIVATION_CONFIG": str(write_config(tmp_path / "activation.yaml", warehouse)),
        "DAGSTER_HOME": str(dagster_home),
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    write_warehouse(Path(env["ACTIVATION_WAREHOUSE"]))
    if warehouse is not None:
        project = load_project_config(Path(env["ACTIVATION_CONFIG"]))
        postgres_copy_of(env["ACTIVATION_WAREHOUSE"], warehouse["url"], project).close()
        Path(env["ACTIVATION_WAREHOUSE"]).unlink()  # the server is the only warehouse
    return Settings.from_env()


@pytest.fixture
def privacy_project(
    privacy_env: Settings, monkeypatch: pytest.MonkeyPatch, mock_destinations
) -> Settings:
    """:func:`privacy_env` with the destinations pointed at the running mock."""
    mock = mock_destinations
    env = {
        "META_BASE_URL": mock.meta_url,
        "MAILCHIMP_BASE_URL": mock.mailchimp_url,
        "META_ACCESS_TOKEN": mock.meta_token,
        "MAILCHIMP_API_KEY": mock.mailchimp_token,
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return privacy_env
