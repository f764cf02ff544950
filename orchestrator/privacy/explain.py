"""Explain one person: why they are (or are not) in a segment's audience, and where it went.

Given an email address (hashed on the spot: never stored, logged or returned) and a segment,
:func:`explain` reports, from the warehouse:

- which customers hold that address (same subject key);
- each top-level condition of the segment evaluated alone as of ``as_of`` (a one-condition
  copy of the spec compiled by :func:`orchestrator.segments.compiler.compile_segment`), and
  the whole segment;
- the last computed audience: member or not, the legal basis and the consent record (or
  purchase, for soft opt-in) that allowed it, or the exclusion reason per customer
  (``activation.audience_exclusions``) and a suppression-list entry;
- what each of the segment's destinations holds (``activation.sync_state``: synced_at, and
  ``pending`` when the last send's outcome is unknown), and what it refused of the person
  (``activation.sync_rejections``: operation, the platform's reason, permanent or not).

:func:`explain_everywhere` does it for every segment at once (every destination).

Only hash prefixes (:data:`~orchestrator.privacy.receipts.PREFIX_LENGTH` hex characters)
identify the person in the result.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from destinations.redaction import redact
from orchestrator.config import ProjectConfig
from orchestrator.consent_signals import explain_signals, signals_for
from orchestrator.privacy.receipts import key_prefix, utc_now
from orchestrator.pseudonymize import google_key, subject_key, subject_key_sql
from orchestrator.segments.compiler import compile_segment, conditions_summary
from orchestrator.segments.spec import AllCondition, SegmentSpec
from orchestrator.sync.diff import PENDING_HASH
from orchestrator.warehouse.connect import connect
from orchestrator.warehouse.connection import WarehouseConnection
from orchestrator.warehouse.target import Warehouse, as_target


def _matches(con: WarehouseConnection, spec: SegmentSpec, as_of: datetime, ids: list[int]) -> bool:
    """Whether any of ``ids`` is selected by ``spec`` as of ``as_of``."""
    if not ids:
        return False
    query = compile_segment(spec, as_of)
    (found,) = con.execute(
        f"SELECT count(*) FROM ({query.sql}) AS q WHERE list_contains(?, q.customer_id)",
        [*query.params, ids],
    ).fetchone()
    return found > 0


def _conditions(
    con: WarehouseConnection, spec: SegmentSpec, as_of: datetime, ids: list[int]
) -> list[dict[str, Any]]:
    """Each top-level condition evaluated alone: ``{"condition": text, "matched": bool}``."""
    texts = conditions_summary(spec)
    if spec.sql is not None:
        return [{"condition": texts[0], "matched": _matches(con, spec, as_of, ids)}]
    assert spec.audience is not None
    top = spec.audience.all_ if isinstance(spec.audience, AllCondition) else [spec.audience]
    out = []
    for text, condition in zip(texts, top, strict=True):
        alone = spec.model_copy(update={"audience": condition})
        out.append({"condition": text, "matched": _matches(con, alone, as_of, ids)})
    return out


def _consent(con: WarehouseConnection, consent_ref: str) -> dict[str, Any]:
    if consent_ref.startswith("purchase:"):
        return {"purchase_event_id": consent_ref.removeprefix("purchase:")}
    row = con.execute(
        "SELECT consent_id, purpose, status, recorded_at, source, notice_version "
        "FROM activation.src_consents WHERE consent_id = ?",
        [consent_ref],
    ).fetchone()
    names = ("consent_id", "purpose", "status", "recorded_at", "source", "notice_version")
    return dict(zip(names, row, strict=True)) if row else {"consent_id": consent_ref}


def _audience(con: WarehouseConnection, segment: str, key: str, ids: list[int]) -> dict[str, Any]:
    row = con.execute(
        "SELECT customer_id, legal_basis, consent_ref, computed_at "
        "FROM activation.audience_members WHERE segment = ? AND subject_key = ?",
        [segment, key],
    ).fetchone()
    exclusions = con.execute(
        "SELECT customer_id, reason, computed_at FROM activation.audience_exclusions "
        "WHERE segment = ? AND list_contains(?, customer_id) ORDER BY customer_id",
        [segment, ids or [-1]],
    ).fetchall()
    out: dict[str, Any] = {
        "in_audience": row is not None,
        "member_customer_id": row[0] if row else None,
        "legal_basis": row[1] if row else None,
        "consent": _consent(con, row[2]) if row else None,
        "audience_computed_at": row[3] if row else (exclusions[0][2] if exclusions else None),
        "exclusions": [{"customer_id": c, "reason": r} for c, r, _ in exclusions],
    }
    return out


def _suppression(con: WarehouseConnection, key: str, gkey: str | None) -> dict[str, Any] | None:
    row = con.execute(
        "SELECT request_type, suppressed_at FROM activation.suppression_list "
        "WHERE subject_key = ? OR google_key = ? ORDER BY request_type LIMIT 1",
        [key, gkey or key],
    ).fetchone()
    return {"request_type": row[0], "suppressed_at": row[1]} if row else None


def _destinations(con: WarehouseConnection, spec: SegmentSpec, key: str) -> list[dict[str, Any]]:
    held = {
        dest: (synced_at, fields_hash == PENDING_HASH)
        for dest, synced_at, fields_hash in con.execute(
            "SELECT destination, synced_at, fields_hash FROM activation.sync_state "
            "WHERE segment = ? AND subject_key = ?",
            [spec.id, key],
        ).fetchall()
    }
    suppressed = dict(
        con.execute(
            "SELECT destination, status FROM activation.destination_suppressions "
            "WHERE subject_key = ?",
            [key],
        ).fetchall()
    )
    refused: dict[str, list[dict[str, Any]]] = {}
    for dest, operation, remove_reason, reason, permanent, retry_at, status in con.execute(
        "SELECT destination, operation, remove_reason, reason, permanent, retry_at, "
        "platform_status FROM activation.sync_rejections "
        "WHERE segment = ? AND subject_key = ? ORDER BY rejected_at",
        [spec.id, key],
    ).fetchall():
        refused.setdefault(dest, []).append(
            {
                "operation": operation,
                "remove_reason": remove_reason,
                "reason": redact(reason),
                "permanent": permanent,
                "retry_at": retry_at,
                "platform_status": status,
            }
        )
    declared = [(e.destination, e.audience_id) for e in spec.destinations]
    declared += [(d, None) for d in sorted(set(held) - {d for d, _ in declared})]
    return [
        {
            "destination": dest,
            "audience_id": audience_id,
            "held": dest in held,
            "synced_at": held[dest][0] if dest in held else None,
            "pending": held[dest][1] if dest in held else False,
            "platform_status": suppressed.get(dest),
            "refused": refused.get(dest, []),
        }
        for dest, audience_id in declared
    ]


#: What a platform keeps of a person it no longer holds as a member
#: (``activation.destination_suppressions.status``).
_PLATFORM_STATUS = {
    "unsubscribed": "kept by the platform as unsubscribed (its suppression: never re-subscribed)",
    "forgotten": "permanently deleted at the platform (never added again)",
    "cleaned": "kept by the platform as cleaned (bounced: never re-subscribed)",
}


def _refusal_text(refusal: Mapping[str, Any]) -> str:
    """One line of what a destination did not take for this person, in its words."""
    op = refusal["operation"]
    if refusal["remove_reason"]:
        op += f" ({refusal['remove_reason']})"
    if refusal["retry_at"] is not None:
        when = f"; retried after {refusal['retry_at']:%Y-%m-%d %H:%M} UTC"
    elif refusal["permanent"]:
        when = "; refused for good until the row changes"
    else:
        when = "; not confirmed, sent again at the next run"
    return f"      {op} not done: {refusal['reason']}{when}"


def explain(
    warehouse_path: Warehouse,
    email: str,
    segment_id: str,
    project: ProjectConfig,
    specs: Mapping[str, object],
    as_of: datetime | None = None,
    *,
    lock_timeout_s: float = 30,
) -> dict[str, Any]:
    """Explain one person for one segment (see the module docstring).

    Args:
        warehouse_path: the DuckDB file, opened read-only.
        email: the person's address, hashed here and then dropped.
        segment_id: the segment; ``specs`` maps ids to ``SegmentSpec`` or ``LoadedSegment``.
        project: the project config (the purpose's description is shown).
        as_of: when the conditions are evaluated (naive UTC); default now.

    Returns:
        ``segment``, ``purpose``, ``subject`` and ``google_key`` (hash prefixes), ``as_of``,
        ``customer_ids`` (holding this address), ``in_segment`` (all conditions as of
        ``as_of``), ``conditions`` (``condition`` text, ``matched``), ``in_audience``,
        ``member_customer_id``, ``legal_basis``, ``consent`` (the record's fields, or
        ``purchase_event_id``), ``audience_computed_at``, ``exclusions`` (``customer_id``,
        ``reason``), ``suppression`` (``request_type``, ``suppressed_at``, or None) and
        ``destinations`` (``destination``, ``audience_id``, ``held``, ``synced_at``,
        ``pending``, ``platform_status``: ``unsubscribed`` or ``forgotten`` when an email
        platform keeps the person as a suppression, else None; ``refused``: the rows of the
        person the destination refused, ``operation``, ``reason``, ``permanent``,
        ``rejected_at``; ``consent_signals``, for destinations sent some: each field's value
        and the record deciding it).

    Raises:
        KeyError: unknown segment id.
        ValueError: the address does not normalize to a valid email (not repeated).
        duckdb.Error: the warehouse is locked for ``lock_timeout_s`` or has no activation
            tables yet (no segment was ever run).
    """
    if segment_id not in specs:
        raise KeyError(f"unknown segment {segment_id!r}; known: {sorted(specs)}")
    spec: SegmentSpec = getattr(specs[segment_id], "spec", specs[segment_id])
    key, gkey = subject_key(email), google_key(email)
    if key is None:
        raise ValueError("not a valid email address")
    moment = as_of or utc_now()
    with connect(
        as_target(warehouse_path), read_only=True, timeout_s=lock_timeout_s, project=project
    ) as con:
        ids = [
            row[0]
            for row in con.execute(
                "SELECT customer_id FROM activation.src_customers "
                f"WHERE {subject_key_sql('email')} = ? ORDER BY customer_id",
                [key],
            ).fetchall()
        ]
        result: dict[str, Any] = {
            "segment": segment_id,
            "purpose": spec.purpose,
            "purpose_description": project.purposes[spec.purpose].description,
            "subject": key_prefix(key),
            "google_key": key_prefix(gkey),
            "as_of": moment,
            "customer_ids": ids,
            "in_segment": _matches(con, spec, moment, ids),
            "conditions": _conditions(con, spec, moment, ids),
            **_audience(con, segment_id, key, ids),
            "suppression": _suppression(con, key, gkey),
            "destinations": _destinations(con, spec, key),
        }
        _add_signals(con, result, spec, project, moment)
    return result


def _add_signals(
    con: WarehouseConnection,
    result: dict[str, Any],
    spec: SegmentSpec,
    project: ProjectConfig,
    moment: datetime,
) -> None:
    """Each destination's ``consent_signals`` for the member (see
    :func:`orchestrator.consent_signals.explain_signals`) for destinations that are sent some;
    [] when the person is not in the audience."""
    consent = result.get("consent") or {}
    for dest in result["destinations"]:
        config = project.destinations.get(dest["destination"])
        signals = signals_for(project, spec.purpose, config.platform) if config else []
        if not signals:
            continue
        dest["consent_signals"] = (
            explain_signals(
                con,
                signals,
                segment_purpose=spec.purpose,
                customer_id=result["member_customer_id"],
                legal_basis=result["legal_basis"],
                consent_ref=consent.get("consent_id"),
                as_of=moment,
            )
            if result["in_audience"]
            else []
        )


def _yes(flag: bool) -> str:
    return "yes" if flag else "no"


def _consent_text(consent: Mapping[str, Any]) -> str:
    if "purchase_event_id" in consent:
        return f"soft opt-in from purchase {consent['purchase_event_id']}"
    parts = [f"consent {consent['consent_id']}"]
    for name in ("purpose", "status", "recorded_at", "source", "notice_version"):
        if consent.get(name) is not None:
            parts.append(f"{name}={consent[name]}")
    return ", ".join(parts)


def format_explanation(explanation: Mapping[str, Any]) -> str:
    """Plain text of an :func:`explain` dict (hash prefixes only, never an address)."""
    e = explanation
    lines = [
        f"Subject {e['subject']} (Google key {e['google_key']}) in segment {e['segment']} "
        f"({e['purpose']}), as of {e['as_of']:%Y-%m-%d %H:%M}",
        f"  customers holding this address: {len(e['customer_ids'])} "
        f"{e['customer_ids'] if e['customer_ids'] else ''}".rstrip(),
        f"  in the segment now: {_yes(e['in_segment'])}",
    ]
    lines += [f"    [{'x' if c['matched'] else ' '}] {c['condition']}" for c in e["conditions"]]
    lines.append(f"  in the last computed audience: {_yes(e['in_audience'])}")
    if e["in_audience"]:
        lines.append(f"    legal basis {e['legal_basis']}: {_consent_text(e['consent'])}")
    for x in e["exclusions"]:
        lines.append(f"    customer {x['customer_id']} excluded: {x['reason']}")
    if e["suppression"]:
        s = e["suppression"]
        lines.append(
            f"  on the suppression list: {s['request_type']} since {s['suppressed_at']:%Y-%m-%d}"
        )
    lines.append("  destinations:")
    for d in e["destinations"]:
        state = "holds" if d["held"] else "does not hold"
        when = f", synced {d['synced_at']:%Y-%m-%d %H:%M}" if d["synced_at"] else ""
        pending = " (pending: outcome of the last send unknown)" if d["pending"] else ""
        kept = _PLATFORM_STATUS.get(d.get("platform_status") or "")
        member = " as a member" if kept and not d["held"] else ""
        kept = f"; {kept}" if kept else ""
        lines.append(f"    {d['destination']} {state} this person{member}{when}{pending}{kept}")
        lines += [_refusal_text(r) for r in d.get("refused", [])]
        for sig in d.get("consent_signals") or []:
            why = sig["record"] or f"no consent record for {sig['purpose']}"
            lines.append(f"      consent signal {sig['name']}={sig['value']} ({why})")
    return "\n".join(lines)


def explain_everywhere(
    warehouse_path: Warehouse,
    email: str,
    project: ProjectConfig,
    specs: Mapping[str, object],
    as_of: datetime | None = None,
) -> dict[str, Any]:
    """:func:`explain` for every segment in ``specs`` (sorted by id): ``subject``,
    ``google_key`` (hash prefixes), ``as_of``, ``segments`` (one :func:`explain` dict each,
    with every destination of that segment), ``held_by`` (``segment/destination`` pairs holding
    the person), ``refused_by`` (pairs that refused a row of them). Raises as :func:`explain`."""
    moment = as_of or utc_now()
    found = [explain(warehouse_path, email, sid, project, specs, moment) for sid in sorted(specs)]
    key, gkey = subject_key(email), google_key(email)
    return {
        "subject": key_prefix(key or ""),
        "google_key": key_prefix(gkey),
        "as_of": moment,
        "segments": found,
        "held_by": [
            f"{e['segment']}/{d['destination']}"
            for e in found
            for d in e["destinations"]
            if d["held"]
        ],
        "refused_by": [
            f"{e['segment']}/{d['destination']}"
            for e in found
            for d in e["destinations"]
            if d["refused"]
        ],
    }


def format_everywhere(explanation: Mapping[str, Any]) -> str:
    """Plain text of an :func:`explain_everywhere` dict: a headline (which destinations hold
    the person, which refused them), then each segment's explanation."""
    e = explanation
    held = ", ".join(e["held_by"]) or "none"
    lines = [
        f"Subject {e['subject']} across {len(e['segments'])} segment(s), as of "
        f"{e['as_of']:%Y-%m-%d %H:%M}",
        f"  held by: {held}",
    ]
    if e["refused_by"]:
        lines.append(f"  refused by: {', '.join(e['refused_by'])}")
    for one in e["segments"]:
        lines += ["", format_explanation(one)]
    return "\n".join(lines)


__all__ = ["explain", "explain_everywhere", "format_everywhere", "format_explanation"]
