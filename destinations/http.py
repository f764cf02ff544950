"""HTTP plumbing shared by the destination clients: one session, timeouts, retries, redaction.

Every client owns one :class:`HttpClient`, which owns one ``requests.Session`` (connection reuse,
auth set once on the session) and sends each request with a ``(connect, read)`` timeout. A
tenacity ``Retrying`` loop retries what the platform could not take *now*:

- throttling: HTTP 429, or a Meta error code from the Graph API rate-limiting doc
  (https://developers.facebook.com/docs/graph-api/overview/rate-limiting/: 4 application,
  17 user, 32 page, 613 custom-level, 80000-80014 Business Use Case limits, e.g. 80003 custom
  audience and 80004 ads management);
- Meta errors the error-handling guide says to retry (codes 1 and 2, or ``is_transient: true``,
  https://developers.facebook.com/docs/graph-api/guides/error-handling);
- HTTP 5xx and 408, timeouts, refused or dropped connections.

The wait before a retry is at least the longest hint the answer carries (``Retry-After`` in
seconds or as an HTTP date, RFC 9110 §10.2.3; Meta's ``X-Business-Use-Case-Usage`` /
``X-App-Usage`` / ``X-Ad-Account-Usage`` ``estimated_time_to_regain_access``, in MINUTES; a
delay named in the error body) and at least the exponential backoff with full jitter (tenacity
``wait_random_exponential``), so a hint of 0 still backs off. Retries stop after
``max_attempts`` requests, when the next wait would end past ``max_total_wait`` seconds from the
first attempt, or at once when a hint is longer than ``max_hint_wait`` (never sending before the
platform said to); then :class:`TransientError` is raised, saying when to retry
(``retry_at``) when the platform said. 401/403 (and Meta code 190, an invalid OAuth token) raise
:class:`AuthError`; any other 4xx raises :class:`PermanentError` at once, never retried.

Error text and logs carry the destination name, the HTTP method, a path with hashes shortened,
the status and the platform's own error words and code, with email addresses and the token
blanked out: raw addresses only ever travel in request bodies.
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from enum import StrEnum
from typing import Any
from urllib.parse import urlsplit

import requests
from tenacity import (
    Future,
    RetryCallState,
    RetryError,
    Retrying,
    retry_if_exception_type,
    stop_after_attempt,
    stop_before_delay,
    wait_random_exponential,
)

from destinations.base import CallStats
from destinations.errors import AuthError, PermanentError, ThrottledError, TransientError
from destinations.redaction import redact as redact_secrets

log = logging.getLogger(__name__)

META_THROTTLE_CODES: frozenset[int] = frozenset({4, 17, 32, 613, *range(80000, 80015)})
"""Meta rate-limit error codes (Graph API and Marketing API rate-limiting docs)."""

META_TRANSIENT_CODES: frozenset[int] = frozenset({1, 2})
"""Meta 'API Unknown' and 'API Service': temporary, retry (Graph API error-handling guide)."""

META_AUTH_CODES: frozenset[int] = frozenset({10, 190, *range(200, 300)})
"""Meta OAuth/permission errors: 190 invalid or expired token, 10 and 200-299 permission."""

_HEX_RUN_RE = re.compile(r"[0-9a-fA-F]{32,}")


@dataclass(frozen=True)
class RetryPolicy:
    """How long and how often a client keeps trying.

    ``max_attempts``: requests per call, the first one included. ``max_total_wait``: seconds from
    the first attempt after which no retry starts (a wait that would end later stops the loop).
    ``backoff_multiplier`` / ``backoff_max``: seconds for ``wait_random_exponential`` when the
    platform gives no hint. ``max_hint_wait``: the longest single wait taken from a platform hint
    (seconds). ``connect_timeout`` / ``read_timeout``: seconds per request.
    """

    max_attempts: int = 6
    max_total_wait: float = 600.0
    backoff_multiplier: float = 1.0
    backoff_max: float = 60.0
    max_hint_wait: float = 600.0
    connect_timeout: float = 10.0
    read_timeout: float = 120.0

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        for name in ("max_total_wait", "backoff_multiplier", "backoff_max", "max_hint_wait"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must not be negative")
        if self.connect_timeout <= 0 or self.read_timeout <= 0:
            raise ValueError("timeouts must be positive")


class Verdict(StrEnum):
    """What to do with a response: take it, retry it, or fail the call."""

    OK = "ok"
    RETRY = "retry"
    PERMANENT = "permanent"
    AUTH = "auth"


@dataclass(frozen=True)
class Classification:
    """The verdict on one HTTP response.

    ``throttled``: the platform said to slow down (429 or a throttle code). ``wait_hint``:
    seconds the platform asked us to wait, or None. ``message``: the platform's error words and
    code (not yet redacted), empty when OK.
    """

    verdict: Verdict
    throttled: bool = False
    wait_hint: float | None = None
    message: str = ""


@dataclass(frozen=True)
class HttpResult:
    """A response the caller accepted: ``status`` (int) and ``body`` (parsed JSON or None)."""

    status: int
    body: Any


class _Retryable(Exception):
    """One failed attempt worth retrying (internal to the retry loop)."""

    def __init__(
        self, message: str, status: int | None, throttled: bool, wait_hint: float | None
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.throttled = throttled
        self.wait_hint = wait_hint


# --- pure helpers: parsing and classification ------------------------------------------------


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header: delay-seconds or an HTTP date (RFC 9110
    §10.2.3). Returns None when absent or unreadable; a date in the past gives 0.0."""
    if not value or not value.strip():
        return None
    text = value.strip()
    try:
        seconds = float(text)
    except ValueError:
        pass
    else:
        return max(seconds, 0.0) if seconds == seconds else None  # NaN is unreadable
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    current = now or datetime.now(UTC)
    return max((when - current).total_seconds(), 0.0)


