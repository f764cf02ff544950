"""Privacy checks: Dagster asset checks beside the assets they guard, named for the rule.

Per segment ``<sid>`` (:func:`audience_checks`, :func:`sync_checks`; each evaluated by the step
of the asset it guards, right after it):

``legal_basis_valid`` on ``audience/<sid>`` (blocking, ERROR)
    every member re-verified against the consent log by SQL written independently of the
    audience query (:data:`LEGAL_BASIS_SQL`). One member without a valid basis fails the check
    and, because it is blocking, the segment's syncs do not run in that run.
``no_raw_identifier`` on ``audience/<sid>`` (blocking, ERROR; segments with an ad destination)
    every key bound for an ad platform (``subject_key``, ``google_key``) is 64 lowercase hex.
``destination_retention`` on ``sync/<sid>/<dest>`` (ERROR)
    no member stays at the destination ``retention_days`` or more after leaving the segment,
    and no ``sync_state`` row of the segment is held for a destination it no longer lists.
``reconciliation`` on ``sync/<sid>/<dest>`` (WARN; ERROR when a privacy removal is not honoured)
    the destination's own member count equals the acknowledged rows of ``sync_state``; where
    the platform lists its members (Mailchimp), keys and statuses match too.
``rejections`` on ``sync/<sid>/<dest>`` (severity from the destination's ``rejections``
    policy in ``activation.yaml``; default WARN for any permanent refusal, ERROR for a refused
    privacy removal) the rows the destination refused, counted by reason, with hash samples.

Once per project (:func:`build_source_checks`, :func:`privacy_checks_definitions`):

``source_retention`` on ``warehouse/customers`` (WARN)
    subjects past their retention date (:mod:`orchestrator.privacy.retention`). WARN: the
    audience already excludes them (``retention_expired``); deleting them is the data team's job.
``consent_proof`` on ``warehouse/consents`` (WARN)
    consent records lacking who, when, how, purpose or notice version, and whether any of them
    is used by an audience (it must not be: such a record is not consent, GDPR Art. 7(1)).
``consent_purposes_declared`` on ``warehouse/consents`` (WARN)
    every purpose name in the consent log is exactly a declared purpose; variants (honoured
    for withdrawals only) and unknown names are listed (:mod:`orchestrator.consent`).
``no_unregistered_sync_state`` on ``privacy/processing_register`` (ERROR)
    no ``sync_state`` row for a (segment, destination) absent from the register (a deleted
    segment or a destination it no longer lists): data kept beyond its purpose.

Metadata holds counts, dates and at most a few hash prefixes, never an email address. Severity
is chosen per rule: ERROR where a person could be processed without a basis or beyond retention,
WARN where the pipeline already protects people and the figure is for the data team.

The evaluation functions (``evaluate_*``) take an open DuckDB connection and return an
:class:`dagster.AssetCheckResult`, so tests run them without Dagster.
"""

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import dagster as dg

from destinations.resources import DestinationsResource, PlatformResource
from orchestrator.assets import DUCKDB_POOL, SegmentCheck, audience_key, source_key, sync_key
from orchestrator.config import (
    DestinationKind,
    LegalBasis,
    ProjectConfig,
    Purpose,
    RejectionPolicy,
    SourceRetention,
)
from orchestrator.consent import (
    counted_purposes,
    is_marketing_segment,
    purpose_key,
    purpose_key_sql,
    unmatched_purposes,
)
from orchestrator.privacy.register import REGISTER_KEY, build_register_asset
from orchestrator.privacy.retention import (
    destination_retention_summary,
    source_retention_summary,
    track_departures,
    unregistered_state_rows,
)
from orchestrator.pseudonymize import TRIM_CHARS
from orchestrator.segments.loader import LoadedSegment
from orchestrator.segments.spec import DestinationEntry
from orchestrator.sync.diff import PENDING_HASH
from orchestrator.sync.rejection_summary import RejectionSummary, summarize_rejections
from orchestrator.warehouse.connect import connect
from orchestrator.warehouse.connection import WarehouseConnection
from orchestrator.warehouse.resources import WarehouseResource
from orchestrator.warehouse.target import WarehouseTarget

LEGAL_BASIS_VALID = "legal_basis_valid"
NO_RAW_IDENTIFIER = "no_raw_identifier"
DESTINATION_RETENTION = "destination_retention"
RECONCILIATION = "reconciliation"
REJECTIONS = "rejections"
SOURCE_RETENTION = "source_retention"
CONSENT_PROOF = "consent_proof"
CONSENT_PURPOSES_DECLARED = "consent_purposes_declared"
NO_UNREGISTERED_SYNC_STATE = "no_unregistered_sync_state"
PRIVACY_JOB = "privacy_checks_job"
#: ``privacy_checks_job`` runs daily at 05:00 Paris time, RUNNING by default (unlike segment
#: schedules it sends nothing): the evidence the checks give always exists and is fresh.
PRIVACY_SCHEDULE = "privacy_checks_schedule"
PRIVACY_CRON = "0 5 * * *"
#: How many offending hash prefixes (12 hex characters) a check shows at most.
SAMPLE_SIZE = 5

#: Why a member has no valid basis, in the order tested (first match wins).
BASIS_PROBLEMS: tuple[str, ...] = (
    "erasure_requested",
    "objection",
    "suppressed",
    "consent_record_missing",
    "basis_mismatch",
    "consent_of_another_address",
    "consent_for_another_purpose",
    "consent_not_granted",
    "consent_after_evaluation",
    "consent_superseded",
    "marketing_opt_out",
    "consent_expired",
    "consent_unproven",
    "soft_opt_in_not_allowed",
    "purchase_missing",
    "purchase_of_another_customer",
    "purchase_after_evaluation",
    "consent_withdrawn",
)


