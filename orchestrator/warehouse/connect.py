"""Open the warehouse for a short piece of work: a DuckDB file (waiting politely for its lock)
or, given a :class:`~orchestrator.warehouse.target.WarehouseTarget` naming one, a PostgreSQL
server.

DuckDB lets one process at a time open a file for writing (and a read-only open fails while a
writer holds it). Dagster runs each step in its own process, so two steps touching the
warehouse at once would make the second fail with ``IOException: Could not set lock on file``.
:func:`connect` retries such failures with capped exponential backoff and jitter, and always
closes the connection, so a step holds the lock only for the work it does inside the ``with``.

A PostgreSQL target opens a server session instead (:func:`orchestrator.warehouse.factory.
open_postgres`: the product's tables, address functions and, with a project, the source views
and address forms made ready); the server serializes writers itself, so there is no file lock
to wait for.
"""

from __future__ import annotations

import random
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import duckdb

from orchestrator.model.views import refresh_source_views, source_views_current
from orchestrator.pseudonymize import register_sql_functions
from orchestrator.settings import duckdb_config
from orchestrator.warehouse.product_schema import DEFAULT_PRODUCT_SCHEMA, with_product_schema
from orchestrator.warehouse.schema import create_activation_schema
from orchestrator.warehouse.target import Warehouse, WarehouseTarget

if TYPE_CHECKING:
    from orchestrator.config import ProjectConfig

_FIRST_DELAY_S = 0.05
_MAX_DELAY_S = 2.0


def _is_lock_error(error: duckdb.Error) -> bool:
    text = str(error).lower()
    return "lock" in text or "conflicting" in text


def _open_with_retry(
    path: Path, read_only: bool, timeout_s: float, schema: str = DEFAULT_PRODUCT_SCHEMA
) -> duckdb.DuckDBPyConnection:
    deadline = time.monotonic() + timeout_s
    delay = _FIRST_DELAY_S
    while True:
        try:
            con = duckdb.connect(str(path), read_only=read_only, config=duckdb_config())
            return with_product_schema(con, schema)
        except duckdb.IOException as error:
            remaining = deadline - time.monotonic()
            if not _is_lock_error(error) or remaining <= 0:
                raise
            time.sleep(min(remaining, delay * random.uniform(0.5, 1.0)))
            delay = min(delay * 2, _MAX_DELAY_S)


def _ensure_views(path: Path, project: ProjectConfig, timeout_s: float, schema: str) -> None:
    """Recreate the canonical views in a short read-write open (for a read-only caller)."""
    con = _open_with_retry(path, False, timeout_s, schema)
    try:
        create_activation_schema(con)
        refresh_source_views(con, project.source, project.purposes)
    finally:
        con.close()


def _has_product_tables(con: duckdb.DuckDBPyConnection) -> bool:
    """True when the product's own tables exist (a warehouse whose views were made before any
    run may lack them; a reader then gets them made, empty, with the views)."""
    [(found,)] = con.execute(
        "SELECT count(*) FROM duckdb_tables() WHERE schema_name = 'activation' "
        "AND table_name = 'audience_members'"
    ).fetchall()  # fetchall: no open result left behind on the caller's connection
    return bool(found)


def _product_schema(where: Warehouse, project: ProjectConfig | None, explicit: str | None) -> str:
    """The product schema a connection names: ``explicit``, else the target's
    (``warehouse.product_schema`` it was made from), else ``project``'s, else the default."""
    if explicit is not None:
        return explicit
    if isinstance(where, WarehouseTarget) and where.config.product_schema != DEFAULT_PRODUCT_SCHEMA:
        return where.config.product_schema
    return project.product_schema if project is not None else DEFAULT_PRODUCT_SCHEMA


@contextmanager
def connect(
    path: Warehouse,
    *,
    read_only: bool = False,
    timeout_s: float = 60,
    project: ProjectConfig | None = None,
    product_schema: str | None = None,
) -> Iterator[Any]:
    """Open the warehouse ``path`` for the duration of a ``with`` block: a DuckDB file (a
    path, or a :class:`~orchestrator.warehouse.target.WarehouseTarget` of kind ``duckdb``), or
    a PostgreSQL server (a target of kind ``postgres``: see :func:`_connect_postgres`; what
    follows is DuckDB's behaviour, ``read_only`` and ``timeout_s`` do not apply there).

    Retries while another process holds the file's lock (``duckdb.IOException`` mentioning the
    lock), waiting 50 ms doubling up to 2 s between attempts (with jitter), for at most
    ``timeout_s`` seconds in total. When ``read_only`` is False the product's ``activation``
    tables are created if missing. With ``project``, the canonical views of its source model
    (``activation.src_*``) are made current before the block runs, so every reader sees the
    model ``activation.yaml`` declares today: the one place every entry point that reads the
    views (CLI commands, sensor, checks, privacy steps) ensures them. Cheap when unchanged (a
    view is rewritten only when its SELECT changed); a read-only caller whose views are stale
    gets them recreated in a short read-write open first. The connection is configured by
    :func:`orchestrator.settings.duckdb_config` (memory limit) and has the address
    normalization functions the key SQL needs
    (:func:`orchestrator.pseudonymize.register_sql_functions`). The connection is closed on
    exit, also on error.

    ``product_schema``: the schema of the product's tables (``warehouse.product_schema``);
    None: the target's, else ``project``'s, else ``activation``. Another name than
    ``activation`` gets a :class:`orchestrator.warehouse.product_schema.
    ProductSchemaConnection`, whose statements (written ``activation.<table>``) name that
    schema.

    Raises:
        duckdb.IOException: the lock was still held after ``timeout_s`` seconds, or the file
            cannot be opened for another reason (e.g. ``read_only`` and the file is missing).
        orchestrator.model.views.SourceModelError: ``project``'s source model does not match
            the warehouse.
        orchestrator.warehouse.errors.WarehouseError: PostgreSQL unreachable, wrong password,
            missing grant, timeout.
    """
    product_schema = _product_schema(path, project, product_schema)
    if isinstance(path, WarehouseTarget):
        if path.kind == "postgres":
            with _connect_postgres(path, project, product_schema) as con:
                yield con
            return
        path = path.duckdb_path
    path = Path(path)
    con = _open_with_retry(path, read_only, timeout_s, product_schema)
    try:
        stale = project is not None and read_only
        if stale and not (
            source_views_current(con, project.source, project.purposes) and _has_product_tables(con)
        ):
            con.close()
            _ensure_views(path, project, timeout_s, product_schema)
            con = _open_with_retry(path, read_only, timeout_s, product_schema)
        register_sql_functions(con)
        if not read_only:
            create_activation_schema(con)
            if project is not None:
                refresh_source_views(con, project.source, project.purposes)
        yield con
    finally:
        con.close()


@contextmanager
def _connect_postgres(
    target: WarehouseTarget, project: ProjectConfig | None, product_schema: str
) -> Iterator[Any]:
    """A prepared PostgreSQL session for ``target`` naming ``product_schema`` (the password:
    the target's own, else its environment variable), closed on exit."""
    from orchestrator.warehouse.factory import open_postgres

    password, source = target.resolved_password()
    config = target.config.model_copy(update={"product_schema": product_schema})
    con = open_postgres(config, project=project, password=password, password_from=source)
    try:
        yield con
    finally:
        con.close()


__all__ = ["connect"]