def parse_usage_wait(headers: Mapping[str, str]) -> float | None:
    """Seconds to wait from Meta's usage headers, or None.

    ``X-Business-Use-Case-Usage`` is JSON ``{business_id: [{"type", "call_count", ...,
    "estimated_time_to_regain_access": minutes}]}``; ``X-App-Usage`` / ``X-Ad-Account-Usage``
    are flat JSON objects that may carry the same key. The value is in MINUTES (Graph API
    rate-limiting doc); the largest positive value wins, converted to seconds.
    """
    minutes: list[float] = []
    for name in ("X-Business-Use-Case-Usage", "X-App-Usage", "X-Ad-Account-Usage"):
        raw = _header(headers, name)
        if not raw:
            continue
        try:
            data = json.loads(raw)
        except ValueError:
            continue
        minutes.extend(_regain_minutes(data))
    positive = [m for m in minutes if m > 0]
    return max(positive) * 60.0 if positive else None


_BODY_SECONDS = re.compile(r"(?i)(?:retry|try again)\D{0,20}?(\d+(?:\.\d+)?)\s*(?:s\b|sec)")


def parse_body_wait(body: bytes | str | None) -> float | None:
    """Seconds to wait named in an error body, or None.

    JSON members ``retry_after`` / ``retry-after`` / ``retryAfter`` (seconds, at the top level
    or inside ``error``), or the words "retry/try again ... N seconds" in a Mailchimp problem
    document's ``detail`` (Mailchimp's 429 for its 10-connection limit documents no delay:
    https://mailchimp.com/developer/marketing/docs/fundamentals/#api-limits; when it names one
    we honour it), or Google's ``RetryInfo`` ``retryDelay`` (:func:`parse_google_retry_delay`)."""
    data = parse_json(body)
    found: list[float] = []
    if (google := parse_google_retry_delay(data)) is not None:
        found.append(google)
    for holder in (data, data.get("error") if isinstance(data, dict) else None):
        if not isinstance(holder, dict):
            continue
        for name in ("retry_after", "retry-after", "retryAfter"):
            value = holder.get(name)
            if isinstance(value, int | float) and not isinstance(value, bool) and value >= 0:
                found.append(float(value))
        for name in ("detail", "message", "title"):
            text = holder.get(name)
            if isinstance(text, str) and (m := _BODY_SECONDS.search(text)):
                found.append(float(m.group(1)))
    return max(found) if found else None