def _counted_sql(alias: str, names: str, keys: str) -> str:
    """A record of ``alias`` counts for one of the purposes ``names`` (their folded ``keys``):
    the exact name, or a spelling variant for a withdrawal (:mod:`orchestrator.consent`)."""
    return (
        f"(list_contains({names}, {alias}.purpose) OR ({alias}.status <> 'granted' "
        f"AND list_contains({keys}, {alias}.purpose_key)))"
    )


def _standing_sql(withdrawal: str) -> str:
    """No grant under the same declared purpose at the address after the withdrawal
    ``withdrawal`` (at an equal time the withdrawal stands)."""
    return f"""NOT EXISTS (
                SELECT 1 FROM recs AS g
                WHERE g.subject_key = {withdrawal}.subject_key AND g.status = 'granted'
                  AND g.purpose_key = {withdrawal}.purpose_key
                  AND list_contains($all_purposes, g.purpose)
                  AND g.recorded_at <= m.computed_at
                  AND g.recorded_at > {withdrawal}.recorded_at)"""


_OWN = _counted_sql("later", "[$purpose]", "[$purpose_key]")
_OWN_W = _counted_sql("w", "[$purpose]", "[$purpose_key]")
_OTHER_W = _counted_sql("w", "$others", "$other_keys")

#: One row per member of ``activation.audience_members`` for ``$segment``: ``subject_key``,
#: ``problem`` (one of :data:`BASIS_PROBLEMS`, NULL when the basis holds) and ``basis_at`` (the
#: consent's ``recorded_at`` or the purchase's ``occurred_at``). Each member is checked at its
#: own ``computed_at`` (the instant the audience step evaluated it). Written on purpose without
#: the audience query's window functions: correlated NOT EXISTS for "latest record". Consent
#: is read at the address: the records of every customer whose cached key
#: (``activation.customer_keys``) is the member's, purpose names folded for withdrawals, a
#: withdrawal winning a tie (:mod:`orchestrator.consent`).
#: Parameters: ``$segment``, ``$purpose``, ``$purpose_key``, ``$others`` and ``$other_keys``
#: (the other marketing purposes, empty for a segment that is not marketing),
#: ``$all_purposes`` (the purpose and the others), ``$validity_days``,
#: ``$soft_opt_in_allowed``, ``$trim_chars``.
LEGAL_BASIS_SQL = f"""
WITH m AS (
    SELECT subject_key, customer_id, legal_basis, consent_ref, computed_at,
           CASE WHEN starts_with(consent_ref, 'purchase:')
                THEN substr(consent_ref, 10) END AS purchase_id
    FROM activation.audience_members WHERE segment = $segment
),
holders AS (
    SELECT k.subject_key, k.customer_id FROM activation.customer_keys AS k
    WHERE k.subject_key IN (SELECT subject_key FROM m)
    UNION
    SELECT subject_key, customer_id FROM m
),
names AS (
    SELECT raw, {purpose_key_sql("raw")} AS purpose_key
    FROM (SELECT DISTINCT purpose AS raw FROM activation.src_consents)
),
recs AS (
    SELECT h.subject_key, c.*, n.purpose_key
    FROM activation.src_consents AS c
    JOIN holders AS h USING (customer_id)
    JOIN names AS n ON n.raw = c.purpose
),
requests AS (
    SELECT m.subject_key, r.request_type
    FROM m JOIN holders AS h ON h.subject_key = m.subject_key
    JOIN activation.src_privacy_requests AS r
      ON r.received_at <= m.computed_at AND r.customer_id = h.customer_id
    UNION ALL
    SELECT m.subject_key, r.request_type
    FROM m JOIN activation.src_privacy_requests AS r
      ON r.received_at <= m.computed_at AND lower(trim(r.subject_key)) = m.subject_key
)
SELECT m.subject_key,
    CASE
        WHEN m.subject_key IN (SELECT subject_key FROM requests WHERE request_type = 'erasure')
            THEN 'erasure_requested'
        WHEN m.subject_key IN (SELECT subject_key FROM requests WHERE request_type = 'objection')
            THEN 'objection'
        WHEN EXISTS (SELECT 1 FROM activation.suppression_list AS s
                     WHERE s.subject_key = m.subject_key
                       AND s.suppressed_at <= m.computed_at) THEN 'suppressed'
        WHEN m.purchase_id IS NULL THEN CASE
            WHEN c.consent_id IS NULL THEN 'consent_record_missing'
            WHEN m.legal_basis <> 'consent' THEN 'basis_mismatch'
            WHEN NOT EXISTS (SELECT 1 FROM holders AS h WHERE h.subject_key = m.subject_key
                             AND h.customer_id = c.customer_id)
                THEN 'consent_of_another_address'
            WHEN c.purpose <> $purpose THEN 'consent_for_another_purpose'
            WHEN c.status <> 'granted' THEN 'consent_not_granted'
            WHEN c.recorded_at > m.computed_at THEN 'consent_after_evaluation'
            WHEN EXISTS (
                SELECT 1 FROM recs AS later
                WHERE later.subject_key = m.subject_key AND {_OWN}
                  AND later.recorded_at <= m.computed_at AND later.consent_id <> c.consent_id
                  AND (later.recorded_at > c.recorded_at
                       OR (later.recorded_at = c.recorded_at
                           AND (later.status <> 'granted' OR later.consent_id > c.consent_id)))
            ) THEN 'consent_superseded'
            WHEN EXISTS (
                SELECT 1 FROM recs AS w
                WHERE w.subject_key = m.subject_key AND w.status <> 'granted' AND {_OTHER_W}
                  AND w.recorded_at <= m.computed_at AND w.recorded_at >= c.recorded_at
                  AND {_standing_sql("w")}
            ) THEN 'marketing_opt_out'
            WHEN c.recorded_at <= m.computed_at - to_days($validity_days) THEN 'consent_expired'
            WHEN coalesce(trim(c.source, $trim_chars), '') = ''
              OR coalesce(trim(c.notice_version, $trim_chars), '') = '' THEN 'consent_unproven'
        END
        ELSE CASE
            WHEN NOT $soft_opt_in_allowed THEN 'soft_opt_in_not_allowed'
            WHEN m.legal_basis <> 'legitimate_interest' THEN 'basis_mismatch'
            WHEN e.event_id IS NULL OR NOT e.is_purchase THEN 'purchase_missing'
            WHEN e.customer_id <> m.customer_id THEN 'purchase_of_another_customer'
            WHEN e.occurred_at > m.computed_at THEN 'purchase_after_evaluation'
            WHEN EXISTS (
                SELECT 1 FROM recs AS w
                WHERE w.subject_key = m.subject_key AND w.status <> 'granted'
                  AND ({_OWN_W} OR {_OTHER_W})
                  AND w.recorded_at <= m.computed_at AND {_standing_sql("w")}
            ) THEN 'consent_withdrawn'
        END
    END AS problem,
    coalesce(c.recorded_at, e.occurred_at) AS basis_at
FROM m
LEFT JOIN activation.src_consents AS c ON m.purchase_id IS NULL AND c.consent_id = m.consent_ref
LEFT JOIN activation.src_events AS e ON e.event_id = m.purchase_id
"""


