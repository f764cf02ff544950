"""Google Data Manager API, as far as an audience sync needs it (under ``/google``).

Routes (audiences are created on first use; ``{v}`` is ``v1``):

- ``POST /google/v1/audienceMembers:ingest`` and ``POST /google/v1/audienceMembers:remove``:
  body ``{"destinations": [{"operatingAccount": {"accountType", "accountId"},
  "productDestinationId"}], "audienceMembers": [{"userData": {"userIdentifiers":
  [{"emailAddress": hex}, {"phoneNumber": hex}]}, "consent"?: {"adUserData",
  "adPersonalization"}}], "consent"?: {...}, "encoding": "HEX", "termsOfService"?:
  {"customerMatchTermsOfServiceStatus": "ACCEPTED"}}``. 200 ``{"requestId"}``: the request is
  accepted for asynchronous processing; nothing changes in the audience until it is processed.
- ``GET /google/v1/requestStatus:retrieve?requestId=R``: ``{"requestStatusPerDestination":
  [{"destination", "requestStatus": PROCESSING | SUCCESS | PARTIAL_SUCCESS | FAILED,
  "errorInfo": {"errorCounts": [{"reason", "recordCount"}]}, "warningInfo": {"warningCounts":
  [...]}, "audienceMembersIngestionStatus" | "audienceMembersRemovalStatus": {"userData...":
  {"recordCount", "userIdentifierCount"}}}]}``. Counts are strings, as in the REST API.
- ``GET /google/v1/accountTypes/{type}/accounts/{account}/userLists/{id}``: ``{"id",
  "sizeInfo": {"displayNetworkMembersCount"}, "targetNetworkInfo": {"eligibleForDisplay"}}``
  (a list of fewer than :data:`MIN_TARGETABLE` members is not eligible).

What the real API does and this mock copies (sources):

- Methods, bodies and the 10,000 members per request: REST reference,
  https://developers.google.com/data-manager/api/reference/rest/v1/audienceMembers/ingest and
  .../audienceMembers/remove; at most 10 identifiers per member and the error reasons
  (``TOO_MANY_AUDIENCE_MEMBERS``, ``TOO_MANY_USER_IDENTIFIERS``, ``INVALID_SHA256_FORMAT``,
  ``REQUIRED_FIELD_MISSING``...): https://developers.google.com/data-manager/api/reference/rest/v1/ErrorReason.
- Fail fast: "if any record in the request fails basic validation, the entire request fails and
  the API does not process any of the data in it"; the 400 ``INVALID_ARGUMENT`` carries a
  ``google.rpc.BadRequest`` whose ``fieldViolations[].field`` names the member
  (``audience_members.audience_members[3]``):
  https://developers.google.com/data-manager/api/devguides/concepts/understand-errors and the
  quickstart https://developers.google.com/data-manager/api/get-started/quickstart/send-audience-members.
- Asynchronous processing and the status shape: https://developers.google.com/data-manager/api/reference/rest/v1/requestStatus/retrieve.
  The real status gives error COUNTS per reason, never which member failed; so does this mock.
- Quota: 300 requests per minute and 100,000 per day per Cloud project, beyond which HTTP 429
  ``RESOURCE_EXHAUSTED`` (https://developers.google.com/data-manager/api/limits); a
  ``google.rpc.RetryInfo`` ``retryDelay`` as in the Google API error model
  (https://cloud.google.com/apis/design/errors).
- Consent (``adUserData``, ``adPersonalization``: ``CONSENT_GRANTED`` | ``CONSENT_DENIED``),
  request-level and overridden per member: https://developers.google.com/data-manager/api/reference/rest/v1/Consent.
  Users in the EEA need both signals (EU user consent policy,
  https://www.google.com/about/company/user-consent-policy/; "both types of consent must be
  granted ... to use data from users in the EEA for Customer Match lists",
  https://support.google.com/displayvideo/answer/14673239). The API takes no country: Google
  places each user itself, so the decision is per member. This mock refuses a member it knows
  as an EEA user (control ``eea_users``, by any of the member's identifier hashes) whose
  effective consent (the request's, overridden field by field by the member's) lacks either
  one, with ``REQUIRED_FIELD_MISSING`` on ``consent``; a member it does not place there needs
  none.
- Customer Match lists need at least 100 active members to serve (Google Ads Help, "About
  Customer Match"): :data:`MIN_TARGETABLE`.

An identifier that is not 64 lowercase hex characters is refused (``INVALID_SHA256_FORMAT``);
one that looks like a raw email or phone number is also counted as a ``raw_identifier``
violation, like Meta's: an ad platform must only ever receive hashes.
"""

