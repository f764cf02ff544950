"""Control API for tests and the demo (no auth; clients never call it).

Under ``/meta/_control/``, ``/mailchimp/_control/`` and ``/google/_control/``:

- ``POST reset``: wipe the platform (members, request log, violations, faults).
- ``POST seed``: put members in place. Meta ``{"audience_id", "data": ["<hash>", ...]}``;
  Mailchimp ``{"list_id", "members": [{"email_address", "status", "merge_fields"?}]}`` where
  status may be any of subscribed, unsubscribed, cleaned, pending, archived, forgotten
  (a forgotten contact keeps only its hash). Google ``{"audience_id", "members":
  [{"identifiers": [hex, ...], "consent"?: {...}}]}``.
- Meta only: ``POST restrict`` ``{"audience_id"}`` flags an audience as suggesting health or
  financial status: its edits are refused ("Audience Upload Blocked").
- Google only: ``POST eea_users`` ``{"identifiers": [hex, ...]}`` marks users in the EEA (their
  uploads need both consent signals); ``POST settings`` ``{"processing_delay_s": N}`` sets how
  long a request stays ``PROCESSING``.
- ``POST faults`` (see ``faults.py``) -> ``{"ids": [...]}``; ``DELETE faults``; ``GET faults``.
- ``GET audiences/{id}``: Meta ``{"audience_id", "members": [sorted hashes]}``; Mailchimp
  ``{"list_id", "members": [{"hash", "email_address", "status", "merge_fields",
  "last_changed"}]}`` sorted by hash; Google ``{"audience_id", "members": [{"identifiers",
  "consent"}], "targetable"}`` (processed requests only).
- ``GET requests[?since_id=N&values=0]``: ``{"requests": [{"id", "method", "path", "query",
  "status", "fault", "at", "values"}]}`` oldest first; ``status`` is null for a dropped
  connection; ``values`` are the Meta hashes (raw identifiers redacted) or Mailchimp
  ``{"email_address", "status"}`` per member.
- ``GET violations``: ``{"<kind>": count, ..., "samples": {"<kind>": [redacted, ...]}}``; kinds
  ``raw_identifier`` (Meta, Google), ``resubscribe`` and ``forgotten_resubscribe`` (Mailchimp).
"""

from __future__ import annotations

import re
from typing import Any

from destinations.mock import faults, google_api, meta_api
from destinations.mock.mailchimp_api import subscriber_hash
from destinations.mock.store import McMember, Store, utc_now_iso
from destinations.mock.wire import BadJson, Request, Response, json_response

VIOLATION_KINDS = {
    "meta": ("raw_identifier",),
    "mailchimp": ("resubscribe", "forgotten_resubscribe"),
    "google": ("raw_identifier",),
}
ALL_STATUSES = ("subscribed", "unsubscribed", "cleaned", "pending", "archived", "forgotten")
_AUDIENCE = re.compile(r"audiences/(?P<id>[A-Za-z0-9_\-]+)")


def _error(status: int, message: str) -> Response:
    return json_response(status, {"error": message})


def handle(store: Store, platform: str, sub: str, req: Request) -> Response:
    """Answer a control request; ``sub`` is the path after ``/{platform}/_control/``."""
    try:
        if req.method == "POST" and sub == "reset":
            store.reset(platform)
            if platform == "google":
                google_api.reset(store)
            if platform == "meta":
                meta_api.clear_restricted(store)
            return json_response(200, {"reset": platform})
        if platform == "meta" and req.method == "POST" and sub == "restrict":
            body = req.json()
            if not isinstance(body, dict) or not isinstance(body.get("audience_id"), str):
                raise ValueError("restrict needs an 'audience_id'")
            meta_api.restrict(store, body["audience_id"])
            return json_response(200, {"restricted": body["audience_id"]})
        if platform == "google" and req.method == "POST" and sub in ("eea_users", "settings"):
            return _google_setting(store, sub, req.json())
        if req.method == "POST" and sub == "seed":
            return _seed(store, platform, req.json())
        if sub == "faults":
            return _faults(store, platform, req)
        if req.method == "GET" and (m := _AUDIENCE.fullmatch(sub)):
            return _audience(store, platform, m["id"])
        if req.method == "GET" and sub == "requests":
            params = req.query_params()
            log = store.requests(
                platform,
                since_id=int(params.get("since_id", "0") or 0),
                with_values=params.get("values", "1") not in ("0", "false"),
            )
            return json_response(200, {"requests": log})
        if req.method == "GET" and sub == "violations":
            return json_response(200, violations(store, platform))
    except (BadJson, faults.FaultSpecError, ValueError) as exc:
        return _error(400, str(exc))
    return _error(404, f"unknown control route {req.method} {sub}")


