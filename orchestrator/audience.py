"""Segment members -> audience: the consent filter and pseudonymization, in SQL inside DuckDB.

Implements the "Segment → audience contract" of ``docs/architecture.md``. For one segment,
every member of ``activation.segment_members`` ends in exactly one of two tables:

- ``activation.audience_members`` (segment, subject_key, google_key, customer_id, email,
  legal_basis, consent_ref, computed_at): allowed, with the legal basis actually used and the
  record that proves it (``consent_id``, or ``purchase:<event_id>`` for soft opt-in);
- ``activation.audience_exclusions`` (segment, customer_id, reason, computed_at): left out, with
  the first matching reason of :data:`EXCLUSION_REASONS`.

Rules (everything dated after ``as_of`` is ignored: consents by ``recorded_at``, privacy requests
by ``received_at``, purchases by ``occurred_at``):

A data subject is an address (:mod:`orchestrator.pseudonymize`: every spelling of a mailbox has
one subject key), so requests and consent are read at the address: over every customer row
whose cached subject key is the member's (:mod:`orchestrator.consent`).

1. ``erasure_requested`` / ``objection``: a privacy request (GDPR Art. 17 / Art. 21) matched by
   the ``customer_id`` of any customer row of the address or by ``subject_key`` equal to the
   customer's subject key. A request applies to every purpose, whatever its date. The request's
   key goes through the same key function as the customer's email (a hash is kept as is,
   lowercased). The same reasons apply to a customer whose subject key or Google key is on
   ``activation.suppression_list`` (written when a request is recorded or handled:
   ``orchestrator.privacy.requests``), whatever ``as_of``: a suppression is permanent, and the
   Google key catches the same Gmail mailbox under another spelling.
2. ``retention_expired``: the person's source records are past their retention date
   (:mod:`orchestrator.privacy.retention`: 3 years by default from the last purchase or inbound
   contact of a customer, from collection or the last inbound contact of a prospect; CNIL
   référentiel "gestion des activités commerciales"). Data we may no longer keep is not used,
   whatever the consent says; a privacy request still comes first, so it is reported.
3. ``invalid_email``: the email does not normalize to a valid address (base rules), or its
   Google form is empty (``+tag@gmail.com``), or the customer row is missing, or the CRM holds a
   hash instead of an address (the rule for pre-hashed identifiers is in
   :mod:`orchestrator.pseudonymize`).
4. Consent for the purpose: the latest record at the address (every customer row of the
   subject key), ordered by ``recorded_at`` descending, then a withdrawal before a grant at the
   same instant, then ``consent_id`` descending; a record under a spelling variant of the
   purpose name counts as a withdrawal only (:mod:`orchestrator.consent`). For a marketing
   segment, a withdrawal standing at the address under any other marketing purpose makes the
   state ``withdrawn`` unless the consent for the segment's purpose is valid and recorded
   strictly after it. It is a valid consent when its status is
   ``granted``, it names its ``source`` and ``notice_version`` (GDPR Art. 7(1): the controller
   must be able to demonstrate consent) and ``recorded_at > as_of - consent_validity_days``.
   Otherwise the reason is ``consent_unproven`` (granted without source or notice version),
   ``no_consent`` (no record), ``withdrawn`` (any status other than ``granted``: the schema
   allows only ``granted``/``withdrawn``, an unknown status is read as a withdrawal) or
   ``expired``.
5. Soft opt-in (legal basis ``legitimate_interest``, ePrivacy Directive Art. 13(2)): without a
   valid consent, a customer with at least one ``purchase`` event is allowed unless a
   withdrawal stands at the address (the state of rule 4 is ``withdrawn``); consent_ref is
   ``purchase:<event_id>`` of the latest purchase (``occurred_at`` then ``event_id``, both
   descending). A valid consent takes precedence (legal_basis ``consent``).
6. ``duplicate_address``: among allowed customers sharing one subject_key, the lowest
   customer_id is kept.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import duckdb

from orchestrator.config import LegalBasis, ProjectConfig, Purpose, SourceRetention
from orchestrator.consent import (
    CONSENT_ORDER_SQL,
    PurposeMatch,
    counted_purposes,
    is_marketing_segment,
    purpose_map_sql,
    purpose_params,
    unmatched_purposes,
)
from orchestrator.customer_keys import refresh_customer_keys
from orchestrator.model.views import refresh_source_views
from orchestrator.privacy.retention import retention_clock_sql, retention_params
from orchestrator.pseudonymize import TRIM_CHARS, register_sql_functions, subject_key_sql
from orchestrator.segments.spec import SegmentSpec
from orchestrator.warehouse.memory import with_memory_growth
from orchestrator.warehouse.schema import create_activation_schema, drop_audience_primary_key

#: Exclusion reasons, in the order they are tested (the first that matches is recorded).
EXCLUSION_REASONS: tuple[str, ...] = (
    "erasure_requested",
    "objection",
    "retention_expired",
    "invalid_email",
    "consent_unproven",
    "no_consent",
    "withdrawn",
    "expired",
    "duplicate_address",
)

_SCRATCH = "audience_classified"
_SCOPE = "audience_scope"
_KEY_SCOPE = "audience_key_scope"
_FACTS = "audience_facts"
_NEW = "audience_new_rows"


@dataclass(frozen=True)
class AudienceStats:
    """What :func:`build_audience` wrote for one segment.

    ``members``: rows in ``activation.audience_members``. ``excluded``: rows in
    ``activation.audience_exclusions`` per reason, every reason of :data:`EXCLUSION_REASONS`
    present (zero included), in that order. ``unmatched_purposes``: purpose names of the
    consent log that are not exactly a declared purpose
    (:func:`orchestrator.consent.unmatched_purposes`; a report on the log, not a count of
    this audience: left out of equality).
    """

    members: int
    excluded: dict[str, int]
    unmatched_purposes: tuple[PurposeMatch, ...] = field(default=(), compare=False)


def _latest_purchase_sql(soft_opt_in: bool) -> str:
    """``event_id`` of the latest purchase, for soft opt-in's consent_ref only: computed just for
    members without a valid consent nor a withdrawal (the only ones it can admit), a constant
    NULL for a consent-only segment. The ``arg_max`` over a (time, id) pair for every member
    cost 0.25 of 0.42 s of the purchase scan at 1M customers; filtered, 0.15 s."""
    if soft_opt_in:
        return (
            "arg_max(e.event_id, (e.occurred_at, e.event_id))"
            " FILTER (WHERE e.is_purchase AND c.consent_state NOT IN ('valid', 'withdrawn'))"
        )
    return "CAST(NULL AS VARCHAR)"


def _facts_sql(soft_opt_in: bool) -> str:
    """Temp table ``audience_facts``, one row per segment member (``audience_scope``):
    customer_id BIGINT, consent_id VARCHAR, consent_state VARCHAR (``none``, ``withdrawn``,
    ``unproven``, ``expired`` or ``valid``), purchase_id VARCHAR (soft opt-in's reference, see
    :func:`_latest_purchase_sql`), retention_expired BOOLEAN.

    Consent is read per address (:mod:`orchestrator.consent`): the records of every customer
    holding the member's subject key (the same ``address_id`` in ``activation.customer_keys``,
    refreshed for the members and for every customer with a consent record or a privacy
    request), for the counted
    purposes (``$purposes``: the segment's, then the other marketing ones), the latest per
    (address, purpose) in :data:`~orchestrator.consent.CONSENT_ORDER_SQL` order. The
    segment's purpose gives the state; a withdrawal standing under another counted purpose
    makes it ``withdrawn`` unless the state is ``valid`` with a grant recorded after it.

    The keys, requests and duplicates come in a second statement (:func:`_classify_sql`). In
    one statement, every materialized CTE of both halves was alive at once: DuckDB spilled
    90-170 MB at the 250MB default limit for 390k members (1M customers) and the
    classification took 1.0-1.2 s instead of 0.8 s. Shaped for memory as much as time
    (bench/README.md): the latest purchase is an ``arg_max`` aggregate, not a window over every
    purchase, and the same purchase scan feeds the retention clock.
    """
    return f"""
CREATE OR REPLACE TEMP TABLE {_FACTS} AS
WITH members AS (
    SELECT m.customer_id, k.address_id
    FROM {_SCOPE} AS m LEFT JOIN activation.customer_keys AS k USING (customer_id)
),
holders AS (
    -- every customer row at a member's address, the members included
    SELECT customer_id, address_id FROM activation.customer_keys
    WHERE address_id IN (SELECT address_id FROM members)
),
purpose_map AS ({purpose_map_sql()}),
address_records AS (
    SELECT h.address_id, pm.purpose, c.consent_id, c.status, c.recorded_at, c.source,
           c.notice_version
    FROM activation.src_consents AS c
    JOIN purpose_map AS pm ON pm.raw = c.purpose
    JOIN holders AS h USING (customer_id)
    WHERE c.recorded_at <= $as_of AND (pm.exact OR c.status <> 'granted')
),
latest AS (
    -- the segment's purpose: its latest record at each address (a window here, not arg_max
    -- over a struct of the record: twice the CPU in this query)
    SELECT * FROM address_records WHERE purpose = $purpose
    QUALIFY row_number() OVER (PARTITION BY address_id ORDER BY {CONSENT_ORDER_SQL}) = 1
),
own AS (
    SELECT * FROM latest
),
other_withdrawals AS (
    -- another counted purpose's latest record is a withdrawal exactly when its latest
    -- withdrawal is not older than its latest grant (a tie goes to the withdrawal): an
    -- aggregate, not a second window over every record of those purposes
    SELECT address_id, max(withdrawn_at) AS withdrawn_at
    FROM (
        SELECT address_id, purpose,
               max(recorded_at) FILTER (WHERE status <> 'granted') AS withdrawn_at,
               max(recorded_at) FILTER (WHERE status = 'granted') AS granted_at
        FROM address_records WHERE purpose <> $purpose
        GROUP BY address_id, purpose
    )
    WHERE withdrawn_at >= coalesce(granted_at, withdrawn_at)
    GROUP BY address_id
),
own_states AS (
    SELECT m.customer_id, l.consent_id, l.recorded_at, o.withdrawn_at,
           CASE
               WHEN l.address_id IS NULL THEN 'none'
               WHEN l.status <> 'granted' THEN 'withdrawn'
               WHEN coalesce(regexp_full_match(l.source, $blank_pattern), true)
                 OR coalesce(regexp_full_match(l.notice_version, $blank_pattern), true)
                 THEN 'unproven'
               WHEN l.recorded_at <= $cutoff THEN 'expired'
               ELSE 'valid'
           END AS own_state
    FROM members AS m
    LEFT JOIN own AS l USING (address_id)
    LEFT JOIN other_withdrawals AS o USING (address_id)
),
consent AS (
    SELECT customer_id, consent_id,
           CASE
               WHEN withdrawn_at IS NULL THEN own_state
               WHEN own_state = 'valid' AND withdrawn_at < recorded_at THEN 'valid'
               ELSE 'withdrawn'
           END AS consent_state
    FROM own_states
),
last_purchases AS (
    -- arg_max, not a row_number() window: same row (event_id is unique), without sorting
    -- every purchase of every member (3 s of 13 CPU s at 1M customers, bench/README.md);
    -- a join with the members (unique ids), not IN: 0.11 s instead of 0.17 s
    -- own-action events (purchases among them) feed the retention clock too
    SELECT e.customer_id, {_latest_purchase_sql(soft_opt_in)} AS event_id,
           bool_or(e.is_purchase) AS is_customer, max(e.occurred_at) AS last_action_at
    FROM activation.src_events AS e
    JOIN consent AS c USING (customer_id)
    WHERE e.own_action AND e.occurred_at <= $as_of
    GROUP BY e.customer_id
),
retention AS (
    SELECT customer_id, expired
    FROM ({retention_clock_sql("members", last_actions="last_purchases")}) AS clock
)
SELECT c.customer_id, c.consent_id, c.consent_state, p.event_id AS purchase_id,
       coalesce(rt.expired, false) AS retention_expired