def _now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


def _prefixes(keys: list[str]) -> str:
    """Hash prefixes for metadata (12 hex characters each, never a full key or an address)."""
    return ", ".join(key[:12] for key in keys[:SAMPLE_SIZE])


def _iso(moment: datetime | None) -> str:
    return moment.isoformat() if moment is not None else "none"


# --- legal basis ----------------------------------------------------------------------------


def evaluate_legal_basis(
    con: WarehouseConnection,
    *,
    segment: str,
    purpose: str,
    legal_basis: LegalBasis,
    purposes: Mapping[str, Purpose],
    marketing: bool | None = None,
) -> dg.AssetCheckResult:
    """``legal_basis_valid``: every member of the segment's audience has a valid basis.

    Consent is per address (:mod:`orchestrator.consent`): the records of every customer row
    holding the member's subject key count. A consent member (``consent_ref`` = consent_id)
    passes when the record exists, belongs to a customer at the member's address, is for the
    segment's purpose, ``granted``, the latest record for the purpose at the address at the
    member's ``computed_at`` (a withdrawal, even under a spelling variant of the purpose name,
    wins a tie), not followed or tied by a withdrawal standing under another marketing purpose
    (``marketing``: None means the purpose's own flag), younger than the purpose's
    ``consent_validity_days`` and names its source and notice version (GDPR Art. 6(1)(a),
    7(1), 7(3)). A soft opt-in member (``purchase:<event_id>``, ePrivacy Directive Art. 13(2))
    passes when the segment's basis is ``legitimate_interest`` and the purpose accepts it, the
    purchase is the customer's and not after ``computed_at``, and no withdrawal stands at the
    address for the purpose or another marketing purpose. Nobody passes with an erasure or
    objection request (GDPR Art. 17, 21) by any customer row of the address received by
    ``computed_at``, or put on the suppression list by then. A request or
    suppression recorded after the audience step cannot make its audience wrong; the sync
    keeps that person out instead (:mod:`orchestrator.sync.diff` reads the suppression list
    at send time), so an objection recorded mid-run no longer fails the run.

    Metadata: ``members_checked``, ``members_without_basis``, ``without_basis_<problem>`` per
    :data:`BASIS_PROBLEMS`, ``oldest_offending_basis_at``, ``offending_hash_prefixes``.
    Severity ERROR (blocking where built by :func:`audience_checks`).
    """
    declared = purposes[purpose]
    soft_opt_in = (
        LegalBasis(legal_basis) is LegalBasis.LEGITIMATE_INTEREST
        and LegalBasis.LEGITIMATE_INTEREST in declared.legal_bases
    )
    marketing = declared.marketing if marketing is None else marketing
    counted = counted_purposes(purpose, purposes, marketing=marketing)
    rows = con.execute(
        f"SELECT * FROM ({LEGAL_BASIS_SQL}) ORDER BY subject_key",
        {
            "segment": segment,
            "purpose": purpose,
            "purpose_key": purpose_key(purpose),
            "others": counted[1:],
            "other_keys": [purpose_key(name) for name in counted[1:]],
            "all_purposes": counted,
            "validity_days": declared.consent_validity_days,
            "soft_opt_in_allowed": soft_opt_in,
            "trim_chars": TRIM_CHARS,
        },
    ).fetchall()
    bad = [(key, problem, at) for key, problem, at in rows if problem is not None]
    by_problem = {p: sum(1 for _, got, _ in bad if got == p) for p in BASIS_PROBLEMS}
    dates = [at for _, _, at in bad if at is not None]
    metadata: dict[str, Any] = {
        "members_checked": len(rows),
        "members_without_basis": len(bad),
        **{f"without_basis_{p}": n for p, n in by_problem.items()},
        "oldest_offending_basis_at": _iso(min(dates) if dates else None),
        "offending_hash_prefixes": _prefixes([key for key, _, _ in bad]),
    }
    return dg.AssetCheckResult(
        passed=not bad,
        severity=dg.AssetCheckSeverity.ERROR,
        metadata=metadata,
        description=(
            f"{len(bad)} of {len(rows)} members without a valid legal basis"
            if bad
            else f"all {len(rows)} members have a valid legal basis"
        ),
    )


