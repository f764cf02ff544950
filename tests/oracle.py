"""An independent plain-Python oracle for segments and audiences, for the end-to-end tests.

It reads the company's own tables named by the source model with ``fetchall`` (mapping columns
and values in Python, never through the product's views) and evaluates, row by row in Python:

1. the segment: the condition tree of a :class:`~orchestrator.segments.spec.SegmentSpec`
   (traits; events with ``within_days`` / ``between`` / ``at_least`` distinct orders /
   ``total_value`` / ``where``; ``all`` / ``any`` / ``not``), never calling the product's SQL
   compiler. A ``sql:`` segment is the data engineer's own SELECT: it runs as written in DuckDB;
2. the audience: the consent and legal-basis rules of ``orchestrator/audience.py`` (privacy
   requests and the suppression list, source retention, email validity, consent per address:
   the latest record across every customer row sharing the subject key, a withdrawal before a
   grant at equal times, purpose-name variants for withdrawals only, withdrawals under any
   marketing purpose for a marketing segment; soft opt-in, duplicate addresses), with the
   Python reference pseudonymizer.

The semantics mirrored, in the words of the product docs: a NULL trait never matches a
comparison (so ``not`` of it matches); only events at or before ``as_of`` count; a date value
means the whole day; ``within_days`` keeps events at or after ``as_of - within_days``;
``between`` days are whole and both included;
``at_least`` counts distinct orders (the model's ``order`` column; an event without one is its
own order);
``total_value`` bounds the sum of the non-NULL ``value`` (inclusive; no value means no match).
"""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb

from orchestrator.config import LegalBasis, ProjectConfig
from orchestrator.model.spec import DEFAULT_MODEL, SourceModel
from orchestrator.pseudonymize import TRIM_CHARS, google_key, normalize_email, subject_key
from orchestrator.segments.spec import (
    AllCondition,
    AnyCondition,
    EventCondition,
    FieldCondition,
    NotCondition,
    SegmentSpec,
    TraitCondition,
)


@dataclass(frozen=True)
class Sources:
    """The warehouse as plain Python rows.

    ``customers``: customer_id -> {column: value} (all ``customers`` columns);
    ``events``: customer_id -> list of {column: value} (all ``events`` columns);
    ``consents``: customer_id -> list of (consent_id, customer_id, purpose, status, recorded_at,
    source, notice_version);
    ``requests``: (customer_id, subject_key, request_type, received_at);
    ``suppressions``: (subject_key, google_key, request_type) of ``activation.suppression_list``
    (empty when the table does not exist).
    """

    customers: dict[int, dict[str, Any]]
    events: dict[int, list[dict[str, Any]]]
    consents: dict[int, list[tuple]]
    requests: list[tuple]
    suppressions: list[tuple]


@dataclass(frozen=True)
class ExpectedMember:
    """One expected row of ``activation.audience_members`` (keys are sha256 hex)."""

    subject_key: str
    google_key: str
    customer_id: int
    email: str
    legal_basis: str
    consent_ref: str


@dataclass(frozen=True)
class ExpectedAudience:
    """The oracle's audience of one segment.

    ``segment_members``: customer ids of the segment; ``members``: subject_key ->
    :class:`ExpectedMember`; ``exclusions``: customer_id -> reason.
    """

    segment_members: frozenset[int]
    members: dict[str, ExpectedMember]
    exclusions: dict[int, str] = field(default_factory=dict)

    @property
    def consent_refs(self) -> dict[str, str]:
        """subject_key -> consent_ref."""
        return {key: member.consent_ref for key, member in self.members.items()}

    @property
    def emails(self) -> set[str]:
        """The normalized addresses of the members."""
        return {member.email for member in self.members.values()}

    def excluded_counts(self, reasons: Iterable[str]) -> dict[str, int]:
        """Exclusions per reason for every reason of ``reasons`` (zero included).

        Raises:
            AssertionError: the oracle produced a reason not in ``reasons``.
        """
        counts = Counter(self.exclusions.values())
        unknown = set(counts) - set(reasons)
        assert not unknown, f"oracle reasons unknown to the product: {sorted(unknown)}"
        return {reason: counts.get(reason, 0) for reason in reasons}


# --- reading ----------------------------------------------------------------------------------


def _rows(con: duckdb.DuckDBPyConnection, relation: Any) -> list[dict[str, Any]]:
    """Every row of a declared table or SELECT, as dicts (the company's own column names)."""
    sql = relation.table if relation.table else f"({relation.select})"
    cursor = con.execute(f"SELECT * FROM {sql} AS s")
    names = [d[0] for d in cursor.description]
    return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]


