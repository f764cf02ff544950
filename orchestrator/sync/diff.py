"""The diff of a segment's audience against what a destination acknowledged, in SQL.

:func:`compute_diff` classifies every subject of the target audience and of ``sync_state`` for
one (segment, destination) in a temporary table, then exports the rows to send to Parquet files
(ordered by ``subject_key``, so batches are deterministic) and closes nothing: the caller owns
the short-lived connection and sends from the files once it is closed.

Target audience, one row per subject (``activation.audience_members`` of the segment, joined to
``customers`` for merge fields):

``subject_key`` VARCHAR, ``send_key`` VARCHAR (what the platform matches on: ``subject_key``,
``google_key`` for an ad destination with Google normalization, the base-normalized ``email``
for an email destination), ``f0 .. fN`` VARCHAR (the mapped ``customers`` columns as text, NULL
as ''), ``fields_hash`` VARCHAR (sha256 hex of the JSON array ``[send_key, name0, f0, ...]``,
names sorted, computed in SQL).

Actions (column ``action`` of the classification):

``add``: in the target, not held in state (or held as :data:`PENDING_HASH`, i.e. an earlier send
of unknown outcome). ``update``: held with another ``fields_hash`` (modes ``upsert`` and
``mirror``). ``remove``: held, not in the target, and either the mode is ``mirror`` (we remove
only what this tool added, which is exactly what ``sync_state`` holds) or, in every mode, the
person acted against the processing: an erasure request (GDPR Art. 17), an objection (Art. 21)
or a withdrawn consent for the purpose (Art. 7(3)). ``unchanged``: held with the same hash
(and, in mode ``add_only``, held with another hash). ``kept``: held, not in the target, mode not
``mirror``, and no such act of the person. ``suppressed``: would be added or updated but the
destination holds the subject as unsubscribed or forgotten (``destination_suppressions``).
``skipped_rejected``: would be added or updated but the destination refused this very row (same
``fields_hash``) for good (``sync_rejections.permanent``); it is retried once the row changes.
``awaiting``: pending, and a request the platform is still processing already carries this very
operation (``activation.destination_requests``: an add with the same ``fields_hash``, or a
remove); not sent again, its status is read first thing in the next run. ``rekey`` (ad
destinations): in the target and held under another identifier set (the state row's
``coalesce(destination_ref, subject_key)``, acknowledged or pending: an add of unknown outcome
may have landed) or with an old set retired but not yet removed (``sync_retired_keys``); every
such old set is removed (reason ``rekey``, ``sync_rekey_removes``) and the new set added in the
same run. A pending row whose old set is still in a request the platform is processing is
``awaiting`` instead, so the remove cannot overtake that request. Retired sets are removed
whatever the subject's action (after the back-off of a refused remove, unless the person
acted against the processing: then at once).

A subject is in exactly one action, so no key is both added and removed in a run.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

import duckdb

from destinations.base import RemoveReason
from destinations.identifiers import SEPARATOR
from orchestrator.consent import CONSENT_ORDER_SQL, purpose_map_sql, purpose_params
from orchestrator.consent_signals import Signal, grants_table_sql, signal_column_sql
from orchestrator.customer_keys import refresh_customer_keys
from orchestrator.phone_keys import refresh_phone_keys
from orchestrator.pseudonymize import normalized_email_sql, subject_key_sql
from orchestrator.sync.rejections import deferred_removes_sql
from orchestrator.warehouse.export import export_parquet
from orchestrator.warehouse.memory import with_memory_growth

#: ``sync_state.fields_hash`` of a row whose last send has an unknown outcome (sent, but the
#: answer was never journaled): the destination may or may not hold it. The next diff re-adds
#: it when still in the audience and removes it (mirror) when not; both calls are idempotent.
PENDING_HASH = "pending"

MODES = ("mirror", "upsert", "add_only")
KINDS = ("ad", "email")
NORMALIZATIONS = ("base", "google")
SEND_ACTIONS = ("remove", "add", "update")

#: Remove reasons in sending order: the most urgent legal reason first.
REMOVE_REASON_ORDER = (
    RemoveReason.ERASURE,
    RemoveReason.OBJECTION,
    RemoveReason.CONSENT_WITHDRAWN,
    RemoveReason.LEFT_SEGMENT,
)

#: ``audience_exclusions.reason`` values that make a remove ``CONSENT_WITHDRAWN``. Only an
#: explicit withdrawal: an expired consent is not the person's wish, so it is a
#: ``LEFT_SEGMENT`` remove (email: archived, not unsubscribed), letting a renewed consent bring
#: the person back; an unsubscribe would be a suppression we could never lift.
WITHDRAWN_EXCLUSIONS = ("withdrawn",)

_MERGE_FIELD_PATTERN = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,49}$")
_TRAIT_COLUMN = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
#: Columns of ``activation.src_customers`` that are never a merge field.
_NOT_MERGE_COLUMNS = frozenset({"email", "collected_at", "last_own_action_at", "own_action_times"})


@dataclass(frozen=True)
class DiffParams:
    """What to diff: plain values, so the Dagster layer adapts its specs to them.

    ``fields``: merge field name -> ``customers`` column (email destinations only).
    ``mode``: ``mirror`` | ``upsert`` | ``add_only``; ``kind``: ``ad`` | ``email``;
    ``normalization``: ``base`` | ``google`` (ad destinations). ``purpose``: the segment's
    purpose; when given, a withdrawn latest consent for it removes the subject in every mode,
    even after the subject left the segment; ``other_purposes``: the other purposes whose
    withdrawals do the same (the other marketing purposes of a marketing segment,
    :func:`orchestrator.consent.segment_counted_purposes`). Records are read as
    :mod:`orchestrator.consent` says: a withdrawal wins a tie, and counts under a spelling
    variant of the purpose name. ``retention_days`` and ``as_of``: in modes other
    than mirror, a member who left the audience (``activation.departures.left_at``) more than
    ``retention_days`` days before ``as_of`` is removed (``left_segment``).
    ``signals``: consent signals sent with an ad upload, name -> (purpose whose consent grants
    it, that purpose's validity in days), see :mod:`orchestrator.consent_signals`; they are
    row fields (a change of consent is an update). ``phone_platform``: ``google`` | ``meta``
    to send the customer's phone (column ``phone_column``, read in the country of
    ``region_column``) as a second identifier hashed by that platform's rules
    (:mod:`orchestrator.phone`) when ``customers`` has that column; the send key is then
    ``<email hash>|<phone hash>`` (:mod:`destinations.identifiers`), email alone when the phone
    is missing or invalid. ``region_column`` is the customers' country trait: the phone's
    default region, and whether consent ``signals`` are sent to the member (not to a known
    country outside the EEA, UK and Switzerland, :mod:`orchestrator.consent_signals`).
    """

    segment: str
    destination: str
    mode: str
    kind: str
    normalization: str = "base"
    fields: Mapping[str, str] = field(default_factory=dict)
    purpose: str | None = None
    retention_days: int | None = None
    as_of: datetime | None = None
    other_purposes: tuple[str, ...] = ()
    signals: Mapping[str, tuple[str, int]] = field(default_factory=dict)
    phone_platform: str | None = None
    phone_column: str = "phone"
    region_column: str = "country"

    def __post_init__(self) -> None:
        _check_params(self)

    @property
    def field_names(self) -> list[str]:
        """Field names in canonical order: merge fields (sorted), then consent signals
        (sorted); ``f0`` is the first, and so on."""
        return sorted(self.fields) + sorted(self.signals)


def _check_params(p: DiffParams) -> None:
    """Raise ValueError for values the SQL below cannot take safely."""
    if p.mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {p.mode!r}")
    if p.kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {p.kind!r}")
    if p.normalization not in NORMALIZATIONS:
        raise ValueError(f"normalization must be one of {NORMALIZATIONS}")
    if p.kind == "ad" and p.fields:
        raise ValueError("ad destinations take hashed identifiers only, no merge fields")
    if p.kind != "ad" and (p.signals or p.phone_platform):
        raise ValueError("consent signals and phone identifiers are for ad destinations")
    if p.phone_platform not in (None, "google", "meta"):
        raise ValueError(f"phone_platform must be google or meta, got {p.phone_platform!r}")
    for name in (*p.signals, p.phone_column, p.region_column):
        if not _MERGE_FIELD_PATTERN.match(name):
            raise ValueError(f"{name!r} must match {_MERGE_FIELD_PATTERN.pattern}")
    for name, column in p.fields.items():
        if not _MERGE_FIELD_PATTERN.match(name):
            raise ValueError(f"merge field name {name!r} must match {_MERGE_FIELD_PATTERN.pattern}")
        # the catalog (segment validation) decides which traits exist; here only the shape
        # that makes the column safe to quote, and never the raw address
        if not _TRAIT_COLUMN.match(column) or column in _NOT_MERGE_COLUMNS:
            raise ValueError(f"merge field {name!r}: {column!r} is not a customer trait")


@dataclass(frozen=True)
class DiffPlan:
    """The diff's counts and the Parquet files to send.

    ``counts``: action -> number of subjects (every action of the module docstring, 0 when
    none). ``removes_by_reason``: RemoveReason value -> count. ``files``: (action, reason or
    None) -> Parquet path, one per non-empty send group, in sending order (removes by
    :data:`REMOVE_REASON_ORDER`, then adds, then updates). Each file has columns
    ``subject_key, send_key, destination_ref, fields_hash, f0..fN`` ordered by subject_key.
    ``field_names``: the merge names of ``f0..fN``.
    """

    counts: dict[str, int]
    removes_by_reason: dict[str, int]
    files: list[tuple[str, str | None, Path]]
    field_names: list[str]


def _send_key_sql(p: DiffParams) -> str:
    if p.kind == "email":
        return "am.email"
    return "am.google_key" if p.normalization == "google" else "am.subject_key"


def _phone_send_key_sql(p: DiffParams) -> str:
    """The ad send key with the phone hash appended when the customer has a valid phone (the
    hash comes from ``activation.customer_phone_keys``, :mod:`orchestrator.phone_keys`)."""
    base = _send_key_sql(p)
    # || with a NULL phone hash (missing or invalid phone) is NULL: the email key alone
    return f"coalesce({base} || '{SEPARATOR}' || pk.{p.phone_platform}_hash, {base})"


def _target_sql(
    p: DiffParams, use_phone: bool = False, use_country: bool = False
) -> tuple[str, list[object]]:
    """SELECT of the target audience (see module docstring) and its parameters. Members on
    ``activation.suppression_list`` (by subject key or Google key) are left out whenever they
    got there: a request recorded after the audience step must not be sent. ``use_phone``:
    append the phone hash to the send key (the caller checked the column exists);
    ``use_country``: consent signals are not sent to members of a known country outside the
    EEA, UK and Switzerland (``region_column``, checked to exist; without it every member is
    sent them, :mod:`orchestrator.consent_signals`)."""
    names = p.field_names
    merge = sorted(p.fields)
    cols = "".join(
        f", coalesce(CAST(c.\"{p.fields[n]}\" AS VARCHAR), '') AS f{i}" for i, n in enumerate(merge)
    )
    signal_params: list[object] = []
    for j, name in enumerate(sorted(p.signals), start=len(merge)):
        purpose, days = p.signals[name]
        country = f'cty."{p.region_column}"' if use_country else None
        value, params = signal_column_sql(Signal(name, purpose, days), p.purpose, country)
        cols += f", {value} AS f{j}"
        signal_params += params
    join = "LEFT JOIN activation.src_customers c ON c.customer_id = am.customer_id" if merge else ""
    if use_country and p.signals:
        join += " LEFT JOIN activation.src_customers cty ON cty.customer_id = am.customer_id"
    if use_phone:
        join += " LEFT JOIN activation.customer_phone_keys pk ON pk.customer_id = am.customer_id"
    send_key = _phone_send_key_sql(p) if use_phone else _send_key_sql(p)
    # typed: a server cannot infer a parameter's type inside an array constructor
    hash_items = "".join(f", CAST(? AS VARCHAR), f{i}" for i in range(len(names)))
    sql = f"""
        SELECT *, sha256(CAST(to_json([send_key{hash_items}]) AS VARCHAR)) AS fields_hash
        FROM (
            SELECT am.subject_key, {send_key} AS send_key{cols}
            FROM activation.audience_members am {join}
            WHERE am.segment = ?
              AND am.subject_key NOT IN (SELECT subject_key FROM activation.suppression_list)
              AND am.google_key NOT IN (
                  SELECT google_key FROM activation.suppression_list
                  WHERE google_key IS NOT NULL)
        )
    """
    return sql, [*names, *signal_params, p.segment]


def _target_table_sql(
    p: DiffParams, use_phone: bool = False, use_country: bool = False
) -> tuple[str, list[object]]:
    """Temp table ``sync_target`` (subject_key, send_key, f0..fN, fields_hash) from
    :func:`_target_sql`. A statement of its own: inside the diff's one statement, the
    ``customers`` join for the merge fields, the full join with the state and the target rows
    were all held at once, and at 2M customers (535k members) DuckDB could not stay within
    250MB (``failed to pin block``: the limit had to double); apart, each step fits."""
    target, params = _target_sql(p, use_phone, use_country)
    return f"CREATE OR REPLACE TEMP TABLE sync_target AS {target}", params


def _has_customer_column(con: duckdb.DuckDBPyConnection, column: str) -> bool:
    (found,) = con.execute(
        "SELECT count(*) FROM information_schema.columns WHERE table_schema = 'activation'"
        " AND table_name = 'src_customers' AND column_name = ?",
        [column],
    ).fetchone()
    return bool(found)


def _prepare_identifiers(con: duckdb.DuckDBPyConnection, p: DiffParams) -> bool:
    """Build the consent grants table and register the phone functions when needed; returns
    whether the phone is sent (a phone platform is set and ``customers`` has the column)."""
    grants = grants_table_sql(
        [Signal(n, pur, d) for n, (pur, d) in p.signals.items()], p.purpose, p.as_of
    )
    if grants is not None:
        con.execute(*grants)
    if p.phone_platform is None or not _has_customer_column(con, p.phone_column):
        return False
    refresh_phone_keys(
        con, segment=p.segment, phone_column=p.phone_column, region_column=p.region_column
    )
    return True


def _classify_sql(p: DiffParams) -> tuple[str, list[object]]:
    fcols = "".join(f", t.f{i}" for i in range(len(p.field_names)))
    sql = f"""
        CREATE OR REPLACE TEMP TABLE sync_diff AS
        WITH target AS (SELECT * FROM sync_target),
        state AS (
            SELECT subject_key, destination_ref, fields_hash
            FROM activation.sync_state WHERE segment = ? AND destination = ?
        ),
        suppressed AS (
            SELECT DISTINCT subject_key FROM activation.destination_suppressions
            WHERE destination = ?
        ),
        refused AS (
            SELECT DISTINCT subject_key, fields_hash FROM activation.sync_rejections
            WHERE segment = ? AND destination = ? AND permanent
        ),
        awaiting AS (
            SELECT subject_key, max(fields_hash) FILTER (WHERE op <> 'remove') AS add_hash,
                   bool_or(op = 'remove') AS removing
            FROM activation.destination_requests WHERE segment = ? AND destination = ?
            GROUP BY subject_key
        ),
        retired AS (
            SELECT DISTINCT r.subject_key FROM sync_retired r JOIN sync_target t USING (subject_key)
            WHERE r.identifiers <> t.send_key
        ),
        joined AS (
            SELECT coalesce(t.subject_key, s.subject_key) AS subject_key,
                   t.send_key, s.destination_ref,
                   coalesce(t.fields_hash, s.fields_hash) AS fields_hash,
                   t.subject_key IS NOT NULL AS in_target,
                   s.subject_key IS NOT NULL AS in_state,
                   s.fields_hash = ? AS pending,
                   s.fields_hash IS DISTINCT FROM t.fields_hash AS changed,
                   sp.subject_key IS NOT NULL AS is_suppressed,
                   ? = 'ad' AND s.subject_key IS NOT NULL
                       AND t.send_key <> coalesce(s.destination_ref, s.subject_key) AS key_changed,
                   rt.subject_key IS NOT NULL AS has_retired,
                   rf.subject_key IS NOT NULL AS is_refused,
                   ml.subject_key IS NOT NULL AS must_leave,
                   coalesce(dp.left_at <= ?, false) AS retention_over,
                   coalesce(aw.add_hash = t.fields_hash, false) AS awaiting_add,
                   aw.add_hash IS NOT NULL AS awaiting_any_add,
                   coalesce(aw.removing, false) AS awaiting_remove
                   {fcols}
            FROM target t
            FULL OUTER JOIN state s ON s.subject_key = t.subject_key
            LEFT JOIN suppressed sp ON sp.subject_key = coalesce(t.subject_key, s.subject_key)
            LEFT JOIN sync_must_leave ml ON ml.subject_key = s.subject_key
            LEFT JOIN activation.departures dp ON dp.segment = ? AND dp.destination = ?
                AND dp.subject_key = s.subject_key
            LEFT JOIN refused rf
                ON rf.subject_key = t.subject_key AND rf.fields_hash = t.fields_hash
            LEFT JOIN awaiting aw ON aw.subject_key = coalesce(t.subject_key, s.subject_key)
            LEFT JOIN retired rt ON rt.subject_key = t.subject_key
        ),
        wanted AS (
            SELECT *, CASE
                WHEN in_target AND pending
                    AND (awaiting_add OR (key_changed AND awaiting_any_add)) THEN 'awaiting'
                WHEN in_target AND (key_changed OR has_retired) THEN 'rekey'
                WHEN in_target AND (NOT in_state OR pending) THEN 'add'
                WHEN in_target AND changed AND ? <> 'add_only' THEN 'update'
                WHEN in_target THEN 'unchanged'
                WHEN pending AND awaiting_remove THEN 'awaiting'
                WHEN ? = 'mirror' OR must_leave OR retention_over THEN 'remove'
                ELSE 'kept'
            END AS wanted
            FROM joined
        )
        SELECT subject_key, send_key, destination_ref, fields_hash, in_target, in_state,
               pending, changed, is_suppressed, key_changed, has_retired, is_refused, must_leave,
               retention_over, awaiting_add, awaiting_remove{fcols.replace("t.", "")}, CASE
            WHEN wanted IN ('add', 'update', 'rekey') AND is_suppressed THEN 'suppressed'
            WHEN wanted IN ('add', 'update') AND is_refused THEN 'skipped_rejected'
            ELSE wanted
        END AS action
        FROM wanted
    """
    params = [
        p.segment,
        p.destination,
        p.destination,
        p.segment,
        p.destination,
        p.segment,
        p.destination,
        PENDING_HASH,
        p.kind,
        _retention_cutoff(p),
        p.segment,
        p.destination,
        p.mode,
        p.mode,
    ]
    return sql, params


def _retention_cutoff(p: DiffParams) -> datetime | None:
    """Departures at or before this time are past the segment's retention (None: no limit)."""
    if p.retention_days is None or p.as_of is None:
        return None
    return p.as_of - timedelta(days=p.retention_days)


