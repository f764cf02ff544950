"""Fixtures of the privacy tests: the small project of :mod:`tests.privacy.helpers`."""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestrator.settings import Settings
from tests.privacy.helpers import REPO, write_config, write_segments, write_warehouse


@pytest.fixture
def privacy_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, dagster_home: Path) -> Settings:
    """Environment for the real Definitions: temp warehouse, state, segments and config
    (destinations not configured)."""
    env = {
        "ACTIVATION_PROJECT_DIR": str(REPO),
        "ACTIVATION_WAREHOUSE": str(tmp_path / "warehouse.duckdb"),
        "ACTIVATION_STATE_DIR": str(tmp_path / "state"),
        "ACTIVATION_SEGMENTS_DIR": str(write_segments(tmp_path / "segments")),
        "ACTIVATION_CONFIG": str(write_config(tmp_path / "activation.yaml")),
        "DAGSTER_HOME": str(dagster_home),
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    write_warehouse(Path(env["ACTIVATION_WAREHOUSE"]))
    return Settings.from_env()


@pytest.fixture
def privacy_project(
    privacy_env: Settings, monkeypatch: pytest.MonkeyPatch, mock_destinations
) -> Settings:
    """:func:`privacy_env` with the destinations pointed at the running mock."""
    mock = mock_destinations
    env = {
        "META_BASE_URL": mock.meta_url,
        "META_ACCESS_TOKEN": mock.meta_token,
        "MAILCHIMP_BASE_URL": mock.mailchimp_url,
        "MAILCHIMP_API_KEY": mock.mailchimp_token,
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return privacy_env