def wait_hint(
    headers: Mapping[str, str], body: bytes | str | None = None, now: datetime | None = None
) -> float | None:
    """The longest wait any hint of a response asks for (seconds), or None when it has none:
    ``Retry-After`` (seconds or HTTP date), Meta's usage headers
    (``estimated_time_to_regain_access``, minutes) and the body (:func:`parse_body_wait`).
    A hint of 0 is returned as 0.0 (the caller still backs off)."""
    hints = [
        parse_retry_after(_header(headers, "Retry-After"), now),
        parse_usage_wait(headers),
        parse_body_wait(body),
    ]
    known = [h for h in hints if h is not None]
    return max(known) if known else None


def parse_google_retry_delay(body: Any) -> float | None:
    """Seconds from a Google API error's ``google.rpc.RetryInfo`` detail (``"retryDelay":
    "3s"`` or ``"1.5s"``, a protobuf Duration in JSON), or None. Source: Google API error model,
    https://cloud.google.com/apis/design/errors#retryinfo (the Data Manager API answers quota
    errors with 429 ``RESOURCE_EXHAUSTED``)."""
    error = body.get("error") if isinstance(body, dict) else None
    details = error.get("details") if isinstance(error, dict) else None
    for detail in details if isinstance(details, list) else []:
        if not isinstance(detail, dict) or not str(detail.get("@type", "")).endswith("RetryInfo"):
            continue
        delay = str(detail.get("retryDelay") or "")
        try:
            return max(float(delay.removesuffix("s")), 0.0)
        except ValueError:
            return None
    return None


def _regain_minutes(data: Any) -> list[float]:
    if isinstance(data, dict):
        found = []
        value = data.get("estimated_time_to_regain_access")
        if isinstance(value, int | float) and not isinstance(value, bool):
            found.append(float(value))
        for child in data.values():
            if isinstance(child, dict | list):
                found.extend(_regain_minutes(child))
        return found
    if isinstance(data, list):
        return [m for item in data for m in _regain_minutes(item)]
    return []


def _header(headers: Mapping[str, str], name: str) -> str | None:
    lowered = name.lower()
    return next((v for k, v in headers.items() if k.lower() == lowered), None)


def parse_json(body: bytes | str | None) -> Any:
    """The JSON value of a body, or None when empty or not JSON (an HTML proxy page)."""
    if not body:
        return None
    try:
        return json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return None


def error_details(body: Any, content_type: str = "") -> tuple[str, int | None, bool]:
    """The platform's error words from a parsed body: ``(message, meta_code, meta_transient)``.

    Meta: ``{"error": {"message", "code", "error_subcode", "is_transient"}}``. Mailchimp
    (RFC 7807 problem): ``{"title", "detail", "status"}``. Anything else is described by its
    content type only, never echoed (a proxy's HTML page says nothing useful).
    """
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        err = body["error"]
        code = err.get("code") if isinstance(err.get("code"), int) else None
        words = str(err.get("error_user_msg") or err.get("message") or "error")
        parts = [f"code {code}"] if code is not None else []
        if err.get("error_subcode") is not None:
            parts.append(f"subcode {err['error_subcode']}")
        suffix = f" ({', '.join(parts)})" if parts else ""
        return words + suffix, code, bool(err.get("is_transient"))
    if isinstance(body, dict) and ("title" in body or "detail" in body):
        title, detail = str(body.get("title") or ""), str(body.get("detail") or "")
        return (f"{title}: {detail}" if title and detail else title or detail), None, False
    kind = content_type.split(";")[0].strip() or "no content type"
    return f"non-JSON error body ({kind})", None, False


def classify(
    status: int,
    headers: Mapping[str, str],
    body: bytes | str | None,
    accept: Collection[int] = (),
    now: datetime | None = None,
) -> Classification:
    """Decide what one response means.

    ``accept``: extra statuses the caller handles itself (e.g. 404 on a delete = already gone).
    Returns OK for 2xx and accepted statuses; RETRY (with ``throttled`` and ``wait_hint``) for
    429, Meta throttle/transient codes, 408 and 5xx; AUTH for 401/403 and Meta auth codes;
    PERMANENT for any other status. Never raises on a non-JSON body.
    """
    if 200 <= status < 300 or status in accept:
        return Classification(Verdict.OK)
    content_type = _header(headers, "Content-Type") or ""
    message, code, transient = error_details(parse_json(body), content_type)
    throttled = status == 429 or code in META_THROTTLE_CODES
    if throttled or status >= 500 or status == 408 or code in META_TRANSIENT_CODES or transient:
        return Classification(Verdict.RETRY, throttled, wait_hint(headers, body, now), message)
    if status in (401, 403) or code in META_AUTH_CODES:
        return Classification(Verdict.AUTH, message=message)
    return Classification(Verdict.PERMANENT, message=message)