def _latest_withdrawn_sql() -> str:
    """Customer ids whose latest consent record for the purpose (``$purpose``) is not a grant,
    or whose latest record for another counted purpose is a withdrawal not older than their
    latest record for the purpose (the audience's marketing rule, :mod:`orchestrator.consent`).
    Counted purposes and names: ``$purposes``, ``$purpose_keys``
    (:func:`orchestrator.consent.purpose_map_sql`); order
    :data:`~orchestrator.consent.CONSENT_ORDER_SQL` (a withdrawal wins a tie). Per customer
    row: a withdrawal standing on any row of an address removes it from a destination it no
    longer targets (stricter than the audience, which lets a later grant on another row of
    the address keep it: that address is then in the target anyway)."""
    return f"""
        SELECT DISTINCT l.customer_id, 'withdrawn' AS act
        FROM (
            -- only customers with some non-grant record can have one as their latest: the
            -- window then sorts their records alone (a fifth of them in the benchmark)
            SELECT c.customer_id, pm.purpose, c.status, c.recorded_at
            FROM activation.src_consents AS c JOIN ({purpose_map_sql()}) AS pm ON pm.raw = c.purpose
            WHERE (pm.exact OR c.status <> 'granted') AND c.customer_id IN (
                SELECT customer_id FROM activation.src_consents WHERE status <> 'granted')
            QUALIFY row_number() OVER (
                PARTITION BY c.customer_id, pm.purpose ORDER BY {CONSENT_ORDER_SQL}) = 1
        ) AS l
        LEFT JOIN (
            SELECT customer_id, recorded_at FROM activation.src_consents
            WHERE purpose = $purpose AND status = 'granted'
        ) AS g ON g.customer_id = l.customer_id AND g.recorded_at > l.recorded_at
        WHERE l.status <> 'granted' AND (l.purpose = $purpose OR g.customer_id IS NULL)
    """