from __future__ import annotations

import hmac
import json
import re
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from destinations.mock import meta_api
from destinations.mock.store import Store
from destinations.mock.wire import BadJson, Request, Response, json_response

PREFIX = "/google/v1"
MAX_MEMBERS = 10_000
MAX_IDENTIFIERS = 10
MAX_DESTINATIONS = 10
MIN_TARGETABLE = 100
IDENTIFIER_FIELDS = ("emailAddress", "phoneNumber")
CONSENT_FIELDS = ("adUserData", "adPersonalization")
CONSENT_VALUES = ("CONSENT_GRANTED", "CONSENT_DENIED")
DEFAULT_FAILURE_REASON = "INVALID_AUDIENCE_MEMBER"

_HEX64 = re.compile(r"[0-9a-f]{64}")
_USER_LIST = re.compile(
    rf"{PREFIX}/accountTypes/(?P<type>[A-Z_]+)/accounts/(?P<account>[0-9A-Za-z_\-]+)"
    r"/userLists/(?P<id>[0-9A-Za-z_\-]+)"
)

SCHEMA = """
CREATE TABLE IF NOT EXISTS google_identifiers (
    audience_id TEXT NOT NULL, member_id TEXT NOT NULL, identifier TEXT NOT NULL,
    consent TEXT NOT NULL DEFAULT '{}',
    PRIMARY KEY (audience_id, identifier)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS google_requests (
    request_id TEXT PRIMARY KEY, operation TEXT NOT NULL, audience_id TEXT NOT NULL,
    destination_json TEXT NOT NULL, members_json TEXT NOT NULL, failures_json TEXT NOT NULL,
    ready_at REAL NOT NULL, applied INTEGER NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS google_eea_users (identifier TEXT PRIMARY KEY) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS google_settings (name TEXT PRIMARY KEY, value TEXT NOT NULL);
"""


def ensure_schema(store: Store) -> None:
    """Create the Google tables in the mock's SQLite file (idempotent)."""
    with store._tx() as con:
        for statement in SCHEMA.split(";"):
            if statement.strip():
                con.execute(statement)


def google_error(
    status: int,
    code: str,
    message: str,
    *,
    violations: Sequence[dict[str, str]] = (),
    reason: str | None = None,
    retry_delay_s: float | None = None,
) -> Response:
    """A Google API error: ``{"error": {"code", "message", "status", "details": [...]}}`` with
    ``google.rpc.ErrorInfo`` (``reason``), ``google.rpc.BadRequest`` (``fieldViolations``) and
    ``google.rpc.RetryInfo`` (``retryDelay`` like ``"3s"``) where given."""
    details: list[dict[str, Any]] = [
        {
            "@type": "type.googleapis.com/google.rpc.ErrorInfo",
            "reason": reason or code,
            "domain": "datamanager.googleapis.com",
        }
    ]
    if violations:
        details.append(
            {"@type": "type.googleapis.com/google.rpc.BadRequest", "fieldViolations": violations}
        )
    if retry_delay_s is not None:
        retry = {"@type": "type.googleapis.com/google.rpc.RetryInfo"}
        details.append({**retry, "retryDelay": f"{retry_delay_s:g}s"})
    body = {"error": {"code": status, "message": message, "status": code, "details": details}}
    return json_response(status, body)


def quota_exhausted(retry_delay_s: float = 1.0) -> Response:
    """429 ``RESOURCE_EXHAUSTED`` with a ``RetryInfo.retryDelay``."""
    return google_error(
        429,
        "RESOURCE_EXHAUSTED",
        "Quota exceeded for quota metric 'Requests' of service 'datamanager.googleapis.com'.",
        retry_delay_s=retry_delay_s,
    )


