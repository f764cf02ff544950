"""The PostgreSQL warehouse: ``warehouse:`` in activation.yaml, the Dagster resource, and one
clear error (naming the warehouse, never the password) for each way the server can fail."""

from __future__ import annotations

import textwrap
from pathlib import Path

import dagster as dg
import pytest
from dagster_duckdb import DuckDBResource

from orchestrator.config import (
    DuckDBWarehouse,
    PostgresWarehouse,
    ProjectConfigError,
    load_project_config,
)
from orchestrator.warehouse.errors import (
    WarehouseAuthFailed,
    WarehouseMissingObject,
    WarehouseTimeout,
    WarehouseUnreachable,
)
from orchestrator.warehouse.factory import open_postgres, warehouse_connection
from orchestrator.warehouse.resources import PostgresResource, warehouse_resource
from tests.conftest import REPO
from tests.postgres import PASSWORD_ENV, open_warehouse, warehouse_config
from tests.servers import PostgresServer, free_port

SECRET = "test-password"  # the test server's password (tests/servers.py)


def _project_with(tmp_path: Path, warehouse_yaml: str) -> Path:
    text = (REPO / "activation.yaml").read_text(encoding="utf-8")
    path = tmp_path / "activation.yaml"
    path.write_text(text + "\n" + textwrap.dedent(warehouse_yaml), encoding="utf-8")
    return path


def test_duckdb_stays_the_default() -> None:
    assert load_project_config(REPO / "activation.yaml").warehouse == DuckDBWarehouse()


def test_a_postgres_warehouse_is_read_from_the_config(tmp_path: Path) -> None:
    path = _project_with(
        tmp_path,
        """
        warehouse:
          kind: postgres
          url: postgresql://analyst@db.example.com:5433/shop?sslmode=require
          password_env: SHOP_PG_PASSWORD
          statement_timeout_s: 30
        """,
    )
    warehouse = load_project_config(path).warehouse
    assert isinstance(warehouse, PostgresWarehouse)
    assert (warehouse.password_env, warehouse.statement_timeout_s) == ("SHOP_PG_PASSWORD", 30)


def test_a_password_in_the_file_is_refused_without_repeating_it(tmp_path: Path) -> None:
    path = _project_with(
        tmp_path,
        """
        warehouse:
          kind: postgres
          url: postgresql://analyst:hunter2-secret@db.example.com/shop
          password_env: SHOP_PG_PASSWORD
        """,
    )
    with pytest.raises(ProjectConfigError) as caught:
        load_project_config(path)
    message = str(caught.value)
    assert "warehouse.postgres.url" in message or "warehouse" in message
    assert "password" in message and "hunter2" not in message
    assert "activation.yaml:" in message


def test_unreachable_server_names_the_warehouse(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(PASSWORD_ENV, SECRET)
    port = free_port()
    url = f"postgresql://activation@127.0.0.1:{port}/shop"
    with pytest.raises(WarehouseUnreachable) as caught:
        open_postgres(warehouse_config(url, connect_timeout_s=2))
    message = str(caught.value)
    assert f"postgres://activation@127.0.0.1:{port}/shop" in message
    assert "host and port" in message and SECRET not in message


def test_wrong_password_says_so_and_never_prints_it(
    postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(PASSWORD_ENV, "wrong-Pa55word")
    with pytest.raises(WarehouseAuthFailed) as caught:
        open_postgres(warehouse_config(postgres_url))
    message = str(caught.value)
    assert PASSWORD_ENV in message and "wrong or missing password" in message
    assert "wrong-Pa55word" not in message and SECRET not in message


def test_missing_password_variable_names_it(
    postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(PASSWORD_ENV)
    with pytest.raises(WarehouseAuthFailed, match=f"{PASSWORD_ENV} is not set"):
        open_postgres(warehouse_config(postgres_url))


def test_a_missing_database_is_named(postgres_server: PostgresServer, monkeypatch) -> None:
    monkeypatch.setenv(PASSWORD_ENV, SECRET)
    url = f"postgresql://activation@127.0.0.1:{postgres_server.port}/no_such_db"
    with pytest.raises(WarehouseUnreachable, match="'no_such_db' does not exist"):
        open_postgres(warehouse_config(url))


def test_a_user_without_grants_is_told_what_to_grant(postgres_url: str, monkeypatch) -> None:
    con = open_warehouse(postgres_url)
    try:
        con.raw.execute("CREATE ROLE reader LOGIN PASSWORD 'reader-pw'")
        con.raw.execute("REVOKE CREATE ON SCHEMA public FROM PUBLIC")
        (db,) = con.execute("SELECT current_database()").fetchone()
        con.raw.execute(f'REVOKE CREATE ON DATABASE "{db}" FROM PUBLIC')
    finally:
        con.close()
    monkeypatch.setenv(PASSWORD_ENV, "reader-pw")
    with pytest.raises(WarehouseMissingObject) as caught:
        open_postgres(warehouse_config(postgres_url.replace("activation@", "reader@")))
    message = str(caught.value)
    assert "permission denied" in message and "GRANT" in message
    assert "reader-pw" not in message


def test_a_missing_source_table_names_the_warehouse(postgres_url: str) -> None:
    con = open_warehouse(postgres_url)
    try:
        with pytest.raises(WarehouseMissingObject, match="missing table or schema"):
            con.execute("SELECT * FROM main.customers")
    finally:
        con.close()


def test_a_statement_timeout_rolls_back_and_the_next_run_converges(postgres_url: str) -> None:
    con = open_warehouse(postgres_url, statement_timeout_s=0.5)
    try:
        con.execute("CREATE TABLE t (i INTEGER)")
        con.begin()
        con.execute("INSERT INTO t VALUES (1)")
        with pytest.raises(WarehouseTimeout) as caught:
            con.execute("SELECT pg_sleep(3)")
        con.rollback()
        assert "0.5 s" in str(caught.value) and "statement_timeout_s" in str(caught.value)
        assert con.execute("SELECT count(*) FROM t").fetchone() == (0,)  # nothing half-kept
        con.begin()
        con.execute("INSERT INTO t VALUES (1)")
        con.commit()
        assert con.execute("SELECT count(*) FROM t").fetchone() == (1,)
    finally:
        con.close()


def test_the_dagster_resource_reads_the_password_from_the_environment(
    postgres_url: str,
) -> None:
    config = warehouse_config(postgres_url)
    resource = warehouse_resource(config, duckdb_path="unused.duckdb")
    assert isinstance(resource, PostgresResource)

    @dg.asset
    def customer_count(warehouse: PostgresResource) -> int:
        with warehouse.get_connection() as con:
            con.execute("CREATE TABLE IF NOT EXISTS customers (customer_id BIGINT)")
            con.execute("INSERT INTO customers VALUES (1), (2)")
            (count,) = con.execute("SELECT count(*) FROM customers").fetchone()
        return int(count)

    result = dg.materialize([customer_count], resources={"warehouse": resource})
    assert result.output_for_node("customer_count") == 2
    assert isinstance(warehouse_resource(DuckDBWarehouse(), "w.duckdb"), DuckDBResource)


def test_the_one_factory_opens_either_backend(postgres_url: str, tmp_path: Path) -> None:
    with warehouse_connection(warehouse_config(postgres_url)) as con:
        assert con.execute("SELECT 40 + 2").fetchone() == (42,)
    with warehouse_connection(DuckDBWarehouse(), duckdb_path=tmp_path / "w.duckdb") as con:
        assert con.execute("SELECT 40 + 2").fetchone() == (42,)