def violations(store: Store, platform: str) -> dict[str, Any]:
    """Counts by kind (known kinds default to 0) plus ``samples``."""
    counts, samples = store.violations(platform)
    out: dict[str, Any] = dict.fromkeys(VIOLATION_KINDS[platform], 0)
    out.update(counts)
    out["samples"] = samples
    return out


def _faults(store: Store, platform: str, req: Request) -> Response:
    if req.method == "DELETE":
        return json_response(200, {"cleared": store.clear_faults(platform)})
    if req.method == "GET":
        return json_response(200, {"faults": store.list_faults(platform)})
    if req.method != "POST":
        return _error(405, "use POST, GET or DELETE")
    match, action, times = faults.parse_fault(req.json())
    ids = [
        store.add_fault(platform, match["method"], match["path"], match["nth"], action)
        for _ in range(times)
    ]
    return json_response(200, {"ids": ids})


def _google_setting(store: Store, sub: str, body: Any) -> Response:
    if not isinstance(body, dict):
        raise ValueError(f"{sub} body must be an object")
    if sub == "eea_users":
        hashes = body.get("identifiers")
        if not isinstance(hashes, list):
            raise ValueError("eea_users needs a list 'identifiers'")
        google_api.add_eea_users(store, [str(h) for h in hashes])
        return json_response(200, {"eea_users": len(hashes)})
    delay = body.get("processing_delay_s")
    if not isinstance(delay, int | float):
        raise ValueError("settings needs a number 'processing_delay_s'")
    google_api.set_processing_delay(store, float(delay))
    return json_response(200, {"processing_delay_s": float(delay)})


def _seed(store: Store, platform: str, body: Any) -> Response:
    if not isinstance(body, dict):
        raise ValueError("seed body must be an object")
    if platform == "google":
        members = body.get("members")
        if not isinstance(body.get("audience_id"), str) or not isinstance(members, list):
            raise ValueError("google seed needs 'audience_id' and a list 'members'")
        return json_response(200, {"seeded": google_api.seed(store, body["audience_id"], members)})
    if platform == "meta":
        data = body.get("data")
        if not isinstance(body.get("audience_id"), str) or not isinstance(data, list):
            raise ValueError("meta seed needs 'audience_id' and a list 'data'")
        store.meta_apply(body["audience_id"], [str(v) for v in data], add=True)
        return json_response(200, {"seeded": len(data)})
    members = body.get("members")
    if not isinstance(body.get("list_id"), str) or not isinstance(members, list):
        raise ValueError("mailchimp seed needs 'list_id' and a list 'members'")
    records = [_seed_member(body["list_id"], m) for m in members]
    store.mc_put_many(records)
    return json_response(200, {"seeded": len(records)})


def _seed_member(list_id: str, m: Any) -> McMember:
    if not isinstance(m, dict) or m.get("status") not in ALL_STATUSES:
        raise ValueError(f"each member needs a status in {', '.join(ALL_STATUSES)}")
    email = m.get("email_address")
    member_hash = subscriber_hash(email) if isinstance(email, str) else m.get("hash")
    if not isinstance(member_hash, str):
        raise ValueError("each member needs 'email_address' (or 'hash' when forgotten)")
    if m["status"] == "forgotten":
        return McMember(list_id, member_hash, None, "forgotten", {}, utc_now_iso())
    if not isinstance(email, str):
        raise ValueError("only forgotten members may be seeded without an email_address")
    fields = m.get("merge_fields") or {}
    return McMember(list_id, member_hash, email, m["status"], dict(fields), utc_now_iso())


def _audience(store: Store, platform: str, audience_id: str) -> Response:
    if platform == "google":
        members = google_api.members(store, audience_id)
        return json_response(
            200,
            {
                "audience_id": audience_id,
                "members": members,
                "targetable": len(members) >= google_api.MIN_TARGETABLE,
            },
        )
    if platform == "meta":
        return json_response(
            200, {"audience_id": audience_id, "members": store.meta_members(audience_id)}
        )
    members = [m.as_dict() for m in store.mc_members(audience_id)]
    return json_response(200, {"list_id": audience_id, "members": members})