def is_authorized(req: Request, token: str) -> bool:
    """``Authorization: Bearer <token>`` (an OAuth 2.0 access token at the real API)."""
    header = req.headers.get("authorization", "")
    given = header[7:].strip() if header[:7].lower() == "bearer " else ""
    return bool(given) and hmac.compare_digest(given.encode(), token.encode())


def _identifier_values(member: Any) -> list[str]:
    """Every identifier value of a member as sent (non-strings as their repr)."""
    user = member.get("userData") if isinstance(member, dict) else None
    ids = user.get("userIdentifiers") if isinstance(user, dict) else None
    values: list[str] = []
    for ident in ids if isinstance(ids, list) else []:
        if isinstance(ident, dict):
            values += [str(ident[f]) for f in IDENTIFIER_FIELDS if f in ident]
    return values


def logged_values(req: Request) -> list[str]:
    """Identifiers of the request for the request log, raw-looking ones redacted."""
    body = req.json_or_none()
    members = body.get("audienceMembers") if isinstance(body, dict) else None
    if not isinstance(members, list):
        return []
    return [meta_api.redact(v) for m in members for v in _identifier_values(m)]


def count_violations(store: Store, req: Request) -> None:
    """Count every raw-looking identifier sent, whatever the answer (``raw_identifier``)."""
    body = req.json_or_none()
    members = body.get("audienceMembers") if isinstance(body, dict) else None
    if not isinstance(members, list):
        return
    values = [v for m in members for v in _identifier_values(m)]
    samples = [meta_api.redact(v) for v in values if meta_api.raw_identifier_kind(v)]
    store.add_violations("google", "raw_identifier", samples)


@dataclass(frozen=True)
class Member:
    """A validated member: its identifiers (hex hashes) and effective consent."""

    identifiers: tuple[str, ...]
    consent: dict[str, str]


def _consent(value: Any) -> dict[str, str]:
    if not isinstance(value, dict):
        return {}
    return {f: value[f] for f in CONSENT_FIELDS if value.get(f) in CONSENT_VALUES}


def _member_violation(
    index: int, member: Any, request_consent: dict[str, str], eea: set[str], removal: bool
) -> tuple[Member | None, dict[str, str] | None]:
    field = f"audience_members.audience_members[{index}]"
    user = member.get("userData") if isinstance(member, dict) else None
    ids = user.get("userIdentifiers") if isinstance(user, dict) else None
    if not isinstance(ids, list) or not ids:
        return None, {
            "field": f"{field}.user_data.user_identifiers",
            "description": "At least one user identifier is required.",
            "reason": "REQUIRED_FIELD_MISSING",
        }
    if len(ids) > MAX_IDENTIFIERS:
        return None, {
            "field": f"{field}.user_data.user_identifiers",
            "description": f"At most {MAX_IDENTIFIERS} user identifiers per audience member.",
            "reason": "TOO_MANY_USER_IDENTIFIERS",
        }
    values: list[str] = []
    for ident in ids:
        given = [f for f in IDENTIFIER_FIELDS if isinstance(ident, dict) and f in ident]
        if len(given) != 1:
            return None, {
                "field": f"{field}.user_data.user_identifiers",
                "description": "Each user identifier needs exactly one of emailAddress, "
                "phoneNumber.",
                "reason": "REQUIRED_FIELD_MISSING",
            }
        value = ident[given[0]]
        if not isinstance(value, str) or not _HEX64.fullmatch(value):
            return None, {"field": field, "reason": "INVALID_SHA256_FORMAT"}
        values.append(value)
    consent = {**request_consent, **_consent(member.get("consent"))}
    if not removal and eea.intersection(values) and set(consent) != set(CONSENT_FIELDS):
        return None, {
            "field": f"{field}.consent",
            "description": "Consent (ad_user_data and ad_personalization) is required for "
            "users in the European Economic Area.",
            "reason": "REQUIRED_FIELD_MISSING",
        }
    return Member(tuple(values), consent), None


