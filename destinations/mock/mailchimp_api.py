"""Mailchimp Marketing API v3, as far as a sync needs it (under ``/mailchimp/3.0``).

Routes (lists are created on first use; member id = md5 of the lowercase email):
- ``POST /lists/{list_id}``: batch subscribe/unsubscribe, body ``{"members": [{"email_address",
  "status", "status_if_new"?, "merge_fields"?}], "update_existing": bool}``, at most 500
  members; 200 ``{"new_members", "updated_members", "errors": [{"email_address", "error",
  "error_code"}], "total_created", "total_updated", "error_count"}``.
- ``PUT /lists/{list_id}/members/{hash}``: upsert one contact (``status_if_new``, ``status``).
- ``PATCH /lists/{list_id}/members/{hash}``: change an existing contact's status or fields by id.
- ``GET /lists/{list_id}/members?count=&offset=``: list contacts (keys and statuses).
- ``GET /lists/{list_id}/members/{hash}``; ``DELETE`` same path archives it (204).
- ``POST /lists/{list_id}/members/{hash}/actions/delete-permanent``: GDPR erasure (204); the
  contact becomes ``forgotten``: only the hash is kept, email and merge fields are dropped.
- ``GET /lists/{list_id}``: ``{"id", "stats": {"member_count" (subscribed),
  "unsubscribe_count", "cleaned_count", ...}}``; ``GET /ping``.

The batch answer is each member's final state (Mailchimp Marketing API, "Batch subscribe or
unsubscribe", ``POST /lists/{list_id}``,
https://mailchimp.com/developer/marketing/api/lists/batch-subscribe-or-unsubscribe/):
``new_members`` / ``updated_members`` hold member resources with their ``status`` after the
call, which need not be the status asked for (a list keeps an unsubscribed or cleaned contact
as it is); ``errors`` the members refused. Such answers are injected with the ``answer``
fault (:mod:`destinations.mock.faults`).

Compliance rules (source: Mailchimp Marketing API "Errors" glossary, titles "Member In
Compliance State" and "Forgotten Email Not Subscribed"): a contact that unsubscribed or was
cleaned cannot be set back to ``subscribed`` by the API, and a permanently deleted contact
cannot be re-imported (any status is refused for it). Each attempt to subscribe such a contact
is refused AND counted as a violation (``resubscribe``, ``forgotten_resubscribe``): a correct
sync never tries. Error texts here never contain the email
address (the real API's do); the address is in the ``email_address`` field of the entry.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
import uuid
from dataclasses import dataclass, replace
from typing import Any

from destinations.mock.store import McMember, Store, utc_now_iso
from destinations.mock.wire import BadJson, Request, Response, empty_response, json_response

PREFIX = "/mailchimp/3.0"
MAX_BATCH = 500
MAX_IN_FLIGHT = 10
SETTABLE_STATUSES = ("subscribed", "unsubscribed", "cleaned", "pending", "transactional")
COMPLIANCE_STATUSES = ("unsubscribed", "cleaned")

INVALID_EMAIL = "This email address looks fake or invalid, please enter a real email address."
CONTACT_EXISTS = "This contact is already a list member. Use PUT to insert or update list members."
COMPLIANCE = (
    "This contact is in a compliance state due to unsubscribe, bounce, or compliance review "
    "and cannot be subscribed."
)
FORGOTTEN_TITLE = "Forgotten Email Not Subscribed"
FORGOTTEN = (
    f"{FORGOTTEN_TITLE}: this contact was permanently deleted and cannot be re-imported. "
    "The contact must re-subscribe to get back on the list."
)
ERRORS_DOC = "https://mailchimp.com/developer/marketing/docs/errors/"

_EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[A-Za-z]{2,}")
_LIST = re.compile(r"/lists/(?P<list>[A-Za-z0-9_\-]+)")
_MEMBER = re.compile(r"/lists/(?P<list>[A-Za-z0-9_\-]+)/members/(?P<hash>[^/]+)")
_MEMBERS = re.compile(r"/lists/(?P<list>[A-Za-z0-9_\-]+)/members")
_DELETE_PERMANENT = re.compile(
    r"/lists/(?P<list>[A-Za-z0-9_\-]+)/members/(?P<hash>[^/]+)/actions/delete-permanent"
)


def problem(status: int, title: str, detail: str, **extra: Any) -> Response:
    """RFC 7807 problem document as Mailchimp sends it (``application/problem+json``)."""
    doc = {
        "type": ERRORS_DOC,
        "title": title,
        "status": status,
        "detail": detail,
        "instance": str(uuid.uuid4()),
        **extra,
    }
    return json_response(status, doc, content_type="application/problem+json")


def unauthorized() -> Response:
    """401 "API Key Invalid"."""
    return problem(
        401,
        "API Key Invalid",
        "Your API key may be invalid, or you've attempted to access the wrong datacenter.",
    )


def too_many_requests() -> Response:
    """429 for more than 10 simultaneous connections; the real API sends no Retry-After."""
    return problem(
        429,
        "Too Many Requests",
        f"You have exceeded the limit of {MAX_IN_FLIGHT} simultaneous connections.",
    )


def subscriber_hash(email: str) -> str:
    """Mailchimp's member id: md5 hex of the lowercase email address."""
    return hashlib.md5(email.lower().encode()).hexdigest()


