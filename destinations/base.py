"""The small protocol every destination client implements.

A sync hands a client batches of at most ``max_batch_size`` rows; the client makes one HTTP
request per batch (plus retries) and answers with one :class:`RowResult` per row, in the same
order. Rows the platform refused come back with ``ok=False`` and the platform's reason; a call
that fails as a whole raises a :class:`destinations.errors.DestinationError`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Protocol, runtime_checkable


class RemoveReason(StrEnum):
    """Why a member leaves a destination; email platforms act differently on each.

    ``LEFT_SEGMENT``: no longer matches the segment, or the consent expired without the person
    acting (email: archive, the contact may come back after a new consent).
    ``CONSENT_WITHDRAWN``: the person withdrew consent (email: unsubscribe, keeping the
    platform's suppression: GDPR Art. 7(3)). ``OBJECTION``: GDPR Art. 21 objection
    (unsubscribe, suppressed).
    ``ERASURE``: GDPR Art. 17 erasure (email: permanent delete where the platform supports it).
    ``REKEY``: the subject stays, but the destination now receives another form of its key
    (a normalization or identifier type changed): the old form is removed as it was added,
    and the new one added in the same run.
    """

    LEFT_SEGMENT = "left_segment"
    CONSENT_WITHDRAWN = "consent_withdrawn"
    OBJECTION = "objection"
    ERASURE = "erasure"
    REKEY = "rekey"


@dataclass(frozen=True, init=False)
class Row:
    """One member to send.

    ``subject_key``: sha256 hex of the base-normalized email (our key for the data subject).
    ``send_key``: what the platform matches on: a hash for ad platforms (``subject_key`` or the
    Google-normalized hash), the normalized email address for email platforms.
    ``fields``: merge fields for email platforms (name -> value); empty for ad platforms.
    ``destination_ref``: the platform's member id recorded at the last acknowledged send
    (Mailchimp: md5 of the lowercase email), or None.
    """

    subject_key: str
    send_key: str
    fields: Mapping[str, str] = field(default_factory=dict)
    destination_ref: str | None = None

    def __init__(
        self,
        subject_key: str,
        send_key: str,
        fields: Mapping[str, str] | None = None,
        destination_ref: str | None = None,
    ) -> None:
        # Same signature and result as the generated __init__, about 3x faster: a frozen
        # dataclass sets each field through object.__setattr__, and a sync builds one Row per
        # member sent (millions in a first sync).
        values = self.__dict__
        values["subject_key"] = subject_key
        values["send_key"] = send_key
        values["fields"] = {} if fields is None else fields
        values["destination_ref"] = destination_ref


@dataclass(frozen=True, init=False)
class RowResult:
    """The platform's answer for one row, read from what the answer says the platform did
    (final statuses, counts, per-row errors), never from the HTTP status alone.

    ``ok``: the answer confirms the operation. ``destination_ref``: the platform's member id to
    store in sync state (None when the platform keys members by the value we sent).
    ``reason``: the platform's words when not confirmed. ``permanent``: True when resending the
    same row would be refused again. ``unknown``: the answer neither confirms nor refuses the
    row (a count short of the rows sent, a member missing from the answer, a body that is not
    the documented JSON): the platform may or may not hold it, so sync state marks it pending.
    ``status``: the member's status as the platform reports it (email platforms:
    ``subscribed``, ``unsubscribed``, ``cleaned``, ``forgotten``...), None when not said.
    """

    subject_key: str
    ok: bool
    destination_ref: str | None = None
    reason: str | None = None
    permanent: bool = False
    unknown: bool = False
    status: str | None = None

    def __init__(
        self,
        subject_key: str,
        ok: bool,
        destination_ref: str | None = None,
        reason: str | None = None,
        permanent: bool = False,
        unknown: bool = False,
        status: str | None = None,
    ) -> None:
        # Same signature and result as the generated __init__, about 3x faster (see Row).
        values = self.__dict__
        values["subject_key"] = subject_key
        values["ok"] = ok
        values["destination_ref"] = destination_ref
        values["reason"] = reason
        values["permanent"] = permanent
        values["unknown"] = unknown
        values["status"] = status


@dataclass
class CallStats:
    """What a client did: HTTP requests made (``calls``, retries included), ``retries``,
    seconds spent waiting on throttling hints (``throttled_seconds``) and request body bytes
    sent (``bytes_sent``)."""

    calls: int = 0
    retries: int = 0
    throttled_seconds: float = 0.0
    bytes_sent: int = 0


@runtime_checkable
class Destination(Protocol):
    """A destination client. ``kind`` is ``"ad"`` (hashed identifiers only) or ``"email"``."""

    name: str
    kind: str
    max_batch_size: int
    stats: CallStats

    def add(self, audience_id: str, rows: Sequence[Row]) -> list[RowResult]:
        """Add (or subscribe) the rows; adding an existing member succeeds."""
        ...

    def update(self, audience_id: str, rows: Sequence[Row]) -> list[RowResult]:
        """Update the fields of existing members."""
        ...

    def remove(
        self, audience_id: str, rows: Sequence[Row], reason: RemoveReason
    ) -> list[RowResult]:
        """Remove the rows for ``reason``; removing an absent member succeeds."""
        ...

    def member_count(self, audience_id: str) -> int | None:
        """The platform's own count of members in the audience (None if it has no count)."""
        ...


#: ``(op, reason) -> rows one API call carries`` (``op``: ``add`` | ``update`` | ``remove``;
#: ``reason``: the remove's reason, None otherwise); 0 means the operation makes no call.
RowsPerCall = Callable[[str, "RemoveReason | None"], int]


def client_rows_per_call(client: object, op: str, reason: RemoveReason | None) -> int:
    """Rows one call of ``client`` carries for ``op`` (0: no call at all).

    A client may declare it with a ``rows_per_call(op, reason) -> int`` method (optional, not
    part of :class:`Destination`): Mailchimp archives and erases one member per request. A
    client without it sends ``max_batch_size`` rows per call for every operation.
    """
    method = getattr(client, "rows_per_call", None)
    if method is not None:
        return int(method(op, reason))
    return int(client.max_batch_size)  # type: ignore[attr-defined]


def min_calls(rows: int, rows_per_call: int, batch_size: int | None = None) -> int:
    """The fewest calls that send ``rows`` rows when one call carries ``rows_per_call`` (0: the
    operation makes no call) and a sync hands the client at most ``batch_size`` rows at a time
    (None: no limit): ``ceil(rows / min(rows_per_call, batch_size))``, or 0."""
    if rows <= 0 or rows_per_call <= 0:
        return 0
    per_call = rows_per_call if batch_size is None else min(rows_per_call, batch_size)
    return -(-rows // per_call)


def results_by_key(results: Sequence[RowResult]) -> dict[str, RowResult]:
    """Index row results by subject_key."""
    return {r.subject_key: r for r in results}


__all__ = [
    "CallStats",
    "Destination",
    "RemoveReason",
    "Row",
    "RowResult",
    "RowsPerCall",
    "client_rows_per_call",
    "min_calls",
    "results_by_key",
]
