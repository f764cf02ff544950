"""What a destination refuses, summed up for people: counts by reason, hashed samples, and the
refusals that matter most (a privacy removal a platform would not carry out).

Read from ``activation.sync_rejections`` (the rows a destination refused and has not accepted
since; see :mod:`orchestrator.sync.state`) and ``activation.erasure_receipts`` (a privacy
request's removal refused at a destination). A **privacy removal** is a remove of a subject on
the suppression list (erasure, GDPR Art. 17, or objection, Art. 21), or a request's removal
whose latest receipt at the pair is ``refused``: the person asked to be removed and the
platform still holds them.

Nothing here returns an identifier: reasons are the platform's words as journaled (addresses
already masked by the sync), samples are hash prefixes of :data:`SAMPLE_PREFIX` characters.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import duckdb

#: Hash prefix length of a sample (the same as the command line's).
SAMPLE_PREFIX = 12
#: Samples kept per summary.
SAMPLE_SIZE = 5

_BY_REASON_SQL = """
    SELECT reason, count(*) AS n, count(*) FILTER (WHERE permanent) AS permanent
    FROM activation.sync_rejections WHERE segment = ? AND destination = ?
    GROUP BY reason ORDER BY n DESC, reason
"""

_SAMPLES_SQL = """
    SELECT DISTINCT left(subject_key, ?) AS prefix
    FROM activation.sync_rejections WHERE segment = ? AND destination = ?
    ORDER BY prefix LIMIT ?
"""

_PRIVACY_REMOVALS_SQL = """
    SELECT count(DISTINCT r.subject_key)
    FROM activation.sync_rejections AS r
    JOIN activation.suppression_list AS s
      ON s.subject_key = r.subject_key OR s.google_key = r.subject_key
    WHERE r.segment = ? AND r.destination = ? AND r.operation = 'remove'
"""

_REFUSED_RECEIPTS_SQL = """
    SELECT count(*) FROM (
        SELECT outcome FROM activation.erasure_receipts
        WHERE segment = ? AND destination = ?
        QUALIFY row_number() OVER (PARTITION BY request_id ORDER BY sent_at DESC) = 1
    ) WHERE outcome = 'refused'
"""


@dataclass(frozen=True)
class RejectionSummary:
    """Refusals a (segment, destination) holds now.

    ``total`` rows refused, of which ``permanent`` refused for good (not retried until the row
    changes); ``by_reason``: reason -> rows, most frequent first; ``samples``: up to
    :data:`SAMPLE_SIZE` hash prefixes; ``privacy_removals``: subjects whose erasure or objection
    removal the destination refused (see the module docstring).
    """

    total: int = 0
    permanent: int = 0
    by_reason: dict[str, int] = field(default_factory=dict)
    samples: tuple[str, ...] = ()
    privacy_removals: int = 0


def _table_exists(con: duckdb.DuckDBPyConnection, name: str) -> bool:
    (found,) = con.execute(
        "SELECT count(*) FROM information_schema.tables "
        "WHERE table_schema = 'activation' AND table_name = ?",
        [name],
    ).fetchone()
    return found > 0


def summarize_rejections(
    con: duckdb.DuckDBPyConnection, *, segment: str, destination: str
) -> RejectionSummary:
    """The :class:`RejectionSummary` of one pair (all zero before any sync created the tables)."""
    if not _table_exists(con, "sync_rejections"):
        return RejectionSummary()
    rows = con.execute(_BY_REASON_SQL, [segment, destination]).fetchall()
    samples = con.execute(
        _SAMPLES_SQL, [SAMPLE_PREFIX, segment, destination, SAMPLE_SIZE]
    ).fetchall()
    privacy = con.execute(_PRIVACY_REMOVALS_SQL, [segment, destination]).fetchone()[0]
    if _table_exists(con, "erasure_receipts"):
        privacy += con.execute(_REFUSED_RECEIPTS_SQL, [segment, destination]).fetchone()[0]
    return RejectionSummary(
        total=sum(n for _, n, _ in rows),
        permanent=sum(p for _, _, p in rows),
        by_reason={reason: n for reason, n, _ in rows},
        samples=tuple(prefix for (prefix,) in samples),
        privacy_removals=privacy,
    )


def subject_rejections(
    con: duckdb.DuckDBPyConnection, *, segment: str, subject_key: str
) -> list[dict[str, object]]:
    """One person's refusals in a segment: ``destination``, ``operation``, ``reason``,
    ``permanent``, ``rejected_at``, oldest first."""
    if not _table_exists(con, "sync_rejections"):
        return []
    names = ("destination", "operation", "reason", "permanent", "rejected_at")
    rows = con.execute(
        "SELECT destination, operation, reason, permanent, rejected_at "
        "FROM activation.sync_rejections WHERE segment = ? AND subject_key = ? "
        "ORDER BY rejected_at, destination",
        [segment, subject_key],
    ).fetchall()
    return [dict(zip(names, row, strict=True)) for row in rows]