def _latest(values: Iterable[Any]) -> Any:
    present = [v for v in values if v is not None]
    return max(present) if present else None


def _customers(con: duckdb.DuckDBPyConnection, model: SourceModel) -> dict[int, dict[str, Any]]:
    spec = model.customers
    out = {}
    for row in _rows(con, spec):
        person = dict(row)
        person["customer_id"] = row[spec.key]
        person["email"] = row[spec.email]
        person["collected_at"] = row[spec.collected_at] if spec.collected_at else None
        person["own_action_times"] = [row[c] for c in spec.own_action_columns]
        out[row[spec.key]] = person
    return out


def _events(con: duckdb.DuckDBPyConnection, model: SourceModel) -> dict[int, list[dict]]:
    own = {model.purchase_event, *model.own_action_events}
    events: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for source in model.events:
        for row in _rows(con, source):
            kind = str(row[source.type_column]) if source.type_column else source.type
            at = row[source.time]
            event = {name: row[name] for name in source.fields}
            event.update(
                event_id=str(row[source.id])
                if source.id
                else f"{source.name}:{row[source.key]}:{at}:{kind}",
                customer_id=row[source.key],
                event_type=kind,
                occurred_at=at,
                value=None
                if not source.value or row[source.value] is None
                else float(row[source.value]),
                order=None
                if not source.order or row[source.order] is None
                else str(row[source.order]),
                is_purchase=kind == model.purchase_event,
                own_action=kind in own,
            )
            events[row[source.key]].append(event)
    return events


def _reverse(mapping: Mapping[str, Iterable[str]]) -> dict[str, str]:
    return {word: canonical for canonical, words in mapping.items() for word in words}


def _consents(
    con: duckdb.DuckDBPyConnection, model: SourceModel, intake: bool
) -> dict[int, list[tuple]]:
    spec = model.consents
    statuses = _reverse(spec.status_values)
    purposes = _reverse(spec.purpose_values) if spec.purpose_values else None
    consents: dict[int, list[tuple]] = defaultdict(list)
    for row in _rows(con, spec):
        status = statuses.get(str(row[spec.column("status")]))
        raw_purpose = str(row[spec.column("purpose")])
        purpose = raw_purpose if purposes is None else purposes.get(raw_purpose)
        if status is None or purpose is None:
            continue  # an unmapped value is never consent
        source, notice = row[spec.column("source")], row[spec.column("notice_version")]
        ours = (not spec.ours.sources or source in spec.ours.sources) and (
            not spec.ours.notice_versions or notice in spec.ours.notice_versions
        )
        cid = row[spec.column("customer_id")]
        consents[cid].append(
            (str(row[spec.column("consent_id")]), cid, purpose, status,
             row[spec.column("recorded_at")], source, notice if ours else None)
        )  # fmt: skip
    if intake:
        for row in con.execute(
            "SELECT consent_id, customer_id, purpose, status, recorded_at, source, "
            "notice_version FROM activation.consent_intake WHERE customer_id IS NOT NULL"
        ).fetchall():
            consents[row[1]].append(row)
    return consents


def _requests(con: duckdb.DuckDBPyConnection, model: SourceModel, intake: bool) -> list[tuple]:
    requests: list[tuple] = []
    spec = model.privacy_requests
    if spec is not None:
        types = _reverse(spec.type_values)
        for row in _rows(con, spec):
            kind = types.get(str(row[spec.column("request_type")]))
            if kind is not None:
                requests.append(
                    (row[spec.column("customer_id")], row[spec.column("subject_key")], kind,
                     row[spec.column("received_at")])
                )  # fmt: skip
    if intake:
        requests += con.execute(
            "SELECT customer_id, subject_key, request_type, received_at "
            "FROM activation.request_intake"
        ).fetchall()
    return requests


def _has(con: duckdb.DuckDBPyConnection, table: str) -> bool:
    (found,) = con.execute(
        "SELECT count(*) FROM information_schema.tables "
        "WHERE table_schema = 'activation' AND table_name = ?",
        [table],
    ).fetchone()
    return bool(found)


def read_sources(con: duckdb.DuckDBPyConnection, model: SourceModel = DEFAULT_MODEL) -> Sources:
    """Read the company's own tables named by ``model`` (and the product's intake tables and
    suppression list) with ``fetchall``, applying the model's column and value mappings in
    Python (never the product's views)."""
    has_intake = _has(con, "consent_intake")
    suppressions = (
        con.execute(
            "SELECT subject_key, google_key, request_type FROM activation.suppression_list"
        ).fetchall()
        if _has(con, "suppression_list")
        else []
    )
    return Sources(
        _customers(con, model),
        dict(_events(con, model)),
        dict(_consents(con, model, has_intake)),
        _requests(con, model, has_intake),
        suppressions,
    )