def _parse_destination(body: dict[str, Any]) -> tuple[dict[str, Any], str] | Response:
    destinations = body.get("destinations")
    if not isinstance(destinations, list) or not destinations:
        return google_error(400, "INVALID_ARGUMENT", "destinations is required.")
    if len(destinations) > MAX_DESTINATIONS:
        return google_error(
            400, "INVALID_ARGUMENT", "Too many destinations.", reason="TOO_MANY_DESTINATIONS"
        )
    if len(destinations) > 1:
        return google_error(400, "INVALID_ARGUMENT", "This mock takes one destination per request.")
    dest = destinations[0]
    audience = dest.get("productDestinationId") if isinstance(dest, dict) else None
    account = dest.get("operatingAccount") if isinstance(dest, dict) else None
    if not isinstance(audience, str) or not audience or not isinstance(account, dict):
        return google_error(
            400,
            "INVALID_ARGUMENT",
            "Destination needs operatingAccount and productDestinationId.",
            reason="INVALID_DESTINATION",
        )
    return dest, audience


def handle(
    store: Store, req: Request, token: str, reject_rows: dict[str, str] | None = None
) -> Response:
    """Answer one Google request (auth checked here). ``reject_rows``: identifier -> reason
    for members that a fault wants to fail during asynchronous processing."""
    settle_due(store)
    if not is_authorized(req, token):
        return google_error(
            401, "UNAUTHENTICATED", "Request had invalid authentication credentials."
        )
    if req.method == "POST" and req.path in (
        f"{PREFIX}/audienceMembers:ingest",
        f"{PREFIX}/audienceMembers:remove",
    ):
        return _submit(store, req, req.path.endswith(":remove"), reject_rows or {})
    if req.method == "GET" and req.path == f"{PREFIX}/requestStatus:retrieve":
        return _status(store, req.query_params().get("requestId", ""))
    if req.method == "GET" and (m := _USER_LIST.fullmatch(req.path)):
        return _user_list(store, m["id"])
    return google_error(404, "NOT_FOUND", f"Unknown method {req.method} {req.path}.")


def _submit(store: Store, req: Request, removal: bool, reject_rows: dict[str, str]) -> Response:
    try:
        body = req.json()
    except BadJson:
        return google_error(400, "INVALID_ARGUMENT", "Invalid JSON payload received.")
    if not isinstance(body, dict):
        return google_error(400, "INVALID_ARGUMENT", "The body must be a JSON object.")
    parsed = _parse_destination(body)
    if isinstance(parsed, Response):
        return parsed
    dest, audience = parsed
    members = body.get("audienceMembers")
    if not isinstance(members, list) or not members:
        return google_error(400, "INVALID_ARGUMENT", "audience_members is required.")
    if len(members) > MAX_MEMBERS:
        return google_error(
            400,
            "INVALID_ARGUMENT",
            f"At most {MAX_MEMBERS} audience members per request.",
            reason="TOO_MANY_AUDIENCE_MEMBERS",
        )
    if body.get("encoding") != "HEX":
        return google_error(400, "INVALID_ARGUMENT", "encoding is required for user data.")
    terms = body.get("termsOfService") or {}
    if not removal and terms.get("customerMatchTermsOfServiceStatus") != "ACCEPTED":
        return google_error(
            400,
            "INVALID_ARGUMENT",
            "The Customer Match terms of service must be accepted.",
            reason="TERMS_AND_CONDITIONS_NOT_SIGNED",
        )
    eea = eea_users(store)
    request_consent = _consent(body.get("consent"))
    valid: list[Member] = []
    violations: list[dict[str, str]] = []
    for i, member in enumerate(members):
        ok, violation = _member_violation(i, member, request_consent, eea, removal)
        if violation:
            violations.append(violation)
        elif ok:
            valid.append(ok)
    if violations:
        return google_error(
            400, "INVALID_ARGUMENT", "There was a problem with the request.", violations=violations
        )
    failures = {
        i: reject_rows[v] for i, m in enumerate(valid) for v in m.identifiers if v in reject_rows
    }
    request_id = str(uuid.uuid4())
    ready_at = time.time() + processing_delay(store)
    with store._tx() as con:
        con.execute(
            "INSERT INTO google_requests VALUES (?, ?, ?, ?, ?, ?, ?, 0)",
            (
                request_id,
                "remove" if removal else "ingest",
                audience,
                json.dumps(dest),
                json.dumps([{"ids": m.identifiers, "consent": m.consent} for m in valid]),
                json.dumps({str(k): v for k, v in failures.items()}),
                ready_at,
            ),
        )
    settle_due(store)
    return json_response(200, {"requestId": request_id})