def _person_acts_sql(p: DiffParams) -> tuple[str, dict[str, object]]:
    """Temp table ``sync_person_acts(customer_id, act)``: customers who asked for erasure or
    objected (a privacy request, any date), whose exclusion from the segment is a withdrawal,
    or (with a purpose) whose latest consent record for it or for one of ``other_purposes``
    is not a grant; ``act`` is ``erasure``, ``objection`` or ``withdrawn``."""
    by_log = f"UNION ALL {_latest_withdrawn_sql()}" if p.purpose else ""
    sql = f"""
        CREATE OR REPLACE TEMP TABLE sync_person_acts AS
        SELECT customer_id, request_type AS act FROM activation.src_privacy_requests
        WHERE request_type IN ('erasure', 'objection') AND customer_id IS NOT NULL
        UNION ALL
        SELECT customer_id, 'withdrawn' AS act FROM activation.audience_exclusions
        WHERE segment = $segment AND list_contains($withdrawn, reason)
        {by_log}
    """
    params: dict[str, object] = {"segment": p.segment, "withdrawn": list(WITHDRAWN_EXCLUSIONS)}
    if p.purpose:
        params |= purpose_params([p.purpose, *p.other_purposes]) | {"purpose": p.purpose}
    return sql, params


def _must_leave_sql(p: DiffParams) -> tuple[str, list[object]]:
    """Temp table ``sync_must_leave(subject_key, reason)``: subjects held for this pair whom the
    person's own act removes in every mode (erasure > objection > withdrawn consent).

    The suppression list counts as the person's act whenever it was written: an objection
    recorded after the audience was computed still keeps the person out of this sync (the
    target leaves them out too, see :func:`_target_sql`).
    Acts known by customer id (``sync_person_acts``) get the customer's keys from the pseudonym
    cache (:mod:`orchestrator.customer_keys`, refreshed for them first), the current one and
    those of earlier addresses a destination still holds; a privacy request may also name a
    subject key directly.
    """
    sql = """
        CREATE OR REPLACE TEMP TABLE sync_must_leave AS
        WITH held AS (
            SELECT subject_key FROM activation.sync_state WHERE segment = ? AND destination = ?
            UNION
            SELECT subject_key FROM activation.sync_retired_keys
            WHERE segment = ? AND destination = ?
        ),
        key_acts AS (
            SELECT k.subject_key, a.act
            FROM sync_person_acts a JOIN (
                SELECT customer_id, subject_key FROM activation.customer_keys
                UNION ALL
                SELECT customer_id, subject_key FROM activation.customer_key_history
            ) k USING (customer_id)
            UNION ALL
            SELECT subject_key, request_type AS act FROM activation.src_privacy_requests
            WHERE request_type IN ('erasure', 'objection') AND subject_key IS NOT NULL
            UNION ALL
            SELECT subject_key, request_type AS act FROM activation.suppression_list
        ),
        acts AS (
            SELECT subject_key, bool_or(act = 'erasure') AS erased,
                   bool_or(act = 'objection') AS objected
            FROM key_acts GROUP BY subject_key
        )
        SELECT h.subject_key, CASE
            WHEN a.erased THEN ? WHEN a.objected THEN ? ELSE ?
        END AS reason
        FROM held h JOIN acts a USING (subject_key)
    """
    params: list[object] = [
        p.segment,
        p.destination,
        p.segment,
        p.destination,
        RemoveReason.ERASURE.value,
        RemoveReason.OBJECTION.value,
        RemoveReason.CONSENT_WITHDRAWN.value,
    ]
    return sql, params


