"""Consent signals sent with an ad upload, derived from the consent log.

Google's Data Manager API takes, per member (or per request), ``adUserData`` and
``adPersonalization`` = ``CONSENT_GRANTED`` | ``CONSENT_DENIED``
(https://developers.google.com/data-manager/api/reference/rest/v1/Consent); Google's EU user
consent policy requires both for users in the European Economic Area
(https://www.google.com/about/company/user-consent-policy/).

Each purpose in ``activation.yaml`` declares, per platform, which purpose's consent grants each
signal (``consent_signals: {google: {ad_user_data: ad_targeting, ad_personalization:
ad_personalization}}``). For a member of a segment with purpose ``S``, signal ``x`` mapped to
purpose ``P`` is:

- ``CONSENT_GRANTED`` when ``P == S`` and the member's legal basis is a consent (the record
  named by the member's ``consent_ref``), or when ``P != S`` and the latest consent record for
  ``P`` at the member's address (read as :mod:`orchestrator.consent` reads the log: every
  customer row of the address, latest first, a withdrawal winning a tie and counting under a
  spelling variant of the name) is a grant recorded within ``P``'s ``consent_validity_days``;
- ``CONSENT_DENIED`` otherwise: no record, a withdrawal, an expired grant, or a legal basis
  that is not a consent (soft opt-in).

Every member gets explicit values, EEA or not: that satisfies the EEA requirement without
relying on the country trait, and never lets Google assume a consent we cannot show. Removals
carry no consent (the API needs none to remove). Signals are fields of the sync's rows, so a
change of consent is an ``update`` (a new ingest with the new values).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import duckdb

from orchestrator.config import ProjectConfig
from orchestrator.consent import CONSENT_ORDER_SQL, purpose_key, purpose_key_sql

GRANTED = "CONSENT_GRANTED"
DENIED = "CONSENT_DENIED"


@dataclass(frozen=True)
class Signal:
    """One consent field sent to a platform: its ``name`` (``ad_user_data``...), the
    ``purpose`` whose consent grants it and that purpose's ``validity_days``."""

    name: str
    purpose: str
    validity_days: int


def signals_for(project: ProjectConfig, purpose: str, platform: str) -> list[Signal]:
    """The signals a segment of ``purpose`` sends to ``platform`` (sorted by name; [] when
    none are declared)."""
    declared = project.purposes[purpose].consent_signals.get(platform, {})
    return [
        Signal(name, source, project.purposes[source].consent_validity_days)
        for name, source in sorted(declared.items())
    ]


def grants_table_sql(
    signals: list[Signal], segment_purpose: str | None, as_of: datetime | None
) -> tuple[str, list[object]] | None:
    """Temp table ``sync_signal_grants(subject_key, purpose)``: addresses whose latest consent
    record for a signal's purpose (other than the segment's) is a grant still valid, read as the
    audience reads consent (:mod:`orchestrator.consent`: per address across every customer row
    of the key, latest first, a withdrawal winning a tie, a withdrawal under a spelling variant
    of the purpose name counting). None when every signal uses the segment's purpose (the legal
    basis decides)."""
    others = {s.purpose: s.validity_days for s in signals if s.purpose != segment_purpose}
    if not others:
        return None
    moment = as_of or datetime.now()
    values = ", ".join("(?, ?, ?)" for _ in others)
    params: list[object] = []
    for purpose, days in sorted(others.items()):
        params += [purpose, purpose_key(purpose), moment - timedelta(days=days)]
    sql = f"""
        CREATE OR REPLACE TEMP TABLE sync_signal_grants AS
        SELECT latest.subject_key, latest.purpose
        FROM (
            SELECT k.subject_key, v.purpose, c.status, c.recorded_at, v.cutoff
            FROM activation.src_consents c
            JOIN activation.customer_keys k ON k.customer_id = c.customer_id
            JOIN (VALUES {values}) v(purpose, pkey, cutoff)
              ON c.purpose = v.purpose
              OR (c.status <> 'granted' AND {purpose_key_sql("c.purpose")} = v.pkey)
            WHERE k.subject_key IS NOT NULL
            QUALIFY row_number() OVER (
                PARTITION BY k.subject_key, v.purpose ORDER BY {CONSENT_ORDER_SQL}) = 1
        ) latest
        WHERE latest.status = 'granted' AND latest.recorded_at > latest.cutoff
    """
    return sql, params


