"""Who is in an audience, for an auditor: one row per data subject, by hash prefix, with the
legal basis and the consent reference that allowed them, and where a destination is named,
what that destination holds.

Read from ``activation.audience_members`` (the last computed audience), ``sync_state`` (what
the destination acknowledged) and ``sync_rejections`` (what it refused). People a destination
still holds after they left the audience (kept by an upsert mode, or awaiting removal) are
listed too, with status ``held, not in the audience``. Never an email address: the subject is
the first :data:`PREFIX` characters of its SHA-256 key.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from typing import Any

from orchestrator.csv_output import csv_writer
from orchestrator.sync.diff import PENDING_HASH
from orchestrator.warehouse.connection import WarehouseConnection

#: Characters of the subject key shown (the same as every command).
PREFIX = 12
BASE_COLUMNS: tuple[str, ...] = ("subject", "legal_basis", "consent_ref", "computed_at")
DESTINATION_COLUMNS: tuple[str, ...] = ("status", "synced_at", "refused_reason")

_AUDIENCE_SQL = """
    SELECT left(subject_key, $prefix) AS subject, legal_basis, consent_ref, computed_at
    FROM activation.audience_members WHERE segment = $segment
    ORDER BY subject_key
"""

_DESTINATION_SQL = """
    WITH a AS (
        SELECT subject_key, legal_basis, consent_ref, computed_at
        FROM activation.audience_members WHERE segment = $segment
    ),
    s AS (
        SELECT subject_key, fields_hash, synced_at FROM activation.sync_state
        WHERE segment = $segment AND destination = $destination
    ),
    r AS (
        SELECT subject_key, min(reason) AS reason FROM activation.sync_rejections
        WHERE segment = $segment AND destination = $destination GROUP BY subject_key
    )
    SELECT left(coalesce(a.subject_key, s.subject_key), $prefix) AS subject,
           a.legal_basis, a.consent_ref, a.computed_at,
           CASE
               WHEN a.subject_key IS NULL THEN 'held, not in the audience'
               WHEN s.fields_hash = $pending THEN 'pending'
               WHEN s.subject_key IS NOT NULL THEN 'held'
               WHEN r.subject_key IS NOT NULL THEN 'refused'
               ELSE 'not sent yet'
           END AS status,
           s.synced_at, r.reason AS refused_reason
    FROM a FULL OUTER JOIN s ON s.subject_key = a.subject_key
    LEFT JOIN r ON r.subject_key = coalesce(a.subject_key, s.subject_key)
    ORDER BY coalesce(a.subject_key, s.subject_key)
"""


def list_members(
    con: WarehouseConnection, *, segment: str, destination: str | None = None
) -> list[dict[str, Any]]:
    """The audience of ``segment``, one dict per subject: ``subject`` (hash prefix),
    ``legal_basis``, ``consent_ref`` (consent_id, or ``purchase:<event_id>`` for soft opt-in),
    ``computed_at``; with ``destination`` also ``status`` (``held``, ``pending``, ``refused``,
    ``not sent yet``, or ``held, not in the audience``), ``synced_at`` and ``refused_reason``.

    Raises:
        duckdb.CatalogException: the activation tables do not exist yet (no run so far).
    """
    params: dict[str, object] = {"segment": segment, "prefix": PREFIX}
    if destination is None:
        rows = con.execute(_AUDIENCE_SQL, params)
    else:
        params |= {"destination": destination, "pending": PENDING_HASH}
        rows = con.execute(_DESTINATION_SQL, params)
    names = [d[0] for d in rows.description]
    return [dict(zip(names, row, strict=True)) for row in rows.fetchall()]


def members_csv(rows: Sequence[dict[str, Any]], columns: Sequence[str]) -> str:
    """``rows`` as CSV with a header of ``columns`` (formula-like cells neutralised)."""
    out = io.StringIO()
    writer = csv_writer(out)  # formula-like cells neutralized (orchestrator.csv_output)
    writer.writerow(columns)
    for row in rows:
        writer.writerow(["" if row.get(name) is None else row.get(name) for name in columns])
    return out.getvalue()