# --- segment conditions -----------------------------------------------------------------------


def _day(value: Any) -> date | datetime:
    if isinstance(value, datetime):
        return value.astimezone(UTC).replace(tzinfo=None) if value.tzinfo else value
    if isinstance(value, date):
        return value
    text = str(value)
    if len(text) == 10:
        return date.fromisoformat(text)
    return _day(datetime.fromisoformat(text))


def _start(day: date) -> datetime:
    return datetime(day.year, day.month, day.day)


def _compare(value: Any, op: str, raw: Any, column: str) -> bool:
    """One comparison of a column value; a NULL value matches only ``is_null: true``."""
    if op == "is_null":
        return (value is None) is bool(raw)
    if value is None:
        return False
    if op == "contains":
        return str(raw).lower() in str(value).lower()
    if op == "in":
        return value in list(raw)
    if op == "between":
        return _compare(value, "gte", raw[0], column) and _compare(value, "lte", raw[1], column)
    if isinstance(value, date):  # a timestamp or date column: YYYY-MM-DD means that whole day
        if not isinstance(value, datetime):
            value = _start(value)
        bound = _day(raw)
        if not isinstance(bound, datetime):
            low, high = _start(bound), _start(bound) + timedelta(days=1)
            return {"eq": low <= value < high, "gte": value >= low, "lte": value < high}[op]
        raw = bound
    return {"eq": value == raw, "gte": value >= raw, "lte": value <= raw}[op]


def _operator(condition: TraitCondition | FieldCondition) -> tuple[str, Any]:
    """The single operator a validated condition carries (as written in YAML)."""
    names = {"eq": "eq", "in_": "in", "gte": "gte", "lte": "lte", "between": "between"}
    names |= {"is_null": "is_null", "contains": "contains"}
    given = [name for name in condition.model_fields_set if name in names]
    assert len(given) == 1, given
    return names[given[0]], getattr(condition, given[0])


def _event_matches(event: dict[str, Any], condition: EventCondition, as_of: datetime) -> bool:
    if event["event_type"] != condition.event:
        return False
    at = event["occurred_at"]
    if at > as_of:
        return False
    if condition.within_days is not None and at < as_of - timedelta(days=condition.within_days):
        return False
    if condition.between is not None:
        first, last = (_day(item) for item in condition.between)
        if not _start(first) <= at < _start(last) + timedelta(days=1):
            return False
    for where in condition.where or ():
        op, raw = _operator(where)
        if not _compare(event[where.field], op, raw, where.field):
            return False
    return True


def _value_ok(total: float | None, condition: EventCondition) -> bool:
    bound = condition.total_value
    if bound is None:
        return True
    if total is None:
        return False
    if bound.between is not None:
        return bound.between[0] <= total <= bound.between[1]
    if bound.gte is not None:
        return total >= bound.gte
    return total <= bound.lte


def _event_holds(events: list[dict[str, Any]], condition: EventCondition, as_of: datetime) -> bool:
    matching = [e for e in events if _event_matches(e, condition, as_of)]
    orders = {e["order"] if e["order"] is not None else f"event:{e['event_id']}" for e in matching}
    values = [e["value"] for e in matching if e["value"] is not None]
    total = sum(values) if values else None
    return bool(matching) and len(orders) >= condition.at_least and _value_ok(total, condition)


def holds(condition: Any, customer: dict[str, Any], events: list[dict], as_of: datetime) -> bool:
    """Whether one customer (a ``customers`` row and its events) meets ``condition``."""
    if isinstance(condition, TraitCondition):
        op, raw = _operator(condition)
        return _compare(customer[condition.trait], op, raw, condition.trait)
    if isinstance(condition, EventCondition):
        return _event_holds(events, condition, as_of)
    if isinstance(condition, AllCondition):
        return all(holds(part, customer, events, as_of) for part in condition.all_)
    if isinstance(condition, AnyCondition):
        return any(holds(part, customer, events, as_of) for part in condition.any_)
    if isinstance(condition, NotCondition):
        return not holds(condition.not_, customer, events, as_of)
    raise TypeError(f"unknown condition {type(condition).__name__}")


def segment_members(
    spec: SegmentSpec, sources: Sources, con: duckdb.DuckDBPyConnection, as_of: datetime
) -> frozenset[int]:
    """Customer ids of the segment at ``as_of`` (naive UTC).

    Conditions are evaluated in Python over every ``customers`` row; a ``sql:`` segment runs
    its own SELECT on ``con`` (NULL ids dropped).
    """
    if spec.sql is not None:
        return frozenset(row[0] for row in con.execute(spec.sql).fetchall() if row[0] is not None)
    return frozenset(
        cid
        for cid, customer in sources.customers.items()
        if holds(spec.audience, customer, sources.events.get(cid, []), as_of)
    )


