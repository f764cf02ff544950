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
from destinations.errors import AuthError, EmptyIdentifierError, PermanentError
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
        if op == "remove" and reason in (
            RemoveReason.LEFT_SEGMENT,
            RemoveReason.ERASURE,
            RemoveReason.REKEY,
        ):
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
        call; each row's outcome is its member's final status in the answer
        (:func:`member_outcome`): a contact the platform keeps unsubscribed or cleaned is not
        synced. An address in compliance state, forgotten, or fake/invalid is refused for good;
        other member errors are refused for now.

        Raises:
            EmptyIdentifierError: a row has an empty address (nothing sent).
        """
        return self._batch(audience_id, rows, "subscribed", with_fields=True)

    def update(self, audience_id: str, rows: Sequence[Row]) -> list[RowResult]:
        """Update merge fields with the same batch call as :meth:`add` (``update_existing``,
        status ``subscribed``; Mailchimp itself refuses to resubscribe a suppressed address)."""
        return self._batch(audience_id, rows, "subscribed", with_fields=True)

    def remove(
        self, audience_id: str, rows: Sequence[Row], reason: RemoveReason
    ) -> list[RowResult]:
        """Remove rows the way ``reason`` requires, naming each contact by what the platform
        holds: the address when known, else the member id recorded at the last acknowledged
        send (``destination_ref``, the subscriber hash).

        ``LEFT_SEGMENT`` / ``REKEY``: archive (``DELETE .../members/{hash}``, one call per row;
        404 = already gone = ok); the contact may come back later. ``CONSENT_WITHDRAWN`` /
        ``OBJECTION``: ``status: unsubscribed``, which keeps Mailchimp's own suppression so the
        address cannot be resubscribed by mistake: in the batch call for rows with an address
        (an address unknown to the list is CREATED as unsubscribed: accepted on purpose, it
        records the suppression on the platform), and by ``PATCH .../members/{hash}`` for a row
        whose address is no longer known (changed or erased from the warehouse). Confirmed only
        when the answer reports the member ``unsubscribed`` or ``cleaned`` (or already in
        compliance state or forgotten); an answer saying ``subscribed`` is a refusal.
        ``ERASURE``: ``POST .../members/{hash}/actions/delete-permanent`` per row (404 = ok).

        Raises:
            EmptyIdentifierError: a row has neither an address nor a member id (nothing sent).
        """
        for row in rows:
            _check_named(self.name, row)
        if reason in (RemoveReason.CONSENT_WITHDRAWN, RemoveReason.OBJECTION):
            by_address = [r for r in rows if r.send_key]
            answered = {
                r.subject_key: r
                for r in self._batch(audience_id, by_address, "unsubscribed", with_fields=False)
            }
            for row in rows:
                if not row.send_key:
                    answered[row.subject_key] = self._unsubscribe_by_ref(audience_id, row)
            return [answered[row.subject_key] for row in rows]
        if reason is RemoveReason.ERASURE:
            return [self._erase(audience_id, row) for row in rows]
        return [self._archive(audience_id, row) for row in rows]

    def member_count(self, audience_id: str) -> int | None:
        """``stats.member_count`` of the list (subscribed members), or None when absent."""
        body = self._http.request("GET", f"{self._base}/lists/{audience_id}").body
        stats = body.get("stats") if isinstance(body, dict) else None
        count = stats.get("member_count") if isinstance(stats, dict) else None
        return count if isinstance(count, int) and not isinstance(count, bool) else None

    def member_statuses(self, audience_id: str, page_size: int = 1000) -> dict[str, str]:
        """Every contact of the list as member id (subscriber hash) -> status, read page by
        page ("List members info", ``GET /lists/{list_id}/members?count=&offset=``, at most
        1,000 per page: https://mailchimp.com/developer/marketing/api/list-members/list-members-info/).
        Used by the reconciliation check to compare members, not only counts."""
        statuses: dict[str, str] = {}
        offset = 0
        while True:
            body = self._http.request(
                "GET",
                f"{self._base}/lists/{audience_id}/members",
                params={"count": str(page_size), "offset": str(offset)},
            ).body
            members = body.get("members") if isinstance(body, dict) else None
            if not isinstance(members, list) or not members:
                return statuses
            for member in members:
                if isinstance(member, dict) and member.get("id"):
                    statuses[str(member["id"])] = str(member.get("status"))
            offset += len(members)
            total = body.get("total_items")
            if isinstance(total, int) and offset >= total:
                return statuses

    # -- batch subscribe / unsubscribe

    def _batch(
        self, list_id: str, rows: Sequence[Row], status: str, *, with_fields: bool
    ) -> list[RowResult]:
        for row in rows:
            if not row.send_key:
                raise EmptyIdentifierError(
                    f"{self.name}: a batch member with an empty address would name nobody; "
                    "nothing sent"
                )
        results: list[RowResult] = []
        for start in range(0, len(rows), self.max_batch_size):
            chunk = rows[start : start + self.max_batch_size]
            members = [_member(r, status, with_fields) for r in chunk]
            body = self._http.request(
                "POST",
                f"{self._base}/lists/{list_id}",
                json_body={"members": members, "update_existing": True},
            ).body
            results += self._batch_results(chunk, body, status)
        return results

    def _batch_results(self, rows: Sequence[Row], body: Any, status: str) -> list[RowResult]:
        """Each row's outcome from the batch answer (see :func:`member_outcome`); a body that is
        not the documented JSON confirms nothing (every row ``unknown``)."""
        if not isinstance(body, dict) or not any(
            isinstance(body.get(k), list) for k in ("new_members", "updated_members", "errors")
        ):
            reason = "answer not understood (not the documented batch JSON)"
            return [
                RowResult(r.subject_key, False, subscriber_hash(r.send_key), reason, unknown=True)
                for r in rows
            ]
        answered = _by_email(body.get("new_members")) | _by_email(body.get("updated_members"))
        errors = _by_email(body.get("errors"))
        return [
            member_outcome(
                row,
                answered.get(row.send_key.lower()),
                errors.get(row.send_key.lower()),
                status,
                self._secret,
            )
            for row in rows
        ]

    # -- per-row removals

    def _unsubscribe_by_ref(self, list_id: str, row: Row) -> RowResult:
        """``PATCH /lists/{id}/members/{hash}`` ``{"status": "unsubscribed"}`` for a contact
        whose address we no longer know ("Update list member", Mailchimp Marketing API 3.0:
        https://mailchimp.com/developer/marketing/api/list-members/update-list-member/).
        404: the list holds no such contact (nothing to unsubscribe: ok)."""
        ref = str(row.destination_ref)
        url = f"{self._base}/lists/{list_id}/members/{ref}"
        try:
            answer = self._http.request(
                "PATCH", url, json_body={"status": "unsubscribed"}, accept=(404,)
            )
        except AuthError:
            raise
        except PermanentError as exc:
            words = str(exc)
            if any(m in words.lower() for m in ALREADY_SUPPRESSED_MARKERS):
                return RowResult(row.subject_key, True, ref, status="unsubscribed")
            return RowResult(row.subject_key, False, ref, words, permanent=True)
        if answer.status == 404:
            return RowResult(row.subject_key, ok=True, destination_ref=ref)
        member = answer.body if isinstance(answer.body, dict) else None
        return member_outcome(row, member, None, "unsubscribed", self._secret, ref=ref)

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


def _check_named(destination: str, row: Row) -> None:
    if not row.send_key and not row.destination_ref:
        raise EmptyIdentifierError(
            f"{destination}: a row with neither an address nor a member id would name nobody; "
            "nothing sent"
        )


#: Final statuses that confirm an unsubscribe (the contact gets no marketing email).
UNSUBSCRIBED_STATUSES = ("unsubscribed", "cleaned")
#: Statuses in which the platform keeps a contact it was asked to subscribe (not synced).
KEPT_STATUSES = ("unsubscribed", "cleaned")


def member_outcome(
    row: Row,
    member: dict | None,
    error: dict | None,
    wanted: str,
    secret: str = "",
    *,
    ref: str | None = None,
) -> RowResult:
    """One row's outcome from what the answer says about its member.

    ``member``: the row's entry in ``new_members`` / ``updated_members`` (or the member resource
    of a per-row call), None when absent; ``error``: its entry in ``errors``; ``wanted``: the
    status asked for (``subscribed`` | ``unsubscribed``). Source: Mailchimp Marketing API,
    "Batch subscribe or unsubscribe" (``POST /lists/{list_id}``,
    https://mailchimp.com/developer/marketing/api/lists/batch-subscribe-or-unsubscribe/).

    - an ``errors`` entry: refused with Mailchimp's words (permanent for compliance state,
      forgotten, fake or invalid); for an unsubscribe, compliance state or forgotten already
      means no email: confirmed;
    - a member whose final ``status`` is the one asked for (for an unsubscribe, also
      ``cleaned``): confirmed;
    - asked to subscribe, kept ``unsubscribed`` or ``cleaned``: not synced, refused for good
      and reported with that status (the platform keeps its suppression);
    - asked to unsubscribe, answered ``subscribed``: refused (not removed, no suppression);
    - absent from the answer, or without a status: ``unknown`` (pending).
    """
    if ref is None:
        ref = subscriber_hash(row.send_key) if row.send_key else row.destination_ref
    key = row.subject_key
    if error is not None:
        words = str(error.get("error") or "member refused")
        code = str(error.get("error_code") or "")
        lowered = words.lower()
        if wanted == "unsubscribed" and any(m in lowered for m in ALREADY_SUPPRESSED_MARKERS):
            status = "forgotten" if "forgotten" in lowered else "unsubscribed"
            return RowResult(key, True, ref, status=status)
        reason = redact(f"{words} ({code})" if code else words, (secret,))
        status = "forgotten" if "forgotten" in lowered else None
        return RowResult(
            key, False, ref, reason, is_permanent_member_error(words, code), status=status
        )
    final = member.get("status") if isinstance(member, dict) else None
    if not isinstance(final, str):
        reason = "not confirmed: the member is missing from the answer or has no status"
        return RowResult(key, False, ref, reason, unknown=True)
    if final == wanted or (wanted == "unsubscribed" and final in UNSUBSCRIBED_STATUSES):
        return RowResult(key, True, ref, status=final)
    if wanted == "subscribed" and final in KEPT_STATUSES:
        reason = f"kept {final} by the platform (not subscribed)"
        return RowResult(key, False, ref, reason, permanent=True, status=final)
    reason = f"answered status {final!r}, not {wanted!r}"
    return RowResult(key, False, ref, reason, permanent=False, status=final)


def _member(row: Row, status: str, with_fields: bool) -> dict[str, Any]:
    member: dict[str, Any] = {"email_address": row.send_key, "status": status}
    if with_fields:
        member["merge_fields"] = dict(row.fields)
    return member


def _by_email(members: Iterable[Any] | None) -> dict[str, dict]:
    if not isinstance(members, list):
        return {}
    return {str(m.get("email_address", "")).lower(): m for m in members if isinstance(m, dict)}


__all__ = [
    "KEPT_STATUSES",
    "MAX_BATCH_SIZE",
    "UNSUBSCRIBED_STATUSES",
    "MailchimpClient",
    "is_permanent_member_error",
    "member_outcome",
    "subscriber_hash",
]