def redact(text: str, secrets: Collection[str] = ()) -> str:
    """``text`` with every email address replaced by ``<email>`` and every form of each secret
    (literal, base64 as in HTTP Basic, URL-encoded, in a URL or echoed in an error body) by
    ``***``: :func:`destinations.redaction.redact`, the one redaction function."""
    return redact_secrets(text, secrets)


def safe_path(url: str) -> str:
    """The URL path with long hex runs (hashes) cut to an 8-character prefix, for messages."""
    path = urlsplit(url).path
    return _HEX_RUN_RE.sub(lambda m: m.group(0)[:8] + "…", path)


# --- the client --------------------------------------------------------------------------------


class HttpClient:
    """One destination's HTTP session with the retry policy.

    ``destination``: name used in messages. ``headers`` / ``auth``: set once on the session
    (``auth`` is a requests auth tuple, e.g. HTTP Basic). ``secret``: the token, blanked out of
    every message. ``stats``: counters updated in place. ``sleep``: injectable for tests.
    """

    def __init__(
        self,
        destination: str,
        *,
        secret: str,
        policy: RetryPolicy,
        stats: CallStats,
        headers: Mapping[str, str] | None = None,
        auth: tuple[str, str] | None = None,
        session: requests.Session | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.destination = destination
        self.policy = policy
        self.stats = stats
        self._secret = secret
        self._sleep = sleep
        self.session = session or requests.Session()
        self.session.headers.update({"User-Agent": "activation-orchestrator/0.1"})
        self.session.headers.update(dict(headers or {}))
        if auth is not None:
            self.session.auth = auth

    def close(self) -> None:
        """Close the session's pooled connections."""
        self.session.close()

    def request(
        self,
        method: str,
        url: str,
        *,
        json_body: Any = None,
        params: Mapping[str, str] | None = None,
        accept: Collection[int] = (),
    ) -> HttpResult:
        """Send one request with retries and return the accepted response.

        ``json_body`` is sent compact JSON-encoded; ``accept`` lists non-2xx statuses returned
        to the caller instead of raising (e.g. 404 for "already gone").

        Raises:
            TransientError: still throttled/failing when the attempts or total wait ran out
                (``ThrottledError`` when the last failure was throttling).
            AuthError: 401/403 or a Meta auth error code.
            PermanentError: any other 4xx (no retry).
        """
        body = None
        if json_body is not None:
            body = json.dumps(json_body, separators=(",", ":")).encode("utf-8")
        retrying = Retrying(
            retry=retry_if_exception_type(_Retryable),
            wait=self._wait,
            stop=stop_after_attempt(self.policy.max_attempts)
            | stop_before_delay(self.policy.max_total_wait)
            | self._hint_too_long,
            before_sleep=self._before_sleep,
            sleep=self._sleep,
            reraise=False,
        )
        try:
            return retrying(self._attempt, method, url, body, params, accept)
        except RetryError as exc:
            raise self._gave_up(exc.last_attempt) from None

    # -- one attempt

    def _attempt(
        self,
        method: str,
        url: str,
        body: bytes | None,
        params: Mapping[str, str] | None,
        accept: Collection[int],
    ) -> HttpResult:
        self.stats.calls += 1
        self.stats.bytes_sent += len(body or b"")
        where = f"{method} {safe_path(url)}"
        headers = {"Content-Type": "application/json"} if body is not None else None
        try:
            response = self.session.request(
                method,
                url,
                data=body,
                params=params,
                headers=headers,
                timeout=(self.policy.connect_timeout, self.policy.read_timeout),
            )
        except requests.Timeout as exc:
            failed = f"{where}: timed out ({type(exc).__name__})"
            raise _Retryable(failed, None, False, None) from exc
        except (requests.ConnectionError, requests.exceptions.ChunkedEncodingError) as exc:
            failed = f"{where}: connection failed ({type(exc).__name__})"
            raise _Retryable(failed, None, False, None) from exc
        verdict = classify(response.status_code, response.headers, response.content, accept)
        status = response.status_code
        message = self._safe(f"{where}: {verdict.message}")
        if verdict.verdict is Verdict.OK:
            return HttpResult(status, parse_json(response.content))
        if verdict.verdict is Verdict.RETRY:
            raise _Retryable(message, status, verdict.throttled, verdict.wait_hint)
        if verdict.verdict is Verdict.AUTH:
            raise AuthError(self.destination, message, status)
        raise PermanentError(self.destination, message, status)

    # -- retry hooks

    def _wait(self, state: RetryCallState) -> float:
        failure = state.outcome.exception() if state.outcome else None
        return retry_wait(failure, state, self.policy)

    def _before_sleep(self, state: RetryCallState) -> None:
        failure = state.outcome.exception() if state.outcome else None
        wait = state.upcoming_sleep
        self.stats.retries += 1
        if isinstance(failure, _Retryable) and failure.throttled:
            self.stats.throttled_seconds += wait
        log.warning(
            "%s: attempt %d failed (%s); retrying in %.2f s",
            self.destination,
            state.attempt_number,
            failure,
            wait,
        )

    def _hint_too_long(self, state: RetryCallState) -> bool:
        """Stop (without sending early) when the platform asks for a longer wait than
        ``max_hint_wait`` allows."""
        failure = state.outcome.exception() if state.outcome else None
        hint = failure.wait_hint if isinstance(failure, _Retryable) else None
        return hint is not None and hint > self.policy.max_hint_wait

    def _gave_up(self, last: Future) -> TransientError:
        failure = last.exception()
        assert isinstance(failure, _Retryable)  # the loop retries nothing else
        attempts = last.attempt_number
        hint = failure.wait_hint
        retry_at = None
        budget = ""
        if hint is not None and hint > self.policy.max_hint_wait:
            retry_at = datetime.now(UTC) + timedelta(seconds=hint)
            budget = (
                f"; the platform asks to wait {hint:g} s, more than "
                f"max_hint_wait={self.policy.max_hint_wait:g} s: not retried early"
            )
        elif attempts < self.policy.max_attempts:
            budget = f", the next wait would pass max_total_wait={self.policy.max_total_wait:g} s"
            if hint is not None:
                retry_at = datetime.now(UTC) + timedelta(seconds=hint)
        when = f"; retry after {retry_at:%Y-%m-%dT%H:%M:%SZ}" if retry_at else ""
        message = f"{failure.message}; gave up after {attempts} attempt(s){budget}{when}"
        cls = ThrottledError if failure.throttled else TransientError
        error = cls(self.destination, self._safe(message), failure.status)
        error.retry_at = retry_at
        return error

    def _safe(self, text: str) -> str:
        return redact(text, (self._secret,))


def retry_wait(failure: BaseException | None, state: RetryCallState, policy: RetryPolicy) -> float:
    """Seconds before the next attempt: at least the platform's longest hint when the failure
    carries one, and at least the jittered exponential back-off
    (``wait_random_exponential(multiplier, max)``) in every case, so a hint of 0 is no licence
    to burst. A hint longer than ``max_hint_wait`` never reaches here: the loop gives up
    instead (``HttpClient._hint_too_long``)."""
    hint = failure.wait_hint if isinstance(failure, _Retryable) else None
    backoff = wait_random_exponential(multiplier=policy.backoff_multiplier, max=policy.backoff_max)
    return max(float(backoff(state)), hint or 0.0)


__all__ = [
    "META_AUTH_CODES",
    "META_THROTTLE_CODES",
    "META_TRANSIENT_CODES",
    "Classification",
    "HttpClient",
    "HttpResult",
    "RetryPolicy",
    "Verdict",
    "classify",
    "error_details",
    "parse_body_wait",
    "parse_google_retry_delay",
    "parse_json",
    "parse_retry_after",
    "parse_usage_wait",
    "redact",
    "retry_wait",
    "safe_path",
    "wait_hint",
]
