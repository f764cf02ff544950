"""Google audiences through the Data Manager API (Customer Match): hashed identifiers only.

Endpoints (REST reference, https://developers.google.com/data-manager/api/reference/rest):

- ``POST {base}/v1/audienceMembers:ingest`` adds members, ``POST {base}/v1/audienceMembers:remove``
  removes them; at most 10,000 members per request and 10 identifiers per member
  (https://developers.google.com/data-manager/api/reference/rest/v1/audienceMembers/ingest).
  Each member is ``{"userData": {"userIdentifiers": [{"emailAddress": hex}, {"phoneNumber":
  hex}]}, "consent": {"adUserData", "adPersonalization"}}``; ``encoding`` is ``HEX``.
- The answer is only ``{"requestId"}``: processing is asynchronous, and
  ``GET {base}/v1/requestStatus:retrieve?requestId=`` says ``PROCESSING``, ``SUCCESS``,
  ``PARTIAL_SUCCESS`` or ``FAILED`` with error COUNTS per reason, never which member failed
  (https://developers.google.com/data-manager/api/reference/rest/v1/requestStatus/retrieve).
- Fail fast: a member that fails basic validation fails the whole request (400
  ``INVALID_ARGUMENT``, ``google.rpc.BadRequest.fieldViolations[].field`` =
  ``audience_members.audience_members[i]``...) and nothing is processed
  (https://developers.google.com/data-manager/api/devguides/concepts/understand-errors).
- Quota: 429 ``RESOURCE_EXHAUSTED`` with ``google.rpc.RetryInfo.retryDelay``, retried by the
  shared HTTP layer (:mod:`destinations.http`) after that delay.
- Consent: ``adUserData`` / ``adPersonalization`` = ``CONSENT_GRANTED`` | ``CONSENT_DENIED``,
  per request or per member, the member's winning
  (https://developers.google.com/data-manager/api/reference/rest/v1/Consent); removals carry
  none.
- Identifiers: email trimmed, lowercased, SHA-256, hex; phone in E.164 WITH the leading ``+``,
  then SHA-256, hex (https://developers.google.com/data-manager/api/get-started/formatting).

How a row's result is decided (acknowledgement from what the platform says it did):

- ``SUCCESS`` acknowledges every member of the request.
- ``FAILED`` whose error counts cover every member rejects them all with Google's reason.
- ``PARTIAL_SUCCESS`` (or counts short of the members) cannot say which member failed: a request
  of one member is rejected; a larger one is split in two and each half sent again (ingest and
  remove are idempotent), until every failed member is alone in its request. Members of a
  request whose answer says nothing certain are never acknowledged.
- A request still ``PROCESSING`` after ``status_wait_s`` gets no result: the sync keeps its rows
  pending and the request in :meth:`take_submitted`, to be asked again by the next run
  (:mod:`orchestrator.sync.google_requests`).
- A 400 naming members rejects those members for good (Google's reason) and sends the others.

Privacy invariant: a row whose identifiers are not 64 lowercase hex characters is refused here,
before any request, and never sent.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from destinations.base import CallStats, RemoveReason, Row, RowResult
from destinations.errors import EmptyIdentifierError, PermanentError
from destinations.http import HttpClient, RetryPolicy, error_details
from destinations.identifiers import split_send_key
from destinations.meta import NOT_A_HASH, is_sha256_hex

MAX_BATCH_SIZE = 10_000
MAX_IDENTIFIERS = 10
CONSENT_FIELDS = {"ad_user_data": "adUserData", "ad_personalization": "adPersonalization"}
CONSENT_VALUES = ("CONSENT_GRANTED", "CONSENT_DENIED")
FINAL_STATUSES = ("SUCCESS", "PARTIAL_SUCCESS", "FAILED")
#: Processing failures that describe the member's data: resending it unchanged fails again.
RETRYABLE_REASONS = frozenset({"INTERNAL_ERROR", "DEADLINE_EXCEEDED", "RESOURCE_EXHAUSTED"})


@dataclass(frozen=True)
class RequestStatus:
    """One ``requestStatus:retrieve`` answer for our single destination.

    ``status``: ``PROCESSING`` | ``SUCCESS`` | ``PARTIAL_SUCCESS`` | ``FAILED`` |
    ``REQUEST_STATUS_UNKNOWN``. ``records``: members the request held (None if not said).
    ``errors``: reason -> failed record count.
    """

    status: str
    records: int | None
    errors: dict[str, int]

    @property
    def failed(self) -> int:
        """Failed records, summed over reasons."""
        return sum(self.errors.values())

    def reason(self) -> str:
        """Google's words for the failures (``INVALID_SHA256_FORMAT x2, ...``)."""
        if not self.errors:
            return f"Google reported {self.status} without error counts"
        return "Google: " + ", ".join(f"{r} x{n}" for r, n in sorted(self.errors.items()))