def _reasons_sql() -> tuple[str, list[object]]:
    """Temp table ``sync_remove_reasons(subject_key, reason)``: the reason of each remove (the
    old identifier sets of re-keyed subjects are in ``sync_rekey_removes``)."""
    sql = """
        CREATE OR REPLACE TEMP TABLE sync_remove_reasons AS
        SELECT d.subject_key, coalesce(ml.reason, ?) AS reason
        FROM sync_diff d
        LEFT JOIN sync_must_leave ml ON ml.subject_key = d.subject_key
        WHERE d.action = 'remove'
    """
    return sql, [RemoveReason.LEFT_SEGMENT.value]


def _retired_sql(p: DiffParams) -> tuple[str, list[object]]:
    """Temp table ``sync_retired(subject_key, identifiers)``: the old identifier sets the
    destination may still hold for a subject (``activation.sync_retired_keys``, written by
    :mod:`orchestrator.sync.state`), to remove this run. A set whose remove was refused waits
    for its back-off (:mod:`orchestrator.sync.rejections`), unless the person acted against
    the processing (``sync_must_leave``: erasure, objection, withdrawal), which removes every
    set they may be held under at once."""
    sql = """
        CREATE OR REPLACE TEMP TABLE sync_retired AS
        SELECT k.subject_key, k.identifiers
        FROM activation.sync_retired_keys k
        WHERE k.segment = ? AND k.destination = ? AND (
            k.subject_key IN (SELECT subject_key FROM sync_must_leave)
            OR k.subject_key NOT IN (
                SELECT subject_key FROM activation.sync_rejections
                WHERE segment = ? AND destination = ? AND operation = 'remove'
                  AND remove_reason = ? AND retry_at > ?
            )
        )
    """
    params: list[object] = [
        p.segment,
        p.destination,
        p.segment,
        p.destination,
        RemoveReason.REKEY.value,
        p.as_of or datetime.now(),
    ]
    return sql, params


