"""The one connection factory of the product: ``warehouse:`` of ``activation.yaml`` in, an
open warehouse connection out, on either backend.

:func:`warehouse_connection` opens DuckDB through :func:`orchestrator.warehouse.connect.connect`
(the embedded default: the file lock, the address functions, the product's tables and the
source views made current) or PostgreSQL through
:func:`orchestrator.warehouse.postgres.connect_postgres` (the password read from the
environment variable the config names, at call time), and prepares a PostgreSQL warehouse the
same way: the ``activation`` schema and tables, the address functions and forms
(:mod:`orchestrator.warehouse.address_forms`), the source views. Both connections take the
shared SQL (``execute``, ``fetchone``, ``fetchall``...).
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from orchestrator.warehouse.errors import WarehouseAuthFailed

if TYPE_CHECKING:
    from orchestrator.config import PostgresWarehouse, ProjectConfig, WarehouseConfig
    from orchestrator.warehouse.postgres import PostgresConnection
    from orchestrator.warehouse.target import WarehouseTarget


def postgres_password(config: PostgresWarehouse, environ: Mapping[str, str] | None = None) -> str:
    """The password from ``config.password_env``.

    Raises:
        WarehouseAuthFailed: the variable is unset or empty (the message names the variable
            and the warehouse, never a value).
    """
    from orchestrator.warehouse.postgres import PostgresTarget

    value = (os.environ if environ is None else environ).get(config.password_env, "")
    if not value:
        raise WarehouseAuthFailed(
            PostgresTarget.from_url(config.url).describe(),
            f"no password: the environment variable {config.password_env} is not set",
            f"export {config.password_env} (warehouse.password_env in activation.yaml)",
        )
    return value


#: The advisory lock (its key hashed by the server) held while a session prepares the
#: warehouse: the product's tables, address functions, source views and address forms.
_PREPARE_LOCK = "activation: prepare the warehouse"


def open_postgres(
    config: PostgresWarehouse,
    *,
    project: ProjectConfig | None = None,
    environ: Mapping[str, str] | None = None,
    password: str | None = None,
    password_from: str | None = None,
) -> PostgresConnection:
    """Connect to the PostgreSQL warehouse of ``config`` and prepare it: the product's
    tables (created or migrated), the address functions, and with ``project`` its source
    views and the address forms of its sources, in one transaction under an advisory lock
    (sessions opening at once prepare one after the other). The caller closes the
    connection.
    ``password``: given by the caller (a Dagster resource's ``EnvVar``, named by
    ``password_from`` in errors); None: read from ``config.password_env``.

    Raises:
        WarehouseError: unreachable, wrong password, missing grant, timeout.
        orchestrator.model.views.SourceModelError: the source model does not match.
    """
    from orchestrator.model.views import refresh_source_views
    from orchestrator.warehouse.address_forms import (
        create_address_functions,
        prepare_address_forms,
    )
    from orchestrator.warehouse.postgres import connect_postgres
    from orchestrator.warehouse.schema import create_activation_schema

    if password is None:
        password = postgres_password(config, environ)
        password_from = f"the environment variable {config.password_env}"
    con = connect_postgres(
        config.url,
        password,
        statement_timeout_s=config.statement_timeout_s,
        connect_timeout_s=config.connect_timeout_s,
        search_path=config.search_path,
        password_from=password_from or "the password given",
        product_schema=config.product_schema,
    )
    try:
        # one preparation at a time: sessions opening at once (parallel steps, a heartbeat)
        # would otherwise collide on the same DDL ("tuple concurrently updated")
        con.begin()
        con.raw.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", [_PREPARE_LOCK])
        create_activation_schema(con)
        create_address_functions(con.raw, config.product_schema)
        if project is not None:
            refresh_source_views(con, project.source, project.purposes)
            prepare_address_forms(con)
        con.commit()
    except BaseException:
        con.close()  # an open transaction ends with the session: nothing of it is kept
        raise
    return con


@contextmanager
def warehouse_connection(
    config: WarehouseConfig,
    *,
    duckdb_path: Path | None = None,
    project: ProjectConfig | None = None,
    read_only: bool = False,
    environ: Mapping[str, str] | None = None,
) -> Iterator[Any]:
    """An open connection to the warehouse ``config`` names, closed when the block ends.

    DuckDB: the file ``duckdb_path`` (the caller resolves ``ACTIVATION_WAREHOUSE`` and
    ``config.path``), opened by :func:`orchestrator.warehouse.connect.connect` with
    ``read_only``. PostgreSQL: :func:`open_postgres` (``read_only`` is not enforced by the
    server: the product's readers simply do not write).

    Raises:
        ValueError: a DuckDB warehouse without ``duckdb_path``.
        WarehouseError: PostgreSQL unreachable, wrong password, missing grant, timeout.
    """
    if config.kind == "duckdb":
        from orchestrator.warehouse.connect import connect

        if duckdb_path is None:
            raise ValueError("a DuckDB warehouse needs its file path")
        with connect(
            duckdb_path,
            read_only=read_only,
            project=project,
            product_schema=config.product_schema,
        ) as con:
            yield con
        return
    con = open_postgres(config, project=project, environ=environ)
    try:
        yield con
    finally:
        con.close()


def target_for(config: WarehouseConfig, project_dir: Path, env_path: Path) -> WarehouseTarget:
    """The :class:`~orchestrator.warehouse.target.WarehouseTarget` of ``warehouse:``
    (``config``): PostgreSQL as configured, or the DuckDB file :func:`duckdb_path_for`
    resolves (``project_dir``, ``env_path``: :class:`orchestrator.settings.Settings`)."""
    from orchestrator.warehouse.target import WarehouseTarget

    return WarehouseTarget.from_config(config, duckdb_path_for(config, project_dir, env_path))


def duckdb_path_for(config: WarehouseConfig, project_dir: Path, env_path: Path) -> Path:
    """The DuckDB file: ``ACTIVATION_WAREHOUSE`` when set (``env_path`` as
    :class:`orchestrator.settings.Settings` resolved it), else ``config.path`` relative to
    ``project_dir``."""
    if os.environ.get("ACTIVATION_WAREHOUSE") or config.kind != "duckdb" or not config.path:
        return env_path
    return project_dir / config.path


__all__ = [
    "duckdb_path_for",
    "open_postgres",
    "postgres_password",
    "target_for",
    "warehouse_connection",
]
