"""A configured product schema on a real PostgreSQL server: the stages ported to PostgreSQL
(source views, segment members, audience with its key cache and address forms, the diff) write
only into that schema, give the same product tables and send files as DuckDB with the default
``activation``, never make an ``activation`` schema, and leave the company's schemas as they
were."""

from __future__ import annotations

import os
from pathlib import Path

import duckdb
import psycopg

from orchestrator.config import load_project_config
from orchestrator.segments.loader import load_segments
from orchestrator.warehouse.factory import open_postgres
from orchestrator.warehouse.postgres import PostgresTarget, connect_postgres
from orchestrator.warehouse.transfer import copy_duckdb_to_postgres
from tests.conftest import AS_OF, REPO
from tests.postgres import PASSWORD_ENV, warehouse_config
from tests.warehouse.test_differential import PRODUCT_TABLES, _assert_identical, _run

OURS = "reverse_etl"


def _raw(url: str) -> psycopg.Connection:
    """A plain psycopg session (no rewrite: what is really in the database)."""
    target = PostgresTarget.from_url(url)
    return psycopg.connect(
        host=target.host, port=target.port, dbname=target.dbname, user=target.user,
        password=os.environ[PASSWORD_ENV], autocommit=True,
    )  # fmt: skip


def _company_tables(raw: psycopg.Connection) -> dict[str, str]:
    """``schema.table`` -> md5 of its sorted rows, for every table outside the product's."""
    tables = raw.execute(
        "SELECT table_schema, table_name FROM information_schema.tables "
        "WHERE table_type = 'BASE TABLE' AND table_schema NOT IN "
        "('pg_catalog', 'information_schema', %s) ORDER BY 1, 2",
        [OURS],
    ).fetchall()
    return {
        f"{schema}.{name}": raw.execute(
            f"SELECT md5(coalesce(string_agg(t::text, '|' ORDER BY t::text), '')) "
            f'FROM "{schema}"."{name}" AS t'
        ).fetchone()[0]
        for schema, name in tables
    }


def test_a_configured_product_schema_on_postgres(
    tmp_path: Path, demo_warehouse_template: Path, postgres_url: str
) -> None:
    default = load_project_config(REPO / "activation.yaml")
    project = default.model_copy(
        update={"warehouse": warehouse_config(postgres_url, product_schema=OURS)}
    )
    loaded = load_segments(REPO / "segments", default)
    specs = [seg.spec for _, seg in sorted(loaded.specs.items())]
    path = tmp_path / "demo.duckdb"
    path.write_bytes(demo_warehouse_template.read_bytes())

    raw = _raw(postgres_url)
    duck_source = duckdb.connect(str(path), read_only=True)
    plain = connect_postgres(postgres_url, os.environ[PASSWORD_ENV])  # prepares nothing
    try:  # the company's tables only: no product schema yet
        copy_duckdb_to_postgres(duck_source, plain)
    finally:
        duck_source.close()
        plain.close()
    before = _company_tables(raw)
    assert before and not any(name.startswith(f"{OURS}.") for name in before)

    pg = open_postgres(project.warehouse, project=project)
    duck = duckdb.connect(str(path))
    try:
        pg_diffs = _run(pg, project, specs, AS_OF, tmp_path / "pg")
        duck_diffs = _run(duck, default, specs, AS_OF, tmp_path / "duck")
        assert pg_diffs == duck_diffs and any(files for _, _, files in duck_diffs.values())
        duck_tables = _tables(duck, "activation")
    finally:
        duck.close()
        pg.close()

    pg_tables = _tables(_Plain(raw), OURS)
    _assert_identical(
        duck_tables, pg_tables, lambda t: t in ("segment_members", "audience_members")
    )
    schemas = {s for (s,) in raw.execute("SELECT nspname FROM pg_namespace").fetchall()}
    assert "activation" not in schemas and OURS in schemas
    functions = raw.execute(
        "SELECT n.nspname FROM pg_proc AS p JOIN pg_namespace AS n ON n.oid = p.pronamespace "
        "WHERE p.proname = 'activation_normalize_email'"
    ).fetchall()
    assert functions == [(OURS,)]
    assert _company_tables(raw) == before
    raw.close()


class _Plain:
    """A psycopg session with the ``execute(...).fetchall()`` of the shared connections, for
    statements that must reach the server as written."""

    dialect = "postgres"

    def __init__(self, raw: psycopg.Connection) -> None:
        self.raw = raw

    def execute(self, sql: str, params: object = None) -> psycopg.Cursor:
        return self.raw.execute(sql.replace("?", "%s"), params)


def _tables(con: object, schema: str) -> dict[str, list[tuple]]:
    return {
        table: sorted(
            con.execute(f"SELECT {columns} FROM {schema}.{table}").fetchall(),
            key=lambda row: tuple("" if v is None else str(v) for v in row),
        )
        for table, columns in PRODUCT_TABLES.items()
    }
