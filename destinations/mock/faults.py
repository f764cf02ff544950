"""Fault injection: what a queued fault looks like and what it does.

A fault is posted to ``POST /{platform}/_control/faults`` as::

    {"match": {"method": "POST", "path": "users$", "nth": 1},
     "action": {"type": "status", ...},
     "times": 1}

``match`` (all optional): HTTP method; ``path``, a regular expression searched in the request
path (e.g. ``/meta/v19.0/123/users``); ``nth``, fire on the nth matching request from now
(1-based, default 1). ``times`` queues that many copies (each consumed once, one after the
other). Actions (``type``):

- ``status``: answer ``status`` at once, nothing applied. ``body`` (string, or an object sent
  as JSON), ``content_type`` ``"json"`` | ``"html"`` | ``"text"`` (default json),
  ``headers`` (extra headers, e.g. ``{"Retry-After": "1"}``). Without a body a platform-shaped
  one is made: Meta ``{"error": {...}}`` with ``error_code`` (default 80004 for a 400; for the
  throttle codes 80004/17/4/613 the ``X-Business-Use-Case-Usage`` header is added), Mailchimp a
  problem document; html gets a small error page.
- ``timeout_after_apply``: apply the request, then sleep ``seconds`` before answering, so a
  client timeout fires although the change happened.
- ``drop_connection``: read the request, then close the socket without answering; nothing is
  applied.
- ``reject_rows``: ``values`` (Meta hashes or Mailchimp email addresses) are refused with
  ``error`` (Meta: counted invalid with that reason; Mailchimp: an ``errors[]`` entry, or a 400
  for PUT); the other rows are applied normally. Google: the members holding one of the
  ``values`` (identifier hashes) fail during asynchronous processing with reason ``error``
  (an ``ErrorReason`` name; default ``INVALID_AUDIENCE_MEMBER``), so the request status is
  ``PARTIAL_SUCCESS`` or ``FAILED``.
- ``answer``: a 200 that says less, or something else, than a plain success, as the real
  platforms do (each documented on the platform module): ``omit`` (values the platform
  silently ignores: not applied, absent from the answer; Meta: ``num_received`` counts only
  the others), ``keep`` (Mailchimp, email -> status: the contact is left as it is and reported
  in ``updated_members`` with that status, e.g. a list keeping an unsubscribed or cleaned
  contact, or keeping a contact ``subscribed``), ``body`` (``"html"`` or ``"truncated"``: the
  request is applied, then answered 200 with a body that is not the documented JSON).

A ``status`` action with ``"echo_request": true`` puts the request line and its
``Authorization`` header (as received) in the error body, as some gateways do: the client must
never let it out. Each platform's error shape carries it: Meta's ``error.message``, Mailchimp's
problem ``detail``, Google's ``error.message`` (``PERMISSION_DENIED``).
"""

from __future__ import annotations

import json
import re
from http import HTTPStatus
from typing import Any

from destinations.mock import google_api, mailchimp_api, meta_api
from destinations.mock.wire import Request, Response, json_response

ACTIONS = ("status", "timeout_after_apply", "drop_connection", "reject_rows", "answer")
CONTENT_TYPES = {
    "json": "application/json",
    "html": "text/html; charset=utf-8",
    "text": "text/plain; charset=utf-8",
}
DEFAULT_REJECT_REASON = "Rejected by the mock destination (injected fault)"


class FaultSpecError(ValueError):
    """A posted fault is malformed; the message says which field."""


def parse_fault(body: Any) -> tuple[dict[str, Any], dict[str, Any], int]:
    """Validate a posted fault; returns ``(match, action, times)``.

    ``match`` is normalized to ``{"method": str | None, "path": str | None, "nth": int}``.
    Raises :class:`FaultSpecError`.
    """
    if not isinstance(body, dict):
        raise FaultSpecError("body must be an object with 'match' and 'action'")
    match = body.get("match") or {}
    action = body.get("action")
    if not isinstance(match, dict):
        raise FaultSpecError("match must be an object")
    if not isinstance(action, dict) or action.get("type") not in ACTIONS:
        raise FaultSpecError(f"action.type must be one of {', '.join(ACTIONS)}")
    path = match.get("path")
    if path is not None:
        try:
            re.compile(path)
        except re.error as exc:
            raise FaultSpecError(f"match.path is not a regular expression: {exc}") from exc
    nth, times = match.get("nth", 1), body.get("times", 1)
    if not isinstance(nth, int) or nth < 1 or not isinstance(times, int) or times < 1:
        raise FaultSpecError("match.nth and times must be integers >= 1")
    _check_action(action)
    method = match.get("method")
    normalized = {"method": method.upper() if method else None, "path": path, "nth": nth}
    return normalized, action, times


def _check_action(action: dict[str, Any]) -> None:
    kind = action["type"]
    if kind == "status" and not (
        isinstance(action.get("status"), int) and 100 <= action["status"] <= 599
    ):
        raise FaultSpecError("status action needs an integer 'status'")
    if kind == "status" and action.get("content_type", "json") not in CONTENT_TYPES:
        raise FaultSpecError(f"content_type must be one of {', '.join(CONTENT_TYPES)}")
    if kind == "timeout_after_apply" and not isinstance(action.get("seconds"), int | float):
        raise FaultSpecError("timeout_after_apply needs a number of 'seconds'")
    if kind == "reject_rows" and not isinstance(action.get("values"), list):
        raise FaultSpecError("reject_rows needs a list of 'values'")
    if kind == "answer":
        if not isinstance(action.get("omit", []), list):
            raise FaultSpecError("answer.omit must be a list of values")
        if not isinstance(action.get("keep", {}), dict):
            raise FaultSpecError("answer.keep must be an object value -> status")
        if action.get("body") not in (None, "html", "truncated"):
            raise FaultSpecError("answer.body must be 'html' or 'truncated'")


