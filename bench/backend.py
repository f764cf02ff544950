"""Which warehouse a bench run measures: the generated DuckDB file itself (``duckdb``, the
default), or a PostgreSQL server holding a copy of it (``postgres``).

On PostgreSQL the generator still writes the DuckDB file (the same rows on both backends);
:func:`load_postgres` copies its source tables into the server
(:func:`orchestrator.warehouse.transfer.copy_duckdb_to_postgres`), makes the source model's
views and runs ``ANALYZE``; after :func:`bench.generator.apply_changes` (on the file),
:func:`reload_tables` replaces the rows of the changed tables (the views over them stay).
The server is the local one of :mod:`orchestrator.warehouse.local_postgres`, started in the
run's work folder, or one given by URL; its password is in the environment variable
:data:`orchestrator.warehouse.local_postgres.PASSWORD_ENV` of the bench process, which the
stage processes inherit.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import duckdb

from orchestrator.config import PostgresWarehouse
from orchestrator.warehouse.local_postgres import PASSWORD_ENV, LocalPostgres, free_port
from orchestrator.warehouse.target import WarehouseTarget

#: The tables :func:`bench.generator.apply_changes` writes.
CHANGED_TABLES: tuple[str, ...] = ("customers", "consents")


def postgres_config(url: str) -> PostgresWarehouse:
    """The bench's ``warehouse:`` on ``url`` (password from :data:`PASSWORD_ENV`; statements
    may run 30 minutes: the 1M runs' diffs are long on an untuned server)."""
    return PostgresWarehouse(
        kind="postgres", url=url, password_env=PASSWORD_ENV, statement_timeout_s=1800
    )


def warehouse_of(job: dict[str, Any]) -> Path | WarehouseTarget:
    """The warehouse of a stage's job: ``postgres_url`` when set (a PostgreSQL target), else
    the DuckDB file ``warehouse``."""
    url = job.get("postgres_url")
    if url:
        return WarehouseTarget(postgres_config(url))
    return Path(job["warehouse"])


@contextmanager
def reading(warehouse: Path | WarehouseTarget, *, functions: bool = False) -> Iterator[Any]:
    """A connection for the baselines and floors: a DuckDB file opened read-only (with the
    address functions when ``functions``), or a prepared PostgreSQL connection (the readers
    write nothing but temporary tables)."""
    if isinstance(warehouse, WarehouseTarget):
        from orchestrator.warehouse.factory import open_postgres

        assert isinstance(warehouse.config, PostgresWarehouse)
        con = open_postgres(warehouse.config)
        try:
            yield con
        finally:
            con.close()
        return
    con = duckdb.connect(str(warehouse), read_only=True)
    try:
        if functions:
            from orchestrator.pseudonymize import register_sql_functions

            register_sql_functions(con)
        yield con
    finally:
        con.close()


@contextmanager
def postgres_server(workdir: Path, url: str | None) -> Iterator[str]:
    """The URL of the run's server (password in :data:`PASSWORD_ENV`): ``url`` as given
    (the caller set the variable), or a local server initialized in ``workdir/postgres`` on a
    free port, stopped at the end."""
    if url is not None:
        yield url
        return
    workdir.chmod(0o755)  # the server runs as the postgres user when we are root
    server = LocalPostgres(workdir / "postgres", free_port())
    server.start()
    os.environ[PASSWORD_ENV] = server.password()
    try:
        yield server.url()
    finally:
        server.stop()


def analyze_copied(con: Any, rows: dict[str, int]) -> None:
    """``ANALYZE`` the tables just copied (``schema.table`` keys of ``rows``; DuckDB's ``main``
    is the default schema), and only those: an ``ANALYZE`` of the product's still empty
    tables would record them as empty (``reltuples`` 0), and PostgreSQL then plans a first
    run's ``INSERT ... WHERE NOT EXISTS`` into them as a nested loop over a sequential scan of
    the table being filled (14 s for 39k segment members at 100k customers, about 25 minutes
    at 1M); never analyzed, it assumes they may have grown."""
    for relation in rows:
        schema, table = relation.split(".")
        con.execute(f"ANALYZE {table}" if schema == "main" else f"ANALYZE {schema}.{table}")


def load_postgres(duckdb_path: Path, url: str) -> dict[str, Any]:
    """Copy the generated warehouse's source tables into the server at ``url``, make the
    bench model's views, ``ANALYZE`` the copied tables (:func:`analyze_copied`). Returns
    ``{"load_s", "rows": {table: n}, "server_version"}``."""
    from bench.scenario import project_config
    from orchestrator.model.views import refresh_source_views
    from orchestrator.warehouse.factory import open_postgres
    from orchestrator.warehouse.transfer import copy_duckdb_to_postgres

    project = project_config()
    started = time.perf_counter()
    con = open_postgres(postgres_config(url))
    duck = duckdb.connect(str(duckdb_path), read_only=True)
    try:
        rows = copy_duckdb_to_postgres(duck, con)
        refresh_source_views(con, project.source, project.purposes)
        analyze_copied(con, rows)
        (version,) = con.execute("SELECT current_setting('server_version')").fetchone()
    finally:
        duck.close()
        con.close()
    return {"load_s": time.perf_counter() - started, "rows": rows, "server_version": version}


def reload_tables(duckdb_path: Path, url: str, tables: Sequence[str] = CHANGED_TABLES) -> float:
    """Replace the rows of ``tables`` (DuckDB ``main``; PostgreSQL ``public``) on the server
    with the file's, in one transaction, then ``ANALYZE`` them; returns seconds."""
    from orchestrator.warehouse.factory import open_postgres
    from orchestrator.warehouse.transfer import copy_rows

    started = time.perf_counter()
    con = open_postgres(postgres_config(url))
    duck = duckdb.connect(str(duckdb_path), read_only=True)
    try:
        con.begin()
        for table in tables:
            columns = [d[0] for d in duck.execute(f"SELECT * FROM {table} LIMIT 0").description]
            con.execute(f"DELETE FROM {table}")
            copy_rows(duck, con, f"main.{table}", columns)
        con.commit()
        for table in tables:
            con.execute(f"ANALYZE {table}")
    finally:
        duck.close()
        con.close()
    return time.perf_counter() - started


__all__ = [
    "CHANGED_TABLES",
    "load_postgres",
    "postgres_config",
    "postgres_server",
    "reading",
    "reload_tables",
    "warehouse_of",
]
