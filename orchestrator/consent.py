"""How the consent log is read: which records count for a purpose, in which order, per address.

Every module that reads ``consents`` (the audience, the ``legal_basis_valid`` check, the diff's
"must leave" rule, ``explain``) takes its rules from here, so they cannot drift apart.

**Consent is per address** (``docs/architecture.md``, "Segment → audience contract"): a data
subject is an address (subject key, :mod:`orchestrator.pseudonymize`), and the records of every
customer row holding that key are one log. For a purpose, the latest of them decides.

**Ordering** (:data:`CONSENT_ORDER_SQL`, :func:`consent_order_key`): latest ``recorded_at``
first; at an equal ``recorded_at`` the most protective record wins (any status other than
``granted``, i.e. a withdrawal, before a grant: GDPR Art. 7(3), withdrawing must be as easy
as giving, so a tie never keeps a person in); then the highest ``consent_id``.

**Purpose names** (:func:`purpose_key`, :func:`match_purposes`): a record counts for a
declared purpose when its ``purpose`` is the declared name exactly. A record whose name is a
spelling variant of a declared name (case, surrounding or inner spaces, hyphens, underscores:
``Email_Marketing``, ``email-marketing``, `` email_marketing ``) counts for that purpose when it
is a withdrawal, and never as a grant: a withdrawal needs no formality, while consent must be
demonstrable for the specific purpose (GDPR Art. 7(1), 7(3)). Names matching no declared
purpose are not used. Both kinds are reported, never silently ignored: the audience asset's
metadata (``consent_purposes_unmatched``) and the ``consent_purposes_declared`` check.

**Marketing purposes** (``Purpose.marketing`` in ``activation.yaml``, default true): an opt-out
from one marketing purpose keeps the person out of every marketing audience, whatever purpose
a segment declares (GDPR Art. 21(2)-(3) for objections; the same reading for a withdrawal
from direct marketing): a withdrawal standing at the address under any marketing purpose (the
latest record for that purpose there) excludes the address, unless the segment's own purpose
holds a valid grant recorded strictly after it. It also blocks soft opt-in. A segment is a
marketing one when its purpose is, or when one of its destinations serves a marketing purpose
(:func:`is_marketing_segment`).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime

import duckdb

from orchestrator.config import ProjectConfig, Purpose
from orchestrator.segments.spec import SegmentSpec

#: ORDER BY of consent records, latest first and the most protective first at a tie
#: (columns ``recorded_at``, ``status``, ``consent_id``, unqualified).
CONSENT_ORDER_SQL = "recorded_at DESC, (status = 'granted') ASC, consent_id DESC"

#: Characters a purpose-name variant may differ by (runs fold to one ``_``).
_SEPARATORS = "[ \t\n\r\f\v_-]+"


def purpose_key(name: str) -> str:
    """A purpose name folded for matching: lowercase, runs of spaces, hyphens and underscores
    become one ``_``, none at either end (``" Email-Marketing "`` -> ``email_marketing``)."""
    return re.sub(_SEPARATORS, "_", name.lower()).strip("_")


def purpose_key_sql(col: str) -> str:
    """SQL (DuckDB) for :func:`purpose_key` over the column expression ``col`` (ASCII names
    give the same result; DuckDB's ``lower`` is the per-code-point simple mapping)."""
    return f"trim(regexp_replace(lower({col}), '{_SEPARATORS}', '_', 'g'), '_')"


def consent_order_key(record: tuple[str, str, datetime]) -> tuple[datetime, bool, str]:
    """Sort key for ``max()`` over records ``(consent_id, status, recorded_at)``: the record
    :data:`CONSENT_ORDER_SQL` puts first is the maximum."""
    consent_id, status, recorded_at = record
    return recorded_at, status != "granted", consent_id


def counted_purposes(
    purpose: str, purposes: Mapping[str, Purpose], *, marketing: bool
) -> list[str]:
    """The declared purposes whose records decide a segment of ``purpose``: the purpose
    itself first, then (for a marketing segment) every other marketing purpose."""
    others = sorted(name for name, p in purposes.items() if p.marketing and name != purpose)
    return [purpose, *(others if marketing else [])]


def is_marketing_segment(
    purpose: str, destination_purposes: Iterable[Iterable[str]], purposes: Mapping[str, Purpose]
) -> bool:
    """A segment is marketing when its purpose is, or when a destination it syncs to serves a
    marketing purpose (``destination_purposes``: the purposes of each such destination).
    Unknown names count as not marketing here (validation refuses them elsewhere)."""
    names = [purpose, *(name for served in destination_purposes for name in served)]
    return any(purposes[name].marketing for name in names if name in purposes)


def segment_counted_purposes(spec: SegmentSpec, project: ProjectConfig) -> list[str]:
    """:func:`counted_purposes` of a segment: its purpose, then the other marketing purposes
    when it is a marketing segment (:func:`is_marketing_segment` over its destinations)."""
    served = [
        project.destinations[entry.destination].purposes
        for entry in spec.destinations
        if entry.destination in project.destinations
    ]
    marketing = is_marketing_segment(spec.purpose, served, project.purposes)
    return counted_purposes(spec.purpose, project.purposes, marketing=marketing)


@dataclass(frozen=True)
class PurposeMatch:
    """How one purpose name found in the consent log is read.

    ``name``: as written in the log; ``purpose``: the declared purpose it is a variant of, or
    None when it matches none; ``records``: how many records carry it."""

    name: str
    purpose: str | None
    records: int

    def describe(self) -> str:
        """One line for metadata and check descriptions (no personal data: a name and a count)."""
        if self.purpose is None:
            return f"{self.name!r}: matches no declared purpose, {self.records} records not used"
        return (
            f"{self.name!r}: variant of {self.purpose!r}, {self.records} records "
            "(withdrawals honoured, grants not counted)"
        )


def match_purposes(names: Iterable[tuple[str, int]], declared: Iterable[str]) -> list[PurposeMatch]:
    """The purpose names of ``names`` (name, record count) that are not exactly a declared
    purpose, each matched by :func:`purpose_key` to a declared one (or None), sorted by name.
    A NULL name is reported as ``''``."""
    by_key = {purpose_key(name): name for name in declared}
    exact = set(by_key.values())
    return sorted(
        (
            PurposeMatch(name or "", by_key.get(purpose_key(name or "")), count)
            for name, count in names
            if name not in exact
        ),
        key=lambda match: match.name,
    )


def unmatched_purposes(
    con: duckdb.DuckDBPyConnection, purposes: Mapping[str, Purpose]
) -> list[PurposeMatch]:
    """:func:`match_purposes` over the distinct purpose names of ``activation.src_consents``.

    Raises:
        duckdb.Error: ``activation.src_consents`` is missing.
    """
    rows = con.execute(
        "SELECT purpose, count(*) FROM activation.src_consents GROUP BY purpose"
    ).fetchall()
    return match_purposes(rows, purposes)


def purpose_map_sql(consents: str = "activation.src_consents") -> str:
    """SQL of a relation (raw VARCHAR, purpose VARCHAR, exact BOOLEAN): each distinct purpose
    name of ``consents`` that names one of the counted purposes, exactly or as a variant.
    Parameters: ``$purposes`` (the counted names, :func:`counted_purposes`) and
    ``$purpose_keys`` (their :func:`purpose_key`, same order). The key is computed once per
    distinct name, not per record."""
    return f"""
    SELECT p.raw, d.name AS purpose, p.raw = d.name AS exact
    FROM (SELECT DISTINCT purpose AS raw FROM {consents} WHERE purpose IS NOT NULL) AS p
    JOIN (SELECT unnest($purposes) AS name, unnest($purpose_keys) AS key) AS d
      ON {purpose_key_sql("p.raw")} = d.key
    """


def purpose_params(counted: list[str]) -> dict[str, list[str]]:
    """The parameters of :func:`purpose_map_sql` for the counted purposes."""
    return {"purposes": counted, "purpose_keys": [purpose_key(name) for name in counted]}


__all__ = [
    "CONSENT_ORDER_SQL",
    "PurposeMatch",
    "consent_order_key",
    "counted_purposes",
    "is_marketing_segment",
    "match_purposes",
    "purpose_key",
    "purpose_key_sql",
    "purpose_map_sql",
    "purpose_params",
    "segment_counted_purposes",
    "unmatched_purposes",
]