# --- raw identifiers ------------------------------------------------------------------------


def evaluate_no_raw_identifier(con: WarehouseConnection, *, segment: str) -> dg.AssetCheckResult:
    """``no_raw_identifier``: every ``subject_key`` and ``google_key`` of the segment's audience
    is a SHA-256 in lowercase hex (64 characters ``[0-9a-f]``), the only form the ad platforms
    accept (Meta Marketing API, Custom Audiences: "EMAIL_SHA256", hashed before upload).

    Metadata: ``rows_checked``, ``bad_subject_key``, ``bad_google_key``, ``email_like`` (keys
    containing ``@``), ``offending_hash_prefixes`` (of subject keys that are valid hashes only,
    so no raw value is shown). Severity ERROR.
    """
    pattern = "^[0-9a-f]{64}$"
    checked, bad_subject, bad_google, email_like = con.execute(
        """
        SELECT count(*),
               count(*) FILTER (NOT regexp_full_match(subject_key, $pattern)),
               count(*) FILTER (NOT regexp_full_match(google_key, $pattern)),
               count(*) FILTER (strpos(subject_key, '@') > 0 OR strpos(google_key, '@') > 0)
        FROM activation.audience_members WHERE segment = $segment
        """,
        {"segment": segment, "pattern": pattern},
    ).fetchone()
    shown = con.execute(
        """
        SELECT subject_key FROM activation.audience_members
        WHERE segment = $segment AND regexp_full_match(subject_key, $pattern)
          AND NOT regexp_full_match(google_key, $pattern)
        ORDER BY subject_key LIMIT $limit
        """,
        {"segment": segment, "pattern": pattern, "limit": SAMPLE_SIZE},
    ).fetchall()
    failed = bad_subject + bad_google
    return dg.AssetCheckResult(
        passed=failed == 0,
        severity=dg.AssetCheckSeverity.ERROR,
        metadata={
            "rows_checked": checked,
            "bad_subject_key": bad_subject,
            "bad_google_key": bad_google,
            "email_like": email_like,
            "offending_hash_prefixes": _prefixes([row[0] for row in shown]),
        },
    )


# --- retention ------------------------------------------------------------------------------


def pipeline_time(con: WarehouseConnection, segment: str) -> datetime:
    """The instant the segment's pipeline last evaluated (its run's ``as_of``): the latest
    ``computed_at`` of its audience, exclusions or members; the wall clock (naive UTC) when the
    segment was never computed."""
    (moment,) = con.execute(
        """
        SELECT max(computed_at) FROM (
            SELECT computed_at FROM activation.audience_members WHERE segment = $segment
            UNION ALL
            SELECT computed_at FROM activation.audience_exclusions WHERE segment = $segment
            UNION ALL
            SELECT computed_at FROM activation.segment_members WHERE segment = $segment)
        """,
        {"segment": segment},
    ).fetchone()
    return moment or _now()


def evaluate_destination_retention(
    con: WarehouseConnection,
    *,
    segment: str,
    destination: str,
    configured: list[str],
    retention_days: int,
    now: datetime | None = None,
) -> dg.AssetCheckResult:
    """``destination_retention``: no member stays at the destination ``retention_days`` or more
    after leaving the segment, and no ``sync_state`` row of the segment is kept for a
    destination the segment file no longer lists (GDPR Art. 5(1)(e), storage limitation).

    Updates ``activation.departures`` first (:func:`~orchestrator.privacy.retention.
    track_departures`), with ``now`` defaulting to :func:`pipeline_time`. Metadata:
    ``departed_members`` (acknowledged, no longer in the audience), ``overdue_members``,
    ``oldest_departure_at`` (of the overdue), ``orphan_state_rows``, ``retention_days``.
    Severity ERROR.
    """
    now = now or pipeline_time(con, segment)
    track_departures(con, segment=segment, destination=destination, now=now)
    summary = destination_retention_summary(
        con,
        segment=segment,
        destination=destination,
        configured=configured,
        retention_days=retention_days,
        now=now,
    )
    return dg.AssetCheckResult(
        passed=summary.overdue == 0 and summary.orphan_rows == 0,
        severity=dg.AssetCheckSeverity.ERROR,
        metadata={
            "departed_members": summary.departed,
            "overdue_members": summary.overdue,
            "oldest_departure_at": _iso(summary.oldest_left_at),
            "orphan_state_rows": summary.orphan_rows,
            "retention_days": retention_days,
            "evaluated_at": now.isoformat(),
        },
    )


def evaluate_source_retention(
    con: WarehouseConnection, retention: SourceRetention, as_of: datetime
) -> dg.AssetCheckResult:
    """``source_retention``: subjects of ``customers`` past their retention date at ``as_of``
    (rule and source in :mod:`orchestrator.privacy.retention`). Metadata: ``customers_checked``,
    ``subjects_past_retention``, ``prospects_past_retention``, ``customers_past_retention``,
    ``oldest_last_action_at``, ``prospect_days``, ``customer_days``. Severity WARN: audiences
    already leave them out (``retention_expired``); the source rows should be deleted or
    archived by the data team."""
    summary = source_retention_summary(con, retention, as_of)
    return dg.AssetCheckResult(
        passed=summary.expired == 0,
        severity=dg.AssetCheckSeverity.WARN,
        metadata={
            "customers_checked": summary.checked,
            "subjects_past_retention": summary.expired,
            "prospects_past_retention": summary.expired_prospects,
            "customers_past_retention": summary.expired_customers,
            "oldest_last_action_at": _iso(summary.oldest_clock_at),
            "prospect_days": retention.prospect_days,
            "customer_days": retention.customer_days,
            "evaluated_at": as_of.isoformat(),
        },
    )


# --- consent proof --------------------------------------------------------------------------