def is_valid_email(email: str) -> bool:
    """A syntactic check in the spirit of Mailchimp's "looks fake or invalid"."""
    return len(email) <= 254 and bool(_EMAIL.fullmatch(email))


def is_authorized(req: Request, token: str) -> bool:
    """HTTP Basic with any username and the token as password (or ``Bearer <token>``)."""
    header = req.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    given = ""
    if scheme.lower() == "basic":
        try:
            given = base64.b64decode(value.strip(), validate=True).decode().partition(":")[2]
        except (binascii.Error, UnicodeDecodeError):
            given = ""
    elif scheme.lower() == "bearer":
        given = value.strip()
    return bool(given) and hmac.compare_digest(given.encode(), token.encode())


def member_json(m: McMember) -> dict[str, Any]:
    """The member resource: id, email_address, unique_email_id, status, merge_fields,
    list_id, last_changed."""
    return {
        "id": m.hash,
        "email_address": m.email,
        "unique_email_id": m.hash[:10],
        "status": m.status,
        "merge_fields": m.merge_fields,
        "list_id": m.list_id,
        "last_changed": m.last_changed,
    }


def logged_values(req: Request) -> list[dict[str, Any]]:
    """What the request carried per member, for the request log: ``{"email_address",
    "status"}`` for batch and PUT bodies, ``{"hash"}`` for member paths without a body."""
    body = req.json_or_none()
    member = _MEMBER.match(req.path[len(PREFIX) :])
    if isinstance(body, dict) and isinstance(body.get("members"), list):
        return [
            {"email_address": m.get("email_address"), "status": m.get("status")}
            for m in body["members"]
            if isinstance(m, dict)
        ]
    if isinstance(body, dict) and "email_address" in body:
        status = body.get("status") or body.get("status_if_new")
        entry = {"email_address": body.get("email_address"), "status": status}
        return [{**entry, "hash": member["hash"]}] if member else [entry]
    return [{"hash": member["hash"]}] if member else []


