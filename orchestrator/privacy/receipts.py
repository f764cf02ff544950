"""Erasure and objection receipts: what was sent to each destination and what it answered.

Tables (``orchestrator/warehouse/schema.py``):

``activation.erasure_receipts`` (request_id, segment, destination, audience_id, action,
outcome, detail, sent_at)
    One row per attempt at one (segment, destination) for one request. ``action``: what was
    sent (:data:`ACTIONS`); ``outcome``: ``ok`` (the platform acknowledged every row),
    ``refused`` (it answered and refused at least one row) or ``error`` (no usable answer, or
    we could not send); ``detail``: counts and the platform's words, addresses masked;
    ``sent_at``: naive UTC. The LATEST row per (request, segment, destination) counts.
``activation.request_processing`` (request_id, subjects, purged_rows, processed_at)
    One row per request handled by :func:`orchestrator.privacy.requests.process_requests`.

A request is **complete** when it was handled, it matched the person (a customer has or had
the address, or a destination holds one of its keys) and the latest receipt of every (segment,
destination) it touched is ``ok`` (a customer no destination held is complete once handled). A
request that matched nobody is **no_match**, never complete on the strength of nothing: it
stays open (handled again at each run, so a customer imported later is covered) and the
deadline check keeps counting it, because the controller still owes the person an answer.
GDPR Art. 12(3): the controller answers a request under Articles 15 to 22
"without undue delay and in any event within one month of receipt of the request"; the month
is counted as in Regulation (EEC, Euratom) No 1182/71 Art. 3(2)(c): it ends on the same date
of the next month, or on that month's last day when the date does not exist
(:func:`one_month_after`).
"""

from __future__ import annotations

import calendar
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from destinations.redaction import redact
from orchestrator.warehouse.connect import connect
from orchestrator.warehouse.connection import WarehouseConnection
from orchestrator.warehouse.target import Warehouse, as_target

if TYPE_CHECKING:
    from orchestrator.config import ProjectConfig

#: What a receipt says was sent: ``remove`` (ad audience: remove the hashed identifier),
#: ``unsubscribe`` (email: status unsubscribed, the platform keeps a suppression),
#: ``delete_permanent`` (email: erase the contact for good), ``archive`` (email: archived, used
#: for an objection when the address is no longer known to us).
ACTIONS: tuple[str, ...] = ("remove", "unsubscribe", "delete_permanent", "archive")
OUTCOMES: tuple[str, ...] = ("ok", "refused", "error")
#: Request types handled here (GDPR Art. 17 erasure, Art. 21 objection).
REQUEST_TYPES: tuple[str, ...] = ("erasure", "objection")
#: What a request that matched nobody means, for the receipt and the command line.
NO_MATCH_TEXT = (
    "no customer has this address and no destination holds it: nothing was removed. Check the"
    " address with the person (GDPR Art. 11(2), 12(6)); a +tag is matched as written except at"
    " Gmail. The address stays suppressed, and the request is handled again at each run"
)
#: Hex characters of a subject key shown to people (never the whole key, never an address).
PREFIX_LENGTH = 12


@dataclass(frozen=True)
class ReceiptLine:
    """One row of ``activation.erasure_receipts`` (see the module docstring)."""

    request_id: str
    segment: str
    destination: str
    audience_id: str
    action: str
    outcome: str
    detail: str
    sent_at: datetime


@dataclass(frozen=True)
class Overdue:
    """Open erasure/objection requests past their one-month deadline at ``now``.

    ``count``: how many; ``oldest_received_at``: the oldest one's ``received_at`` (None when
    none); ``request_ids``: their ids, oldest first.
    """

    count: int
    oldest_received_at: datetime | None
    request_ids: list[str]


def utc_now() -> datetime:
    """The wall clock as naive UTC (the warehouse stores naive UTC)."""
    return datetime.now(UTC).replace(tzinfo=None)


def scrub(text: str | None) -> str:
    """``text`` with anything shaped like an email address replaced by ``<email>`` and any
    credential (after ``Authorization``/``Basic``/``Bearer``, in a credential-named parameter)
    blanked: :func:`destinations.redaction.redact` (the clients already blanked every form of
    their own secret)."""
    return redact(text or "")


def key_prefix(key: str | None) -> str | None:
    """The first :data:`PREFIX_LENGTH` hex characters of a hash, with an ellipsis."""
    return None if not key else key[:PREFIX_LENGTH] + "…"