#: The fields a consent record must hold to prove consent, in the order reported.
PROOF_FIELDS: tuple[str, ...] = (
    "customer_id",
    "recorded_at",
    "source",
    "purpose",
    "notice_version",
)


def _missing_sql(field: str, alias: str) -> str:
    """SQL true when ``alias.field`` is missing (NULL, or blank text); ``$trim`` = TRIM_CHARS."""
    if field in ("customer_id", "recorded_at"):
        return f"{alias}.{field} IS NULL"
    return f"coalesce(trim({alias}.{field}, $trim), '') = ''"


def _unproven_sql(alias: str) -> str:
    return " OR ".join(f"({_missing_sql(field, alias)})" for field in PROOF_FIELDS)


def evaluate_consent_proof(con: WarehouseConnection) -> dg.AssetCheckResult:
    """``consent_proof``: a consent record proves consent only if it says who
    (``customer_id``), when (``recorded_at``), how (``source``), for what (``purpose``) and
    under which notice (``notice_version``) — GDPR Art. 7(1), the controller must be able to
    demonstrate consent. Records missing any of them are counted (``records_missing_proof``,
    per field ``missing_<field>``, ``oldest_unproven_at``); the check fails when an audience
    member relies on one (``members_on_unproven``), which the audience's ``consent_unproven``
    rule should make impossible. Severity WARN: the log is the source's, the pipeline does not
    use such records."""
    unproven = _unproven_sql("c")
    per_field = ", ".join(f"count(*) FILTER ({_missing_sql(field, 'c')})" for field in PROOF_FIELDS)
    checked, missing, oldest, *by_field = con.execute(
        f"""
        SELECT count(*), count(*) FILTER ({unproven}),
               min(c.recorded_at) FILTER ({unproven}), {per_field}
        FROM activation.src_consents AS c
        """,
        {"trim": TRIM_CHARS},
    ).fetchone()
    (used,) = con.execute(
        f"""
        SELECT count(*) FROM activation.audience_members AS m
        JOIN activation.src_consents AS c ON c.consent_id = m.consent_ref
        WHERE {unproven}
        """,
        {"trim": TRIM_CHARS},
    ).fetchone()
    return dg.AssetCheckResult(
        passed=used == 0,
        severity=dg.AssetCheckSeverity.WARN,
        metadata={
            "records_checked": checked,
            "records_missing_proof": missing,
            **{f"missing_{f}": n for f, n in zip(PROOF_FIELDS, by_field, strict=True)},
            "oldest_unproven_at": _iso(oldest),
            "members_on_unproven": used,
        },
    )


def evaluate_consent_purposes(
    con: WarehouseConnection, purposes: Mapping[str, Purpose]
) -> dg.AssetCheckResult:
    """``consent_purposes_declared``: every ``consents.purpose`` is exactly a declared purpose.

    A spelling variant of a declared name (case, spaces, hyphens, underscores) counts for
    withdrawals only, and a name matching no declared purpose is not used at all
    (:mod:`orchestrator.consent`): both are listed so the data team can fix the log or the
    declaration. Metadata: ``purpose_names_unmatched``, ``variant_names``, ``unknown_names``,
    ``records_unmatched``, ``detail`` (each name, what it is read as, its record count; names
    and counts only). Severity WARN: no person is reached by it (a variant grant is not
    counted, a variant withdrawal is honoured)."""
    matches = unmatched_purposes(con, purposes)
    variants = [m for m in matches if m.purpose is not None]
    return dg.AssetCheckResult(
        passed=not matches,
        severity=dg.AssetCheckSeverity.WARN,
        metadata={
            "purpose_names_unmatched": len(matches),
            "variant_names": len(variants),
            "unknown_names": len(matches) - len(variants),
            "records_unmatched": sum(m.records for m in matches),
            "detail": "; ".join(m.describe() for m in matches) or "none",
        },
        description=(
            f"{len(matches)} purpose names in the consent log are not declared purposes"
            if matches
            else "every purpose name in the consent log is declared"
        ),
    )


# --- reconciliation -------------------------------------------------------------------------


def acknowledged_count(con: WarehouseConnection, *, segment: str, destination: str) -> int:
    """Rows of ``sync_state`` for (segment, destination) the destination acknowledged (rows of
    unknown outcome, ``fields_hash = 'pending'``, are left out)."""
    (count,) = con.execute(
        """
        SELECT count(*) FROM activation.sync_state
        WHERE segment = ? AND destination = ? AND fields_hash <> ?
        """,
        [segment, destination, PENDING_HASH],
    ).fetchone()
    return count


@dataclass(frozen=True)
class MemberComparison:
    """Members of a destination compared with ``sync_state`` (keys and statuses).

    ``compared``: contacts listed by the platform; ``missing``: rows held as synced whose
    contact the platform does not hold as ``subscribed``; ``unknown``: contacts subscribed at
    the platform that our state does not hold (synced or pending); ``privacy``: contacts we
    unsubscribed for a withdrawal or objection (``destination_suppressions``) that the
    platform holds as ``subscribed`` again.
    """

    compared: int
    missing: int
    unknown: int
    privacy: int


