"""Mailchimp Marketing API client: an audience (list) of email addresses with merge fields.

Endpoints (https://mailchimp.com/developer/marketing/api/):
``POST {base}/lists/{list_id}`` "Batch subscribe or unsubscribe list members", at most 500
members per call, with ``update_existing`` (answers ``new_members``, ``updated_members`` and
per-member ``errors``); ``DELETE /lists/{id}/members/{subscriber_hash}`` archives a member;
``POST /lists/{id}/members/{subscriber_hash}/actions/delete-permanent`` erases one for good;
``GET /lists/{id}`` gives ``stats.member_count``. ``subscriber_hash`` is "the MD5 hash of the
lowercase version of the list member's email address" (List Members docs), which is also the
member id we store as ``destination_ref``. Authentication is HTTP Basic with any user name and
the API key as password. Mailchimp throttles by concurrency (at most 10 simultaneous
connections) and its 429 carries no ``Retry-After``, so backoff with jitter applies.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from typing import Any

from destinations.base import CallStats, RemoveReason, Row, RowResult
from destinations.errors import AuthError, PermanentError
from destinations.http import HttpClient, RetryPolicy, redact

MAX_BATCH_SIZE = 500
PERMANENT_MARKERS = ("compliance state", "forgotten", "fake", "invalid", "permanently deleted")
"""Words in a member error meaning the address will be refused again: unsubscribed, bounced or
under compliance review ("compliance state"), erased ("Forgotten Email Not Subscribed"),
or an address Mailchimp judges fake or invalid."""
ALREADY_SUPPRESSED_MARKERS = ("compliance state", "forgotten")
"""Member errors that, for an unsubscribe, mean the address already gets no email."""


def subscriber_hash(email: str) -> str:
    """Mailchimp's member id: MD5 hex of the lowercase address."""
    return hashlib.md5(email.lower().encode("utf-8"), usedforsecurity=False).hexdigest()


def is_permanent_member_error(error: str, error_code: str = "") -> bool:
    """True when a batch member error will repeat for the same address (see PERMANENT_MARKERS)."""
    text = f"{error} {error_code}".lower()
    return any(marker in text for marker in PERMANENT_MARKERS)


