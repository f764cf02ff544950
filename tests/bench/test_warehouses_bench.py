"""``python -m bench warehouses``: the same stages timed on DuckDB and on a real PostgreSQL."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.warehouses import compare_warehouses, render_markdown
from tests.postgres import PASSWORD_ENV, create_database, url_without_password
from tests.servers import PostgresServer


def test_both_backends_run_every_ported_stage(
    tmp_path: Path, postgres_server: PostgresServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BENCH_PG_PASSWORD", postgres_server.password)
    monkeypatch.setenv(PASSWORD_ENV, postgres_server.password)
    url = url_without_password(postgres_server, create_database(postgres_server))
    results = compare_warehouses(300, tmp_path, seed=7, postgres_url=url)
    for run in ("first", "no_change"):
        assert results[f"duckdb/{run}"].keys() == results[f"postgres/{run}"].keys()
        assert {stage.split("/")[1] for stage in results[f"duckdb/{run}"]} == {
            "segment", "audience", "diff"
        }  # fmt: skip
        assert all(row["seconds"] > 0 for row in results[f"postgres/{run}"].values())
    assert "| first | bench_newsletter/audience |" in render_markdown(results)