def settle_due(store: Store) -> None:
    """Apply every request whose processing time has come (members that a fault failed are
    left out); each is applied once."""
    now = time.time()
    with store._tx() as con:
        due = con.execute(
            "SELECT request_id, operation, audience_id, members_json, failures_json"
            " FROM google_requests WHERE applied = 0 AND ready_at <= ? ORDER BY ready_at",
            (now,),
        ).fetchall()
        for request_id, operation, audience, members_json, failures_json in due:
            failed = {int(k) for k in json.loads(failures_json)}
            for i, member in enumerate(json.loads(members_json)):
                if i not in failed:
                    _apply_member(con, operation, audience, member)
            con.execute(
                "UPDATE google_requests SET applied = 1 WHERE request_id = ?", (request_id,)
            )


def _apply_member(con: Any, operation: str, audience: str, member: dict[str, Any]) -> None:
    ids = list(member["ids"])
    marks = ",".join("?" * len(ids))
    found = con.execute(
        f"SELECT DISTINCT member_id FROM google_identifiers WHERE audience_id = ?"
        f" AND identifier IN ({marks})",
        (audience, *ids),
    ).fetchall()
    if operation == "remove":
        con.executemany(
            "DELETE FROM google_identifiers WHERE audience_id = ? AND member_id = ?",
            [(audience, r[0]) for r in found],
        )
        return
    member_id = found[0][0] if found else ids[0]
    consent = json.dumps(member.get("consent") or {}, sort_keys=True)
    con.executemany(
        "INSERT INTO google_identifiers VALUES (?, ?, ?, ?) ON CONFLICT (audience_id, identifier)"
        " DO UPDATE SET member_id = excluded.member_id, consent = excluded.consent",
        [(audience, member_id, i, consent) for i in ids],
    )
    con.execute(
        "UPDATE google_identifiers SET consent = ? WHERE audience_id = ? AND member_id = ?",
        (consent, audience, member_id),
    )


def _status(store: Store, request_id: str) -> Response:
    with store._tx() as con:
        row = con.execute(
            "SELECT operation, destination_json, members_json, failures_json, applied"
            " FROM google_requests WHERE request_id = ?",
            (request_id,),
        ).fetchone()
    if row is None:
        return google_error(404, "NOT_FOUND", "Request not found.", reason="NOT_FOUND")
    operation, dest_json, members_json, failures_json, applied = row
    members = json.loads(members_json)
    failures: dict[str, str] = json.loads(failures_json)
    per_dest: dict[str, Any] = {"destination": json.loads(dest_json)}
    if not applied:
        per_dest["requestStatus"] = "PROCESSING"
    elif not failures:
        per_dest["requestStatus"] = "SUCCESS"
    else:
        full = len(failures) == len(members)
        per_dest["requestStatus"] = "FAILED" if full else "PARTIAL_SUCCESS"
        counts: dict[str, int] = {}
        for reason in failures.values():
            counts[reason] = counts.get(reason, 0) + 1
        per_dest["errorInfo"] = {
            "errorCounts": [{"reason": r, "recordCount": str(n)} for r, n in sorted(counts.items())]
        }
    stats = {
        "recordCount": str(len(members)),
        "userIdentifierCount": str(sum(len(m["ids"]) for m in members)),
    }
    if operation == "ingest":
        per_dest["audienceMembersIngestionStatus"] = {"userDataIngestionStatus": stats}
    else:
        per_dest["audienceMembersRemovalStatus"] = {"userDataRemovalStatus": stats}
    return json_response(200, {"requestStatusPerDestination": [per_dest]})


