"""Warehouse errors the product raises and catches on either backend.

:class:`WarehouseError` is one clear failure to reach or use the warehouse: it names the
warehouse (backend, host, port, database, user; never the password) and what to check. Its
subclasses say which: :class:`WarehouseUnreachable`, :class:`WarehouseAuthFailed`,
:class:`WarehouseMissingObject` (a schema or table is missing or not granted),
:class:`WarehouseTimeout` (a statement ran past the configured timeout).

:data:`DATABASE_ERRORS` is what code that works on either backend catches for "the warehouse
refused this statement" (DuckDB's and psycopg's base errors and ours);
:data:`MISSING_RELATION_ERRORS` for "this table or view does not exist (yet)".
"""

from __future__ import annotations

import duckdb
import psycopg
import psycopg.errors


class WarehouseError(RuntimeError):
    """The warehouse could not be reached or refused the work. ``warehouse``: its description
    (no password); ``hint``: what to check. The message holds both."""

    def __init__(self, warehouse: str, problem: str, hint: str) -> None:
        self.warehouse, self.problem, self.hint = warehouse, problem, hint
        super().__init__(f"warehouse {warehouse}: {problem}. Check: {hint}")


class WarehouseUnreachable(WarehouseError):
    """No server answered at the configured host and port (or the database does not exist)."""


class WarehouseAuthFailed(WarehouseError):
    """The server refused the user and password."""


class WarehouseMissingObject(WarehouseError):
    """A schema or table is missing, or the user lacks the grant to use it."""


class WarehouseTimeout(WarehouseError):
    """A statement ran longer than the configured statement timeout and was cancelled."""


DATABASE_ERRORS: tuple[type[Exception], ...] = (duckdb.Error, psycopg.Error, WarehouseError)
MISSING_RELATION_ERRORS: tuple[type[Exception], ...] = (
    duckdb.CatalogException,
    psycopg.errors.UndefinedTable,
    psycopg.errors.InvalidSchemaName,
    WarehouseMissingObject,
)

__all__ = [
    "DATABASE_ERRORS",
    "MISSING_RELATION_ERRORS",
    "WarehouseAuthFailed",
    "WarehouseError",
    "WarehouseMissingObject",
    "WarehouseTimeout",
    "WarehouseUnreachable",
]
