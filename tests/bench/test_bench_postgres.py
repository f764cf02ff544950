"""``python -m bench run --warehouse postgres``: the benchmark's machinery on a real PostgreSQL
server at a tiny scale (stages in-process): the same diffs, calls and report as on DuckDB."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.report import run_summary, write_results
from bench.runner import run_benchmark
from bench.scenario import DEFAULT_SEED
from bench.side_by_side import side_by_side
from bench.stages import run_stage_inline
from orchestrator.warehouse.local_postgres import PASSWORD_ENV
from tests.postgres import create_database, url_without_password
from tests.servers import PostgresServer

CUSTOMERS = 1_500
pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]


def _sent(results: dict) -> dict[tuple[str, str], tuple[int, int, int]]:
    return {
        (run["name"], seg): (p["report"]["adds"], p["report"]["removes"], p["report"]["updates"])
        for run in results["runs"]
        for seg, p in run["pairs"].items()
    }


def test_postgres_runs_send_what_duckdb_runs_send_and_report_side_by_side(
    tmp_path: Path, postgres_server: PostgresServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(PASSWORD_ENV, postgres_server.password)
    url = url_without_password(postgres_server, create_database(postgres_server))
    quiet = {"seed": DEFAULT_SEED, "log": lambda _: None, "run_stage": run_stage_inline}
    pg = run_benchmark(CUSTOMERS, tmp_path / "pg", backend="postgres", postgres_url=url, **quiet)
    duck = run_benchmark(CUSTOMERS, tmp_path / "duck", **quiet)

    assert pg["backend"] == "postgres" and pg["postgres"]["rows"]["main.customers"] == CUSTOMERS
    assert pg["postgres"]["reload_s"] > 0, "the changed tables reach the server"
    assert _sent(pg) == _sent(duck), "the same adds, removes and updates on both backends"
    for run in pg["runs"]:
        summary = run_summary(run)
        assert summary["diffs_identical"] and summary["diffs_identical_e2e"], run["name"]
        assert summary["calls_at_minimum"], run["name"]
        assert summary["floor_s"] is None, "the DuckDB floors are DuckDB's own SQL"
    assert run_summary(pg["runs"][2])["api_calls"] == 0, "no change, no call"

    json_path, md_path, text = write_results(pg, tmp_path / "results")
    assert json_path.name.endswith(f"-{CUSTOMERS}-postgres.json") and md_path.exists()
    assert "Warehouse backend: PostgreSQL" in text
    table = side_by_side(duck, pg)
    assert "| incremental | diff |" in table and "| no_change | PostgreSQL | 0 / 0 |" in table