# --- consent and legal basis ------------------------------------------------------------------


def address_index(sources: Sources) -> dict[str, list[int]]:
    """subject_key -> the customer ids whose email has that key (one address, one person)."""
    index: dict[str, list[int]] = defaultdict(list)
    for cid, customer in sources.customers.items():
        key = subject_key(customer["email"])
        if key is not None:
            index[key].append(cid)
    return dict(index)


def _holders(index: Mapping[str, list[int]], cid: int, key: str | None) -> set[int]:
    return {cid, *(index.get(key, []) if key is not None else [])}


def _request_kinds(
    sources: Sources, cid: int, raw: str | None, as_of: datetime, holders: set[int]
) -> set[str]:
    key, gkey = subject_key(raw), google_key(raw)
    kinds = {
        kind
        for rcid, rkey, kind, at in sources.requests
        if at <= as_of and (rcid in holders or (key is not None and subject_key(rkey) == key))
    }
    kinds |= {
        kind
        for skey, sgkey, kind in sources.suppressions
        if (key is not None and skey == key) or (gkey is not None and sgkey == gkey)
    }
    return kinds


def _retention_expired(sources: Sources, cid: int, project: ProjectConfig, as_of: datetime) -> bool:
    customer = sources.customers.get(cid)
    if customer is None:
        return False
    mine = [e for e in sources.events.get(cid, []) if e["own_action"] and e["occurred_at"] <= as_of]
    last_action = _latest(e["occurred_at"] for e in mine)
    contact = _latest(t for t in customer["own_action_times"] if t is not None and t <= as_of)
    if any(e["is_purchase"] for e in mine):
        days, moments = project.retention.customer_days, (last_action, contact)
    else:
        days = project.retention.prospect_days
        moments = (customer["collected_at"], last_action, contact)
    clock = _latest(moments)
    return clock is not None and clock <= as_of - timedelta(days=days)


def fold_purpose(name: str) -> str:
    """A purpose name as matched against the declared ones: lowercase, runs of spaces, hyphens
    and underscores as one ``_``, none at the ends (written here again, not imported)."""
    return re.sub("[ \t\n\r\f\v_-]+", "_", name.lower()).strip("_")


def _counts_for(record: tuple, declared: str) -> bool:
    """Whether a consent record (consent_id, customer_id, purpose, status, ...) counts for the
    declared purpose: its exact name, or a spelling variant for a withdrawal only."""
    name, status = record[2], record[3]
    if name == declared:
        return True
    return name is not None and status != "granted" and fold_purpose(name) == fold_purpose(declared)


def latest_record(records: Iterable[tuple], declared: str, as_of: datetime) -> tuple | None:
    """The record that decides ``declared`` among ``records`` (every record at one address):
    latest ``recorded_at``; at a tie a withdrawal before a grant; then the highest id."""
    counted = [r for r in records if r[4] <= as_of and _counts_for(r, declared)]
    return max(counted, key=lambda r: (r[4], r[3] != "granted", r[0]), default=None)


def address_consent_state(
    records: Iterable[tuple],
    purpose: str,
    other_marketing: Iterable[str],
    validity_days: int,
    as_of: datetime,
) -> tuple[str, str | None]:
    """('none' | 'withdrawn' | 'unproven' | 'expired' | 'valid', the purpose's latest consent_id)
    for one address. ``records``: the consent rows of every customer at the address.
    ``other_marketing``: the other marketing purposes (empty for a segment that is not
    marketing): a withdrawal standing under one of them makes the state ``withdrawn`` unless
    the purpose's own state is ``valid`` with a grant recorded strictly after it."""
    records = list(records)
    latest = latest_record(records, purpose, as_of)
    if latest is None:
        state = "none"
    elif latest[3] != "granted":
        state = "withdrawn"
    elif not (latest[5] or "").strip(TRIM_CHARS) or not (latest[6] or "").strip(TRIM_CHARS):
        state = "unproven"
    elif latest[4] <= as_of - timedelta(days=validity_days):
        state = "expired"
    else:
        state = "valid"
    others = [latest_record(records, other, as_of) for other in other_marketing]
    withdrawn = [r[4] for r in others if r is not None and r[3] != "granted"]
    if withdrawn and not (state == "valid" and max(withdrawn) < latest[4]):
        state = "withdrawn"
    return state, None if latest is None else latest[0]


