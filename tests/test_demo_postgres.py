"""``make demo WAREHOUSE=postgres``: the demo's project config on PostgreSQL and its warehouse
built into a real server from the same real data as the DuckDB demo."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pytest
from rich.console import Console

from orchestrator.config import PostgresWarehouse, load_project_config
from orchestrator.demo_postgres import ensure_postgres_warehouse, write_postgres_config
from orchestrator.warehouse.demo import DEMO_TABLES
from tests.conftest import BUILD_DATE, REPO
from tests.postgres import open_warehouse, warehouse_config

pytestmark = pytest.mark.timeout(600)


def test_the_config_is_the_projects_with_a_postgres_warehouse(tmp_path: Path) -> None:
    url = "postgresql://activation@127.0.0.1:55432/activation"
    written = write_postgres_config(REPO / "activation.yaml", tmp_path / "activation.yaml", url)
    project = load_project_config(written)
    original = load_project_config(REPO / "activation.yaml")
    assert isinstance(project.warehouse, PostgresWarehouse)
    assert project.warehouse.url == url
    assert project.warehouse.password_env == "ACTIVATION_DEMO_PG_PASSWORD"
    assert project.model_dump(exclude={"warehouse"}) == original.model_dump(exclude={"warehouse"})


def _counts(con: object, tables: tuple[str, ...]) -> dict[str, int]:
    return {t: con.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in tables}  # type: ignore[attr-defined]


def test_the_demo_warehouse_is_built_into_postgres_once(
    postgres_url: str, tmp_path: Path, demo_warehouse_template: Path
) -> None:
    config = warehouse_config(postgres_url)
    console = Console(record=True, width=200)
    ensure_postgres_warehouse(config, tmp_path, console, as_of=BUILD_DATE)
    assert "built into PostgreSQL" in console.export_text()
    assert not list(tmp_path.iterdir()), "the scratch DuckDB build is removed"

    duck = duckdb.connect(str(demo_warehouse_template), read_only=True)
    try:
        expected = _counts(duck, DEMO_TABLES)
        emails = duck.execute(
            "SELECT count(DISTINCT email_address), max(signed_up_at) FROM crm.contacts"
        ).fetchone()
    finally:
        duck.close()
    con = open_warehouse(postgres_url)
    try:
        assert _counts(con, DEMO_TABLES) == expected, "same real data, same build"
        assert (
            con.execute(
                "SELECT count(DISTINCT email_address), max(signed_up_at) FROM crm.contacts"
            ).fetchone()
            == emails
        )
        con.execute(
            "INSERT INTO activation.sync_state (segment, destination, subject_key, fields_hash, "
            "synced_at) VALUES ('s', 'd', 'k', 'h', TIMESTAMP '2026-11-29 00:00:00')"
        )
    finally:
        con.close()

    console = Console(record=True, width=200)
    ensure_postgres_warehouse(config, tmp_path, console, as_of=BUILD_DATE)
    assert "reusing PostgreSQL" in console.export_text()
    con = open_warehouse(postgres_url)
    try:
        assert con.execute("SELECT count(*) FROM activation.sync_state").fetchone() == (1,)
        con.execute("DROP TABLE web.events")
    finally:
        con.close()

    ensure_postgres_warehouse(config, tmp_path, Console(record=True), as_of=BUILD_DATE)
    con = open_warehouse(postgres_url)
    try:
        assert _counts(con, DEMO_TABLES) == expected, "an older layout is rebuilt"
        assert con.execute("SELECT count(*) FROM activation.sync_state").fetchone() == (0,), (
            "its product tables go too, as with the DuckDB demo"
        )
    finally:
        con.close()