@dataclass
class SubmittedRequest:
    """A request Google accepted and had not finished processing when the client stopped
    waiting: ``request_id``, ``op`` (``add`` | ``update`` | ``remove``), ``audience_id`` and the
    ``rows`` it carried (their outcome is unknown: the sync keeps them pending)."""

    request_id: str
    op: str
    audience_id: str
    rows: list[Row] = field(default_factory=list)


class GoogleAudienceClient:
    """A Google Customer Match audience through the Data Manager API (``kind == "ad"``).

    ``name``: destination name from ``activation.yaml``. ``base_url``: API root
    (``https://datamanager.googleapis.com`` or the mock's ``/google``). ``token``: an OAuth 2.0
    access token with scope ``https://www.googleapis.com/auth/datamanager``, sent as
    ``Authorization: Bearer``. ``account_id`` / ``account_type``: the operating account
    (e.g. the Google Ads customer id, ``GOOGLE_ADS``); the ``audience_id`` of a sync is the
    ``productDestinationId`` (the user list id). ``status_wait_s``: how long one call waits
    for its request to be processed (s); ``poll_interval_s`` between status reads (s).
    ``Row.fields`` may carry ``ad_user_data`` / ``ad_personalization`` =
    ``CONSENT_GRANTED`` | ``CONSENT_DENIED`` (sent per member on adds; removals carry none).
    ``destination_ref`` is always None (Google keys members by the identifiers we send).
    """

    kind = "ad"
    max_batch_size = MAX_BATCH_SIZE

    def __init__(
        self,
        name: str,
        base_url: str,
        token: str,
        *,
        account_id: str,
        account_type: str = "GOOGLE_ADS",
        policy: RetryPolicy | None = None,
        status_wait_s: float = 30.0,
        poll_interval_s: float = 1.0,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.name = name
        self.stats = CallStats()
        self._base = base_url.rstrip("/")
        self._account = {"accountType": account_type, "accountId": account_id}
        self._wait = status_wait_s
        self._poll = poll_interval_s
        self._sleep = sleep
        self._submitted: list[SubmittedRequest] = []
        self._http = HttpClient(
            name,
            secret=token,
            policy=policy or RetryPolicy(),
            stats=self.stats,
            headers={"Authorization": f"Bearer {token}"},
        )

    @classmethod
    def rows_per_call(cls, op: str, reason: RemoveReason | None = None) -> int:
        """Rows one request carries: ``max_batch_size`` (10,000) for every operation (an
        update is a new ingest carrying the member's current consent)."""
        return cls.max_batch_size

    def close(self) -> None:
        """Close the HTTP session."""
        self._http.close()

    def __enter__(self) -> GoogleAudienceClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- the Destination protocol

    def add(self, audience_id: str, rows: Sequence[Row]) -> list[RowResult]:
        """Ingest rows (with their consent); results only for members whose request status is
        final within ``status_wait_s`` (the others are in :meth:`take_submitted`)."""
        return self._send("add", audience_id, rows)

    def update(self, audience_id: str, rows: Sequence[Row]) -> list[RowResult]:
        """Ingest again: the member's consent signals changed (identifiers are the key)."""
        return self._send("update", audience_id, rows)

    def remove(
        self, audience_id: str, rows: Sequence[Row], reason: RemoveReason
    ) -> list[RowResult]:
        """Remove rows by the identifiers they were added with (no consent: a removal needs
        none); removing an absent member succeeds.

        Raises:
            EmptyIdentifierError: a row has an empty ``send_key`` (nothing sent).
        """
        return self._send("remove", audience_id, rows)

    def member_count(self, audience_id: str) -> int | None:
        """The list's size for display as Google reports it (``sizeInfo``), or None."""
        size = self._user_list(audience_id).get("sizeInfo") or {}
        try:
            return int(size.get("displayNetworkMembersCount"))
        except (TypeError, ValueError):
            return None

    def targetable(self, audience_id: str) -> bool | None:
        """Whether Google can serve ads to the list (``targetNetworkInfo.eligibleForDisplay``:
        a Customer Match list needs at least 100 active members), None when not said."""
        info = self._user_list(audience_id).get("targetNetworkInfo") or {}
        eligible = info.get("eligibleForDisplay")
        return eligible if isinstance(eligible, bool) else None

    def _user_list(self, audience_id: str) -> dict[str, Any]:
        account = self._account
        url = (
            f"{self._base}/v1/accountTypes/{account['accountType']}/accounts/"
            f"{account['accountId']}/userLists/{audience_id}"
        )
        body = self._http.request("GET", url).body
        return body if isinstance(body, dict) else {}

    # -- asynchronous requests

    def take_submitted(self) -> list[SubmittedRequest]:
        """Requests accepted but not final when the client stopped waiting, oldest first;
        the list is emptied (the sync records them, see ``orchestrator.sync.google_requests``)."""
        taken, self._submitted = self._submitted, []
        return taken

    def request_status(self, request_id: str) -> RequestStatus:
        """Read one request's status (``requestStatus:retrieve``).

        Raises:
            PermanentError: Google does not know the request (404) or refused the read.
        """
        url = f"{self._base}/v1/requestStatus:retrieve"
        body = self._http.request("GET", url, params={"requestId": request_id}).body
        return parse_status(body)

    def settle(self, submitted: SubmittedRequest, status: RequestStatus) -> list[RowResult]:
        """Results for the rows of an earlier request whose ``status`` is now known: final
        results as described in the module docstring (a partial failure is split and sent
        again, waiting up to ``status_wait_s``); rows still unknown get no result and their
        new requests are in :meth:`take_submitted`."""
        return self._outcome(submitted.op, submitted.audience_id, submitted.rows, status)

    # -- internals

    def _send(self, op: str, audience_id: str, rows: Sequence[Row]) -> list[RowResult]:
        if any(not row.send_key for row in rows):
            raise EmptyIdentifierError(
                f"{self.name}: a row with an empty identifier would name nobody; nothing sent"
            )
        results: dict[str, RowResult] = {}
        sendable: list[Row] = []
        for row in rows:
            if _valid_identifiers(row.send_key):
                sendable.append(row)
            else:
                results[row.subject_key] = RowResult(
                    row.subject_key, ok=False, reason=NOT_A_HASH, permanent=True
                )
        for start in range(0, len(sendable), self.max_batch_size):
            chunk = sendable[start : start + self.max_batch_size]
            for result in self._submit_and_wait(op, audience_id, chunk):
                results[result.subject_key] = result
        return [results[r.subject_key] for r in rows if r.subject_key in results]

    def _submit_and_wait(self, op: str, audience_id: str, rows: list[Row]) -> list[RowResult]:
        refused, request_id, kept = self._submit(op, audience_id, rows)
        if request_id is None:
            return refused
        return refused + self._await(op, audience_id, kept, request_id)

    def _submit(
        self, op: str, audience_id: str, rows: list[Row]
    ) -> tuple[list[RowResult], str | None, list[Row]]:
        """POST the rows; members Google names in a 400 are refused and the rest sent again.
        Returns (refused rows, request id or None when nothing was left, rows sent)."""
        refused: list[RowResult] = []
        while rows:
            answer = self._http.request(
                "POST",
                self._method_url(op),
                json_body=self._body(op, audience_id, rows),
                accept=(400,),
            )
            if answer.status != 400:
                request_id = answer.body.get("requestId") if isinstance(answer.body, dict) else None
                if not isinstance(request_id, str) or not request_id:
                    raise PermanentError(self.name, "ingest answered without a requestId")
                return refused, request_id, rows
            named = member_violations(answer.body, len(rows))
            if not named:
                message, _code, _transient = error_details(answer.body)
                raise PermanentError(self.name, message, 400)
            refused += [
                RowResult(rows[i].subject_key, ok=False, reason=reason, permanent=True)
                for i, reason in sorted(named.items())
            ]
            rows = [row for i, row in enumerate(rows) if i not in named]
        return refused, None, rows

    def _await(
        self, op: str, audience_id: str, rows: list[Row], request_id: str
    ) -> list[RowResult]:
        deadline = time.monotonic() + self._wait
        while True:
            status = self.request_status(request_id)
            if status.status in FINAL_STATUSES or time.monotonic() >= deadline:
                break
            self._sleep(min(self._poll, max(deadline - time.monotonic(), 0.0)))
        if status.status not in FINAL_STATUSES:
            self._submitted.append(SubmittedRequest(request_id, op, audience_id, list(rows)))
            return []
        return self._outcome(op, audience_id, rows, status)

    def _outcome(
        self, op: str, audience_id: str, rows: list[Row], status: RequestStatus
    ) -> list[RowResult]:
        if status.status == "SUCCESS":
            return [RowResult(r.subject_key, ok=True) for r in rows]
        if status.status not in FINAL_STATUSES:
            return []
        every = status.status == "FAILED" and status.failed >= len(rows)
        if every or len(rows) == 1:
            permanent = not set(status.errors) & RETRYABLE_REASONS and bool(status.errors)
            reason = status.reason()
            return [
                RowResult(r.subject_key, ok=False, reason=reason, permanent=permanent) for r in rows
            ]
        middle = len(rows) // 2
        return self._send(op, audience_id, rows[:middle]) + self._send(
            op, audience_id, rows[middle:]
        )

    def _method_url(self, op: str) -> str:
        method = "remove" if op == "remove" else "ingest"
        return f"{self._base}/v1/audienceMembers:{method}"

    def _body(self, op: str, audience_id: str, rows: Sequence[Row]) -> dict[str, Any]:
        body: dict[str, Any] = {
            "destinations": [
                {"operatingAccount": self._account, "productDestinationId": audience_id}
            ],
            "audienceMembers": [member(row, with_consent=op != "remove") for row in rows],
            "encoding": "HEX",
        }
        if op != "remove":
            body["termsOfService"] = {"customerMatchTermsOfServiceStatus": "ACCEPTED"}
        return body


def _valid_identifiers(send_key: str) -> bool:
    email, phone = split_send_key(send_key)
    return is_sha256_hex(email) and (phone is None or is_sha256_hex(phone))


def member(row: Row, *, with_consent: bool) -> dict[str, Any]:
    """The ``AudienceMember`` for a row: its email hash, its phone hash when the send key has
    one, and (adds) the consent signals from ``row.fields``."""
    email, phone = split_send_key(row.send_key)
    identifiers = [{"emailAddress": email}]
    if phone is not None:
        identifiers.append({"phoneNumber": phone})
    out: dict[str, Any] = {"userData": {"userIdentifiers": identifiers}}
    if with_consent:
        consent = consent_of(row.fields)
        if consent:
            out["consent"] = consent
    return out


def consent_of(fields: Mapping[str, str]) -> dict[str, str]:
    """``{"adUserData", "adPersonalization"}`` from a row's ``ad_user_data`` /
    ``ad_personalization`` fields (other values are left out: unspecified)."""
    return {
        api: fields[name]
        for name, api in CONSENT_FIELDS.items()
        if fields.get(name) in CONSENT_VALUES
    }


def member_violations(body: Any, members: int) -> dict[int, str]:
    """Member index -> Google's reason, from a 400's ``google.rpc.BadRequest`` field
    violations naming ``audience_members[i]`` (indexes outside ``range(members)`` ignored)."""
    error = body.get("error") if isinstance(body, dict) else None
    details = error.get("details") if isinstance(error, dict) else None
    named: dict[int, str] = {}
    for detail in details if isinstance(details, list) else []:
        for violation in detail.get("fieldViolations") or [] if isinstance(detail, dict) else []:
            index = _member_index(str(violation.get("field", "")))
            if index is None or not 0 <= index < members:
                continue
            words = violation.get("description") or ""
            reason = f"Google: {violation.get('reason') or 'INVALID_ARGUMENT'}"
            named[index] = f"{reason} ({words})" if words else reason
    return named


def _member_index(field_path: str) -> int | None:
    marker = "audience_members["
    at = field_path.find(marker)
    if at < 0:
        return None
    end = field_path.find("]", at)
    try:
        return int(field_path[at + len(marker) : end])
    except ValueError:
        return None


def parse_status(body: Any) -> RequestStatus:
    """A :class:`RequestStatus` from a ``requestStatus:retrieve`` body (first destination);
    a body without one is ``REQUEST_STATUS_UNKNOWN``."""
    per = body.get("requestStatusPerDestination") if isinstance(body, dict) else None
    first = per[0] if isinstance(per, list) and per and isinstance(per[0], dict) else {}
    errors: dict[str, int] = {}
    counts = (first.get("errorInfo") or {}).get("errorCounts") or []
    for entry in counts if isinstance(counts, list) else []:
        try:
            errors[str(entry.get("reason"))] = int(entry.get("recordCount", 0))
        except (TypeError, ValueError, AttributeError):
            continue
    records = None
    for key in ("audienceMembersIngestionStatus", "audienceMembersRemovalStatus"):
        for stats in (first.get(key) or {}).values():
            with contextlib.suppress(TypeError, ValueError, AttributeError):
                records = int(stats.get("recordCount"))
    status = str(first.get("requestStatus") or "REQUEST_STATUS_UNKNOWN")
    return RequestStatus(status, records, errors)


__all__ = [
    "MAX_BATCH_SIZE",
    "GoogleAudienceClient",
    "RequestStatus",
    "SubmittedRequest",
    "consent_of",
    "member",
    "member_violations",
    "parse_status",
]
