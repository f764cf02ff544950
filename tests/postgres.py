"""PostgreSQL fixtures: one real server per test worker (:func:`tests.servers.running_postgres`),
and a fresh database on it per test.

``postgres_server`` starts once per worker (session scope) and stops at the end;
``postgres_url`` creates a new database for one test (``LC_CTYPE`` ``C.UTF-8``: the server's
default) and drops it after; ``postgres_c_locale_url`` does the same with the ``C`` locale,
where ``lower()`` leaves every non-ASCII capital alone. The URLs are ``postgresql://`` URLs
without the password: the password is in the environment variable
:data:`PASSWORD_ENV` (set by the fixtures), as the product reads it.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import psycopg
import pytest

from tests.servers import PostgresServer, running_postgres

#: The environment variable the tests put the server's password in.
PASSWORD_ENV = "ACTIVATION_TEST_PG_PASSWORD"


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """A PostgreSQL 15 server started once per test worker; stopped when the session ends."""
    with running_postgres() as server:
        yield server


def _admin(server: PostgresServer) -> psycopg.Connection:
    return psycopg.connect(
        host=server.host, port=server.port, user=server.user, password=server.password,
        dbname="postgres", autocommit=True,
    )  # fmt: skip


def create_database(server: PostgresServer, locale: str | None = None) -> str:
    """Create a new database on ``server`` (``locale`` as its ``LC_COLLATE`` and ``LC_CTYPE``,
    the server's default when None); return its name."""
    name = "t_" + uuid.uuid4().hex[:12]
    options = "" if locale is None else f" LC_COLLATE '{locale}' LC_CTYPE '{locale}'"
    with _admin(server) as con:
        con.execute(f"CREATE DATABASE \"{name}\" TEMPLATE template0 ENCODING 'UTF8'{options}")
    return name


def clone_database(server: PostgresServer, template: str) -> str:
    """A new database on ``server`` copied from the database ``template`` (which no session
    may hold open); return its name. Cheaper than loading the same rows again per test."""
    name = "t_" + uuid.uuid4().hex[:12]
    with _admin(server) as con:
        con.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
    return name


def drop_database(server: PostgresServer, name: str) -> None:
    """Drop the database ``name``, ending its sessions first."""
    with _admin(server) as con:
        con.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def url_without_password(server: PostgresServer, dbname: str) -> str:
    """``postgresql://user@host:port/dbname`` (the password comes from :data:`PASSWORD_ENV`)."""
    return f"postgresql://{server.user}@{server.host}:{server.port}/{dbname}"


def _database_url(
    server: PostgresServer, monkeypatch: pytest.MonkeyPatch, locale: str | None
) -> Iterator[str]:
    monkeypatch.setenv(PASSWORD_ENV, server.password)
    name = create_database(server, locale)
    try:
        yield url_without_password(server, name)
    finally:
        drop_database(server, name)


@pytest.fixture
def postgres_url(postgres_server: PostgresServer, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A fresh database (server default locale) for one test; its URL, password not included."""
    yield from _database_url(postgres_server, monkeypatch, None)


@pytest.fixture
def postgres_c_locale_url(
    postgres_server: PostgresServer, monkeypatch: pytest.MonkeyPatch
) -> Iterator[str]:
    """A fresh database created with the ``C`` locale for one test (password not included)."""
    yield from _database_url(postgres_server, monkeypatch, "C")


def warehouse_config(url: str, **overrides: object) -> object:
    """The ``warehouse:`` of a project on the database at ``url`` (password from
    :data:`PASSWORD_ENV`)."""
    from orchestrator.config import PostgresWarehouse

    return PostgresWarehouse(kind="postgres", url=url, password_env=PASSWORD_ENV, **overrides)


def open_warehouse(url: str, project: object | None = None, **overrides: object):
    """A prepared :class:`orchestrator.warehouse.postgres.PostgresConnection` to ``url``
    (close it)."""
    from orchestrator.warehouse.factory import open_postgres

    return open_postgres(warehouse_config(url, **overrides), project=project)


def postgres_copy_of(
    duckdb_path: object, url: str, project: object | None = None, activation: Sequence[str] = ()
):
    """A prepared PostgreSQL warehouse at ``url`` holding the source tables of the DuckDB file
    ``duckdb_path`` and the rows of its product tables ``activation`` (names in the
    ``activation`` schema; those the file lacks are skipped); with ``project``, its source
    views. Close it."""
    import duckdb

    from orchestrator.warehouse.transfer import copy_duckdb_to_postgres, copy_rows

    duck = duckdb.connect(str(duckdb_path), read_only=True)
    con = open_warehouse(url)
    try:
        copy_duckdb_to_postgres(duck, con)
        present = {
            name
            for (name,) in duck.execute(
                "SELECT table_name FROM information_schema.tables WHERE table_schema = 'activation'"
            ).fetchall()
        }
        for table in [t for t in activation if t in present]:
            columns = [
                d[0] for d in duck.execute(f"SELECT * FROM activation.{table} LIMIT 0").description
            ]
            copy_rows(duck, con, f"activation.{table}", columns)
    finally:
        duck.close()
    try:
        if project is None:  # the default model's views, as create_source_schema makes them
            from orchestrator.model.spec import DEFAULT_MODEL
            from orchestrator.model.views import refresh_source_views

            refresh_source_views(con, DEFAULT_MODEL, ())
    finally:
        con.close()
    return open_warehouse(url, project=project)


@pytest.fixture(scope="module")
def postgres_module_url(postgres_server: PostgresServer) -> Iterator[str]:
    """A fresh database shared by one test module (password in :data:`PASSWORD_ENV`)."""
    with pytest.MonkeyPatch.context() as monkeypatch:
        yield from _database_url(postgres_server, monkeypatch, None)


@dataclass(frozen=True)
class PgWarehouse:
    """A PostgreSQL warehouse handle for tests written against a DuckDB file path: pass it
    where the test passes the path, and open it with :func:`connect_any`."""

    url: str


@contextmanager
def connect_any(warehouse: object, **kwargs: object) -> Iterator[object]:
    """:func:`orchestrator.warehouse.connect.connect` for a DuckDB path; a prepared
    PostgreSQL connection for a :class:`PgWarehouse` (closed after the block)."""
    if isinstance(warehouse, PgWarehouse):
        con = open_warehouse(warehouse.url)
        try:
            yield con
        finally:
            con.close()
        return
    from orchestrator.warehouse.connect import connect

    with connect(warehouse, **kwargs) as con:
        yield con


def warehouse_target(url: str) -> object:
    """The :class:`orchestrator.warehouse.target.WarehouseTarget` of the database at ``url``
    (what the product's stages take; its password is read from :data:`PASSWORD_ENV` when a
    connection opens, in this process or a child)."""
    from orchestrator.warehouse.target import WarehouseTarget

    return WarehouseTarget(warehouse_config(url))


#: Runs a test once per backend: its ``backend`` fixture is ``duckdb``, then ``postgres``.
both_backends = pytest.mark.parametrize("backend", ["duckdb", "postgres"], indirect=True)


@pytest.fixture
def backend(request: pytest.FixtureRequest) -> str:
    """The warehouse backend of a test: ``duckdb`` unless :data:`both_backends` (or an
    indirect parametrization) says ``postgres``."""
    return getattr(request, "param", "duckdb")


@pytest.fixture
def empty_warehouse(backend: str, tmp_path: object, request: pytest.FixtureRequest) -> object:
    """Where a test's warehouse lives, nothing in it yet: a DuckDB file path in ``tmp_path``,
    or the target of a fresh PostgreSQL database (``backend``)."""
    if backend == "postgres":
        return warehouse_target(request.getfixturevalue("postgres_url"))
    return tmp_path / "wh.duckdb"
