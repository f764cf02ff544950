"""Open the warehouse DuckDB file for a short piece of work, waiting politely for its lock.

DuckDB lets one process at a time open a file for writing (and a read-only open fails while a
writer holds it). Dagster runs each step in its own process, so two steps touching the
warehouse at once would make the second fail with ``IOException: Could not set lock on file``.
:func:`connect` retries such failures with capped exponential backoff and jitter, and always
closes the connection, so a step holds the lock only for the work it does inside the ``with``.
"""

from __future__ import annotations

import random
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import duckdb

from orchestrator.pseudonymize import register_sql_functions
from orchestrator.settings import duckdb_config
from orchestrator.warehouse.schema import create_activation_schema

_FIRST_DELAY_S = 0.05
_MAX_DELAY_S = 2.0


def _is_lock_error(error: duckdb.Error) -> bool:
    text = str(error).lower()
    return "lock" in text or "conflicting" in text


def _open_with_retry(path: Path, read_only: bool, timeout_s: float) -> duckdb.DuckDBPyConnection:
    deadline = time.monotonic() + timeout_s
    delay = _FIRST_DELAY_S
    while True:
        try:
            return duckdb.connect(str(path), read_only=read_only, config=duckdb_config())
        except duckdb.IOException as error:
            remaining = deadline - time.monotonic()
            if not _is_lock_error(error) or remaining <= 0:
                raise
            time.sleep(min(remaining, delay * random.uniform(0.5, 1.0)))
            delay = min(delay * 2, _MAX_DELAY_S)


@contextmanager
def connect(
    path: Path, *, read_only: bool = False, timeout_s: float = 60
) -> Iterator[duckdb.DuckDBPyConnection]:
    """Open the DuckDB file at ``path`` for the duration of a ``with`` block.

    Retries while another process holds the file's lock (``duckdb.IOException`` mentioning the
    lock), waiting 50 ms doubling up to 2 s between attempts (with jitter), for at most
    ``timeout_s`` seconds in total. When ``read_only`` is False the product's ``activation``
    tables are created if missing. The connection is configured by
    :func:`orchestrator.settings.duckdb_config` (memory limit) and has the address
    normalization functions the key SQL needs
    (:func:`orchestrator.pseudonymize.register_sql_functions`). The connection is closed on
    exit, also on error.

    Raises:
        duckdb.IOException: the lock was still held after ``timeout_s`` seconds, or the file
            cannot be opened for another reason (e.g. ``read_only`` and the file is missing).
    """
    con = _open_with_retry(Path(path), read_only, timeout_s)
    try:
        register_sql_functions(con)
        if not read_only:
            create_activation_schema(con)
        yield con
    finally:
        con.close()


__all__ = ["connect"]