def _rekey_removes_sql() -> tuple[str, list[object]]:
    """Temp table ``sync_rekey_removes(subject_key, identifiers, fields_hash)``: every
    identifier set to remove with reason ``rekey``, once each: the set held in state of a
    re-keyed subject (acknowledged or pending: an add of unknown outcome may have landed) when
    it differs from the set now sent, and the subject's retired sets (``sync_retired``) but
    the one now sent. Removing a set a platform does not hold is harmless (Meta, Google and
    Mailchimp answer it as done or not found)."""
    sql = """
        CREATE OR REPLACE TEMP TABLE sync_rekey_removes AS
        SELECT subject_key, identifiers, max(fields_hash) AS fields_hash FROM (
            SELECT subject_key, coalesce(destination_ref, subject_key) AS identifiers,
                   ? AS fields_hash
            FROM sync_diff WHERE action = 'rekey' AND key_changed
            UNION ALL
            SELECT r.subject_key, r.identifiers, ? AS fields_hash
            FROM sync_retired r LEFT JOIN sync_diff d USING (subject_key)
            WHERE r.identifiers IS DISTINCT FROM d.send_key
        )
        GROUP BY subject_key, identifiers
    """
    return sql, [PENDING_HASH, PENDING_HASH]


def _defer_removes(con: duckdb.DuckDBPyConnection, p: DiffParams) -> None:
    """Removes refused before for the same reason wait for their back-off
    (:mod:`orchestrator.sync.rejections`): ``remove_deferred``, not sent this run."""
    con.execute(deferred_removes_sql(), [p.segment, p.destination, p.as_of or datetime.now()])
    con.execute(
        "DELETE FROM sync_remove_reasons WHERE subject_key IN "
        "(SELECT subject_key FROM sync_diff WHERE action = 'remove_deferred')"
    )