def answer_options(platform: str, action: dict[str, Any]) -> dict[str, Any]:
    """An ``answer`` action as ``{"omit": set, "keep": {value: status}}`` (Mailchimp emails
    lowercased)."""
    fold = str.lower if platform == "mailchimp" else str
    return {
        "omit": {fold(str(v)) for v in action.get("omit", [])},
        "keep": {fold(str(k)): str(v) for k, v in (action.get("keep") or {}).items()},
    }


def rewrite_body(response: Response, action: dict[str, Any]) -> Response:
    """The ``body`` option of an ``answer`` action applied to a 2xx response."""
    kind = action.get("body")
    if kind is None or not 200 <= response.status < 300:
        return response
    if kind == "html":
        page = "<!DOCTYPE html><html><body><h1>OK</h1><p>Request received.</p></body></html>"
        return Response(200, page.encode(), CONTENT_TYPES["html"], response.headers)
    return Response(
        200, response.body[: len(response.body) // 2], response.content_type, response.headers
    )


def reject_map(platform: str, action: dict[str, Any]) -> dict[str, str]:
    """``reject_rows`` as value -> reason (Mailchimp emails lowercased)."""
    default = google_api.DEFAULT_FAILURE_REASON if platform == "google" else DEFAULT_REJECT_REASON
    reason = str(action.get("error") or default)
    values = [str(v) for v in action.get("values", [])]
    if platform == "mailchimp":
        values = [v.lower() for v in values]
    return dict.fromkeys(values, reason)


def echoed_request(req: Request) -> str:
    """The request as a gateway echoes it: request line (query included) and the
    ``Authorization`` header exactly as received."""
    target = f"{req.path}?{req.query}" if req.query else req.path
    return f"{req.method} {target} Authorization: {req.headers.get('authorization', '')}"


def status_response(
    platform: str, action: dict[str, Any], path: str, req: Request | None = None
) -> Response:
    """The response of a ``status`` fault (see module docstring for defaults)."""
    status = int(action["status"])
    kind = action.get("content_type", "json")
    headers = {str(k): str(v) for k, v in (action.get("headers") or {}).items()}
    body = action.get("body")
    if action.get("echo_request") and req is not None:
        echo = echoed_request(req)
        if platform == "meta":
            message = f"(#200) Permissions error for request {echo}"
            return meta_api.meta_error(status, 200, message, headers=headers)
        if platform == "google":
            response = google_api.google_error(
                status, "PERMISSION_DENIED", f"The caller does not have permission: {echo}"
            )
            response.headers.update(headers)
            return response
        doc = mailchimp_api.problem(status, "Forbidden", f"Request refused: {echo}")
        return json_response(
            status, json.loads(doc.body), content_type=doc.content_type, headers=headers
        )
    if body is not None:
        raw = json.dumps(body) if not isinstance(body, str) else body
        return Response(status, raw.encode(), CONTENT_TYPES[kind], headers)
    if kind == "html":
        return Response(status, _html_page(status).encode(), CONTENT_TYPES[kind], headers)
    if kind == "text":
        return Response(status, _phrase(status).encode(), CONTENT_TYPES[kind], headers)
    if platform == "meta":
        return _meta_default(status, action, path, headers)
    if platform == "google":
        return _google_default(status, action, headers)
    return _mailchimp_default(status, headers)


def _google_default(status: int, action: dict[str, Any], headers: dict[str, str]) -> Response:
    """Google's error for ``status``: 429 ``RESOURCE_EXHAUSTED`` with ``RetryInfo``
    (``retry_delay_s``, default 1), 5xx ``UNAVAILABLE``/``INTERNAL``, else ``INVALID_ARGUMENT``."""
    if status == 429:
        response = google_api.quota_exhausted(float(action.get("retry_delay_s", 1.0)))
    elif status >= 500:
        code = "UNAVAILABLE" if status == 503 else "INTERNAL"
        response = google_api.google_error(status, code, "The service is currently unavailable.")
    else:
        response = google_api.google_error(status, "INVALID_ARGUMENT", _phrase(status))
    response.headers.update(headers)
    return response


def _meta_default(
    status: int, action: dict[str, Any], path: str, headers: dict[str, str]
) -> Response:
    code = action.get("error_code", 80004 if status == 400 else 4 if status == 429 else 2)
    if code in meta_api.THROTTLE_MESSAGES:
        parts = path.strip("/").split("/")
        account = parts[2] if len(parts) > 2 else "act_0"
        usage = meta_api.throttle_headers(account)
        response = meta_api.meta_error(
            status,
            code,
            meta_api.THROTTLE_MESSAGES[code],
            is_transient=True,
            headers={**usage, **headers},
        )
        return response
    message = "An unexpected error has occurred. Please retry your request later."
    return meta_api.meta_error(status, int(code), message, is_transient=True, headers=headers)


def _mailchimp_default(status: int, headers: dict[str, str]) -> Response:
    doc = mailchimp_api.problem(status, _phrase(status), f"Injected fault: HTTP {status}.")
    return json_response(
        status, json.loads(doc.body), content_type=doc.content_type, headers=headers
    )


def _phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"


def _html_page(status: int) -> str:
    phrase = _phrase(status)
    return (
        f"<!DOCTYPE html><html><head><title>{status} {phrase}</title></head>"
        f"<body><h1>{status} {phrase}</h1><p>The server is temporarily unable to service "
        "your request. Please try again later.</p></body></html>"
    )