def compare_members(
    con: WarehouseConnection,
    *,
    segment: str,
    destination: str,
    statuses: Mapping[str, str],
) -> MemberComparison:
    """Compare ``statuses`` (platform member id -> status, e.g. Mailchimp's list) with the
    pair's ``sync_state`` refs and the destination's suppressions."""
    state = con.execute(
        "SELECT destination_ref, fields_hash FROM activation.sync_state "
        "WHERE segment = ? AND destination = ? AND destination_ref IS NOT NULL",
        [segment, destination],
    ).fetchall()
    suppressed = con.execute(
        "SELECT destination_ref FROM activation.destination_suppressions "
        "WHERE destination = ? AND destination_ref IS NOT NULL "
        "AND status IN ('unsubscribed', 'forgotten')",
        [destination],
    ).fetchall()
    held = {ref for ref, _ in state}
    synced = {ref for ref, fields_hash in state if fields_hash != PENDING_HASH}
    subscribed = {ref for ref, status in statuses.items() if status == "subscribed"}
    return MemberComparison(
        compared=len(statuses),
        missing=len(synced - subscribed),
        unknown=len(subscribed - held),
        privacy=sum(1 for (ref,) in suppressed if statuses.get(ref) == "subscribed"),
    )


def evaluate_reconciliation(
    state_count: int,
    destination_count: int | None,
    *,
    audience_id: str,
    members: MemberComparison | None = None,
    targetable: bool | None = None,
) -> dg.AssetCheckResult:
    """``reconciliation``: the destination's own count (Meta ``approximate_count``, Mailchimp
    ``stats.member_count`` = subscribed members) equals ``state_count`` exactly. A destination
    that gives no count passes with ``reconciled`` False. Metadata: ``state_count``,
    ``destination_count``, ``difference`` (destination minus state), ``audience_id``,
    ``reconciled``, and ``targetable`` when the platform says whether it can serve the audience
    (Google: a Customer Match list under 100 members cannot be targeted; the check still passes
    on counts, the metadata says it). Severity WARN: a gap means someone changed the audience
    outside this pipeline (or the platform rounds); the next mirror sync does not see it.

    With ``members`` (a platform that lists its members: Mailchimp; Meta's API gives only an
    approximate count), keys and statuses are compared too (:func:`compare_members`): any
    mismatch fails the check, and a contact we unsubscribed for a withdrawal or objection that
    the platform holds as subscribed again fails it with severity ERROR (a privacy removal
    not honoured is never a warning)."""
    reconciled = destination_count is not None
    difference = (destination_count - state_count) if destination_count is not None else 0
    metadata: dict[str, object] = {
        "state_count": state_count,
        "destination_count": destination_count if reconciled else -1,
        "difference": difference,
        "audience_id": audience_id,
        "reconciled": reconciled,
        "compared": "members" if members is not None else "count",
    }
    if targetable is not None:
        metadata["targetable"] = targetable
    passed = difference == 0
    severity = dg.AssetCheckSeverity.WARN
    if members is not None:
        metadata.update(
            members_compared=members.compared,
            missing_at_destination=members.missing,
            unknown_at_destination=members.unknown,
            privacy_removals_not_honoured=members.privacy,
        )
        passed = passed and members.missing == members.unknown == members.privacy == 0
        if members.privacy:
            severity = dg.AssetCheckSeverity.ERROR
    return dg.AssetCheckResult(passed=passed, severity=severity, metadata=metadata)


def evaluate_rejections(summary: RejectionSummary, policy: RejectionPolicy) -> dg.AssetCheckResult:
    """``rejections``: fails when the destination refused to remove someone who asked for
    erasure or objected (``privacy_removals`` > 0, severity ``policy.privacy_removal_severity``,
    default ERROR: GDPR Art. 17 and 21 leave no room for a platform's refusal), or holds more
    than ``policy.max_permanent`` permanent refusals (severity ``policy.permanent_severity``,
    default WARN: those people are simply not in the audience). Metadata: ``rejected``,
    ``permanent``, ``privacy_removals_refused``, ``by_reason`` (reason -> rows), ``samples``
    (hash prefixes), ``max_permanent``; the description names the first reasons."""
    privacy = summary.privacy_removals > 0
    too_many = summary.permanent > policy.max_permanent
    chosen = policy.privacy_removal_severity if privacy else policy.permanent_severity
    severity = dg.AssetCheckSeverity.ERROR if chosen == "error" else dg.AssetCheckSeverity.WARN
    reasons = "; ".join(f"{n} x {reason}" for reason, n in list(summary.by_reason.items())[:3])
    if privacy:
        description = f"{summary.privacy_removals} privacy removal(s) refused"
    elif too_many:
        description = f"{summary.permanent} row(s) refused for good"
    else:
        description = f"{summary.total} refused row(s), within the policy"
    return dg.AssetCheckResult(
        passed=not (privacy or too_many),
        severity=severity,
        description=f"{description}{': ' + reasons if reasons else ''}",
        metadata={
            "rejected": summary.total,
            "permanent": summary.permanent,
            "privacy_removals_refused": summary.privacy_removals,
            "by_reason": dg.MetadataValue.json(summary.by_reason),
            "samples": ", ".join(summary.samples),
            "max_permanent": policy.max_permanent,
        },
    )


def evaluate_unregistered_state(
    con: WarehouseConnection, pairs: list[tuple[str, str]]
) -> dg.AssetCheckResult:
    """``no_unregistered_sync_state``: every ``sync_state`` row belongs to a (segment,
    destination) of ``pairs`` (the register's activities). Metadata: ``unregistered_rows``,
    ``oldest_synced_at``, ``registered_pairs``. Severity ERROR (GDPR Art. 5(1)(e): the members
    of a dropped segment still sit in a destination, or at least in our state, with no purpose).
    """
    count, oldest = unregistered_state_rows(con, pairs)
    return dg.AssetCheckResult(
        passed=count == 0,
        severity=dg.AssetCheckSeverity.ERROR,
        metadata={
            "unregistered_rows": count,
            "oldest_synced_at": _iso(oldest),
            "registered_pairs": len(pairs),
        },
    )


# --- Dagster builders -----------------------------------------------------------------------


