"""Refused and unconfirmed rows: the back-off of refused removes and what is stuck.

A remove a destination refuses (a per-row refusal, or the platform refusing the whole call for
the audience, e.g. Meta code 2650 "Audience Size too low") stays in ``sync_state`` (the
destination still holds the person) and is recorded in ``activation.sync_rejections`` with the
platform's words. It is not sent on every run: the sync waits
``REMOVE_RETRY_FIRST_S * 2 ** (attempts - 1)`` seconds after the refusal, at most
``REMOVE_RETRY_MAX_S`` (1 h, 2 h, 4 h ... capped at 7 days), and sends again at once when the
person's situation changes (the remove's reason is another one now: e.g. they left the segment,
then withdrew consent or asked for erasure). The other operations of the run go out either way.

:func:`stuck_rows` summarizes, per (operation, remove reason, platform's reason), what a pair
cannot get through: asset metadata, ``activation preview`` and the privacy receipts read it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime

import duckdb

#: First wait after a refused remove (seconds); doubled at each refusal in a row.
REMOVE_RETRY_FIRST_S = 3600
#: The longest wait between two attempts of a refused remove (seconds): 7 days.
REMOVE_RETRY_MAX_S = 7 * 24 * 3600


def retry_at_sql(at: str, attempts: str) -> str:
    """SQL for the time a refused remove may be sent again: ``at`` plus
    ``min(REMOVE_RETRY_FIRST_S * 2^(attempts - 1), REMOVE_RETRY_MAX_S)`` seconds."""
    return (
        f"({at} + to_seconds(least({REMOVE_RETRY_FIRST_S} * pow(2, least({attempts}, 30) - 1), "
        f"{REMOVE_RETRY_MAX_S})::BIGINT))"
    )


@dataclass(frozen=True)
class StuckGroup:
    """Rows of one pair the destination did not take, grouped.

    ``operation``: ``add`` | ``update`` | ``remove``; ``remove_reason``: the remove's reason
    (None otherwise); ``reason``: the platform's words; ``platform_status``: the status the
    platform keeps the contacts in (``unsubscribed``, ``cleaned``, ``forgotten``) or None;
    ``rows``: subjects; ``permanent``: refused for good (False: not confirmed, retried);
    ``next_retry_at``: earliest time a refused remove of the group is sent again (UTC, None
    when it is sent at the next run).
    """

    operation: str
    remove_reason: str | None
    reason: str
    platform_status: str | None
    rows: int
    permanent: bool
    next_retry_at: datetime | None

    def as_dict(self) -> dict[str, object]:
        """Plain values (``next_retry_at`` as ISO text) for metadata and JSON output."""
        values = asdict(self)
        values["next_retry_at"] = self.next_retry_at.isoformat() if self.next_retry_at else None
        return values


_STUCK_SQL = """
    SELECT operation, remove_reason, reason, platform_status, count(*) AS n,
           bool_or(permanent), min(retry_at)
    FROM activation.sync_rejections
    WHERE segment = ? AND destination = ?
    GROUP BY operation, remove_reason, reason, platform_status
    ORDER BY operation, remove_reason NULLS FIRST, n DESC, reason
"""


def stuck_rows(con: duckdb.DuckDBPyConnection, segment: str, destination: str) -> list[StuckGroup]:
    """What (segment, destination) cannot get through, per group (see :class:`StuckGroup`)."""
    rows = con.execute(_STUCK_SQL, [segment, destination]).fetchall()
    return [StuckGroup(*row) for row in rows]


def pending_rows(con: duckdb.DuckDBPyConnection, segment: str, destination: str) -> int:
    """Subjects of the pair whose last send has an unknown outcome (``fields_hash`` pending)."""
    (count,) = con.execute(
        "SELECT count(*) FROM activation.sync_state "
        "WHERE segment = ? AND destination = ? AND fields_hash = 'pending'",
        [segment, destination],
    ).fetchone()
    return int(count)


def deferred_removes_sql() -> str:
    """Statement marking ``remove`` rows of ``sync_diff`` whose same-reason remove was refused
    and whose back-off has not ended (``action = 'remove_deferred'``); parameters: segment,
    destination, now. Needs temp tables ``sync_diff`` and ``sync_remove_reasons``."""
    return """
        UPDATE sync_diff SET action = 'remove_deferred'
        WHERE action = 'remove' AND subject_key IN (
            SELECT r.subject_key FROM sync_remove_reasons r
            JOIN activation.sync_rejections j
              ON j.subject_key = r.subject_key AND j.operation = 'remove'
             AND j.remove_reason = r.reason
            WHERE j.segment = ? AND j.destination = ? AND j.retry_at > ?
        )
    """


__all__ = [
    "REMOVE_RETRY_FIRST_S",
    "REMOVE_RETRY_MAX_S",
    "StuckGroup",
    "deferred_removes_sql",
    "pending_rows",
    "retry_at_sql",
    "stuck_rows",
]