def _remove_send_key_sql(p: DiffParams) -> str:
    """What a remove sends as ``send_key``.

    Ad destinations: the key sent when added (kept in ``destination_ref`` when it differs from
    subject_key, i.e. Google keys). Email destinations: the address, looked up in any segment's
    audience, else in ``customers`` by subject key, else '' (the member left the warehouse; the
    client must remove by ``destination_ref``); see :func:`_remove_addresses_sql`.
    """
    if p.kind == "ad":
        return "coalesce(d.destination_ref, d.subject_key)"
    return "coalesce(addr.email, '')"


def _remove_joins_sql(p: DiffParams) -> str:
    if p.kind == "ad":
        return ""
    return "LEFT JOIN sync_remove_addresses addr ON addr.subject_key = d.subject_key"


def _remove_addresses_sql() -> str:
    """Temp table ``sync_remove_addresses(subject_key, email)``: the address of each removed
    subject, from any segment's ``audience_members`` (min email), else from the pseudonym cache
    (a former member keeps their row while their address is unchanged), else from
    ``customers`` (min normalized email of the customers whose subject key it is); absent when
    none has it.

    Built once for all remove groups. ``customers`` is hashed only when some removed subject is
    found in neither (hashing every customer once per remove group cost 2.2 of the 6.4 CPU s
    of an incremental 1M Mailchimp diff, bench/README.md).
    """
    return f"""
        CREATE OR REPLACE TEMP TABLE sync_remove_addresses AS
        WITH removed AS (SELECT DISTINCT subject_key FROM sync_remove_reasons),
        known AS (
            SELECT am.subject_key, min(am.email) AS email
            FROM activation.audience_members am
            WHERE am.subject_key IN (SELECT subject_key FROM removed)
            GROUP BY am.subject_key
        ),
        cached AS (
            SELECT subject_key, min(email) AS email
            FROM activation.customer_keys
            WHERE subject_key IN (SELECT subject_key FROM removed)
              AND subject_key NOT IN (SELECT subject_key FROM known) AND email IS NOT NULL
            GROUP BY subject_key
        ),
        missing AS (
            SELECT subject_key FROM removed
            WHERE subject_key NOT IN (SELECT subject_key FROM known)
              AND subject_key NOT IN (SELECT subject_key FROM cached)
        ),
        crm AS (
            SELECT subject_key, min(email) AS email FROM (
                SELECT {subject_key_sql("email")} AS subject_key,
                       {normalized_email_sql("email")} AS email
                FROM activation.src_customers
                WHERE email IS NOT NULL AND EXISTS (SELECT 1 FROM missing)
            ) AS c
            WHERE c.subject_key IN (SELECT subject_key FROM missing)
            GROUP BY subject_key
        )
        SELECT subject_key, email FROM known
        UNION ALL
        SELECT subject_key, email FROM cached
        UNION ALL
        SELECT subject_key, email FROM crm
    """


