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

Who is sent signals, from the customer's ``country`` trait (the source model's ``customers``
column of that name, an ISO 3166-1 alpha-2 code, case and spaces ignored):

- a country of the EEA, the United Kingdom or Switzerland (:data:`CONSENT_REGIONS`): explicit
  values as above. Google's EU user consent policy covers end users there
  (https://www.google.com/about/company/user-consent-policy/; Switzerland since 31 July 2024),
  and "both types of consent must be granted ... to use data from users in the EEA for
  Customer Match lists" (https://support.google.com/displayvideo/answer/14673239);
- a known country outside them (a region code ``phonenumbers`` knows): no consent fields at
  all. The API's ``Consent`` fields are optional and default to unspecified
  (https://developers.google.com/data-manager/api/reference/rest/v1/Consent): these members
  are not subject to the EEA requirement, and a ``DENIED`` we have no basis to claim would
  only wrongly restrict Google's use;
- an unknown country (empty, or not a region code, such as ``France`` spelled out): explicit
  values, as for the EEA. The protective choice: Google may place the person in the EEA, and
  then an upload without both signals is refused or the data unused.

Removals carry no consent (the API needs none to remove). Signals are fields of the sync's
rows, so a change of consent or of country is an ``update`` (a new ingest with the new values).
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

#: The EEA (the 27 EU member states, Iceland, Liechtenstein, Norway).
EEA = frozenset(
    {
        "AT",
        "BE",
        "BG",
        "HR",
        "CY",
        "CZ",
        "DK",
        "EE",
        "FI",
        "FR",
        "DE",
        "GR",
        "HU",
        "IE",
        "IT",
        "LV",
        "LT",
        "LU",
        "MT",
        "NL",
        "PL",
        "PT",
        "RO",
        "SK",
        "SI",
        "ES",
        "SE",
        "IS",
        "LI",
        "NO",
    }
)
#: Where Google's EU user consent policy applies: the EEA, the United Kingdom, Switzerland.
CONSENT_REGIONS = EEA | {"GB", "CH"}


def _known_outside() -> list[str]:
    """Region codes known to ``phonenumbers`` (ISO 3166-1 alpha-2) outside
    :data:`CONSENT_REGIONS`, sorted."""
    import phonenumbers

    return sorted(set(phonenumbers.SUPPORTED_REGIONS) - CONSENT_REGIONS)


def signals_required(country: str | None) -> bool:
    """Whether a member of ``country`` (the trait's raw value) is sent explicit consent
    signals: True in :data:`CONSENT_REGIONS` and when the country is unknown (None, empty, not
    a region code); False for a known country outside them. The Python reference of
    :func:`outside_regions_sql`."""
    import phonenumbers

    code = (country or "").strip().upper()
    return code in CONSENT_REGIONS or code not in phonenumbers.SUPPORTED_REGIONS


def outside_regions_sql(column: str) -> tuple[str, list[object]]:
    """SQL boolean over ``column`` (a trusted column expression): the country is a known
    region code outside :data:`CONSENT_REGIONS` (see :func:`signals_required`), and its
    parameter."""
    code = f"upper(trim(CAST({column} AS VARCHAR)))"
    return f"coalesce(list_contains(?, {code}), false)", [_known_outside()]


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


def signal_column_sql(
    signal: Signal, segment_purpose: str | None, country: str | None = None
) -> tuple[str, list[object]]:
    """The SQL value (over ``activation.audience_members am``) of one signal and its
    parameters: ``'CONSENT_GRANTED'`` or ``'CONSENT_DENIED'``; NULL (not sent) when
    ``country`` (a trusted column expression of the member's country trait) is a known
    country outside :data:`CONSENT_REGIONS`."""
    if signal.purpose == segment_purpose:
        sql = (
            "CASE WHEN am.legal_basis = 'consent' "
            "THEN CAST(? AS VARCHAR) ELSE CAST(? AS VARCHAR) END"
        )
        params = [GRANTED, DENIED]
    else:
        sql = (
            "CASE WHEN EXISTS (SELECT 1 FROM sync_signal_grants g WHERE g.subject_key = "
            "am.subject_key AND g.purpose = ?) THEN CAST(? AS VARCHAR) ELSE CAST(? AS VARCHAR) END"
        )
        params = [signal.purpose, GRANTED, DENIED]
    if country is None:
        return sql, params
    outside, outside_params = outside_regions_sql(country)
    return f"CASE WHEN {outside} THEN NULL ELSE {sql} END", [*outside_params, *params]


def explain_signals(
    con: duckdb.DuckDBPyConnection,
    signals: list[Signal],
    *,
    segment_purpose: str,
    customer_id: int | None,
    legal_basis: str | None,
    consent_ref: str | None,
    as_of: datetime,
    region_column: str = "country",
) -> list[dict[str, Any]]:
    """Each signal's value for one audience member and the consent record that decided it:
    ``[{"name", "value", "purpose", "record"}]`` (``record``: the consent id, status and time,
    or None when the member has no record for the purpose). Same rules as the sync: a member
    of a known country outside the EEA, UK and Switzerland (trait ``region_column``) is sent
    none (``value`` ``"not sent"``, ``record`` saying why)."""
    country = _member_country(con, customer_id, region_column)
    if not signals_required(country):
        why = f"country {country} is outside the EEA, UK and Switzerland"
        return [
            {"name": s.name, "value": "not sent", "purpose": s.purpose, "record": why}
            for s in signals
        ]
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


def _member_country(
    con: duckdb.DuckDBPyConnection, customer_id: int | None, region_column: str
) -> str | None:
    """The member's country trait, or None (no such column, no customer)."""
    (found,) = con.execute(
        "SELECT count(*) FROM information_schema.columns WHERE table_schema = 'activation'"
        " AND table_name = 'src_customers' AND column_name = ?",
        [region_column],
    ).fetchone()
    if not found or customer_id is None:
        return None
    row = con.execute(
        f'SELECT CAST("{region_column}" AS VARCHAR) FROM activation.src_customers'
        " WHERE customer_id = ?",
        [customer_id],
    ).fetchone()
    return row[0] if row else None


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
    "CONSENT_REGIONS",
    "DENIED",
    "EEA",
    "GRANTED",
    "Signal",
    "as_mapping",
    "explain_signals",
    "grants_table_sql",
    "outside_regions_sql",
    "register_lines",
    "signal_column_sql",
    "signals_for",
    "signals_required",
]
