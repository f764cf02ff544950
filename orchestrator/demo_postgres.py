"""``make demo WAREHOUSE=postgres``: the same demo with a local PostgreSQL server as the
warehouse (:mod:`orchestrator.warehouse.local_postgres`).

What :func:`prepare_postgres_demo` does before the demo's Dagster runs:

1. starts the server kept in the folder (``.data/postgres``; initialized on first use, with a
   generated password in ``<folder>/password``, mode 0600);
2. puts that password in the environment variable
   :data:`~orchestrator.warehouse.local_postgres.PASSWORD_ENV` of this process (Dagster's run
   and step processes inherit it; it is never printed);
3. writes ``<folder>/activation.yaml``: the project's ``activation.yaml`` with
   ``warehouse: {kind: postgres, url: ..., password_env: ...}``, and points
   ``ACTIVATION_CONFIG`` at it (``ACTIVATION_CATALOG`` at the project's committed
   ``catalog.json``), so Dagster binds its ``PostgresResource`` as any project on PostgreSQL;
4. builds the demo warehouse into the server when its tables are missing: the DuckDB build
   from the same real data (:func:`orchestrator.warehouse.demo.build_demo_warehouse`, into a
   scratch file removed afterwards), copied by :func:`orchestrator.warehouse.transfer.
   copy_duckdb_to_postgres` in one transaction. The product's ``activation`` schema (sync
   state, journal, requests...) lives in the same database, so a second demo finds nothing to
   send.
"""

from __future__ import annotations

import os
from datetime import UTC, date, datetime
from pathlib import Path

import yaml
from rich.console import Console

from orchestrator.config import PostgresWarehouse
from orchestrator.settings import Settings
from orchestrator.warehouse.local_postgres import PASSWORD_ENV, LocalPostgres, LocalPostgresError


def write_postgres_config(source: Path, target: Path, url: str) -> Path:
    """Write ``target``: the project config ``source`` with its ``warehouse:`` set to the
    PostgreSQL server at ``url`` (password from :data:`PASSWORD_ENV`); returns ``target``.

    Raises:
        FileNotFoundError: ``source`` is missing.
        yaml.YAMLError: ``source`` is not YAML (``load_project_config`` then names the line).
    """
    data = yaml.safe_load(source.read_text(encoding="utf-8")) or {}
    data["warehouse"] = {"kind": "postgres", "url": url, "password_env": PASSWORD_ENV}
    header = (
        f"# Written by `make demo WAREHOUSE=postgres` from {source} at each run: edit that file.\n"
    )
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(header + yaml.safe_dump(data, sort_keys=False, allow_unicode=True))
    return target


def prepare_postgres_demo(
    folder: Path, port: int, console: Console, url: str | None = None
) -> PostgresWarehouse:
    """Steps 1 to 3 of the module docstring; returns the demo's ``warehouse:``. Sets
    ``os.environ`` (:data:`PASSWORD_ENV`, ``ACTIVATION_CONFIG``, ``ACTIVATION_CATALOG``) for
    this process and the Dagster processes it starts. ``url``: a server already running
    (``postgresql://user@host:port/db``, its password in :data:`PASSWORD_ENV`) instead of
    the local one; ``folder`` then keeps only the written config.

    Raises:
        orchestrator.warehouse.local_postgres.LocalPostgresError: the server did not start,
            or ``url`` is given without :data:`PASSWORD_ENV` set.
    """
    folder = folder.resolve()
    if url is None:
        server = LocalPostgres(folder, port)
        started = server.start()
        verb = "started" if started else "running"
        console.print(f"PostgreSQL: {verb} on 127.0.0.1:{port}, data in {server.data_dir}")
        os.environ[PASSWORD_ENV] = server.password()
        url = server.url()
    elif not os.environ.get(PASSWORD_ENV):
        raise LocalPostgresError(f"set {PASSWORD_ENV} to the password of {url}")
    project = Settings.from_env({**os.environ, "ACTIVATION_CONFIG": ""})
    config = write_postgres_config(project.config_path, folder / "activation.yaml", url)
    os.environ.setdefault("ACTIVATION_CATALOG", str(project.config_path.parent / "catalog.json"))
    os.environ["ACTIVATION_CONFIG"] = str(config)
    return PostgresWarehouse(kind="postgres", url=url, password_env=PASSWORD_ENV)


def has_demo_tables(con: object) -> bool:
    """True when the PostgreSQL warehouse ``con`` holds every table of
    :data:`orchestrator.warehouse.demo.DEMO_TABLES`."""
    from orchestrator.warehouse.demo import DEMO_TABLES

    rows = con.execute(  # type: ignore[attr-defined]
        "SELECT table_schema || '.' || table_name FROM information_schema.tables "
        "WHERE table_type = 'BASE TABLE'"
    ).fetchall()
    return set(DEMO_TABLES) <= {name for (name,) in rows}


def ensure_postgres_warehouse(
    config: PostgresWarehouse, scratch_dir: Path, console: Console, as_of: date | None = None
) -> None:
    """Step 4 of the module docstring, into the warehouse ``config`` names (its password in
    the environment); the DuckDB build goes through a file in ``scratch_dir``; ``as_of``: the
    demo's today (default: today, UTC). A warehouse with some demo tables missing (an older
    layout) is rebuilt, and its ``activation`` schema dropped, as the DuckDB demo does.

    Raises:
        orchestrator.warehouse.errors.WarehouseError: the server refused the connection.
        psycopg.Error: the server refused the tables or rows (nothing is kept: one
            transaction).
    """
    import duckdb

    from orchestrator.warehouse.demo import build_demo_warehouse
    from orchestrator.warehouse.factory import open_postgres
    from orchestrator.warehouse.postgres import PostgresTarget
    from orchestrator.warehouse.transfer import copy_duckdb_to_postgres

    where = PostgresTarget.from_url(config.url).describe()
    con = open_postgres(config)
    try:
        if has_demo_tables(con):
            console.print(f"warehouse: reusing PostgreSQL {where}")
            return
        scratch = scratch_dir / "demo-build.duckdb"
        report = build_demo_warehouse(scratch, as_of=as_of or datetime.now(UTC).date())
        duck = duckdb.connect(str(scratch), read_only=True)
        try:
            con.begin()
            con.execute("DROP SCHEMA IF EXISTS activation CASCADE")
            copy_duckdb_to_postgres(duck, con)
            con.commit()
        except BaseException:
            con.rollback()
            raise
        finally:
            duck.close()
            scratch.unlink(missing_ok=True)
        con.execute("ANALYZE")
    finally:
        con.close()
    counts = ", ".join(f"{n:,} {table}" for table, n in report.table_counts().items())
    console.print(f"warehouse: built into PostgreSQL {where} ({counts})")


__all__ = [
    "ensure_postgres_warehouse",
    "has_demo_tables",
    "prepare_postgres_demo",
    "write_postgres_config",
]