def other_marketing(
    project_purposes: Mapping[str, Any], purpose: str, marketing: bool
) -> list[str]:
    """The marketing purposes other than ``purpose`` whose withdrawals count (none when the
    segment is not a marketing one)."""
    if not marketing:
        return []
    return sorted(name for name, p in project_purposes.items() if p.marketing and name != purpose)


def _latest_purchase(sources: Sources, cid: int, as_of: datetime) -> str | None:
    purchases = [
        e for e in sources.events.get(cid, []) if e["is_purchase"] and e["occurred_at"] <= as_of
    ]
    last = max(purchases, key=lambda e: (e["occurred_at"], e["event_id"]), default=None)
    return None if last is None else last["event_id"]


def is_marketing(spec: SegmentSpec, project: ProjectConfig) -> bool:
    """A segment whose purpose is marketing, or that syncs to a destination serving one."""
    names = [spec.purpose]
    for entry in spec.destinations:
        if entry.destination in project.destinations:
            names += project.destinations[entry.destination].purposes
    return any(project.purposes[n].marketing for n in names if n in project.purposes)


def classify(
    sources: Sources,
    cid: int,
    spec: SegmentSpec,
    project: ProjectConfig,
    as_of: datetime,
    index: Mapping[str, list[int]] | None = None,
) -> tuple[str | None, str, str]:
    """(exclusion reason or None, legal basis used, consent_ref) for one member, before
    duplicate addresses are resolved. Consent and requests are read at the address: every
    customer whose email has the member's subject key (``index``, :func:`address_index`)."""
    customer = sources.customers.get(cid)
    raw = None if customer is None else customer["email"]
    index = address_index(sources) if index is None else index
    holders = _holders(index, cid, subject_key(raw))
    kinds = _request_kinds(sources, cid, raw, as_of, holders)
    if "erasure" in kinds:
        return "erasure_requested", "", ""
    if "objection" in kinds:
        return "objection", "", ""
    if _retention_expired(sources, cid, project, as_of):
        return "retention_expired", "", ""
    if normalize_email(raw) is None or google_key(raw) is None:
        return "invalid_email", "", ""
    validity = project.purposes[spec.purpose].consent_validity_days
    records = [r for holder in sorted(holders) for r in sources.consents.get(holder, [])]
    others = other_marketing(project.purposes, spec.purpose, is_marketing(spec, project))
    state, consent_id = address_consent_state(records, spec.purpose, others, validity, as_of)
    if state == "valid":
        return None, "consent", str(consent_id)
    purchase = _latest_purchase(sources, cid, as_of)
    soft_opt_in = LegalBasis(spec.legal_basis) is LegalBasis.LEGITIMATE_INTEREST
    if soft_opt_in and state != "withdrawn" and purchase is not None:
        return None, "legitimate_interest", f"purchase:{purchase}"
    reasons = {"none": "no_consent", "unproven": "consent_unproven"}
    return reasons.get(state, state), "", ""


def audience_of(
    members: Iterable[int],
    sources: Sources,
    spec: SegmentSpec,
    project: ProjectConfig,
    as_of: datetime,
) -> ExpectedAudience:
    """Apply the consent rules to segment members; the lowest customer id keeps an address."""
    chosen: dict[str, ExpectedMember] = {}
    exclusions: dict[int, str] = {}
    members = frozenset(members)
    index = address_index(sources)
    for cid in sorted(members):
        reason, basis, ref = classify(sources, cid, spec, project, as_of, index)
        raw = sources.customers[cid]["email"] if reason is None else None
        key = subject_key(raw) if reason is None else None
        if reason is None and key in chosen:
            reason = "duplicate_address"
        if reason is not None:
            exclusions[cid] = reason
            continue
        assert key is not None
        email, gkey = normalize_email(raw), google_key(raw)
        assert email is not None and gkey is not None
        chosen[key] = ExpectedMember(key, gkey, cid, email, basis, ref)
    return ExpectedAudience(members, chosen, exclusions)


def expected_audiences(
    warehouse: Path, specs: Mapping[str, SegmentSpec], project: ProjectConfig, as_of: datetime
) -> dict[str, ExpectedAudience]:
    """:func:`expected_audience` for every segment, reading the warehouse once."""
    con = duckdb.connect(str(warehouse), read_only=True)
    try:
        sources = read_sources(con, project.source)
        members = {sid: segment_members(spec, sources, con, as_of) for sid, spec in specs.items()}
    finally:
        con.close()
    return {
        sid: audience_of(members[sid], sources, spec, project, as_of) for sid, spec in specs.items()
    }
