"""Fixtures of the sync tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.postgres import warehouse_target
from tests.sync.answers_project import project_maker


@pytest.fixture
def answers_env(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    dagster_home: Path,
    backend: str,
    request: pytest.FixtureRequest,
):
    """Call with (mock, customers, ads_mode=, mail_mode=, normalization=): a temp project of
    :mod:`tests.sync.answers_project` that the real Definitions read, its warehouse on
    ``backend`` (DuckDB unless the test runs with :data:`tests.postgres.both_backends`)."""
    warehouse = None
    if backend == "postgres":
        warehouse = warehouse_target(request.getfixturevalue("postgres_url"))
    return project_maker(tmp_path, monkeypatch, dagster_home, warehouse)