def handle(
    store: Store,
    req: Request,
    token: str,
    reject_rows: dict[str, str] | None = None,
    answer: dict | None = None,
) -> Response:
    """Answer one Mailchimp request (auth checked here). ``reject_rows``: lowercase email ->
    error text that a fault wants returned for that member. ``answer``: ``{"omit": emails}``
    silently ignored (not applied, absent from the answer) and ``{"keep": email -> status}``
    left as they are and reported with that status (batch only)."""
    if not is_authorized(req, token):
        return unauthorized()
    path = req.path[len(PREFIX) :]
    rejects = reject_rows or {}
    shaping = answer or {}
    if path == "/ping" and req.method == "GET":
        return json_response(200, {"health_status": "Everything's Chimpy!"})
    if m := _DELETE_PERMANENT.fullmatch(path):
        if req.method != "POST":
            return _not_allowed(req)
        return _delete_permanent(store, m["list"], m["hash"])
    if m := _MEMBERS.fullmatch(path):
        return _list_members(store, req, m["list"]) if req.method == "GET" else _not_allowed(req)
    if m := _MEMBER.fullmatch(path):
        routes = {"PUT": _put_member, "GET": _get_member, "DELETE": _archive_member}
        if req.method == "PATCH":
            return _patch_member(store, req, m["list"], m["hash"])
        if req.method not in routes:
            return _not_allowed(req)
        if req.method == "PUT":
            return _put_member(store, req, m["list"], m["hash"], rejects)
        return routes[req.method](store, m["list"], m["hash"])
    if m := _LIST.fullmatch(path):
        if req.method == "POST":
            return _batch(store, req, m["list"], rejects, shaping)
        if req.method == "GET":
            return _list_info(store, m["list"])
        return _not_allowed(req)
    return problem(404, "Resource Not Found", "The requested resource could not be found.")


def _not_allowed(req: Request) -> Response:
    return problem(405, "Method Not Allowed", f"The requested method {req.method} is not allowed.")


@dataclass(frozen=True)
class _Outcome:
    """Result of applying one member: the new record (or None) and an error (or None)."""

    member: McMember | None
    created: bool
    error: str | None
    error_code: str = "ERROR_GENERIC"
    violation: str | None = None


def _apply_member(
    list_id: str,
    current: McMember | None,
    email: str,
    status: str | None,
    status_if_new: str | None,
    merge_fields: dict[str, Any],
    *,
    update_existing: bool,
) -> _Outcome:
    """The rules for one contact, shared by the batch endpoint and PUT."""
    h = subscriber_hash(email)
    if current is not None and current.status == "forgotten":
        # Refused whatever the status (the record cannot come back); only an attempt to
        # subscribe again is a violation, an unsubscribe of an erased contact is harmless.
        unsubscribing = (status or status_if_new) == "unsubscribed"
        violation = None if unsubscribing else "forgotten_resubscribe"
        return _Outcome(None, False, FORGOTTEN, violation=violation)
    is_new = current is None or current.status == "archived"
    target = (status_if_new or status) if current is None else (status or status_if_new)
    if not is_new:
        target = status or current.status
        if target == "subscribed" and current.status in COMPLIANCE_STATUSES:
            return _Outcome(None, False, COMPLIANCE, violation="resubscribe")
        if not update_existing:
            return _Outcome(None, False, CONTACT_EXISTS, "ERROR_CONTACT_EXISTS")
    if target is None:
        return _Outcome(None, False, "The status field is required for new contacts.")
    fields = {**(current.merge_fields if current else {}), **merge_fields}
    return _Outcome(McMember(list_id, h, email, target, fields, utc_now_iso()), is_new, None)


def _bad_member(m: Any) -> str | None:
    """Why a member object breaks the schema (None if it is well-formed)."""
    if not isinstance(m, dict) or not isinstance(m.get("email_address"), str):
        return "email_address is required"
    for key in ("status", "status_if_new"):
        if m.get(key) is not None and m[key] not in SETTABLE_STATUSES:
            return f"{key} must be one of {', '.join(SETTABLE_STATUSES)}"
    if m.get("merge_fields") is not None and not isinstance(m["merge_fields"], dict):
        return "merge_fields must be an object"
    return None