def one_month_after(moment: datetime) -> datetime:
    """``moment`` plus one calendar month (Regulation 1182/71 Art. 3(2)(c)): 31 January ->
    28 or 29 February, 15 March -> 15 April; the time of day is kept."""
    year, month = (moment.year + 1, 1) if moment.month == 12 else (moment.year, moment.month + 1)
    day = min(moment.day, calendar.monthrange(year, month)[1])
    return moment.replace(year=year, month=month, day=day)


def write_receipts(con: WarehouseConnection, lines: Sequence[ReceiptLine]) -> None:
    """Append receipt rows (addresses in ``detail`` masked); a no-op for no lines."""
    if not lines:
        return
    con.executemany(
        "INSERT INTO activation.erasure_receipts (request_id, segment, destination, "
        "audience_id, action, outcome, detail, sent_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        [
            [
                line.request_id,
                line.segment,
                line.destination,
                line.audience_id,
                line.action,
                line.outcome,
                scrub(line.detail),
                line.sent_at,
            ]
            for line in lines
        ],
    )


def mark_processed(
    con: WarehouseConnection,
    request_id: str,
    subjects: int,
    purged_rows: int,
    at: datetime,
    *,
    matched: bool = True,
) -> None:
    """Record that ``request_id`` was handled (replacing an earlier record of it).
    ``matched``: false when no customer had the address and no destination held it."""
    con.execute(
        "INSERT INTO activation.request_processing (request_id, subjects, purged_rows, "
        "processed_at, matched) VALUES (?, ?, ?, ?, ?) ON CONFLICT (request_id) DO UPDATE SET "
        "subjects = excluded.subjects, purged_rows = request_processing.purged_rows + "
        "excluded.purged_rows, processed_at = excluded.processed_at, "
        "matched = excluded.matched",
        [request_id, subjects, purged_rows, at, matched],
    )


_LATEST_SQL = """
    SELECT * FROM activation.erasure_receipts
    QUALIFY row_number() OVER (
        PARTITION BY request_id, segment, destination ORDER BY sent_at DESC) = 1
"""

_STATUS_SQL = f"""
    SELECT r.request_id, r.request_type, r.received_at,
           p.request_id IS NOT NULL AND coalesce(p.matched, true)
             AND NOT EXISTS (
                 SELECT 1 FROM ({_LATEST_SQL}) AS l
                 WHERE l.request_id = r.request_id AND l.outcome <> 'ok') AS complete
    FROM activation.src_privacy_requests AS r
    LEFT JOIN activation.request_processing AS p USING (request_id)
    WHERE r.request_type IN ('erasure', 'objection')
"""


def open_requests(con: WarehouseConnection) -> list[tuple[str, str, datetime]]:
    """Erasure/objection requests not complete yet: (request_id, request_type, received_at),
    oldest first."""
    return con.execute(
        f"SELECT request_id, request_type, received_at FROM ({_STATUS_SQL}) "
        "WHERE NOT complete ORDER BY received_at, request_id"
    ).fetchall()


def overdue_requests(con: WarehouseConnection, now: datetime) -> Overdue:
    """Open requests whose one-month deadline (:func:`one_month_after` ``received_at``) is
    before ``now`` (naive UTC)."""
    late = [
        (request_id, received)
        for request_id, _, received in open_requests(con)
        if one_month_after(received) < now
    ]
    return Overdue(len(late), late[0][1] if late else None, [rid for rid, _ in late])


def _request_row(con: WarehouseConnection, request_id: str) -> dict[str, Any]:
    row = con.execute(
        "SELECT r.request_type, r.received_at, lower(r.subject_key), s.complete, "
        "p.processed_at, p.subjects, p.purged_rows, coalesce(p.matched, true) "
        f"FROM activation.src_privacy_requests AS r JOIN ({_STATUS_SQL}) AS s USING (request_id) "
        "LEFT JOIN activation.request_processing AS p USING (request_id) "
        "WHERE r.request_id = ?",
        [request_id],
    ).fetchone()
    if row is None:
        raise KeyError(f"no erasure or objection request {request_id!r}")
    kind, received, key, complete, processed, subjects, purged, matched = row
    return {
        "request_id": request_id,
        "request_type": kind,
        "received_at": received,
        "deadline": one_month_after(received),
        "subject": key_prefix(key),
        "complete": bool(complete),
        "processed_at": processed,
        "subjects": subjects,
        "purged_rows": purged,
        "matched": bool(matched),
    }


