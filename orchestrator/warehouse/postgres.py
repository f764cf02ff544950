"""PostgreSQL as the warehouse: a connection that runs the shared SQL (psycopg 3).

:func:`connect_postgres` opens one server connection and wraps it in a
:class:`PostgresConnection`, which offers the part of DuckDB's connection API the stages use
(``execute`` returning the connection, ``fetchone``, ``fetchall``, ``description``,
``executemany``, ``begin`` / ``commit`` / ``rollback``, ``close``). Every statement is the
shared SQL, rendered for PostgreSQL by :func:`orchestrator.warehouse.dialect.render` (cached)
and run with PostgreSQL's own ``$1`` placeholders (psycopg's raw cursor). Like DuckDB, the
connection commits each statement unless :meth:`PostgresConnection.begin` opened a
transaction. The session runs in UTC (``TIMESTAMP`` values are UTC wall-clock times, as in
DuckDB) with the configured ``statement_timeout``.

Failures to reach or use the server become one :class:`orchestrator.warehouse.errors.
WarehouseError` naming the warehouse (``postgres://user@host:port/db``, never the password)
and what to check: unreachable server, wrong password, missing schema or grant, statement
timeout. Other SQL errors are psycopg's own (``psycopg.Error``).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlsplit

import psycopg
import psycopg.errors
import psycopg.types.string
from psycopg.types.array import ListDumper

from orchestrator.warehouse.dialect import render_with_params
from orchestrator.warehouse.errors import (
    WarehouseAuthFailed,
    WarehouseError,
    WarehouseMissingObject,
    WarehouseTimeout,
    WarehouseUnreachable,
)
from orchestrator.warehouse.product_schema import DEFAULT_PRODUCT_SCHEMA, qualify


@dataclass(frozen=True)
class PostgresTarget:
    """Where the warehouse is: ``host``, ``port``, ``dbname``, ``user`` (from a
    ``postgresql://user@host:port/dbname`` URL; a password in the URL is refused), and
    ``options`` (the URL's query parameters, e.g. ``sslmode``)."""

    host: str
    port: int
    dbname: str
    user: str
    options: tuple[tuple[str, str], ...] = ()

    @classmethod
    def from_url(cls, url: str) -> PostgresTarget:
        """Parse ``url``.

        Raises:
            ValueError: not a ``postgresql://`` / ``postgres://`` URL, no database or user,
                or a password written in it (the password comes from the environment only).
        """
        parts = urlsplit(url)
        if parts.scheme.split("+")[0] not in ("postgresql", "postgres"):
            raise ValueError("the warehouse url must start with postgresql://")
        if parts.password is not None:
            raise ValueError(
                "the warehouse url holds a password: remove it and name the environment "
                "variable that holds it (password_env)"
            )
        dbname = unquote(parts.path.lstrip("/"))
        if not dbname or not parts.username or not parts.hostname:
            raise ValueError("the warehouse url needs a user, a host and a database name")
        options = tuple(tuple(pair.split("=", 1)) for pair in parts.query.split("&") if "=" in pair)
        return cls(parts.hostname, parts.port or 5432, dbname, unquote(parts.username), options)

    def describe(self) -> str:
        """``postgres://user@host:port/dbname`` (no password)."""
        return f"postgres://{self.user}@{self.host}:{self.port}/{self.dbname}"


#: PostgreSQL type names (psycopg ``Column.type_display``) -> the names DuckDB reports, so the
#: source model's checks and the catalog read one vocabulary on both backends.
_TYPE_NAMES = {
    "int8": "BIGINT",
    "int4": "INTEGER",
    "int2": "SMALLINT",
    "varchar": "VARCHAR",
    "bpchar": "VARCHAR",
    "timestamp": "TIMESTAMP",
    "timestamptz": "TIMESTAMP WITH TIME ZONE",
    "float8": "DOUBLE",
    "float4": "FLOAT",
    "bool": "BOOLEAN",
    "bigint": "BIGINT",
    "integer": "INTEGER",
    "smallint": "SMALLINT",
    "text": "VARCHAR",
    "character varying": "VARCHAR",
    "character": "VARCHAR",
    "timestamp without time zone": "TIMESTAMP",
    "timestamp with time zone": "TIMESTAMP WITH TIME ZONE",
    "date": "DATE",
    "double precision": "DOUBLE",
    "real": "FLOAT",
    "numeric": "DECIMAL",
    "boolean": "BOOLEAN",
    "uuid": "UUID",
    "json": "JSON",
    "jsonb": "JSON",
}


def duckdb_type_name(display: str) -> str:
    """The DuckDB name of a PostgreSQL type as psycopg displays it (``numeric(12,2)`` ->
    ``DECIMAL(12,2)``, ``timestamp without time zone[]`` -> ``TIMESTAMP[]``); unknown types
    upper-cased."""
    array = display.endswith("[]")
    base = display[:-2] if array else display
    match = re.fullmatch(r"([a-z0-9 ]+?)(\(.*\))?", base)
    name, size = (match.group(1), match.group(2) or "") if match else (base, "")
    mapped = _TYPE_NAMES.get(name)
    if mapped is None:
        out = base.upper()
    elif mapped == "DECIMAL":
        out = mapped + size.replace(" ", "")
    else:
        out = mapped
    return out + ("[]" if array else "")


class PostgresConnection:
    """One PostgreSQL session running the shared SQL (module docstring). ``warehouse``: the
    description errors name; ``dialect``: ``"postgres"``; ``product_schema``: the schema of the
    product's tables, which every rendered statement names instead of ``activation``
    (:func:`orchestrator.warehouse.product_schema.qualify`)."""

    dialect = "postgres"

    def __init__(
        self,
        raw: psycopg.Connection,
        target: PostgresTarget,
        timeout_s: float,
        product_schema: str = DEFAULT_PRODUCT_SCHEMA,
    ) -> None:
        self._raw = raw
        self.product_schema = product_schema
        self._cursor: psycopg.RawCursor | None = None
        self._counted: list[tuple] | None = None
        self.target = target
        self.warehouse = target.describe()
        self._timeout_s = timeout_s

    # -- DuckDB-like API ----------------------------------------------------------------------

    def execute(
        self, sql: str, params: Sequence[Any] | Mapping[str, Any] | None = None
    ) -> PostgresConnection:
        """Render ``sql`` (shared SQL, one or more statements) and run it; the last
        statement's rows are read with :meth:`fetchone` / :meth:`fetchall`. Returns self.

        Raises:
            WarehouseError: the server is gone, a schema or table is missing or not granted,
                or the statement timed out.
            psycopg.Error: any other refusal (syntax, constraint...).
        """
        statements, names = self.rendered(sql)
        values = _bind(names, params)
        cursor = psycopg.RawCursor(self._raw)
        with self._translated():
            for statement in statements:
                cursor.execute(statement, values if "$" in statement else None)
        self._cursor, self._counted = cursor, None
        return self

    def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> PostgresConnection:
        """Run one shared statement once per row of parameters (a pipeline of round trips)."""
        (statement,), names = self.rendered(sql)
        cursor = psycopg.RawCursor(self._raw)
        with self._translated():
            cursor.executemany(statement, [_bind(names, row) for row in rows])
        self._cursor, self._counted = cursor, None
        return self

    def fetchone(self) -> tuple | None:
        """The next row of the last result; for an INSERT, UPDATE or DELETE, ``(rows
        changed,)`` as DuckDB answers."""
        rows = self._count_rows()
        return (rows.pop(0) if rows else None) if rows is not None else self._cursor.fetchone()

    def fetchall(self) -> list[tuple]:
        rows = self._count_rows()
        if rows is not None:
            out, rows[:] = list(rows), []
            return out
        return self._cursor.fetchall()

    def fetchmany(self, size: int) -> list[tuple]:
        rows = self._count_rows()
        if rows is not None:
            out, rows[:] = rows[:size], rows[size:]
            return out
        return self._cursor.fetchmany(size)

    def _count_rows(self) -> list[tuple] | None:
        """DuckDB answers a data change with one row, the count: the same here."""
        cursor = self._need_cursor()
        if cursor.description is not None:
            return None
        if self._counted is None:
            self._counted = [(cursor.rowcount,)] if cursor.rowcount >= 0 else []
        return self._counted

    @property
    def description(self) -> list[tuple[str, str]] | None:
        """``(column name, DuckDB type name)`` of the last result (:func:`duckdb_type_name`)."""
        cursor = self._need_cursor()
        if cursor.description is None:
            return None
        return [(c.name, duckdb_type_name(c.type_display)) for c in cursor.description]

    @property
    def rowcount(self) -> int:
        return self._need_cursor().rowcount

    def begin(self) -> None:
        """Open a transaction (statements until :meth:`commit` or :meth:`rollback` are one)."""
        self._raw.execute("BEGIN")

    def commit(self) -> None:
        self._raw.execute("COMMIT")

    def rollback(self) -> None:
        self._raw.execute("ROLLBACK")

    def close(self) -> None:
        self._raw.close()

    @property
    def raw(self) -> psycopg.Connection:
        """The psycopg connection (bulk copy, server-side features)."""
        return self._raw

    def rendered(self, sql: str) -> tuple[tuple[str, ...], tuple[str | int, ...]]:
        """The PostgreSQL statements of the shared SQL ``sql`` naming this connection's
        product schema, and what each ``$n`` binds (:func:`orchestrator.warehouse.dialect.
        render_with_params`)."""
        statements, names = render_with_params(sql, "postgres")
        if self.product_schema != DEFAULT_PRODUCT_SCHEMA:
            statements = tuple(qualify(s, self.product_schema, "postgres") for s in statements)
        return statements, names

    # -- helpers ------------------------------------------------------------------------------

    def _need_cursor(self) -> psycopg.RawCursor:
        if self._cursor is None:
            raise RuntimeError("no statement has run on this connection yet")
        return self._cursor

    def _translated(self) -> _Translate:
        return _Translate(self.warehouse, self._timeout_s)


class _TextList(list):
    """A list of strings bound as ``text[]``."""


class _TextListDumper(ListDumper):
    """``text[]`` (psycopg binds a str as "unknown", which leaves ``unnest($1)`` of a list of
    strings ambiguous; a lone str stays "unknown", so the server casts it to the column's
    type as DuckDB does)."""

    def __init__(self, cls: type, context: Any = None) -> None:
        super().__init__(cls, context)
        self.sub_dumper = psycopg.types.string.StrDumper(str, context)
        self.oid = psycopg.postgres.types["text"].array_oid


def _value(value: Any) -> Any:
    if isinstance(value, (list, tuple)) and value and all(isinstance(v, str) for v in value):
        return _TextList(value)
    return value


def _bind(
    names: Sequence[str | int], params: Sequence[Any] | Mapping[str, Any] | None
) -> list[Any]:
    """Values in ``$1..$n`` order (:func:`orchestrator.warehouse.dialect.render_with_params`:
    a name is looked up in a mapping, an int indexes the positional values)."""
    if params is None:
        return []
    if isinstance(params, Mapping):
        return [_value(params[name]) for name in names]
    values = list(params)
    return [_value(values[name]) for name in names]


class _Translate:
    """Turns the four failures the user must act on into :class:`WarehouseError`."""

    def __init__(self, warehouse: str, timeout_s: float) -> None:
        self.warehouse, self.timeout_s = warehouse, timeout_s

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: type | None, error: BaseException | None, tb: object) -> bool:
        if error is None or not isinstance(error, psycopg.Error):
            return False
        first = (str(error).strip().splitlines() or [""])[0]
        if isinstance(error, psycopg.errors.QueryCanceled):
            raise WarehouseTimeout(
                self.warehouse,
                f"a statement ran past the statement timeout ({self.timeout_s:g} s) and was "
                "cancelled; nothing of it was kept",
                "raise warehouse.statement_timeout_s in activation.yaml, or the server's load",
            ) from None
        if isinstance(error, psycopg.errors.InsufficientPrivilege):
            raise WarehouseMissingObject(
                self.warehouse,
                f"permission denied ({first})",
                "GRANT USAGE and CREATE on the product's schema (warehouse.product_schema, "
                "default activation), SELECT on the source tables, to the warehouse user",
            ) from None
        if isinstance(error, (psycopg.errors.UndefinedTable, psycopg.errors.InvalidSchemaName)):
            raise WarehouseMissingObject(
                self.warehouse,
                f"missing table or schema ({first})",
                "the source model's table names in activation.yaml and the user's search_path",
            ) from error
        if isinstance(error, psycopg.OperationalError):
            raise WarehouseUnreachable(
                self.warehouse,
                f"the connection to the server was lost ({first})",
                "that the server runs and the network between here and it",
            ) from None
        return False


def _connect_error(
    target: PostgresTarget, error: psycopg.OperationalError, password_from: str
) -> WarehouseError:
    text = str(error)
    where = target.describe()
    if "password authentication failed" in text or "no password supplied" in text:
        return WarehouseAuthFailed(
            where,
            f"the server refused user {target.user!r} (wrong or missing password)",
            f"{password_from}, and the user's password on the server",
        )
    if "does not exist" in text and "database" in text:
        return WarehouseUnreachable(
            where,
            f"database {target.dbname!r} does not exist on the server",
            "the database name in warehouse.url",
        )
    return WarehouseUnreachable(
        where,
        "no server answered (connection refused or timed out)",
        "the host and port in warehouse.url, that the server runs, and the network",
    )


def connect_postgres(
    url: str,
    password: str,
    *,
    statement_timeout_s: float = 600,
    connect_timeout_s: float = 10,
    search_path: str = "public",
    application_name: str = "activation",
    password_from: str = "the password given",
    product_schema: str = DEFAULT_PRODUCT_SCHEMA,
) -> PostgresConnection:
    """Open the PostgreSQL warehouse at ``url`` (no password in it) with ``password``.

    The session runs in UTC with ``statement_timeout`` = ``statement_timeout_s`` seconds
    (0: none) and ``search_path`` (where unqualified source tables are found; never the
    server default ``"$user", public``, which would put the tables of a user named
    ``activation`` into the product's own schema). ``password_from`` says where the password
    came from in the error of a refused login (e.g. the environment variable's name).
    ``product_schema``: the schema of the product's tables (``warehouse.product_schema``).
    Close it when done (``con.close()``) or use :func:`orchestrator.warehouse.
    factory.warehouse_connection`.

    Raises:
        ValueError: ``url`` is not a valid PostgreSQL URL, or holds a password.
        WarehouseUnreachable: no server answered within ``connect_timeout_s`` s, or the
            database does not exist.
        WarehouseAuthFailed: wrong or missing password.
    """
    target = PostgresTarget.from_url(url)
    options = dict(target.options)
    try:
        raw = psycopg.connect(
            host=target.host,
            port=target.port,
            dbname=target.dbname,
            user=target.user,
            password=password,
            connect_timeout=max(1, int(connect_timeout_s)),
            application_name=application_name,
            autocommit=True,
            options=(
                f"-c TimeZone=UTC -c statement_timeout={int(statement_timeout_s * 1000)} "
                f"-c search_path={search_path.replace(' ', '')}"
            ),
            **options,
        )
    except psycopg.OperationalError as error:
        raise _connect_error(target, error, password_from) from None
    raw.adapters.register_dumper(_TextList, _TextListDumper)
    return PostgresConnection(raw, target, statement_timeout_s, product_schema)


__all__ = ["PostgresConnection", "PostgresTarget", "connect_postgres", "duckdb_type_name"]
