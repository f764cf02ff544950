"""The product schema is configurable (``warehouse.product_schema``): the rewrite of the shared
SQL is exact, the setting is validated with file, line and field, and a project configured
with another name keeps every product table there on DuckDB, never in ``activation`` and never
in the company's schemas."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pytest
import yaml

from orchestrator.config import ProjectConfigError, load_project_config
from orchestrator.warehouse.connect import connect
from orchestrator.warehouse.product_schema import ProductSchemaConnection, qualify
from orchestrator.warehouse.schema import ACTIVATION_DDL, create_activation_schema
from tests.conftest import REPO

OURS = "reverse_etl"


@pytest.mark.parametrize(
    ("shared", "expected"),
    [
        ("SELECT * FROM activation.t", f"SELECT * FROM {OURS}.t"),
        ('SELECT * FROM "activation".t AS a', f'SELECT * FROM "{OURS}".t AS a'),
        ("select x from ACTIVATION.t", f"select x from {OURS}.t"),
        ("CREATE SCHEMA IF NOT EXISTS activation", f"CREATE SCHEMA IF NOT EXISTS {OURS}"),
        ("DROP SCHEMA activation CASCADE", f"DROP SCHEMA {OURS} CASCADE"),
        (
            "SELECT 1 FROM duckdb_tables() WHERE schema_name = 'activation'",
            f"SELECT 1 FROM duckdb_tables() WHERE schema_name = '{OURS}'",
        ),
        # a function of the product schema (PostgreSQL address forms)
        (
            "SELECT activation.activation_normalize_email(e) FROM activation.src_customers",
            f"SELECT {OURS}.activation_normalize_email(e) FROM {OURS}.src_customers",
        ),
        # left alone: inside other literals, comments, names that contain the word, columns
        ("SELECT 'see activation.t' AS note", "SELECT 'see activation.t' AS note"),
        ("SELECT 1 -- from activation.t", "SELECT 1 -- from activation.t"),
        ("SELECT activation_normalize_email(e)", "SELECT activation_normalize_email(e)"),
        ("SELECT m.activation FROM m", "SELECT m.activation FROM m"),
        ("SELECT 'activation' || 'x'", f"SELECT '{OURS}' || 'x'"),
        ("SELECT 'Activation'", "SELECT 'Activation'"),
        ('SELECT "activation_x".y FROM z', 'SELECT "activation_x".y FROM z'),
    ],
)
def test_qualify_renames_only_the_product_schema(shared: str, expected: str) -> None:
    assert qualify(shared, OURS) == expected


def test_the_product_ddl_creates_only_the_configured_schema() -> None:
    assert "CREATE SCHEMA IF NOT EXISTS activation;" in ACTIVATION_DDL
    con = duckdb.connect(":memory:")
    try:
        create_activation_schema(ProductSchemaConnection(con, OURS))
        schemas = {
            name for (name,) in con.execute("SELECT schema_name FROM duckdb_schemas()").fetchall()
        }
    finally:
        con.close()
    assert OURS in schemas and "activation" not in schemas


def test_the_default_name_costs_nothing() -> None:
    sql = "SELECT * FROM activation.t"
    assert qualify(sql, "activation") is sql


def _config(tmp_path: Path, warehouse: dict) -> Path:
    data = yaml.safe_load((REPO / "activation.yaml").read_text(encoding="utf-8"))
    data["warehouse"] = warehouse
    path = tmp_path / "activation.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return path


def test_the_default_product_schema_is_activation() -> None:
    assert load_project_config(REPO / "activation.yaml").product_schema == "activation"


def test_a_configured_product_schema_is_read(tmp_path: Path) -> None:
    path = _config(tmp_path, {"kind": "duckdb", "product_schema": OURS})
    assert load_project_config(path).product_schema == OURS


@pytest.mark.parametrize("name", ["Reverse", "1st", "our-tables", "a b", "x" * 64])
def test_a_product_schema_that_is_not_a_plain_identifier_is_refused_with_its_line(
    tmp_path: Path, name: str
) -> None:
    with pytest.raises(ProjectConfigError) as raised:
        load_project_config(_config(tmp_path, {"kind": "duckdb", "product_schema": name}))
    (error,) = raised.value.errors
    assert error.field == "warehouse.product_schema" and error.line is not None
    assert str(error).startswith(f"{tmp_path / 'activation.yaml'}:{error.line}")


@pytest.mark.parametrize(
    ("warehouse", "schema"),
    [
        ({"kind": "duckdb"}, "crm"),  # crm.contacts: the customers table
        ({"kind": "duckdb"}, "shop"),  # named inside an events SELECT
        ({"kind": "duckdb"}, "main"),  # where DuckDB finds unqualified names
        (
            {"kind": "postgres", "url": "postgresql://u@localhost/db", "password_env": "PW"},
            "public",  # the search path
        ),
        (
            {
                "kind": "postgres",
                "url": "postgresql://u@localhost/db",
                "password_env": "PW",
                "search_path": "public,marts",
            },
            "marts",
        ),
    ],
)
def test_a_product_schema_the_source_model_reads_from_is_refused(
    tmp_path: Path, warehouse: dict, schema: str
) -> None:
    path = _config(tmp_path, {**warehouse, "product_schema": schema})
    with pytest.raises(ProjectConfigError) as raised:
        load_project_config(path)
    (error,) = raised.value.errors
    assert error.field == "warehouse.product_schema" and error.line is not None
    assert "apart from the company's" in error.message and repr(schema) in error.message


def test_connect_names_the_configured_schema_on_duckdb(tmp_path: Path) -> None:
    path = tmp_path / "w.duckdb"
    with connect(path, product_schema=OURS) as con:
        con.execute("INSERT INTO activation.suppression_list VALUES ('k', 'g', 'erasure', now())")
        assert con.execute("SELECT count(*) FROM activation.suppression_list").fetchone() == (1,)
    raw = duckdb.connect(str(path), read_only=True)
    try:
        schemas = {
            name for (name,) in raw.execute("SELECT schema_name FROM duckdb_schemas()").fetchall()
        }
        (count,) = raw.execute(f"SELECT count(*) FROM {OURS}.suppression_list").fetchone()
    finally:
        raw.close()
    assert OURS in schemas and "activation" not in schemas and count == 1
