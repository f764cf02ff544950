"""The issue's comparisons: a naive Python diff from our audience, and the raw DuckDB floor.

(:mod:`bench.end_to_end` holds the like-for-like ones, from the source tables.)

Naive baseline (what a hand-written script would do after our audience step), for one
(segment, destination):

1. *hashing*: pull the audience's customers (``customer_id`` of
   ``activation.audience_members``, i.e. after the product's consent filter, which the
   baseline does not redo) with their raw email and merge-field columns into Python, and for
   each row compute the subject key with the reference :func:`orchestrator.pseudonymize.
   subject_key` (``hashlib.sha256`` per row), the send key and the fields hash
   (``sha256`` of the compact JSON ``[send_key, name, value, ...]``, as the SQL diff does);
2. *diff*: pull the pair's ``sync_state`` into a dict and take Python set differences: adds
   (not held, or held as ``pending``), removes (held, not in the audience; mirror mode),
   updates (held with another hash); then cut each list into batches of the destination's
   ``max_batch_size``.

DuckDB floor, for the same pair: ``sha256(email)`` over the whole ``customers.email`` column,
and an anti-join of the audience's subject keys with the pair's ``sync_state`` keys, in both
directions (both key sets are materialized first, untimed). No normalization, no consent, no
export: a lower bound for what the SQL stages must do.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb

from bench.backend import reading
from orchestrator.pseudonymize import (
    normalize_email,
    register_sql_functions,
    subject_key,
    subject_key_sql,
)
from orchestrator.sync.diff import PENDING_HASH
from orchestrator.warehouse.target import WarehouseTarget

_OPS = ("add", "remove", "update")


@dataclass(frozen=True)
class NaiveResult:
    """The baseline's diff and timings.

    ``keys``: op (``add`` | ``remove`` | ``update``) -> sorted subject keys. ``batches``:
    op -> number of batches of ``batch_size``. Seconds: ``pull_s`` (audience rows into
    Python), ``hash_s`` (normalize + ``hashlib`` per row), ``diff_s`` (state pull, set
    differences, batching). ``rows``: audience rows hashed; ``state_rows``: rows in state.
    """

    keys: dict[str, list[str]]
    batches: dict[str, int]
    rows: int
    state_rows: int
    pull_s: float
    hash_s: float
    diff_s: float

    @property
    def hashing_s(self) -> float:
        """Pull plus per-row hashing (s)."""
        return self.pull_s + self.hash_s


def fields_hash(send_key: str, names: Sequence[str], values: Sequence[object]) -> str:
    """sha256 hex of the compact JSON ``[send_key, name0, value0, ...]`` (None as ''), as the
    SQL diff computes ``fields_hash``; ``names`` sorted, ``values`` in the same order."""
    items: list[str] = [send_key]
    for name, value in zip(names, values, strict=True):
        items += [name, "" if value is None else str(value)]
    text = json.dumps(items, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _target(rows: Sequence[tuple], kind: str, names: Sequence[str]) -> dict[str, str]:
    """subject_key -> fields_hash for the pulled audience rows."""
    target: dict[str, str] = {}
    for email, *values in rows:
        key = subject_key(email)
        if key is None:  # the product never admits these; kept for safety
            continue
        send_key = normalize_email(email) if kind == "email" else key
        target[key] = fields_hash(send_key or "", names, values)
    return target


def set_diff(
    target: Mapping[str, str], state: Mapping[str, str], mode: str
) -> dict[str, list[str]]:
    """Python set differences of ``target`` and ``state`` (subject_key -> fields_hash): op
    (``add`` | ``remove`` | ``update``) -> sorted keys, by the rules of the module docstring."""
    adds = [k for k in target if k not in state or state[k] == PENDING_HASH]
    both = target.keys() & state.keys()
    updates = [k for k in both if state[k] not in (target[k], PENDING_HASH)]
    if mode == "add_only":
        updates = []
    removes = list(state.keys() - target.keys()) if mode == "mirror" else []
    return {"add": sorted(adds), "remove": sorted(removes), "update": sorted(updates)}


def diff_against_state(
    con: Any,
    segment: str,
    destination: str,
    target: dict[str, str],
    mode: str,
    batch_size: int,
) -> tuple[dict[str, list[str]], dict[str, int], dict[str, str]]:
    """Pull the pair's ``sync_state`` (subject_key -> fields_hash) into a dict and diff
    ``target`` against it in Python (:func:`set_diff`). Returns (keys per op, batches per op of
    ``batch_size`` rows, the state dict)."""
    state = dict(
        con.execute(
            "SELECT subject_key, fields_hash FROM activation.sync_state "
            "WHERE segment = ? AND destination = ?",
            [segment, destination],
        ).fetchall()
    )
    keys = set_diff(target, state, mode)
    batches = {op: math.ceil(len(keys[op]) / batch_size) for op in _OPS}
    return keys, batches, state


def naive_diff(
    warehouse: Path | WarehouseTarget,
    *,
    segment: str,
    destination: str,
    kind: str,
    mode: str,
    fields: Mapping[str, str],
    batch_size: int,
) -> NaiveResult:
    """Compute the pair's diff the naive way (see module docstring), reading the warehouse
    read-only. ``fields``: merge field name -> ``customers`` column (trusted: from the bench's
    own segment specs, checked against the product's allowed columns by ``DiffParams``).
    ``warehouse``: the DuckDB file, or a PostgreSQL target (:mod:`bench.backend`)."""
    names = sorted(fields)
    columns = "".join(f', c."{fields[n]}"' for n in names)
    with reading(warehouse) as con:
        started = time.perf_counter()
        rows = con.execute(
            f"SELECT c.email{columns} FROM activation.audience_members am "
            "JOIN customers c ON c.customer_id = am.customer_id WHERE am.segment = ?",
            [segment],
        ).fetchall()
        pulled = time.perf_counter()
        target = _target(rows, kind, names)
        hashed = time.perf_counter()
        keys, batches, state = diff_against_state(
            con, segment, destination, target, mode, batch_size
        )
        done = time.perf_counter()
    return NaiveResult(
        keys, batches, len(rows), len(state), pulled - started, hashed - pulled, done - hashed
    )


@dataclass(frozen=True)
class FloorResult:
    """Raw DuckDB timings (s) for one pair: ``sha256_s`` over ``emails`` rows of
    ``customers.email``; ``our_key_expr_s``: the product's full key expression (trim, NFC,
    lowercase, validation, SHA-256) over the same column; ``antijoin_s``: both anti-joins of
    ``target_keys`` audience keys and ``state_keys`` state keys."""

    emails: int
    sha256_s: float
    our_key_expr_s: float
    target_keys: int
    state_keys: int
    antijoin_s: float

    @property
    def floor_s(self) -> float:
        """The floor for the pair: raw hashing plus the anti-joins (s)."""
        return self.sha256_s + self.antijoin_s


def _timed(con: duckdb.DuckDBPyConnection, sql: str, params: Sequence[object] = ()) -> float:
    started = time.perf_counter()
    con.execute(sql, list(params)).fetchall()
    return time.perf_counter() - started


def duckdb_floor(warehouse: Path, *, segment: str, destination: str) -> FloorResult:
    """Measure the raw DuckDB floor for one pair (see module docstring), read-only."""
    con = duckdb.connect(str(warehouse), read_only=True)
    register_sql_functions(con)
    try:
        emails = con.execute("SELECT count(*) FROM customers").fetchone()[0]
        sha_s = _timed(con, "SELECT count(sha256(email)) FROM customers")
        ours_s = _timed(con, f"SELECT count({subject_key_sql('email')}) FROM customers")
        con.execute(
            "CREATE TEMP TABLE t AS SELECT subject_key FROM activation.audience_members "
            "WHERE segment = ?",
            [segment],
        )
        con.execute(
            "CREATE TEMP TABLE s AS SELECT subject_key FROM activation.sync_state "
            "WHERE segment = ? AND destination = ?",
            [segment, destination],
        )
        anti_s = _timed(
            con,
            "SELECT (SELECT count(*) FROM t ANTI JOIN s USING (subject_key)),"
            " (SELECT count(*) FROM s ANTI JOIN t USING (subject_key))",
        )
        n_target = con.execute("SELECT count(*) FROM t").fetchone()[0]
        n_state = con.execute("SELECT count(*) FROM s").fetchone()[0]
    finally:
        con.close()
    return FloorResult(emails, sha_s, ours_s, n_target, n_state, anti_s)


__all__ = [
    "FloorResult",
    "NaiveResult",
    "duckdb_floor",
    "fields_hash",
    "naive_diff",
    "set_diff",
]