def _destination_rows(con: WarehouseConnection, request_id: str) -> list[dict[str, Any]]:
    columns = ("segment", "destination", "audience_id", "action", "outcome", "detail", "sent_at")
    rows = con.execute(
        f"SELECT {', '.join(columns)} FROM ({_LATEST_SQL}) WHERE request_id = ? "
        "ORDER BY segment, destination",
        [request_id],
    ).fetchall()
    return [dict(zip(columns, row, strict=True)) for row in rows]


def receipt(
    con: WarehouseConnection, request_id: str, now: datetime | None = None
) -> dict[str, Any]:
    """The receipt of one request on an open connection (see :func:`receipt_for`)."""
    out = _request_row(con, request_id)
    out["destinations"] = _destination_rows(con, request_id)
    (attempts,) = con.execute(
        "SELECT count(*) FROM activation.erasure_receipts WHERE request_id = ?", [request_id]
    ).fetchone()
    out["attempts"] = attempts
    late = (now or utc_now()) > out["deadline"]
    if out["complete"]:
        out["status"] = "complete"
    elif out["processed_at"] is not None and not out["matched"]:
        out["status"] = "no_match"
    else:
        out["status"] = "overdue" if late else "open"
    return out


def receipt_for(
    warehouse_path: Warehouse,
    request_id: str,
    *,
    lock_timeout_s: float = 30,
    project: ProjectConfig | None = None,
) -> dict[str, Any]:
    """The receipt of one erasure or objection request, for ``activation receipt REQUEST_ID``.

    Returns a dict: ``request_id``, ``request_type``, ``received_at`` and ``deadline``
    (datetime, naive UTC), ``subject`` (hash prefix or None when the request names a
    customer id only), ``complete`` (bool), ``matched`` (bool), ``status`` (``complete``,
    ``no_match``, ``open`` or ``overdue``), ``processed_at`` (None until handled),
    ``subjects`` and ``purged_rows`` (int or None), ``attempts`` (receipt rows in total)
    and ``destinations``: the latest row per (segment, destination) as dicts with
    ``segment``, ``destination``, ``audience_id``, ``action``, ``outcome``, ``detail``,
    ``sent_at``. Never an email address. ``project``: the
    canonical views of its source model are made current first
    (:func:`orchestrator.warehouse.connect.connect`).

    Raises:
        KeyError: no erasure or objection request has this id.
        duckdb.IOException: the warehouse stayed locked for ``lock_timeout_s`` seconds.
        orchestrator.warehouse.errors.WarehouseError: a PostgreSQL warehouse is
            unreachable, refuses the password or a grant, or timed out.
    """
    with connect(as_target(warehouse_path), timeout_s=lock_timeout_s, project=project) as con:
        return receipt(con, request_id)


def _when(value: datetime | None) -> str:
    return "-" if value is None else value.strftime("%Y-%m-%d %H:%M:%S UTC")


def format_receipt(receipt: dict[str, Any]) -> str:
    """Plain text of a :func:`receipt_for` dict, one line per destination."""
    lines = [
        f"Request {receipt['request_id']} ({receipt['request_type']}), "
        f"subject {receipt['subject'] or '(by customer id)'}",
        f"  received {_when(receipt['received_at'])}, "
        f"deadline {_when(receipt['deadline'])} (GDPR Art. 12(3))",
        f"  status: {receipt['status'].upper()}",
    ]
    if receipt["processed_at"] is None:
        lines.append("  not handled yet")
        return "\n".join(lines)
    lines.append(
        f"  handled {_when(receipt['processed_at'])}: {receipt['subjects']} subject key(s), "
        f"{receipt['purged_rows']} row(s) purged from our own tables"
    )
    if receipt["status"] == "no_match":
        lines.append(f"  {NO_MATCH_TEXT}")
    elif not receipt["destinations"]:
        lines.append("  no destination held this person")
    for d in receipt["destinations"]:
        lines.append(
            f"  - {d['segment']} -> {d['destination']} (audience {d['audience_id']}): "
            f"{d['action']} -> {d['outcome'].upper()} at {_when(d['sent_at'])}; {d['detail']}"
        )
    return "\n".join(lines)


__all__ = [
    "ACTIONS",
    "NO_MATCH_TEXT",
    "OUTCOMES",
    "REQUEST_TYPES",
    "Overdue",
    "ReceiptLine",
    "format_receipt",
    "key_prefix",
    "mark_processed",
    "one_month_after",
    "open_requests",
    "overdue_requests",
    "receipt",
    "receipt_for",
    "scrub",
    "utc_now",
    "write_receipts",
]