def signal_column_sql(signal: Signal, segment_purpose: str | None) -> tuple[str, list[object]]:
    """The SQL value (over ``activation.audience_members am``) of one signal and its
    parameters: ``'CONSENT_GRANTED'`` or ``'CONSENT_DENIED'``."""
    if signal.purpose == segment_purpose:
        return "CASE WHEN am.legal_basis = 'consent' THEN ? ELSE ? END", [GRANTED, DENIED]
    sql = (
        "CASE WHEN EXISTS (SELECT 1 FROM sync_signal_grants g WHERE g.subject_key = "
        "am.subject_key AND g.purpose = ?) THEN ? ELSE ? END"
    )
    return sql, [signal.purpose, GRANTED, DENIED]


def explain_signals(
    con: duckdb.DuckDBPyConnection,
    signals: list[Signal],
    *,
    segment_purpose: str,
    customer_id: int | None,
    legal_basis: str | None,
    consent_ref: str | None,
    as_of: datetime,
) -> list[dict[str, Any]]:
    """Each signal's value for one audience member and the consent record that decided it:
    ``[{"name", "value", "purpose", "record"}]`` (``record``: the consent id, status and time,
    or None when the member has no record for the purpose). Same rules as the sync."""
    out: list[dict[str, Any]] = []
    for signal in signals:
        if signal.purpose == segment_purpose:
            granted = legal_basis == "consent"
            record = consent_ref if granted else None
            out.append(
                {
                    "name": signal.name,
                    "value": GRANTED if granted else DENIED,
                    "purpose": signal.purpose,
                    "record": f"{record} (the member's legal basis)" if record else None,
                }
            )
            continue
        row = con.execute(
            "SELECT consent_id, status, recorded_at FROM activation.src_consents"
            " WHERE customer_id IN ("
            "  SELECT customer_id FROM activation.customer_keys WHERE subject_key = ("
            "    SELECT subject_key FROM activation.customer_keys WHERE customer_id = ?))"
            f" AND (purpose = ? OR (status <> 'granted' AND {purpose_key_sql('purpose')} = ?))"
            f" ORDER BY {CONSENT_ORDER_SQL} LIMIT 1",
            [customer_id, signal.purpose, purpose_key(signal.purpose)],
        ).fetchone()
        cutoff = as_of - timedelta(days=signal.validity_days)
        granted = row is not None and row[1] == "granted" and row[2] > cutoff
        out.append(
            {
                "name": signal.name,
                "value": GRANTED if granted else DENIED,
                "purpose": signal.purpose,
                "record": f"{row[0]} {row[1]} {row[2]:%Y-%m-%d}" if row else None,
            }
        )
    return out


def register_lines(project: ProjectConfig) -> dict[str, list[str]]:
    """Per destination name: the consent signals it is sent, as ``"<signal> from consent for
    <purpose> (segments for <segment purpose>)"`` lines (for the processing register)."""
    out: dict[str, list[str]] = {}
    for dest_name, dest in project.destinations.items():
        lines: list[str] = []
        for purpose in dest.purposes:
            if purpose not in project.purposes:
                continue
            for signal in signals_for(project, purpose, dest.platform):
                lines.append(
                    f"{signal.name} from consent for {signal.purpose} (segments for {purpose})"
                )
        if lines:
            out[dest_name] = lines
    return out


def as_mapping(signals: list[Signal]) -> Mapping[str, tuple[str, int]]:
    """``{name: (purpose, validity_days)}``, the shape the diff takes."""
    return {s.name: (s.purpose, s.validity_days) for s in signals}


__all__ = [
    "DENIED",
    "GRANTED",
    "Signal",
    "as_mapping",
    "explain_signals",
    "grants_table_sql",
    "register_lines",
    "signal_column_sql",
    "signals_for",
]
