"""What a stage may ask of an open warehouse connection, whatever the backend.

:class:`WarehouseConnection` is the part of DuckDB's connection API that
:class:`orchestrator.warehouse.postgres.PostgresConnection` offers too: the stages that hold
only shared SQL (:mod:`orchestrator.warehouse.dialect`) take a connection of this type, get it
from :func:`orchestrator.warehouse.connect.connect` (or a Dagster resource's
``get_connection``), and catch :data:`orchestrator.warehouse.errors.DATABASE_ERRORS`, so no
DuckDB or psycopg API appears in them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Protocol


class WarehouseConnection(Protocol):
    """An open warehouse session: ``execute`` a shared statement (``?`` or ``$name``
    parameters) and read its rows; ``begin`` / ``commit`` / ``rollback`` a transaction (each
    statement commits on its own otherwise); ``description``: ``(column name, type name, ...)``
    of the last result, type names as DuckDB spells them."""

    def execute(
        self, sql: str, params: Sequence[Any] | Mapping[str, Any] | None = None, /
    ) -> Any: ...

    def executemany(self, sql: str, rows: Iterable[Sequence[Any]], /) -> Any: ...

    def fetchone(self) -> tuple | None: ...

    def fetchall(self) -> list[tuple]: ...

    @property
    def description(self) -> Any: ...

    def begin(self) -> Any: ...

    def commit(self) -> Any: ...

    def rollback(self) -> Any: ...


__all__ = ["WarehouseConnection"]