def _export_sql(p: DiffParams, action: str, reason: str | None = None) -> str:
    fcols = "".join(f", d.f{i}" for i in range(len(p.field_names)))
    if action == "remove" and reason == RemoveReason.REKEY.value:
        blank = "".join(f", coalesce(d.f{i}, '') AS f{i}" for i in range(len(p.field_names)))
        return f"""
            SELECT k.subject_key, k.identifiers AS send_key, k.identifiers AS destination_ref,
                   k.fields_hash{blank}
            FROM sync_rekey_removes k LEFT JOIN sync_diff d USING (subject_key)
            WHERE CAST(? AS VARCHAR) IS NOT NULL
            ORDER BY k.subject_key, k.identifiers
        """
    if action == "remove":
        return f"""
            SELECT d.subject_key, {_remove_send_key_sql(p)} AS send_key,
                   d.destination_ref, d.fields_hash{fcols}
            FROM sync_diff d
            JOIN sync_remove_reasons r ON r.subject_key = d.subject_key
            {_remove_joins_sql(p)}
            WHERE d.action = 'remove' AND r.reason = ?
            ORDER BY d.subject_key
        """
    # a re-keyed subject is added again in its new form, with that form as its ref
    return f"""
        SELECT d.subject_key, d.send_key,
               CASE WHEN d.action = 'rekey' THEN d.send_key ELSE d.destination_ref END
                   AS destination_ref,
               d.fields_hash{fcols}
        FROM sync_diff d
        WHERE d.action = ? OR (? = 'add' AND d.action = 'rekey')
        ORDER BY d.subject_key
    """