FROM consent AS c
LEFT JOIN last_purchases AS p USING (customer_id)
LEFT JOIN retention AS rt USING (customer_id)
"""


def _classify_sql() -> str:
    """One row per segment member: customer_id, subject_key, legal_basis, consent_ref, reason.

    Reads ``audience_facts`` (:func:`_facts_sql`). Keys come from ``activation.customer_keys``
    (see :mod:`orchestrator.customer_keys`), not from hashing every member again; the
    normalized email and Google key are read from there again for the audience rows that are
    new or changed (the Google-key suppression match joins the cache itself), so the rows
    carried through the joins stay narrow: with the keys and email carried along, DuckDB
    spilled 160 MB at a 300MB limit for 420k members (1M customers). The suppression list is
    matched by two equality joins (an ``OR`` join compares every member with every suppressed
    key), and duplicate addresses are found by an aggregate over the allowed keys instead of
    a window over every classified row.
    """
    return f"""
CREATE OR REPLACE TEMP TABLE {_SCRATCH} AS
WITH keyed AS (
    -- keys from the pseudonym cache (refreshed in this transaction); a member without a
    -- customers row has none: email NULL, so invalid_email
    SELECT m.customer_id, k.subject_key, k.address_id,
           k.email IS NULL OR k.google_key IS NULL AS invalid_email
    FROM {_SCOPE} AS m
    LEFT JOIN activation.customer_keys AS k USING (customer_id)
),
requests AS (
    SELECT request_type, customer_id, {subject_key_sql("subject_key")} AS subject_key
    FROM activation.src_privacy_requests
    WHERE received_at <= $as_of
),
matched_requests AS (
    SELECT k.customer_id, r.request_type
    FROM keyed AS k JOIN requests AS r ON r.customer_id = k.customer_id
    UNION ALL
    -- a request by another customer row at the same address: one address, one person
    SELECT k.customer_id, r.request_type
    FROM keyed AS k
    JOIN activation.customer_keys AS peer
      ON peer.address_id = k.address_id AND peer.customer_id <> k.customer_id
    JOIN requests AS r ON r.customer_id = peer.customer_id
    UNION ALL
    SELECT k.customer_id, r.request_type
    FROM keyed AS k JOIN requests AS r ON r.subject_key = k.subject_key
    UNION ALL
    SELECT k.customer_id, s.request_type
    FROM keyed AS k JOIN activation.suppression_list AS s ON s.subject_key = k.subject_key
    UNION ALL
    SELECT k.customer_id, s.request_type
    FROM activation.customer_keys AS k
    JOIN activation.suppression_list AS s ON s.google_key = k.google_key
    WHERE k.customer_id IN (SELECT customer_id FROM {_SCOPE})
),
request_flags AS (
    SELECT customer_id,
           bool_or(request_type = 'erasure') AS erasure,
           bool_or(request_type = 'objection') AS objection
    FROM matched_requests
    GROUP BY customer_id
),
classified AS (
    SELECT k.customer_id, k.subject_key,
           CASE WHEN a.consent_state = 'valid' THEN 'consent'
                ELSE 'legitimate_interest' END AS legal_basis,
           CASE WHEN a.consent_state = 'valid' THEN a.consent_id
                ELSE 'purchase:' || a.purchase_id END AS consent_ref,
           CASE
               WHEN coalesce(f.erasure, false) THEN 'erasure_requested'
               WHEN coalesce(f.objection, false) THEN 'objection'
               WHEN a.retention_expired THEN 'retention_expired'
               WHEN k.invalid_email THEN 'invalid_email'
               WHEN a.consent_state = 'valid' THEN NULL
               WHEN $soft_opt_in AND a.consent_state <> 'withdrawn'
                    AND a.purchase_id IS NOT NULL THEN NULL
               WHEN a.consent_state = 'unproven' THEN 'consent_unproven'
               WHEN a.consent_state = 'none' THEN 'no_consent'
               WHEN a.consent_state = 'withdrawn' THEN 'withdrawn'
               ELSE 'expired'
           END AS reason
    FROM keyed AS k
    JOIN {_FACTS} AS a USING (customer_id)
    LEFT JOIN request_flags AS f USING (customer_id)
),
kept_per_address AS (
    SELECT subject_key, min(customer_id) AS kept_customer_id
    FROM classified
    WHERE reason IS NULL
    GROUP BY subject_key
    HAVING count(*) > 1
)
SELECT c.customer_id, c.subject_key, c.legal_basis, c.consent_ref,
       CASE WHEN d.kept_customer_id IS NOT NULL AND c.customer_id <> d.kept_customer_id
            THEN 'duplicate_address' ELSE c.reason END AS reason