def _parse_batch(req: Request) -> tuple[list[dict[str, Any]], bool] | Response:
    """(members, update_existing) from a batch body, or the 400 problem document."""
    try:
        body = req.json()
    except BadJson:
        return problem(400, "JSON Parse Error", "We encountered an unspecified JSON parsing error.")
    members = body.get("members") if isinstance(body, dict) else None
    if not isinstance(members, list) or not members:
        return _invalid([{"field": "members", "message": "Required, a non-empty array"}])
    if len(members) > MAX_BATCH:
        detail = f"A batch may contain at most {MAX_BATCH} members, got {len(members)}."
        return problem(400, "Invalid Resource", detail)
    bad = [(i, why) for i, m in enumerate(members) if (why := _bad_member(m))]
    if bad:
        return _invalid([{"field": f"members[{i}]", "message": w} for i, w in bad[:20]])
    return members, bool(body.get("update_existing", False))


def _invalid(errors: list[dict[str, str]]) -> Response:
    detail = "The resource submitted could not be validated."
    return problem(400, "Invalid Resource", detail, errors=errors)


def _batch(
    store: Store, req: Request, list_id: str, rejects: dict[str, str], shaping: dict
) -> Response:
    parsed = _parse_batch(req)
    if isinstance(parsed, Response):
        return parsed
    members, update_existing = parsed
    state = store.mc_get_many(list_id, (subscriber_hash(m["email_address"]) for m in members))
    new, updated, errors, violations = [], [], [], {}
    changed: dict[str, McMember] = {}
    omit, keep = shaping.get("omit") or set(), shaping.get("keep") or {}
    for m in members:
        email = m["email_address"]
        if email.lower() in omit:
            continue
        if email.lower() in keep:
            held = state.get(subscriber_hash(email))
            kept = held or McMember(list_id, subscriber_hash(email), email, "", {}, "")
            updated.append(member_json(replace(kept, status=keep[email.lower()])))
            continue
        reason = rejects.get(email.lower()) or (None if is_valid_email(email) else INVALID_EMAIL)
        out = (
            _Outcome(None, False, reason)
            if reason
            else _apply_member(
                list_id,
                state.get(subscriber_hash(email)),
                email,
                m.get("status"),
                m.get("status_if_new"),
                m.get("merge_fields") or {},
                update_existing=update_existing,
            )
        )
        if out.member is None:
            errors.append(
                {"email_address": email, "error": out.error, "error_code": out.error_code}
            )
            if out.violation:
                violations.setdefault(out.violation, []).append(
                    "md5:" + subscriber_hash(email)[:12]
                )
            continue
        state[out.member.hash] = changed[out.member.hash] = out.member
        (new if out.created else updated).append(member_json(out.member))
    store.mc_put_many(list(changed.values()))
    for kind, samples in violations.items():
        store.add_violations("mailchimp", kind, samples)
    totals = {"total_created": len(new), "total_updated": len(updated), "error_count": len(errors)}
    return json_response(
        200, {"new_members": new, "updated_members": updated, "errors": errors, **totals}
    )


def _put_member(
    store: Store, req: Request, list_id: str, member_hash: str, rejects: dict[str, str]
) -> Response:
    try:
        body = req.json()
    except BadJson:
        return problem(400, "JSON Parse Error", "We encountered an unspecified JSON parsing error.")
    if why := _bad_member(body):
        return _invalid([{"field": "", "message": why}])
    email = body["email_address"]
    if not is_valid_email(email):
        return problem(400, "Invalid Resource", INVALID_EMAIL)
    if subscriber_hash(email) != member_hash.lower():
        return problem(
            400,
            "Invalid Resource",
            "The subscriber hash in the URL does not match the email address.",
        )
    if reason := rejects.get(email.lower()):
        return problem(400, "Invalid Resource", reason)
    current = store.mc_get(list_id, member_hash.lower())
    out = _apply_member(
        list_id,
        current,
        email,
        body.get("status"),
        body.get("status_if_new"),
        body.get("merge_fields") or {},
        update_existing=True,
    )
    if out.member is None:
        if out.violation:
            store.add_violations("mailchimp", out.violation, ["md5:" + member_hash[:12]])
        title = {
            "resubscribe": "Member In Compliance State",
            "forgotten_resubscribe": FORGOTTEN_TITLE,
        }.get(out.violation or "", "Invalid Resource")
        return problem(400, title, out.error or "")
    store.mc_put_many([out.member])
    return json_response(200, member_json(out.member))


