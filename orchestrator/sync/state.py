"""Fold a sync journal into ``sync_state``, ``sync_rejections`` and ``destination_suppressions``.

One transaction per fold, set-based SQL over the journal file read by DuckDB. For each subject
the LAST journal line decides (ordered by run, batch, and result after intent):

- ``ack`` of ``add``/``update``: upsert the state row (``fields_hash``, ``destination_ref`` when
  given, ``synced_at`` = the line's ``at``).
- ``ack`` of ``remove``: delete the state row. On an email destination a remove for
  ``consent_withdrawn`` or ``objection`` also records the subject as ``unsubscribed`` in
  ``destination_suppressions``, and for ``erasure`` as ``forgotten`` (never added again).
- ``reject``: nothing changes in state (the destination kept what it had); the row goes to
  ``sync_rejections`` (replacing an earlier rejection of the same subject, hash and operation).
- ``intent`` with no result (sent, answer lost: crash, timeout, error): the outcome is unknown,
  so the row is held with ``fields_hash = 'pending'`` (:data:`~orchestrator.sync.diff.
  PENDING_HASH`). The next diff re-adds it if it is still in the audience, or removes it if
  not (mirror). Without this, a member whose add was acknowledged but not journaled would stay
  at the destination forever after leaving the segment.

Folding the same journal twice gives the same tables (upserts, deletes, replace-by-key), which
is what makes "commit, then delete the journal" crash-safe.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import duckdb

from destinations.base import RemoveReason
from orchestrator.sync import journal as journal_file
from orchestrator.sync.diff import PENDING_HASH

#: Per-batch values of a journal line, and their types.
_BATCH_COLUMNS = {
    "run": "VARCHAR",
    "seq": "BIGINT",
    "kind": "VARCHAR",
    "op": "VARCHAR",
    "remove_reason": "VARCHAR",
    "at": "TIMESTAMP",
}

#: Per-row values: ``<name>`` holds one row's value (per-row lines of earlier journals),
#: ``<name>s`` the values of every row of a batch line (see :mod:`orchestrator.sync.journal`).
_ROW_COLUMNS = {
    "subject_key": "VARCHAR",
    "fields_hash": "VARCHAR",
    "destination_ref": "VARCHAR",
    "reason": "VARCHAR",
    "permanent": "BOOLEAN",
}


def _load_sql() -> str:
    """Temp table ``sync_journal``: one row per (journal line, row of that line). The arrays of
    a batch line are unnested side by side (same length); a per-row line is its own row.
    A line of 10,000 rows (Meta's largest batch) is about 2 MB, under ``read_json``'s
    default 16 MB ``maximum_object_size`` (raising it makes DuckDB reserve that much memory
    per thread up front)."""
    columns = dict(_BATCH_COLUMNS)
    for name, sql_type in _ROW_COLUMNS.items():
        columns[name] = sql_type
        columns[f"{name}s"] = f"{sql_type}[]"
    spec = "{" + ", ".join(f"'{k}': '{v}'" for k, v in columns.items()) + "}"
    batch = ", ".join(f'"{k}"' for k in _BATCH_COLUMNS)
    rows = ", ".join(f"unnest(coalesce({k}s, [{k}])) AS {k}" for k in _ROW_COLUMNS)
    return f"""
    CREATE OR REPLACE TEMP TABLE sync_journal AS
    SELECT {batch}, {rows}
    FROM read_json(?, format = 'newline_delimited', columns = {spec})
"""


_LAST_SQL = """
    CREATE OR REPLACE TEMP TABLE sync_journal_last AS
    SELECT * FROM sync_journal
    QUALIFY row_number() OVER (
        PARTITION BY subject_key
        ORDER BY run DESC, seq DESC, (kind = 'intent') ASC
    ) = 1
"""

_UPSERT_ACKED_SQL = """
    INSERT INTO activation.sync_state
        (segment, destination, subject_key, destination_ref, fields_hash, synced_at)
    SELECT ?, ?, subject_key, destination_ref, fields_hash, "at"
    FROM sync_journal_last WHERE kind = 'ack' AND op IN ('add', 'update')
    ON CONFLICT (segment, destination, subject_key) DO UPDATE SET
        destination_ref = coalesce(excluded.destination_ref, sync_state.destination_ref),
        fields_hash = excluded.fields_hash,
        synced_at = excluded.synced_at
"""

_DELETE_REMOVED_SQL = """
    DELETE FROM activation.sync_state
    WHERE segment = ? AND destination = ? AND subject_key IN (
        SELECT subject_key FROM sync_journal_last WHERE kind = 'ack' AND op = 'remove'
    )
"""

_PENDING_SQL = """
    INSERT INTO activation.sync_state
        (segment, destination, subject_key, destination_ref, fields_hash, synced_at)
    SELECT ?, ?, subject_key, destination_ref, ?, "at"
    FROM sync_journal_last WHERE kind = 'intent'
    ON CONFLICT (segment, destination, subject_key) DO UPDATE SET
        destination_ref = coalesce(excluded.destination_ref, sync_state.destination_ref),
        fields_hash = excluded.fields_hash
"""

_REJECTIONS_DELETE_SQL = """
    DELETE FROM activation.sync_rejections r
    WHERE r.segment = ? AND r.destination = ? AND EXISTS (
        SELECT 1 FROM sync_journal j
        WHERE j.kind = 'reject' AND j.subject_key = r.subject_key
          AND j.fields_hash = r.fields_hash AND j.op = r.operation
    )
"""

_REJECTIONS_INSERT_SQL = """
    INSERT INTO activation.sync_rejections
        (segment, destination, subject_key, fields_hash, operation, reason, permanent, rejected_at)
    SELECT ?, ?, subject_key, fields_hash, op, coalesce(reason, 'refused'), permanent, "at"
    FROM sync_journal WHERE kind = 'reject'
    QUALIFY row_number() OVER (
        PARTITION BY subject_key, fields_hash, op ORDER BY run DESC, seq DESC
    ) = 1
"""

_SUPPRESS_SQL = """
    INSERT INTO activation.destination_suppressions
        (destination, subject_key, status, suppressed_at)
    SELECT ?, subject_key,
           CASE WHEN remove_reason = ? THEN 'forgotten' ELSE 'unsubscribed' END, "at"
    FROM sync_journal_last
    WHERE kind = 'ack' AND op = 'remove' AND remove_reason IN (?, ?, ?)
    ON CONFLICT (destination, subject_key) DO UPDATE SET
        status = CASE WHEN excluded.status = 'forgotten' THEN 'forgotten'
                      ELSE destination_suppressions.status END
"""


@dataclass(frozen=True)
class FoldStats:
    """What one fold applied: acknowledged rows (``acked``), refused rows (``rejected``) and
    rows of unknown outcome now held as pending (``pending``); all counts of subjects."""

    acked: int = 0
    rejected: int = 0
    pending: int = 0


def _load(con: duckdb.DuckDBPyConnection, path: Path) -> FoldStats:
    con.execute(_load_sql(), [str(path)])
    con.execute(_LAST_SQL)
    acked, rejected, pending = con.execute(
        "SELECT count(*) FILTER (kind = 'ack'), count(*) FILTER (kind = 'reject'),"
        " count(*) FILTER (kind = 'intent') FROM sync_journal_last"
    ).fetchone()
    return FoldStats(acked, rejected, pending)


def _apply(con: duckdb.DuckDBPyConnection, segment: str, destination: str, kind: str) -> None:
    pair = [segment, destination]
    con.execute(_UPSERT_ACKED_SQL, pair)
    con.execute(_DELETE_REMOVED_SQL, pair)
    con.execute(_PENDING_SQL, [*pair, PENDING_HASH])
    con.execute(_REJECTIONS_DELETE_SQL, pair)
    con.execute(_REJECTIONS_INSERT_SQL, pair)
    if kind == "email":
        con.execute(
            _SUPPRESS_SQL,
            [
                destination,
                RemoveReason.ERASURE.value,
                RemoveReason.ERASURE.value,
                RemoveReason.OBJECTION.value,
                RemoveReason.CONSENT_WITHDRAWN.value,
            ],
        )


def fold_journal(
    con: duckdb.DuckDBPyConnection, path: Path, *, segment: str, destination: str, kind: str
) -> FoldStats:
    """Apply the journal at ``path`` to the warehouse in one transaction, then delete it.

    ``kind`` is the destination kind (``ad`` | ``email``): suppressions are recorded for email
    destinations only. A missing or empty journal is a no-op. A torn last line is cut off
    first. Returns the :class:`FoldStats` (all zero when there was nothing to fold).

    Raises:
        duckdb.Error: the journal holds a malformed line (other than a torn last line); nothing
            is applied and the journal is kept for inspection.
    """
    path = Path(path)
    journal_file.repair(path)
    if not journal_file.has_entries(path):
        journal_file.discard(path)
        return FoldStats()
    stats = _load(con, path)
    con.begin()
    try:
        _apply(con, segment, destination, kind)
        con.commit()
    except BaseException:
        con.rollback()
        raise
    journal_file.discard(path)
    return stats


__all__ = ["FoldStats", "fold_journal"]
