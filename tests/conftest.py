"""Shared fixtures: a demo warehouse built from the shipped real data, a real Dagster instance
with the project's pool settings, and the mock destinations as a real HTTP server."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from datetime import date, datetime
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
#: Every test evaluates segments at this instant, on a warehouse built the day after, so
#: results do not depend on the day the suite runs.
BUILD_DATE = date(2026, 11, 29)
AS_OF = datetime(2026, 11, 29, 6, 0, 0)


@pytest.fixture(scope="session")
def demo_warehouse_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The demo warehouse built once per test session (read it, never write it), with the
    views of the demo's source model made (and the intake tables they read), no run yet."""
    import duckdb

    from orchestrator.config import load_project_config
    from orchestrator.model.views import refresh_source_views
    from orchestrator.warehouse.demo import build_demo_warehouse

    path = tmp_path_factory.mktemp("template") / "warehouse.duckdb"
    build_demo_warehouse(path, as_of=BUILD_DATE)
    project = load_project_config(REPO / "activation.yaml")
    with duckdb.connect(str(path)) as con:  # the views and intake tables only: no run yet
        refresh_source_views(con, project.source, project.purposes)
    return path


@pytest.fixture
def warehouse(tmp_path: Path, demo_warehouse_template: Path) -> Path:
    """A private copy of the demo warehouse for one test."""
    path = tmp_path / "warehouse.duckdb"
    shutil.copyfile(demo_warehouse_template, path)
    return path


@pytest.fixture
def dagster_home(tmp_path: Path) -> Path:
    """A DAGSTER_HOME folder with the project's instance settings (pool ``duckdb`` limit 1)."""
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copyfile(REPO / "orchestrator" / "dagster_home" / "dagster.yaml", home / "dagster.yaml")
    return home


@pytest.fixture
def mock_destinations(tmp_path: Path) -> Iterator[object]:
    """The mock ad and email platforms, a real HTTP server on a free loopback port."""
    from destinations.mock.testing import running_mock

    with running_mock(tmp_path / "mock_state") as handle:
        yield handle


@pytest.fixture
def project_env(
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    warehouse: Path,
    dagster_home: Path,
) -> dict[str, str]:
    """Environment pointing the orchestrator at the temporary warehouse, state and instance.

    Child processes (Dagster's multiprocess executor) inherit it.
    """
    env = {
        "ACTIVATION_WAREHOUSE": str(warehouse),
        "ACTIVATION_STATE_DIR": str(tmp_path / "state"),
        "ACTIVATION_PROJECT_DIR": str(REPO),
        "DAGSTER_HOME": str(dagster_home),
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return env


# PostgreSQL: one real server per test worker, a fresh database per test (tests/postgres.py)
from tests.postgres import (  # noqa: E402, F401
    backend,
    empty_warehouse,
    postgres_c_locale_url,
    postgres_module_url,
    postgres_server,
    postgres_url,
)