def _patch_member(store: Store, req: Request, list_id: str, member_hash: str) -> Response:
    """ "Update list member" (``PATCH /lists/{list_id}/members/{subscriber_hash}``,
    https://mailchimp.com/developer/marketing/api/list-members/update-list-member/): change an
    existing contact's ``status`` / ``merge_fields`` by its id, no address needed; 404 when the
    list has no such contact; the compliance rules of the batch endpoint apply."""
    try:
        body = req.json()
    except BadJson:
        return problem(400, "JSON Parse Error", "We encountered an unspecified JSON parsing error.")
    if not isinstance(body, dict) or (
        body.get("status") is not None and body["status"] not in SETTABLE_STATUSES
    ):
        return _invalid([{"field": "status", "message": "not a settable status"}])
    current = _live(store, list_id, member_hash)
    if current is None or current.status == "archived":
        return _not_found()
    if body.get("status") == "subscribed" and current.status in COMPLIANCE_STATUSES:
        store.add_violations("mailchimp", "resubscribe", ["md5:" + member_hash[:12]])
        return problem(400, "Member In Compliance State", COMPLIANCE)
    fields = {**current.merge_fields, **(body.get("merge_fields") or {})}
    status = body.get("status") or current.status
    member = replace(current, status=status, merge_fields=fields, last_changed=utc_now_iso())
    store.mc_put_many([member])
    return json_response(200, member_json(member))


def _list_members(store: Store, req: Request, list_id: str) -> Response:
    """ "List members info" (``GET /lists/{list_id}/members?count=&offset=``, at most 1000 per
    page, https://mailchimp.com/developer/marketing/api/list-members/list-members-info/):
    ``{"members": [member], "total_items", "list_id"}``; forgotten contacts are not listed."""
    params = req.query_params()
    try:
        count = min(int(params.get("count", "10")), 1000)
        offset = max(int(params.get("offset", "0")), 0)
    except ValueError:
        return _invalid([{"field": "count", "message": "count and offset must be integers"}])
    members = [m for m in store.mc_members(list_id) if m.status != "forgotten"]
    page = [member_json(m) for m in members[offset : offset + count]]
    return json_response(200, {"members": page, "total_items": len(members), "list_id": list_id})


def _live(store: Store, list_id: str, member_hash: str) -> McMember | None:
    member = store.mc_get(list_id, member_hash.lower())
    return None if member is None or member.status == "forgotten" else member


def _not_found() -> Response:
    return problem(404, "Resource Not Found", "The requested resource could not be found.")


def _get_member(store: Store, list_id: str, member_hash: str) -> Response:
    member = _live(store, list_id, member_hash)
    return json_response(200, member_json(member)) if member else _not_found()


def _archive_member(store: Store, list_id: str, member_hash: str) -> Response:
    member = _live(store, list_id, member_hash)
    if member is None:
        return _not_found()
    if member.status != "archived":
        store.mc_put_many([replace(member, status="archived", last_changed=utc_now_iso())])
    return empty_response(204)


def _delete_permanent(store: Store, list_id: str, member_hash: str) -> Response:
    member = _live(store, list_id, member_hash)
    if member is None:
        return _not_found()
    forgotten = McMember(list_id, member.hash, None, "forgotten", {}, utc_now_iso())
    store.mc_put_many([forgotten])
    return empty_response(204)


def _list_info(store: Store, list_id: str) -> Response:
    counts = store.mc_status_counts(list_id)
    stats = {
        "member_count": counts.get("subscribed", 0),
        "unsubscribe_count": counts.get("unsubscribed", 0),
        "cleaned_count": counts.get("cleaned", 0),
        "pending_count": counts.get("pending", 0),
        "archived_count": counts.get("archived", 0),
        "total_contacts": sum(n for s, n in counts.items() if s != "forgotten"),
    }
    return json_response(200, {"id": list_id, "name": f"Mock list {list_id}", "stats": stats})
