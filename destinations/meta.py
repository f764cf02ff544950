"""Meta (Facebook) Custom Audiences client: hashed email identifiers only.

Endpoints (Marketing API, Custom Audience Users,
https://developers.facebook.com/docs/marketing-api/reference/custom-audience/users):
``POST {base}/{version}/{audience_id}/users`` adds, ``DELETE`` the same path removes, both with
``{"payload": {"schema": "EMAIL_SHA256", "data": [hash, ...]}}`` and at most 10,000 records per
request ("You can add an unlimited number of records for an audience, but only a maximum of
10000 at a time"). ``GET {base}/{version}/{audience_id}?fields=approximate_count`` counts.

Multi-key: a row whose ``send_key`` carries a phone hash (``<email hash>|<phone hash>``, see
:mod:`destinations.identifiers`) is sent with schema ``["EMAIL_SHA256", "PHONE_SHA256"]`` and
data ``[[email, phone], ...]`` (an empty string for a member without phone), the documented
multi-key shape (https://developers.facebook.com/docs/marketing-api/audiences/guides/custom-audiences#multikey);
a batch of email-only rows keeps ``EMAIL_SHA256``. The phone hash is Meta's (digits with the
country code, no ``+``: :mod:`orchestrator.phone`). A remove names the member by the same key it
was added with (kept in ``sync_state.destination_ref``), so with the same identifiers.

Privacy invariant: no raw identifier ever reaches an ad platform. A row whose identifiers are
not 64 lowercase hex characters is refused here, before any request, and never sent.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from destinations.base import CallStats, RemoveReason, Row, RowResult
from destinations.errors import AuthError, EmptyIdentifierError, PermanentError
from destinations.http import HttpClient, RetryPolicy
from destinations.identifiers import SEPARATOR, split_send_key

SHA256_HEX = re.compile(r"[0-9a-f]{64}")
MULTI_KEY_SCHEMA = ["EMAIL_SHA256", "PHONE_SHA256"]
NOT_A_HASH = "not a SHA-256 hex identifier"
MAX_BATCH_SIZE = 10_000
#: Meta's error subcode for an audience whose edits are blocked (health or financial status).
BLOCKED_SUBCODE = 1713230


def is_sha256_hex(value: str) -> bool:
    """True when ``value`` is exactly 64 lowercase hexadecimal characters."""
    return isinstance(value, str) and SHA256_HEX.fullmatch(value) is not None


_HEX_DIGITS = b"0123456789abcdef"


def all_sha256_hex(values: Sequence[str]) -> bool:
    """True when every value is exactly 64 lowercase hexadecimal characters (the same test as
    :func:`is_sha256_hex`, made once over a whole batch in C: about 20x faster per value)."""
    try:
        joined = "".join(values).encode("ascii")
    except (TypeError, UnicodeEncodeError):  # a non-str value, or a non-ASCII character
        return False
    if not set(map(len, values)) <= {64}:
        return False
    return not joined.translate(None, _HEX_DIGITS)


class MetaAudienceClient:
    """A Meta Custom Audience destination (``kind == "ad"``).

    ``name``: destination name from ``activation.yaml``. ``base_url``: Graph API root (e.g.
    ``https://graph.facebook.com`` or the mock's ``/meta``). ``token``: access token, sent as
    ``Authorization: Bearer``. ``policy``: retries and timeouts. ``destination_ref`` is always
    None (Meta keys members by the hash we send). ``update`` succeeds without a call: an ad
    audience has no fields. Every :class:`RemoveReason` is the same ``DELETE``.
    """

    kind = "ad"
    max_batch_size = MAX_BATCH_SIZE

    def __init__(
        self,
        name: str,
        base_url: str,
        token: str,
        api_version: str = "v19.0",
        *,
        policy: RetryPolicy | None = None,
    ) -> None:
        self.name = name
        self.stats = CallStats()
        self._base = base_url.rstrip("/")
        self._version = api_version
        self._http = HttpClient(
            name,
            secret=token,
            policy=policy or RetryPolicy(),
            stats=self.stats,
            headers={"Authorization": f"Bearer {token}"},
        )

    @classmethod
    def rows_per_call(cls, op: str, reason: RemoveReason | None = None) -> int:
        """Rows one request carries: 0 for ``update`` (no call), else ``max_batch_size``
        (10,000; adds and every remove reason are batch calls)."""
        return 0 if op == "update" else cls.max_batch_size

    def close(self) -> None:
        """Close the HTTP session."""
        self._http.close()

    def __enter__(self) -> MetaAudienceClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def add(self, audience_id: str, rows: Sequence[Row]) -> list[RowResult]:
        """Add hashed rows to the audience, ``max_batch_size`` per request. Rows that are not
        SHA-256 hex are refused unsent; rows Meta reports invalid are refused (permanent).

        Raises:
            EmptyIdentifierError: a row's ``send_key`` is empty (nothing is sent).
        """
        return self._send("POST", audience_id, rows)

    def update(self, audience_id: str, rows: Sequence[Row]) -> list[RowResult]:
        """No-op success: an ad audience member has no fields to update."""
        return [RowResult(r.subject_key, ok=True) for r in rows]

    def remove(
        self, audience_id: str, rows: Sequence[Row], reason: RemoveReason
    ) -> list[RowResult]:
        """Remove rows (one ``DELETE`` per batch, whatever the ``reason``); removing an absent
        member succeeds. A ``DELETE`` Meta refuses as a whole (a 4xx other than auth, e.g. code
        2650 "Audience Size too low") refuses every row of the batch for good with Meta's words
        instead of raising.

        Raises:
            EmptyIdentifierError: a row's ``send_key`` is empty (nothing is sent).
        """
        return self._send("DELETE", audience_id, rows)

    def member_count(self, audience_id: str) -> int | None:
        """Meta's ``approximate_count`` for the audience, or None when it gives none."""
        url = f"{self._base}/{self._version}/{audience_id}"
        body = self._http.request("GET", url, params={"fields": "approximate_count"}).body
        count = body.get("approximate_count") if isinstance(body, dict) else None
        return count if isinstance(count, int) and not isinstance(count, bool) else None

    # -- internals

    def _send(self, method: str, audience_id: str, rows: Sequence[Row]) -> list[RowResult]:
        if any(not row.send_key for row in rows):
            raise EmptyIdentifierError(
                f"{self.name}: a row with an empty identifier would name nobody; nothing sent"
            )
        if all_sha256_hex([r.send_key for r in rows]):  # the common case: one check per batch
            answered: list[RowResult] = []
            for start in range(0, len(rows), self.max_batch_size):
                chunk = list(rows[start : start + self.max_batch_size])
                answered += self._send_chunk(method, audience_id, chunk)
            return answered
        results: dict[int, RowResult] = {}
        sendable: list[tuple[int, Row]] = []
        for i, row in enumerate(rows):
            if all(is_sha256_hex(k) for k in row.send_key.split(SEPARATOR, 1)):
                sendable.append((i, row))
            else:
                results[i] = RowResult(row.subject_key, ok=False, reason=NOT_A_HASH, permanent=True)
        for start in range(0, len(sendable), self.max_batch_size):
            chunk = sendable[start : start + self.max_batch_size]
            answered = self._send_chunk(method, audience_id, [r for _, r in chunk])
            results.update(zip((i for i, _ in chunk), answered, strict=True))
        return [results[i] for i in range(len(rows))]

    def _send_chunk(self, method: str, audience_id: str, rows: list[Row]) -> list[RowResult]:
        url = f"{self._base}/{self._version}/{audience_id}/users"
        try:
            answer = self._http.request(method, url, json_body=users_payload(rows))
        except AuthError:
            raise
        except PermanentError as error:
            if error.status == 400 and f"subcode {BLOCKED_SUBCODE}" in str(error):
                return blocked_rows(rows, str(error))
            if method != "DELETE":
                raise
            # A refused remove is a per-row answer, not a failed run: Meta refuses some
            # removals for the audience as a whole (code 2650 "Audience Size too low"); the
            # rest of the run goes on and the sync backs off before asking again.
            return [RowResult(r.subject_key, False, None, str(error), True) for r in rows]
        return rows_from_response(rows, answer.body)


def _count(body: dict[str, Any], name: str) -> int | None:
    value = body.get(name)
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def blocked_rows(rows: Sequence[Row], words: str) -> list[RowResult]:
    """Every row refused for good: Meta blocked the audience (``Audience Upload Blocked``,
    code 100, subcode 1713230; the audience's ``operation_status`` is 471). Since September
    2025 Meta restricts custom audiences that suggest health or financial status and refuses
    their membership edits; resending changes nothing until the audience is reviewed, so the
    refusal is permanent and recorded per row with Meta's words (other audiences are not
    affected)."""
    reason = f"audience blocked by Meta: {words}"
    return [RowResult(r.subject_key, ok=False, reason=reason, permanent=True) for r in rows]


def users_payload(rows: Sequence[Row]) -> dict[str, Any]:
    """``{"payload": {"schema", "data"}}``: ``EMAIL_SHA256`` with one hash per row, or the
    multi-key schema ``[EMAIL_SHA256, PHONE_SHA256]`` with ``[email, phone or ""]`` per row when
    some row carries a phone hash."""
    if not any(SEPARATOR in r.send_key for r in rows):
        return {"payload": {"schema": "EMAIL_SHA256", "data": [r.send_key for r in rows]}}
    data = [[email, phone or ""] for email, phone in (split_send_key(r.send_key) for r in rows)]
    return {"payload": {"schema": MULTI_KEY_SCHEMA, "data": data}}


def rows_from_response(rows: Sequence[Row], body: Any) -> list[RowResult]:
    """Per-row results from a users-edge response: only what the answer confirms is ``ok``.

    ``body``: the documented JSON ``{"audience_id", "session_id", "num_received",
    "num_invalid_entries", "invalid_entry_samples": {value: reason}}`` (Marketing API, Custom
    Audience Users, https://developers.facebook.com/docs/marketing-api/reference/custom-audience/users/).
    Rows named in ``invalid_entry_samples`` are refused for good with Meta's reason. Every
    other row is confirmed only when ``num_received`` equals the rows sent and no invalid
    entry is left unnamed; otherwise the unnamed rows cannot be told apart and are
    ``unknown`` (pending: the audience may or may not hold them). A body that is not that
    JSON (an HTML page, no ``num_received``) confirms nothing: every row is ``unknown``.
    """
    received = _count(body, "num_received") if isinstance(body, dict) else None
    if received is None:
        reason = "answer not understood (not the documented JSON with num_received)"
        return [RowResult(r.subject_key, False, None, reason, unknown=True) for r in rows]
    samples = body.get("invalid_entry_samples") or {}
    samples = samples if isinstance(samples, dict) else {}
    counted = _count(body, "num_invalid_entries") or 0
    named = sum(1 for r in rows if _sample_key(r, samples) is not None)
    doubt = None
    if received != len(rows):
        doubt = f"Meta received {received} of {len(rows)} rows sent"
    elif counted > named:
        doubt = f"Meta counted {counted} invalid entries but named only {named}"
    results = []
    for row in rows:
        if (key := _sample_key(row, samples)) is not None:
            reason = str(samples[key] or "invalid entry")
            results.append(RowResult(row.subject_key, ok=False, reason=reason, permanent=True))
        elif doubt is not None:
            results.append(RowResult(row.subject_key, False, None, doubt, unknown=True))
        else:
            results.append(RowResult(row.subject_key, ok=True))
    return results


def _sample_key(row: Row, samples: dict[str, Any]) -> str | None:
    """The key under which ``invalid_entry_samples`` names the row (its send key, or for a
    multi-key row its email hash), or None."""
    if row.send_key in samples:
        return row.send_key
    email, _phone = split_send_key(row.send_key)
    return email if email in samples else None


__all__ = [
    "BLOCKED_SUBCODE",
    "MAX_BATCH_SIZE",
    "MULTI_KEY_SCHEMA",
    "NOT_A_HASH",
    "MetaAudienceClient",
    "all_sha256_hex",
    "blocked_rows",
    "is_sha256_hex",
    "rows_from_response",
    "users_payload",
]