def _legal_basis_check(loaded: LoadedSegment, project: ProjectConfig) -> SegmentCheck:
    spec = loaded.spec
    served = [
        project.destinations[e.destination].purposes
        for e in spec.destinations
        if e.destination in project.destinations
    ]
    marketing = is_marketing_segment(spec.purpose, served, project.purposes)

    def _evaluate(warehouse: WarehouseResource, _: object) -> dg.AssetCheckResult:
        with connect(WarehouseTarget.from_resource(warehouse), project=project) as con:
            return evaluate_legal_basis(
                con,
                segment=spec.id,
                purpose=spec.purpose,
                legal_basis=spec.legal_basis,
                purposes=project.purposes,
                marketing=marketing,
            )

    check = dg.AssetCheckSpec(
        name=LEGAL_BASIS_VALID,
        asset=audience_key(spec.id),
        blocking=True,
        description=(
            "ERROR, blocking: every member re-verified against the consent log, independently "
            f"of the audience query ({spec.purpose}, {spec.legal_basis}); one member without a "
            "valid basis stops this segment's syncs."
        ),
    )
    return SegmentCheck(check, _evaluate)


def _raw_identifier_check(loaded: LoadedSegment) -> SegmentCheck:
    sid = loaded.spec.id

    def _evaluate(warehouse: WarehouseResource, _: object) -> dg.AssetCheckResult:
        with connect(WarehouseTarget.from_resource(warehouse)) as con:
            return evaluate_no_raw_identifier(con, segment=sid)

    check = dg.AssetCheckSpec(
        name=NO_RAW_IDENTIFIER,
        asset=audience_key(sid),
        blocking=True,
        description=(
            "ERROR, blocking: every key bound for an ad platform is a SHA-256 in lowercase hex."
        ),
    )
    return SegmentCheck(check, _evaluate)


def _destination_retention_check(loaded: LoadedSegment, destination: str) -> SegmentCheck:
    spec = loaded.spec
    configured = [entry.destination for entry in spec.destinations]

    def _evaluate(warehouse: WarehouseResource, _: object) -> dg.AssetCheckResult:
        with connect(WarehouseTarget.from_resource(warehouse)) as con:
            return evaluate_destination_retention(
                con,
                segment=spec.id,
                destination=destination,
                configured=configured,
                retention_days=spec.retention_days,
            )

    check = dg.AssetCheckSpec(
        name=DESTINATION_RETENTION,
        asset=sync_key(spec.id, destination),
        description=(
            f"ERROR: no member stays at {destination} {spec.retention_days} days or more after "
            "leaving the segment; no state kept for a destination the segment no longer lists."
        ),
    )
    return SegmentCheck(check, _evaluate)


def _reconciliation_check(
    loaded: LoadedSegment, destination: str, audience_id: str
) -> SegmentCheck:
    sid = loaded.spec.id

    def _evaluate(
        warehouse: WarehouseResource, destinations: DestinationsResource | PlatformResource
    ) -> dg.AssetCheckResult:
        with connect(WarehouseTarget.from_resource(warehouse)) as con:
            state = acknowledged_count(con, segment=sid, destination=destination)
        client = destinations.client(destination)  # no warehouse connection held during HTTP
        try:
            count = client.member_count(audience_id)
            lister = getattr(client, "member_statuses", None)
            statuses = lister(audience_id) if lister is not None else None
            targetable = getattr(client, "targetable", None)
            eligible = targetable(audience_id) if targetable is not None else None
        finally:
            if hasattr(client, "close"):
                client.close()
        members = None
        if statuses is not None:
            with connect(WarehouseTarget.from_resource(warehouse)) as con:
                members = compare_members(
                    con, segment=sid, destination=destination, statuses=statuses
                )
        return evaluate_reconciliation(
            state, count, audience_id=audience_id, members=members, targetable=eligible
        )

    check = dg.AssetCheckSpec(
        name=RECONCILIATION,
        asset=sync_key(sid, destination),
        description=(
            f"{destination}'s own member count for audience {audience_id} equals the "
            "acknowledged rows of sync_state, and where the platform lists its members, keys "
            "and statuses match (WARN; ERROR when a privacy removal is not honoured)."
        ),
    )
    return SegmentCheck(check, _evaluate)


def _rejections_check(
    loaded: LoadedSegment, destination: str, policy: RejectionPolicy
) -> SegmentCheck:
    sid = loaded.spec.id

    def _evaluate(warehouse: WarehouseResource, _: object) -> dg.AssetCheckResult:
        with connect(WarehouseTarget.from_resource(warehouse)) as con:
            summary = summarize_rejections(con, segment=sid, destination=destination)
        return evaluate_rejections(summary, policy)

    check = dg.AssetCheckSpec(
        name=REJECTIONS,
        asset=sync_key(sid, destination),
        description=(
            f"{policy.permanent_severity.upper()} when {destination} holds more than "
            f"{policy.max_permanent} permanent refusal(s); "
            f"{policy.privacy_removal_severity.upper()} when it refused to remove someone who "
            "asked for erasure or objected. Counts by reason and hash samples in the metadata."
        ),
    )
    return SegmentCheck(check, _evaluate)


def audience_checks(loaded: LoadedSegment, project: ProjectConfig) -> list[SegmentCheck]:
    """The checks on ``audience/<sid>``, evaluated by the audience's own step after it (see
    :class:`orchestrator.assets.SegmentCheck`): ``legal_basis_valid`` and, when the segment
    syncs to an ad destination, ``no_raw_identifier`` (both blocking, ERROR)."""
    spec = loaded.spec
    checks = [_legal_basis_check(loaded, project)]
    kinds = {project.destinations[e.destination].kind for e in spec.destinations}
    if DestinationKind.AD in kinds:
        checks.append(_raw_identifier_check(loaded))
    return checks