def member_count(store: Store, audience_id: str) -> int:
    """Members of an audience (a member is one person, whatever its number of identifiers)."""
    settle_due(store)
    with store._tx() as con:
        (n,) = con.execute(
            "SELECT count(DISTINCT member_id) FROM google_identifiers WHERE audience_id = ?",
            (audience_id,),
        ).fetchone()
    return int(n)


def _user_list(store: Store, audience_id: str) -> Response:
    count = member_count(store, audience_id)
    return json_response(
        200,
        {
            "id": audience_id,
            "sizeInfo": {"displayNetworkMembersCount": str(count)},
            "targetNetworkInfo": {"eligibleForDisplay": count >= MIN_TARGETABLE},
        },
    )


def members(store: Store, audience_id: str) -> list[dict[str, Any]]:
    """Control view: ``[{"identifiers": [sorted hashes], "consent": {...}}]`` sorted by the
    first identifier."""
    settle_due(store)
    with store._tx() as con:
        rows = con.execute(
            "SELECT member_id, identifier, consent FROM google_identifiers WHERE audience_id = ?"
            " ORDER BY member_id, identifier",
            (audience_id,),
        ).fetchall()
    grouped: dict[str, dict[str, Any]] = {}
    for member_id, identifier, consent in rows:
        entry = grouped.setdefault(member_id, {"identifiers": [], "consent": json.loads(consent)})
        entry["identifiers"].append(identifier)
    return sorted(grouped.values(), key=lambda m: m["identifiers"][0])


def eea_users(store: Store) -> set[str]:
    """Identifiers the mock treats as users in the EEA."""
    with store._tx() as con:
        return {r[0] for r in con.execute("SELECT identifier FROM google_eea_users")}


def add_eea_users(store: Store, identifiers: Sequence[str]) -> None:
    """Mark identifiers as belonging to users in the EEA."""
    with store._tx() as con:
        con.executemany(
            "INSERT OR IGNORE INTO google_eea_users VALUES (?)", [(i,) for i in identifiers]
        )


def processing_delay(store: Store) -> float:
    """Seconds between a request's acceptance and its processing (default 0)."""
    with store._tx() as con:
        row = con.execute(
            "SELECT value FROM google_settings WHERE name = 'processing_delay_s'"
        ).fetchone()
    return float(row[0]) if row else 0.0


def set_processing_delay(store: Store, seconds: float) -> None:
    """Set the processing delay (seconds, >= 0) for requests accepted from now on."""
    if seconds < 0:
        raise ValueError("processing_delay_s must not be negative")
    with store._tx() as con:
        con.execute(
            "INSERT OR REPLACE INTO google_settings VALUES ('processing_delay_s', ?)",
            (str(seconds),),
        )


def reset(store: Store) -> None:
    """Wipe the Google audiences, requests, EEA users and settings."""
    with store._tx() as con:
        for table in ("google_identifiers", "google_requests", "google_eea_users"):
            con.execute(f"DELETE FROM {table}")  # constant names
        con.execute("DELETE FROM google_settings")


def seed(store: Store, audience_id: str, members_in: Sequence[Any]) -> int:
    """Put members in place at once (``[{"identifiers": [hex...], "consent"?: {...}}]``)."""
    with store._tx() as con:
        for m in members_in:
            ids = [str(i) for i in m.get("identifiers", [])] if isinstance(m, dict) else []
            if not ids:
                raise ValueError("each google member needs a non-empty 'identifiers' list")
            _apply_member(con, "ingest", audience_id, {"ids": ids, "consent": m.get("consent")})
    return len(members_in)


__all__ = [
    "MAX_IDENTIFIERS",
    "MAX_MEMBERS",
    "MIN_TARGETABLE",
    "PREFIX",
    "add_eea_users",
    "count_violations",
    "ensure_schema",
    "google_error",
    "handle",
    "logged_values",
    "member_count",
    "members",
    "processing_delay",
    "quota_exhausted",
    "reset",
    "seed",
    "set_processing_delay",
    "settle_due",
]
