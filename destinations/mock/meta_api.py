"""Meta Custom Audiences, as far as a sync needs it (Graph API shapes, under ``/meta``).

Routes (``{version}`` like ``v19.0``; audiences are created on first use):
- ``POST /meta/{version}/{audience_id}/users``: add members.
- ``DELETE /meta/{version}/{audience_id}/users``: remove members.
  Body ``{"payload": {"schema": "EMAIL_SHA256", "data": ["<64 lowercase hex>", ...]}}``, at most
  10,000 rows; 200 ``{"audience_id", "session_id", "num_received", "num_invalid_entries",
  "invalid_entry_samples": {value: reason}}``. Invalid rows are reported, not stored; adding an
  existing member or removing an absent one is a no-op.
  Multi-key: ``"schema": ["EMAIL_SHA256", "PHONE_SHA256"]`` with ``"data": [[email, phone],
  ...]`` (phone ``""`` when none); the member is kept under its email hash.
- ``GET /meta/{version}/{audience_id}?fields=approximate_count``: ``{"id", "approximate_count"}``
  (exact here), plus ``approximate_count_lower_bound`` / ``_upper_bound`` as the real API has.

Source: Meta Marketing API, "Custom Audience Users" (``/{audience_id}/users``, schema
``EMAIL_SHA256``, 10,000 users per request; the answer's ``num_received``,
``num_invalid_entries`` and ``invalid_entry_samples`` say what was taken:
https://developers.facebook.com/docs/marketing-api/reference/custom-audience/users/) and
"Handling Errors" (error object, code 100 invalid parameter, 190 invalid token,
80004/17/4/613 throttling: https://developers.facebook.com/docs/graph-api/guides/error-handling).
Answers that say less than a plain success (rows silently not received, a body that is not
JSON) and whole-call refusals (e.g. ``{"error": {"code": 2650, "message": "Audience Size too
low"}}`` on a ``DELETE``) are injected as faults (:mod:`destinations.mock.faults`).

An audience flagged through the control API (``POST /meta/_control/restrict {"audience_id"}``)
refuses every membership edit with 400 code 100, subcode 1713230 "Audience Upload Blocked",
and its GET shows ``operation_status`` 471, as Meta does since September 2025 for audiences that
suggest health or financial status (the message text here is ours).

A value that looks like a raw email or phone number is counted as a ``raw_identifier``
violation: an ad destination must only ever receive hashes.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import random
import re
from dataclasses import dataclass
from typing import Any

from destinations.mock.store import Store
from destinations.mock.wire import BadJson, Request, Response, json_response

MAX_ROWS = 10_000
SCHEMA = "EMAIL_SHA256"
MULTI_KEY_SCHEMA = ["EMAIL_SHA256", "PHONE_SHA256"]
INVALID_HASH_REASON = "Invalid hash format: expected SHA-256 as 64 lowercase hex characters"

_HEX64 = re.compile(r"[0-9a-f]{64}")
_PHONE_CHARS = re.compile(r"\+?[0-9 ()\-.]+")
_USERS = re.compile(r"/meta/(?P<version>v\d+\.\d+)/(?P<audience>[A-Za-z0-9_\-]+)/users")
_AUDIENCE = re.compile(r"/meta/(?P<version>v\d+\.\d+)/(?P<audience>[A-Za-z0-9_\-]+)")

THROTTLE_MESSAGES = {
    80004: "(#80004) There have been too many calls to this ad-account. Wait a bit and try again.",
    17: "(#17) User request limit reached",
    4: "(#4) Application request limit reached",
    613: "(#613) Calls to this api have exceeded the rate limit.",
}


def meta_error(
    status: int, code: int, message: str, *, headers: dict[str, str] | None = None, **extra: Any
) -> Response:
    """Graph API error: ``{"error": {"message", "type": "OAuthException", "code",
    "fbtrace_id", ...extra}}`` with the given HTTP status."""
    error = {"message": message, "type": "OAuthException", "code": code, **extra}
    error["fbtrace_id"] = "Mock" + hashlib.sha1(message.encode()).hexdigest()[:16]
    return json_response(status, {"error": error}, headers=headers)


def unauthorized() -> Response:
    """401 for a missing or wrong token (Graph API error code 190)."""
    return meta_error(401, 190, "Invalid OAuth access token.")


def throttle_headers(audience_id: str) -> dict[str, str]:
    """``X-Business-Use-Case-Usage`` as Meta sends it when an ad account is throttled
    (``estimated_time_to_regain_access`` is in minutes)."""
    usage = {
        audience_id: [
            {
                "type": "ads_management",
                "call_count": 100,
                "total_cputime": 1,
                "total_time": 1,
                "estimated_time_to_regain_access": 0,
            }
        ]
    }
    return {"X-Business-Use-Case-Usage": json.dumps(usage, separators=(",", ":"))}


def is_authorized(req: Request, token: str) -> bool:
    """``Authorization: Bearer <token>`` (or the Graph API's ``access_token`` query param)."""
    header = req.headers.get("authorization", "")
    given = header[7:].strip() if header[:7].lower() == "bearer " else ""
    given = given or req.query_params().get("access_token", "")
    return bool(given) and hmac.compare_digest(given.encode(), token.encode())


def raw_identifier_kind(value: str) -> str | None:
    """``"email"`` if the value contains '@', ``"phone"`` if it is a phone number (digits with
    optional + - ( ) . and spaces, 7 to 15 digits), else None."""
    if "@" in value:
        return "email"
    if _PHONE_CHARS.fullmatch(value.strip()):
        digits = sum(ch.isdigit() for ch in value)
        if 7 <= digits <= 15:
            return "phone"
    return None


def redact(value: str) -> str:
    """A loggable stand-in for a value that may be a raw identifier."""
    kind = raw_identifier_kind(value)
    if kind is None:
        return value[:100]
    return f"redacted:{kind}:sha256:{hashlib.sha256(value.encode()).hexdigest()[:12]}"


@dataclass(frozen=True)
class Payload:
    """A validated ``payload``: ``data`` as a list of strings (one per row, as sent; the email
    key of a multi-key row) and ``phones`` (the phone key per row of a multi-key payload,
    "" when none)."""

    data: list[str]
    phones: list[str] | None = None


def parse_payload(req: Request) -> Payload | Response:
    """Validate the body; return the rows or a 400 error response (code 100)."""
    try:
        body = req.json()
    except BadJson:
        return meta_error(400, 100, "(#100) The request body must be JSON")
    payload = body.get("payload") if isinstance(body, dict) else None
    if not isinstance(payload, dict):
        return meta_error(400, 100, "(#100) The parameter payload is required")
    schema = payload.get("schema")
    if schema == MULTI_KEY_SCHEMA:
        return _parse_multi_key(payload.get("data"))
    if schema not in (SCHEMA, [SCHEMA]):
        return meta_error(400, 100, f"(#100) Invalid schema: expected {SCHEMA}")
    data = payload.get("data")
    if not isinstance(data, list) or not data:
        return meta_error(400, 100, "(#100) The parameter payload.data must be a non-empty list")
    if len(data) > MAX_ROWS:
        return meta_error(
            400, 100, f"(#100) Too many entries in the payload: {len(data)} > {MAX_ROWS}"
        )
    rows: list[str] = []
    for item in data:
        if isinstance(item, list) and len(item) == 1:
            item = item[0]  # the multi-key shape with a single key
        if not isinstance(item, str):
            return meta_error(400, 100, "(#100) payload.data entries must be strings")
        rows.append(item)
    return Payload(rows)


def _parse_multi_key(data: Any) -> Payload | Response:
    """Rows of a ``[EMAIL_SHA256, PHONE_SHA256]`` payload: each ``[email, phone]``; the member
    is stored under its email hash (the phone hash is validated, not kept)."""
    if not isinstance(data, list) or not data:
        return meta_error(400, 100, "(#100) The parameter payload.data must be a non-empty list")
    if len(data) > MAX_ROWS:
        return meta_error(
            400, 100, f"(#100) Too many entries in the payload: {len(data)} > {MAX_ROWS}"
        )
    rows: list[str] = []
    phones: list[str] = []
    for item in data:
        if not (
            isinstance(item, list) and len(item) == 2 and all(isinstance(v, str) for v in item)
        ):
            return meta_error(400, 100, "(#100) Each entry must match the schema's 2 keys")
        rows.append(item[0])
        phones.append(item[1])
    return Payload(rows, phones)


def _values(data: list[Any]) -> list[Any]:
    """Every identifier value of ``payload.data`` (single key, or each key of a multi-key row)."""
    values: list[Any] = []
    for d in data:
        if isinstance(d, list):
            values += [v for v in d if v != ""]
        else:
            values.append(d)
    return values


def logged_values(req: Request) -> list[str]:
    """The rows of the request for the request log, raw identifiers redacted ([] if none)."""
    body = req.json_or_none()
    payload = body.get("payload") if isinstance(body, dict) else None
    data = payload.get("data") if isinstance(payload, dict) else None
    if not isinstance(data, list):
        return []
    return [redact(v) if isinstance(v, str) else repr(v)[:100] for v in _values(data)]


def count_violations(store: Store, req: Request) -> None:
    """Count every raw-looking identifier sent in the request, whatever the answer."""
    body = req.json_or_none()
    payload = body.get("payload") if isinstance(body, dict) else None
    data = payload.get("data") if isinstance(payload, dict) else None
    if not isinstance(data, list):
        return
    values = _values(data)
    samples = [redact(v) for v in values if isinstance(v, str) and raw_identifier_kind(v)]
    store.add_violations("meta", "raw_identifier", samples)


def handle(
    store: Store,
    req: Request,
    token: str,
    reject_rows: dict[str, str] | None = None,
    answer: dict | None = None,
) -> Response:
    """Answer one Meta request (auth checked here). ``reject_rows``: value -> reason that a
    fault wants counted invalid; ``answer``: ``{"omit": values}`` silently ignored (not
    applied, left out of ``num_received``)."""
    if not is_authorized(req, token):
        return unauthorized()
    users = _USERS.fullmatch(req.path)
    if users:
        if req.method not in ("POST", "DELETE"):
            return meta_error(400, 100, f"(#100) Unsupported {req.method.lower()} request.")
        omit = (answer or {}).get("omit") or set()
        return _change_users(store, req, users["audience"], reject_rows or {}, omit)
    audience = _AUDIENCE.fullmatch(req.path)
    if audience and req.method == "GET":
        return _audience(store, audience["audience"])
    return meta_error(
        400, 100, f"Unsupported {req.method.lower()} request. Unknown path components."
    )


_RESTRICTED_DDL = (
    "CREATE TABLE IF NOT EXISTS meta_restricted (audience_id TEXT PRIMARY KEY) WITHOUT ROWID"
)
BLOCKED_TITLE = "Audience Upload Blocked"
BLOCKED_MESSAGE = (
    "This audience may suggest health or financial status and can't be updated. "
    "(operation_status 471)"
)


def restrict(store: Store, audience_id: str) -> None:
    """Flag an audience as restricted (health or financial status): edits are refused."""
    with store._tx() as con:
        con.execute(_RESTRICTED_DDL)
        con.execute("INSERT OR IGNORE INTO meta_restricted VALUES (?)", (audience_id,))


def is_restricted(store: Store, audience_id: str) -> bool:
    """True when the audience was flagged by :func:`restrict` (until a reset)."""
    with store._tx() as con:
        con.execute(_RESTRICTED_DDL)
        found = con.execute(
            "SELECT 1 FROM meta_restricted WHERE audience_id = ?", (audience_id,)
        ).fetchone()
    return found is not None


def clear_restricted(store: Store) -> None:
    """Lift every flag (part of a reset)."""
    with store._tx() as con:
        con.execute(_RESTRICTED_DDL)
        con.execute("DELETE FROM meta_restricted")


def blocked() -> Response:
    """400 ``Audience Upload Blocked``: code 100, subcode 1713230 (Meta restricts audiences
    that suggest health or financial status, from September 2025)."""
    return meta_error(
        400,
        100,
        BLOCKED_MESSAGE,
        error_subcode=1713230,
        error_user_title=BLOCKED_TITLE,
        error_user_msg=BLOCKED_MESSAGE,
    )


def _change_users(
    store: Store,
    req: Request,
    audience_id: str,
    reject_rows: dict[str, str],
    omit: set[str] | frozenset[str] = frozenset(),
) -> Response:
    if is_restricted(store, audience_id):
        return blocked()
    parsed = parse_payload(req)
    if isinstance(parsed, Response):
        return parsed
    invalid: dict[str, str] = {}
    valid: list[str] = []
    phones = parsed.phones or [""] * len(parsed.data)
    received = [(v, p) for v, p in zip(parsed.data, phones, strict=True) if v not in omit]
    for value, phone in received:
        if value in reject_rows:
            invalid[value] = reject_rows[value]
        elif _HEX64.fullmatch(value) and (phone == "" or _HEX64.fullmatch(phone)):
            valid.append(value)
        else:
            invalid[value] = INVALID_HASH_REASON
    store.meta_apply(audience_id, valid, add=req.method == "POST")
    body = req.json_or_none() or {}
    session = body.get("session") if isinstance(body.get("session"), dict) else {}
    session_id = session.get("session_id") or random.randint(10**17, 10**18 - 1)
    return json_response(
        200,
        {
            "audience_id": audience_id,
            "session_id": session_id,
            "num_received": len(received),
            "num_invalid_entries": len(received) - len(valid),
            "invalid_entry_samples": invalid,
        },
    )


def _audience(store: Store, audience_id: str) -> Response:
    count = store.meta_count(audience_id)
    body: dict[str, Any] = {
        "id": audience_id,
        "approximate_count": count,
        "approximate_count_lower_bound": count,
        "approximate_count_upper_bound": count,
    }
    if is_restricted(store, audience_id):
        body["operation_status"] = {"code": 471, "description": BLOCKED_MESSAGE}
    return json_response(200, body)