def sync_checks(
    loaded: LoadedSegment, entry: DestinationEntry, project: ProjectConfig
) -> list[SegmentCheck]:
    """The checks on ``sync/<sid>/<destination>``, evaluated by the sync's own step after it:
    ``destination_retention``, ``reconciliation`` and ``rejections``."""
    policy = project.destinations[entry.destination].rejections
    return [
        _destination_retention_check(loaded, entry.destination),
        _reconciliation_check(loaded, entry.destination, entry.audience_id),
        _rejections_check(loaded, entry.destination, policy),
    ]


def build_source_checks(project: ProjectConfig) -> list[dg.AssetChecksDefinition]:
    """``source_retention`` on ``warehouse/customers``, ``consent_proof`` and
    ``consent_purposes_declared`` on ``warehouse/consents`` (all WARN), evaluated at the wall
    clock."""
    retention = project.retention

    @dg.asset_check(
        asset=source_key("customers"),
        name=SOURCE_RETENTION,
        pool=DUCKDB_POOL,
        description=(
            f"WARN: subjects whose last own action is older than {retention.prospect_days} days "
            f"(prospects) or {retention.customer_days} days (customers); CNIL référentiel."
        ),
    )
    def _source_retention(warehouse: WarehouseResource) -> dg.AssetCheckResult:
        with connect(WarehouseTarget.from_resource(warehouse), project=project) as con:
            return evaluate_source_retention(con, retention, _now())

    @dg.asset_check(
        asset=source_key("consents"),
        name=CONSENT_PROOF,
        pool=DUCKDB_POOL,
        description=(
            "WARN: consent records missing who, when, how, purpose or notice version; fails if "
            "an audience member relies on one."
        ),
    )
    def _consent_proof(warehouse: WarehouseResource) -> dg.AssetCheckResult:
        with connect(WarehouseTarget.from_resource(warehouse), project=project) as con:
            return evaluate_consent_proof(con)

    @dg.asset_check(
        asset=source_key("consents"),
        name=CONSENT_PURPOSES_DECLARED,
        pool=DUCKDB_POOL,
        description=(
            "WARN: purpose names in the consent log that are not declared purposes (variants "
            "count for withdrawals only, unknown names not at all)."
        ),
    )
    def _consent_purposes(warehouse: WarehouseResource) -> dg.AssetCheckResult:
        with connect(WarehouseTarget.from_resource(warehouse), project=project) as con:
            return evaluate_consent_purposes(con, project.purposes)

    return [_source_retention, _consent_proof, _consent_purposes]


def _unregistered_state_check(pairs: list[tuple[str, str]]) -> dg.AssetChecksDefinition:
    @dg.asset_check(
        asset=REGISTER_KEY,
        name=NO_UNREGISTERED_SYNC_STATE,
        pool=DUCKDB_POOL,
        description=(
            "ERROR: no sync_state row for a segment or destination absent from the register."
        ),
    )
    def _check(warehouse: WarehouseResource) -> dg.AssetCheckResult:
        with connect(WarehouseTarget.from_resource(warehouse)) as con:
            return evaluate_unregistered_state(con, pairs)

    return _check


def privacy_checks_definitions(
    specs: Mapping[str, LoadedSegment], project: ProjectConfig, project_dir: Path | None = None
) -> dg.Definitions:
    """Everything of this module for ``Definitions.merge`` but the checks of each segment (built
    into the segment's assets: :func:`audience_checks`, :func:`sync_checks`): the source
    checks, the ``privacy/processing_register`` asset with its ``no_unregistered_sync_state``
    check, ``privacy_checks_job`` (the register, the source
    checks and ``segment_files_valid``; segment checks run with their segment's jobs) and its
    ``privacy_checks_schedule`` (daily, RUNNING by default). Uses the ``warehouse`` and
    ``destinations`` resources of the segment definitions."""
    checks = build_source_checks(project)
    pairs = [(sid, e.destination) for sid in sorted(specs) for e in specs[sid].spec.destinations]
    checks.append(_unregistered_state_check(pairs))
    selection = dg.AssetSelection.assets(REGISTER_KEY) | dg.AssetSelection.checks_for_assets(
        source_key("customers"), source_key("consents"), dg.AssetKey(["segment_file_errors"])
    )
    job = dg.define_asset_job(name=PRIVACY_JOB, selection=selection)
    schedule = dg.ScheduleDefinition(
        name=PRIVACY_SCHEDULE,
        cron_schedule=PRIVACY_CRON,
        execution_timezone="Europe/Paris",
        job=job,
        default_status=dg.DefaultScheduleStatus.RUNNING,
    )
    return dg.Definitions(
        assets=[build_register_asset(specs, project, project_dir)],
        asset_checks=checks,
        jobs=[job],
        schedules=[schedule],
    )


__all__ = [
    "BASIS_PROBLEMS",
    "CONSENT_PROOF",
    "CONSENT_PURPOSES_DECLARED",
    "DESTINATION_RETENTION",
    "LEGAL_BASIS_SQL",
    "LEGAL_BASIS_VALID",
    "NO_RAW_IDENTIFIER",
    "NO_UNREGISTERED_SYNC_STATE",
    "PRIVACY_JOB",
    "PRIVACY_SCHEDULE",
    "RECONCILIATION",
    "REJECTIONS",
    "SOURCE_RETENTION",
    "acknowledged_count",
    "audience_checks",
    "build_source_checks",
    "evaluate_consent_proof",
    "evaluate_consent_purposes",
    "evaluate_destination_retention",
    "evaluate_legal_basis",
    "evaluate_no_raw_identifier",
    "evaluate_reconciliation",
    "evaluate_rejections",
    "evaluate_source_retention",
    "evaluate_unregistered_state",
    "pipeline_time",
    "privacy_checks_definitions",
    "sync_checks",
]
