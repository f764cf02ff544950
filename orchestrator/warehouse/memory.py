"""Bounded DuckDB memory that grows only when a step needs it.

Every connection starts at ``ACTIVATION_DUCKDB_MEMORY_LIMIT`` (250MB by default, see
:mod:`orchestrator.settings`), which keeps a step's memory flat as the warehouse grows: DuckDB
spills hash joins and aggregates to its temporary directory. Some operators cannot spill, so a
large enough warehouse raises ``duckdb.OutOfMemoryException`` instead (at 1,000,000 customers an
audience needed more than 200MB, bench/README.md). :func:`with_memory_growth` then doubles the
connection's limit and runs the work again, up to ``ACTIVATION_DUCKDB_MEMORY_MAX`` (default
``4GB``): a bigger warehouse costs memory, never a failed run.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping
from typing import TypeVar

import duckdb

from orchestrator.warehouse.product_schema import is_duckdb

log = logging.getLogger(__name__)

T = TypeVar("T")

DEFAULT_MEMORY_MAX = "4GB"

#: A "growth" under 5% is none: DuckDB reports a limit rounded (250MB as 238.4 MiB), so a
#: ceiling equal to the starting limit looked 0.01% higher and the step ran twice for nothing.
_NO_GROWTH = 1.05


def memory_limit_bytes(con: duckdb.DuckDBPyConnection) -> int:
    """The connection's current ``memory_limit`` in bytes."""
    (value,) = con.execute(
        "SELECT value FROM duckdb_settings() WHERE name = 'memory_limit'"
    ).fetchone()
    return parse_size(str(value))


_UNITS = {
    "b": 1,
    "byte": 1,
    "bytes": 1,
    "kb": 1000,
    "mb": 1000**2,
    "gb": 1000**3,
    "tb": 1000**4,
    "kib": 1024,
    "mib": 1024**2,
    "gib": 1024**3,
    "tib": 1024**4,
}


def parse_size(text: str) -> int:
    """Bytes in a size such as ``'300MB'``, ``'286.1 MiB'`` or ``'4GB'`` (DuckDB's units: KB,
    MB, GB, TB are powers of 1000, KiB, MiB, GiB, TiB of 1024).

    Raises:
        ValueError: not a number followed by one of those units.
    """
    cleaned = text.strip().lower().replace(" ", "")
    digits = cleaned.rstrip("abcdefghijklmnopqrstuvwxyz")
    unit = cleaned[len(digits) :] or "b"
    try:
        number = float(digits)
    except ValueError:
        number = -1.0
    if number < 0 or unit not in _UNITS:
        raise ValueError(f"not a memory size: {text!r}")
    return int(number * _UNITS[unit])


def memory_max_bytes(environ: Mapping[str, str] | None = None) -> int:
    """``ACTIVATION_DUCKDB_MEMORY_MAX`` (default 4GB) in bytes, read when called."""
    env = os.environ if environ is None else environ
    return parse_size((env.get("ACTIVATION_DUCKDB_MEMORY_MAX") or "").strip() or DEFAULT_MEMORY_MAX)


def with_memory_growth(
    con: duckdb.DuckDBPyConnection,
    work: Callable[[], T],
    *,
    what: str,
    environ: Mapping[str, str] | None = None,
) -> T:
    """Run ``work()``; when DuckDB runs out of memory, double the limit and run it again.

    ``work`` must be safe to repeat after an ``OutOfMemoryException`` (its own transaction
    rolled back, temporary tables created with ``CREATE OR REPLACE``). ``what`` names the work
    in the warning logged at each growth (no data, only sizes). The raised limit stays on the
    connection for the rest of its life (connections are short-lived).

    Raises:
        duckdb.OutOfMemoryException: still out of memory at ``ACTIVATION_DUCKDB_MEMORY_MAX``.
    """
    if not is_duckdb(con):  # a server manages its own memory
        return work()
    ceiling = memory_max_bytes(environ)
    current = memory_limit_bytes(con)  # DuckDB reports a rounded value: track our own after
    while True:
        try:
            return work()
        except duckdb.OutOfMemoryException:
            grown = min(current * 2, ceiling)
            if grown <= current * _NO_GROWTH:  # at the ceiling: running again would not help
                raise
            log.warning(
                "%s: DuckDB ran out of memory at %d MiB; retrying with %d MiB",
                what,
                current // 2**20,
                grown // 2**20,
            )
            con.execute(f"SET memory_limit = '{grown}B'")
            current = grown


__all__ = [
    "DEFAULT_MEMORY_MAX",
    "memory_limit_bytes",
    "memory_max_bytes",
    "parse_size",
    "with_memory_growth",
]