def _counts(con: duckdb.DuckDBPyConnection) -> dict[str, int]:
    counts = dict.fromkeys(
        (
            "add",
            "update",
            "remove",
            "unchanged",
            "kept",
            "suppressed",
            "skipped_rejected",
            "remove_deferred",
            "rekey",
            "awaiting",
        ),
        0,
    )
    for action, n in con.execute("SELECT action, count(*) FROM sync_diff GROUP BY 1").fetchall():
        counts[action] = n
    return counts


def _removes_by_reason(con: duckdb.DuckDBPyConnection) -> dict[str, int]:
    rows = con.execute("SELECT reason, count(*) FROM sync_remove_reasons GROUP BY 1").fetchall()
    found = dict(rows)
    counts = {r.value: found.get(r.value, 0) for r in REMOVE_REASON_ORDER}
    (rekeys,) = con.execute("SELECT count(*) FROM sync_rekey_removes").fetchone()
    if rekeys:
        counts[RemoveReason.REKEY.value] = rekeys
    return counts


def compute_diff(con: duckdb.DuckDBPyConnection, p: DiffParams, scratch_dir: Path) -> DiffPlan:
    """Classify the subjects and export the send groups to Parquet files in ``scratch_dir``.

    Runs on the caller's connection (read-write: it creates temporary tables and refreshes the
    pseudonym cache for the customers whose acts may remove a held subject,
    :func:`orchestrator.customer_keys.refresh_customer_keys`) and touches no
    network. ``scratch_dir`` must exist; files are named ``<action>[_<reason>].parquet``.
    When DuckDB runs out of memory the diff is computed again with a larger limit
    (:func:`orchestrator.warehouse.memory.with_memory_growth`). Returns the :class:`DiffPlan`.

    Raises:
        duckdb.Error: a source or activation table is missing or malformed.
    """
    return with_memory_growth(
        con, lambda: _compute(con, p, scratch_dir), what=f"diff {p.segment} -> {p.destination}"
    )


def _compute(con: duckdb.DuckDBPyConnection, p: DiffParams, scratch_dir: Path) -> DiffPlan:
    con.execute(*_person_acts_sql(p))
    refresh_customer_keys(con, within="sync_person_acts")
    use_phone = _prepare_identifiers(con, p)
    use_country = bool(p.signals) and _has_customer_column(con, p.region_column)
    steps = (
        _must_leave_sql(p),
        _target_table_sql(p, use_phone, use_country),
        _retired_sql(p),
        _classify_sql(p),
        _reasons_sql(),
        _rekey_removes_sql(),
    )
    for sql, params in steps:
        con.execute(sql, params)
    _defer_removes(con, p)
    con.execute("DROP TABLE sync_target")
    counts = _counts(con)
    by_reason = _removes_by_reason(con)
    if p.kind != "ad" and counts["remove"]:
        con.execute(_remove_addresses_sql())
    files: list[tuple[str, str | None, Path]] = []
    groups: list[tuple[str, str | None, int]] = [
        ("remove", r.value, by_reason[r.value]) for r in REMOVE_REASON_ORDER
    ]
    groups.append(("remove", RemoveReason.REKEY.value, by_reason.get(RemoveReason.REKEY.value, 0)))
    groups += [
        ("add", None, counts["add"] + counts["rekey"]),
        ("update", None, counts["update"]),
    ]
    for action, reason, n in groups:
        if n == 0:
            continue
        path = Path(scratch_dir) / (f"{action}_{reason}.parquet" if reason else f"{action}.parquet")
        params = [reason] if reason else [action, action]
        export_parquet(con, _export_sql(p, action, reason), params, path)
        files.append((action, reason, path))
    return DiffPlan(counts, by_reason, files, p.field_names)


__all__ = [
    "MODES",
    "PENDING_HASH",
    "REMOVE_REASON_ORDER",
    "WITHDRAWN_EXCLUSIONS",
    "DiffParams",
    "DiffPlan",
    "compute_diff",
]