FROM classified AS c
LEFT JOIN kept_per_address AS d ON c.reason IS NULL AND d.subject_key = c.subject_key
"""


#: An audience row that the classification reproduces exactly (``am``: the stored row, ``s``:
#: the classified one). ``email`` and ``google_key`` are not compared: both are functions of
#: the normalized address, which the equal ``subject_key`` (its SHA-256) already fixes.
_SAME_ROW = """s.subject_key = am.subject_key AND s.customer_id = am.customer_id
    AND s.legal_basis = am.legal_basis AND s.consent_ref IS NOT DISTINCT FROM am.consent_ref"""


def _replace_segment_rows(con: duckdb.DuckDBPyConnection, segment: str, as_of: datetime) -> None:
    """Make the segment's audience and exclusions equal to the classified rows.

    Audience: deletes the rows the classification does not reproduce exactly (gone or
    changed), sets ``computed_at`` on the rest in one column update, inserts the new and
    changed rows (the pseudonym cache joined for those only: comparing email and Google key
    too cost 0.3 s per 400k unchanged members at 1M customers), then checks that no subject
    key appears twice (:func:`_check_one_row_per_subject`). Exclusions: the same with an
    upsert on their primary key. Upserting every row instead cost about 0.7 CPU s for 285k
    members at 1M customers, and deleting and re-inserting every row about 6 CPU s at commit
    (DuckDB 2.0.1, bench/README.md). The tables end up the same either way, for one version of
    the key functions: a change to :mod:`orchestrator.pseudonymize`'s rules needs
    ``activation.customer_keys`` emptied anyway (its fingerprint is of the raw address), and
    then every row compares as changed.

    Raises:
        RuntimeError: a subject key would have two rows (a bug; the caller rolls back).
    """
    params = {"segment": segment}
    con.execute(
        f"""
        DELETE FROM activation.audience_members AS am
        WHERE am.segment = $segment AND NOT EXISTS (
            SELECT 1 FROM {_SCRATCH} AS s WHERE s.reason IS NULL AND {_SAME_ROW})
        """,
        params,
    )
    con.execute(
        f"""
        DELETE FROM activation.audience_exclusions AS ax
        WHERE ax.segment = $segment AND NOT EXISTS (
            SELECT 1 FROM {_SCRATCH} AS s
            WHERE s.reason IS NOT NULL AND s.customer_id = ax.customer_id)
        """,
        params,
    )
    params = {"segment": segment, "as_of": as_of}
    for table in ("audience_members", "audience_exclusions"):
        con.execute(
            f"UPDATE activation.{table} SET computed_at = $as_of WHERE segment = $segment",
            params,
        )
    con.execute(
        f"""
        CREATE OR REPLACE TEMP TABLE {_NEW} AS
        SELECT s.subject_key, s.customer_id, s.legal_basis, s.consent_ref
        FROM {_SCRATCH} AS s
        WHERE s.reason IS NULL AND NOT EXISTS (
            SELECT 1 FROM activation.audience_members AS am
            WHERE am.segment = $segment AND {_SAME_ROW})
        """,
        {"segment": segment},
    )
    con.execute(
        f"""
        INSERT INTO activation.audience_members
            (segment, subject_key, google_key, customer_id, email, legal_basis, consent_ref,
             computed_at)
        SELECT $segment, s.subject_key, k.google_key, s.customer_id, k.email, s.legal_basis,
               s.consent_ref, $as_of
        FROM {_NEW} AS s
        JOIN activation.customer_keys AS k USING (customer_id)
        """,
        params,
    )
    _check_one_row_per_subject(con, segment, within=_NEW)
    con.execute(f"DROP TABLE {_NEW}")
    con.execute(
        f"""
        INSERT INTO activation.audience_exclusions (segment, customer_id, reason, computed_at)
        SELECT $segment, customer_id, reason, $as_of
        FROM {_SCRATCH} AS s
        WHERE s.reason IS NOT NULL AND NOT EXISTS (
            SELECT 1 FROM activation.audience_exclusions AS ax
            WHERE ax.segment = $segment AND ax.customer_id = s.customer_id
              AND ax.reason = s.reason)
        ON CONFLICT (segment, customer_id) DO UPDATE SET
            reason = excluded.reason, computed_at = excluded.computed_at
        """,
        params,
    )


def _check_one_row_per_subject(
    con: duckdb.DuckDBPyConnection, segment: str, *, within: str
) -> None:
    """Raise when a subject key of relation ``within`` (the rows just inserted) has more than
    one row in the segment's audience.

    ``audience_members`` has no primary key index (in warehouses created since 2026-12-02):
    DuckDB keeps an index's keys in memory, and at 2M customers inserting 570k 64-character
    keys next to 535k others ran out of the 250MB limit (bench/README.md). One row per subject
    key follows from the classification (duplicate addresses are excluded); this check keeps
    a bug from sending a member twice, for the cost of a look at the inserted keys.

    Raises:
        RuntimeError: names the count of duplicated keys (no key: they are pseudonyms, but
            the count is enough to find the bug).
    """
    [(duplicated,)] = con.execute(
        f"""
        SELECT count(*) FROM (
            SELECT subject_key FROM activation.audience_members
            WHERE segment = ? AND subject_key IN (SELECT subject_key FROM {within})
            GROUP BY subject_key HAVING count(*) > 1)
        """,
        [segment],
    ).fetchall()
    if duplicated:
        raise RuntimeError(
            f"audience {segment}: {duplicated} subject keys would have two rows; "
            "nothing was written"
        )


def _check_basis(purpose: str, legal_basis: LegalBasis, purposes: Mapping[str, Purpose]) -> Purpose:
    if purpose not in purposes:
        raise ValueError(f"unknown purpose {purpose!r}; declared: {sorted(purposes)}")
    declared = purposes[purpose]
    if legal_basis not in declared.legal_bases:
        raise ValueError(
            f"purpose {purpose!r} does not accept legal basis {legal_basis.value!r}; "
            f"it accepts {[basis.value for basis in declared.legal_bases]}"
        )
    return declared


def _naive_utc(moment: datetime) -> datetime:
    """Warehouse timestamps are naive UTC: convert an aware datetime, keep a naive one."""
    if moment.tzinfo is None:
        return moment
    return moment.astimezone(UTC).replace(tzinfo=None)


def _stats(con: duckdb.DuckDBPyConnection, purposes: Mapping[str, Purpose]) -> AudienceStats:
    counts = dict(
        con.execute(f"SELECT coalesce(reason, ''), count(*) FROM {_SCRATCH} GROUP BY 1").fetchall()
    )
    return AudienceStats(
        members=counts.get("", 0),
        excluded={reason: counts.get(reason, 0) for reason in EXCLUSION_REASONS},
        unmatched_purposes=tuple(unmatched_purposes(con, purposes)),
    )


#: Customers whose keys the audience reads (temp table ``audience_key_scope``): the members,
#: and everyone whose consent records or privacy requests may decide a member's address.
_KEY_SCOPE_SQL = f"""
CREATE OR REPLACE TEMP TABLE {_KEY_SCOPE} AS
SELECT customer_id FROM {_SCOPE}
UNION ALL  -- the refresh reads it with IN: duplicates cost less than removing them
SELECT customer_id FROM activation.src_consents WHERE customer_id IS NOT NULL
UNION ALL
SELECT customer_id FROM activation.src_privacy_requests WHERE customer_id IS NOT NULL
"""


def build_audience(
    con: duckdb.DuckDBPyConnection,
    *,
    segment: str,
    purpose: str,
    legal_basis: LegalBasis,
    purposes: Mapping[str, Purpose],
    as_of: datetime,
    retention: SourceRetention | None = None,
    marketing: bool | None = None,
) -> AudienceStats:
    """Replace the audience and exclusions of ``segment`` from its current members.

    Reads ``activation.segment_members`` (rows of ``segment``) and the source tables
    ``customers``, ``consents``, ``events`` and ``privacy_requests``; refreshes the pseudonym
    cache ``activation.customer_keys`` for the segment's members
    (:func:`orchestrator.customer_keys.refresh_customer_keys`); makes the segment's rows of
    ``activation.audience_members`` and ``activation.audience_exclusions`` match, all in one
    transaction (rolled back on any error). ``computed_at`` is ``as_of``.

    Args:
        con: an open read-write connection to the warehouse (not inside a transaction).
        segment: segment name, as in ``segment_members.segment``.
        purpose: the segment's purpose; decides which consent records count.
        legal_basis: ``consent``, or ``legitimate_interest`` for soft opt-in.
        purposes: the declared purposes (``ProjectConfig.purposes``).
        as_of: the evaluation time; naive means UTC, aware is converted to UTC.
        retention: source retention durations (``ProjectConfig.retention``); None means the
            CNIL defaults of :class:`~orchestrator.config.SourceRetention` (3 years).
        marketing: whether the segment is a marketing one (withdrawals under every marketing
            purpose count, :mod:`orchestrator.consent`); None means the purpose's own
            ``marketing`` flag.

    Returns:
        Member count and exclusion counts per reason.

    Raises:
        ValueError: the purpose is not declared, or does not accept the legal basis (soft
            opt-in is for email marketing only: ``ad_targeting`` accepts ``consent`` alone).
    """
    legal_basis = LegalBasis(legal_basis)
    declared = _check_basis(purpose, legal_basis, purposes)
    as_of = _naive_utc(as_of)
    clock = retention_params(retention or SourceRetention(), as_of)
    create_activation_schema(con)
    soft_opt_in = legal_basis is LegalBasis.LEGITIMATE_INTEREST
    marketing = declared.marketing if marketing is None else marketing
    facts_params = {
        **purpose_params(counted_purposes(purpose, purposes, marketing=marketing)),
        "purpose": purpose,
        "as_of": as_of,
        "cutoff": as_of - timedelta(days=declared.consent_validity_days),
        # blank = only TRIM_CHARS (as trim(x, TRIM_CHARS) = '', which is 10x slower)
        "blank_pattern": f"[{TRIM_CHARS}]*",
        "prospect_cutoff": clock["prospect_cutoff"],
        "customer_cutoff": clock["customer_cutoff"],
    }
    classify_params = {"as_of": as_of, "soft_opt_in": soft_opt_in}

    register_sql_functions(con)  # outside the transaction: a rollback would forget them

    def build() -> AudienceStats:
        con.begin()
        try:
            drop_audience_primary_key(con)  # a warehouse created before 2026-12-02
            con.execute(
                f"CREATE OR REPLACE TEMP TABLE {_SCOPE} AS SELECT customer_id "
                "FROM activation.segment_members WHERE segment = ?",
                [segment],
            )
            con.execute(_KEY_SCOPE_SQL)
            refresh_customer_keys(con, within=_KEY_SCOPE)
            con.execute(f"DROP TABLE {_KEY_SCOPE}")
            con.execute(_facts_sql(soft_opt_in), facts_params)
            con.execute(_classify_sql(), classify_params)
            con.execute(f"DROP TABLE {_FACTS}")
            _replace_segment_rows(con, segment, as_of)
            stats = _stats(con, purposes)
            con.execute(f"DROP TABLE {_SCRATCH}")
            con.execute(f"DROP TABLE {_SCOPE}")
            con.commit()
        except BaseException:
            con.rollback()
            raise
        return stats

    return with_memory_growth(con, build, what=f"audience {segment}")


def build_segment_audience(
    con: duckdb.DuckDBPyConnection, spec: SegmentSpec, project: ProjectConfig, as_of: datetime
) -> AudienceStats:
    """:func:`build_audience` for one segment with the project's purposes and source retention,
    marketing when its purpose or one of its destinations' purposes is
    (:func:`orchestrator.consent.is_marketing_segment`): the one call the ``audience/<sid>``
    asset, the CLI preview and the benchmark share, so they cannot drift apart. Raises what
    :func:`build_audience` raises, and :class:`orchestrator.model.views.SourceModelError`.
    The canonical views are refreshed from the project's source model first
    (:func:`orchestrator.model.views.refresh_source_views`, a no-op when unchanged)."""
    refresh_source_views(con, project.source, project.purposes)
    served = [
        project.destinations[entry.destination].purposes
        for entry in spec.destinations
        if entry.destination in project.destinations
    ]
    return build_audience(
        con,
        segment=spec.id,
        purpose=spec.purpose,
        legal_basis=spec.legal_basis,
        purposes=project.purposes,
        as_of=as_of,
        retention=project.retention,
        marketing=is_marketing_segment(spec.purpose, served, project.purposes),
    )
