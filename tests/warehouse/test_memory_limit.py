"""Every DuckDB connection the product opens carries the configured ``memory_limit``."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pytest

from orchestrator.settings import Settings, duckdb_config
from orchestrator.warehouse.connect import connect

MIB = 1024 * 1024


def _limit_bytes(con: duckdb.DuckDBPyConnection) -> int:
    """DuckDB's current memory limit in bytes (``current_setting`` prints e.g. '286.1 MiB')."""
    (text,) = con.execute("SELECT current_setting('memory_limit')").fetchone()
    number, unit = text.split()
    return int(float(number) * {"KiB": 1024, "MiB": MIB, "GiB": 1024 * MIB}[unit])


def test_default_is_250mb_and_the_environment_overrides_it() -> None:
    assert duckdb_config({}) == {"memory_limit": "250MB"}
    assert duckdb_config({"ACTIVATION_DUCKDB_MEMORY_LIMIT": " 1GB "}) == {"memory_limit": "1GB"}


def test_connect_applies_the_limit_from_the_environment(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("ACTIVATION_DUCKDB_MEMORY_LIMIT", "123MB")
    with connect(tmp_path / "w.duckdb") as con:
        assert abs(_limit_bytes(con) - 123_000_000) < MIB
    monkeypatch.delenv("ACTIVATION_DUCKDB_MEMORY_LIMIT")
    with connect(tmp_path / "w.duckdb", read_only=True) as con:
        assert abs(_limit_bytes(con) - 250_000_000) < MIB


def test_an_invalid_limit_fails_when_the_connection_opens(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("ACTIVATION_DUCKDB_MEMORY_LIMIT", "lots")
    with pytest.raises(duckdb.Error), connect(tmp_path / "w.duckdb"):
        pass


def test_the_dagster_warehouse_resource_carries_the_limit(tmp_path: Path, monkeypatch) -> None:
    from orchestrator.config import load_project_config
    from orchestrator.definitions import build_definitions

    monkeypatch.setenv("ACTIVATION_DUCKDB_MEMORY_LIMIT", "77MB")
    repo = Path(__file__).resolve().parents[2]
    settings = Settings(
        repo, repo / "segments", repo / "activation.yaml", tmp_path / "w.duckdb", tmp_path
    )
    defs = build_definitions(settings, load_project_config(settings.config_path))
    warehouse = defs.resources["warehouse"]
    assert warehouse.connection_config == {"memory_limit": "77MB"}
    with warehouse.get_connection() as con:
        assert abs(_limit_bytes(con) - 77_000_000) < MIB


def test_the_preview_overlay_carries_the_limit(tmp_path: Path, monkeypatch) -> None:
    from orchestrator.cli.preview import overlay

    monkeypatch.setenv("ACTIVATION_DUCKDB_MEMORY_LIMIT", "88MB")
    from orchestrator.warehouse.schema import create_source_schema

    with connect(tmp_path / "w.duckdb") as con:
        create_source_schema(con)  # the overlay renders the source model's views over them
    with overlay(tmp_path / "w.duckdb", "some_segment", []) as con:
        assert abs(_limit_bytes(con) - 88_000_000) < MIB