class MailchimpClient:
    """A Mailchimp audience destination (``kind == "email"``).

    ``name``: destination name from ``activation.yaml``. ``base_url``: API root including
    ``/3.0`` (e.g. ``https://us21.api.mailchimp.com/3.0`` or the mock's ``/mailchimp/3.0``).
    ``api_key``: sent as the HTTP Basic password. ``send_key`` of each row is the normalized
    email address; ``destination_ref`` of results is its subscriber hash.
    """

    kind = "email"
    max_batch_size = MAX_BATCH_SIZE

    def __init__(
        self, name: str, base_url: str, api_key: str, *, policy: RetryPolicy | None = None
    ) -> None:
        self.name = name
        self.stats = CallStats()
        self._base = base_url.rstrip("/")
        self._secret = api_key
        self._http = HttpClient(
            name,
            secret=api_key,
            policy=policy or RetryPolicy(),
            stats=self.stats,
            auth=("anystring", api_key),
        )

    @classmethod
    def rows_per_call(cls, op: str, reason: RemoveReason | None = None) -> int:
        """Rows one request carries: 1 for a ``left_segment`` or ``erasure`` remove (archive
        and permanent delete take one member: ``DELETE /lists/{id}/members/{hash}``,
        ``POST .../members/{hash}/actions/delete-permanent``, Mailchimp Marketing API 3.0; there
        is no batch form), else ``max_batch_size`` (500, batch subscribe/unsubscribe)."""
        if op == "remove" and reason in (RemoveReason.LEFT_SEGMENT, RemoveReason.ERASURE):
            return 1
        return cls.max_batch_size

    def close(self) -> None:
        """Close the HTTP session."""
        self._http.close()

    def __enter__(self) -> MailchimpClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- protocol

    def add(self, audience_id: str, rows: Sequence[Row]) -> list[RowResult]:
        """Subscribe rows (``status: subscribed``, merge fields, ``update_existing``), 500 per
        call. An address in compliance state, forgotten, or fake/invalid is refused for good;
        other member errors are refused for now."""
        return self._batch(audience_id, rows, "subscribed", with_fields=True)

    def update(self, audience_id: str, rows: Sequence[Row]) -> list[RowResult]:
        """Update merge fields with the same batch call as :meth:`add` (``update_existing``,
        status ``subscribed``; Mailchimp itself refuses to resubscribe a suppressed address)."""
        return self._batch(audience_id, rows, "subscribed", with_fields=True)

    def remove(
        self, audience_id: str, rows: Sequence[Row], reason: RemoveReason
    ) -> list[RowResult]:
        """Remove rows the way ``reason`` requires.

        ``LEFT_SEGMENT``: archive (``DELETE .../members/{hash}``, one call per row; 404 = already
        gone = ok); the contact may come back later. ``CONSENT_WITHDRAWN`` / ``OBJECTION``: batch
        ``status: unsubscribed`` with ``update_existing``, which keeps Mailchimp's own suppression
        so the address cannot be resubscribed by mistake. Note that an address unknown to the
        list is CREATED as unsubscribed: accepted on purpose, it records the suppression on the
        platform. An address already in compliance state or forgotten counts as removed.
        ``ERASURE``: ``POST .../members/{hash}/actions/delete-permanent`` per row (404 = ok).
        Per-row calls use the row's ``destination_ref`` when given, else the md5 of ``send_key``.
        """
        if reason in (RemoveReason.CONSENT_WITHDRAWN, RemoveReason.OBJECTION):
            return self._batch(audience_id, rows, "unsubscribed", with_fields=False)
        if reason is RemoveReason.ERASURE:
            return [self._erase(audience_id, row) for row in rows]
        return [self._archive(audience_id, row) for row in rows]

    def member_count(self, audience_id: str) -> int | None:
        """``stats.member_count`` of the list (subscribed members), or None when absent."""
        body = self._http.request("GET", f"{self._base}/lists/{audience_id}").body
        stats = body.get("stats") if isinstance(body, dict) else None
        count = stats.get("member_count") if isinstance(stats, dict) else None
        return count if isinstance(count, int) and not isinstance(count, bool) else None

    # -- batch subscribe / unsubscribe

    def _batch(
        self, list_id: str, rows: Sequence[Row], status: str, *, with_fields: bool
    ) -> list[RowResult]:
        results: list[RowResult] = []
        for start in range(0, len(rows), self.max_batch_size):
            chunk = rows[start : start + self.max_batch_size]
            members = [_member(r, status, with_fields) for r in chunk]
            body = self._http.request(
                "POST",
                f"{self._base}/lists/{list_id}",
                json_body={"members": members, "update_existing": True},
            ).body
            results += self._batch_results(chunk, body if isinstance(body, dict) else {}, status)
        return results

    def _batch_results(
        self, rows: Sequence[Row], body: dict[str, Any], status: str
    ) -> list[RowResult]:
        done = _emails(body.get("new_members")) | _emails(body.get("updated_members"))
        errors = {
            str(e.get("email_address", "")).lower(): e
            for e in body.get("errors") or []
            if isinstance(e, dict)
        }
        return [self._row_result(row, done, errors, status) for row in rows]

    def _row_result(
        self, row: Row, done: set[str], errors: dict[str, dict], status: str
    ) -> RowResult:
        email = row.send_key.lower()
        ref = subscriber_hash(email)
        error = errors.get(email)
        if error is not None:
            words = str(error.get("error") or "member refused")
            code = str(error.get("error_code") or "")
            if status == "unsubscribed" and any(
                m in words.lower() for m in ALREADY_SUPPRESSED_MARKERS
            ):
                return RowResult(row.subject_key, ok=True, destination_ref=ref)
            reason = redact(f"{words} ({code})" if code else words, (self._secret,))
            permanent = is_permanent_member_error(words, code)
            return RowResult(row.subject_key, False, ref, reason, permanent)
        if email in done:
            return RowResult(row.subject_key, ok=True, destination_ref=ref)
        reason = "not acknowledged in the batch response"
        return RowResult(row.subject_key, ok=False, destination_ref=ref, reason=reason)

    # -- per-row removals

    def _archive(self, list_id: str, row: Row) -> RowResult:
        ref = row.destination_ref or subscriber_hash(row.send_key)
        url = f"{self._base}/lists/{list_id}/members/{ref}"
        return self._per_row(row, ref, "DELETE", url)

    def _erase(self, list_id: str, row: Row) -> RowResult:
        ref = row.destination_ref or subscriber_hash(row.send_key)
        url = f"{self._base}/lists/{list_id}/members/{ref}/actions/delete-permanent"
        return self._per_row(row, ref, "POST", url)

    def _per_row(self, row: Row, ref: str, method: str, url: str) -> RowResult:
        """One call for one row: 2xx or 404 is ok; a non-auth 4xx refuses this row for good;
        auth errors and transient failures propagate (the whole call failed)."""
        try:
            self._http.request(method, url, accept=(404,))
        except AuthError:
            raise
        except PermanentError as exc:
            return RowResult(row.subject_key, False, ref, str(exc), permanent=True)
        return RowResult(row.subject_key, ok=True, destination_ref=ref)


def _member(row: Row, status: str, with_fields: bool) -> dict[str, Any]:
    member: dict[str, Any] = {"email_address": row.send_key, "status": status}
    if with_fields:
        member["merge_fields"] = dict(row.fields)
    return member


def _emails(members: Iterable[Any] | None) -> set[str]:
    return {str(m.get("email_address", "")).lower() for m in members or [] if isinstance(m, dict)}


__all__ = [
    "MAX_BATCH_SIZE",
    "MailchimpClient",
    "is_permanent_member_error",
    "subscriber_hash",
]
