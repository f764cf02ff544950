"""Erasure (GDPR Art. 17) and objection (Art. 21(2)-(3)) requests: record them, then carry
them to every destination that holds the person, and out of our own state.

Recording (:func:`record_request`, for ``activation forget EMAIL`` / ``activation object
EMAIL``): the address is hashed on entry; ``activation.request_intake`` gets the subject key
(and the lowest matching ``customer_id``, if any) and ``activation.suppression_list`` gets the
subject key and Google key at once, so no audience built from then on can include the person. The
address itself is never stored, logged or returned.

Handling (:func:`process_requests`), per request:

1. Resolve the person's subject keys: the request's key, the keys of the customers it names
   (by ``customer_id`` or by subject key; when no customer's current address has the key, the
   customers whose earlier address it was, from ``activation.customer_key_history`` or a
   not-yet-refreshed ``activation.customer_keys`` row) including the keys of their earlier
   addresses that a destination still holds (history, and the cache row an address change has
   not yet replaced), and of every customer whose Google key equals one of theirs (the same
   Gmail mailbox spelled with dots, ``+tags`` or ``googlemail.com``). A key that is someone's
   current address names that customer only: a former holder of the address is another
   person as far as we can tell.
2. Put every key on ``activation.suppression_list`` (hashes and date only; an erasure
   supersedes an objection) and delete the person's rows from ``activation.audience_members``
   (every segment: an objection to direct marketing covers all marketing purposes), so a
   sync starting now has nothing to add.
3. For each (segment, destination) that ``sync_state`` says holds one of the keys, pending
   rows included (an unanswered send may have landed), and, for an erasure, for each email
   destination that holds the person as unsubscribed (``destination_suppressions``): take the
   pair's lock (:func:`~orchestrator.sync.pair_lock.pair_lock`), fold a journal a crashed sync
   left,
   send the removal with :class:`~destinations.base.RemoveReason` ``ERASURE`` (Mailchimp:
   delete-permanent; Meta: remove from the audience) or ``OBJECTION`` (Mailchimp: unsubscribe,
   which Mailchimp keeps as a suppression; Meta: remove), delete the acknowledged rows from
   ``sync_state`` (objection, email: record ``unsubscribed`` in ``destination_suppressions``),
   and write a receipt row (:mod:`orchestrator.privacy.receipts`). The warehouse is never open
   during an HTTP call.
4. Erasure, once every destination acknowledged: delete the keys' rows from
   ``sync_rejections`` and ``destination_suppressions`` too. Rows a destination refused or
   could not answer stay in ``sync_state``, so handling the request again retries them.

What stays: the suppression list (hashes and date: needed to keep the person out, GDPR Art.
17(3)(b) and Art. 21(3)) and the receipts (request id, destinations, outcomes: the proof the
request was honoured). The source tables (``customers``, ``events``, ``consents``) belong to
the data team; erasing the person there is theirs to do.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Mapping, Sequence
from contextlib import suppress
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from destinations.base import Destination, RemoveReason, Row, RowResult
from destinations.errors import DestinationError
from destinations.resources import MissingEnvironmentVariable
from orchestrator.config import ProjectConfig
from orchestrator.privacy.intake import address_keys
from orchestrator.privacy.receipts import (
    REQUEST_TYPES,
    ReceiptLine,
    mark_processed,
    open_requests,
    utc_now,
    write_receipts,
)
from orchestrator.pseudonymize import (
    google_key_sql,
    normalized_email_sql,
    subject_key,
    subject_key_sql,
)
from orchestrator.sync import journal
from orchestrator.sync.diff import PENDING_HASH
from orchestrator.sync.pair_lock import SyncInProgressError, pair_lock
from orchestrator.sync.state import fold_journal
from orchestrator.warehouse.connect import connect
from orchestrator.warehouse.connection import WarehouseConnection
from orchestrator.warehouse.target import Warehouse, as_target

#: Builds a client for a destination name (``DestinationsResource.client``).
ClientFactory = Callable[[str], Destination]


@dataclass(frozen=True)
class PairTarget:
    """Where a (segment, destination) sends: the platform's ``audience_id`` and the
    destination ``kind`` (``ad`` | ``email``)."""

    segment: str
    destination: str
    audience_id: str
    kind: str


@dataclass(frozen=True)
class Subject:
    """One key of the person: ``subject_key`` (sha256 hex), ``google_key`` (None when
    unknown) and ``email`` (base-normalized, in memory only for email platforms; None when no
    longer known)."""

    subject_key: str
    google_key: str | None
    email: str | None


@dataclass(frozen=True)
class RequestOutcome:
    """What handling one request did: ``subjects`` (keys found), ``pairs`` ((segment,
    destination) pairs sent to), ``acknowledged`` (pairs whose platform acknowledged every
    row), ``complete`` (matched and every pair acknowledged), ``matched`` (a customer has or
    had the address, or a destination holds one of its keys; false: ``no_match``)."""

    request_id: str
    request_type: str
    subjects: int
    pairs: int
    acknowledged: int
    complete: bool
    matched: bool = True


def targets_from_specs(
    specs: Mapping[str, object], project: ProjectConfig
) -> dict[tuple[str, str], PairTarget]:
    """(segment, destination) -> :class:`PairTarget` for every destination entry of every
    segment. ``specs``: segment id -> ``SegmentSpec`` or ``LoadedSegment``."""
    targets: dict[tuple[str, str], PairTarget] = {}
    for sid, item in specs.items():
        spec = getattr(item, "spec", item)
        for entry in spec.destinations:
            kind = str(project.destinations[entry.destination].kind)
            targets[(sid, entry.destination)] = PairTarget(
                sid, entry.destination, entry.audience_id, kind
            )
    return targets


# --- recording ---------------------------------------------------------------------------------


def new_request_id() -> str:
    """``pr-`` followed by 12 random hex characters."""
    return f"pr-{secrets.token_hex(6)}"


def _suppress(
    con: WarehouseConnection,
    rows: Sequence[tuple[str, str | None]],
    request_type: str,
    at: datetime,
) -> None:
    """Upsert (subject_key, google_key) pairs on the suppression list; erasure wins."""
    if not rows:
        return
    con.executemany(
        "INSERT INTO activation.suppression_list (subject_key, google_key, request_type, "
        "suppressed_at) VALUES (?, ?, ?, ?) ON CONFLICT (subject_key) DO UPDATE SET "
        "google_key = coalesce(suppression_list.google_key, excluded.google_key), "
        "request_type = CASE WHEN excluded.request_type = 'erasure' THEN 'erasure' "
        "ELSE suppression_list.request_type END",
        [[key, gkey, request_type, at] for key, gkey in rows],
    )


def record_request(
    warehouse_path: Warehouse,
    email: str,
    request_type: str,
    *,
    received_at: datetime | None = None,
    lock_timeout_s: float = 30,
    project: ProjectConfig | None = None,
) -> str:
    """Record an erasure or objection request made with an email address; returns its id.

    The address is checked and hashed here (:func:`orchestrator.privacy.intake.address_keys`:
    ``subject_key``, ``google_key``) and dropped: only the hash goes to the product's own
    ``activation.request_intake`` (never the company's tables; merged into
    ``activation.src_privacy_requests``), with the lowest ``customer_id`` holding that subject
    key, or NULL, and to ``activation.suppression_list`` (effective at once for every audience).
    ``received_at``: naive UTC, default now. ``project``: the canonical views of its source
    model are made current first (:func:`orchestrator.warehouse.connect.connect`).

    ``email`` is read as a person means it
    (:func:`orchestrator.privacy.intake.typed_address`: ``mailto:``, ``Name <addr>``,
    quotes, a trailing dot...).

    Raises:
        ValueError: ``request_type`` is not ``erasure`` or ``objection``, or ``email`` names no
            valid address (the message never repeats it).
        duckdb.IOException: the warehouse stayed locked for ``lock_timeout_s`` seconds.
        orchestrator.warehouse.errors.WarehouseError: a PostgreSQL warehouse is
            unreachable, refuses the password or a grant, or timed out.
    """
    if request_type not in REQUEST_TYPES:
        raise ValueError(f"request_type must be one of {REQUEST_TYPES}, got {request_type!r}")
    key, gkey = address_keys(email)
    at = received_at or utc_now()
    request_id = new_request_id()
    with connect(as_target(warehouse_path), timeout_s=lock_timeout_s, project=project) as con:
        con.begin()
        (customer_id,) = con.execute(
            "SELECT min(customer_id) FROM activation.src_customers "
            f"WHERE {subject_key_sql('email')} = ?",
            [key],
        ).fetchone()
        con.execute(
            "INSERT INTO activation.request_intake (request_id, customer_id, subject_key, "
            "request_type, received_at) VALUES (?, ?, ?, ?, ?)",
            [request_id, customer_id, key, request_type, at],
        )
        _suppress(con, [(key, gkey)], request_type, at)
        con.commit()
    return request_id


def open_request_for(
    warehouse_path: Warehouse,
    email: str,
    request_type: str,
    *,
    lock_timeout_s: float = 30,
    project: ProjectConfig | None = None,
) -> str | None:
    """The id of a request of ``request_type`` for ``email``'s subject key that is not complete
    yet (:func:`orchestrator.privacy.receipts.open_requests`), or None. The address is hashed
    here and dropped. Opens the warehouse like :func:`record_request` (creating the product's
    tables if missing, and the views of ``project``'s source model when given).

    Raises:
        duckdb.IOException: the warehouse stayed locked for ``lock_timeout_s`` seconds.
        orchestrator.warehouse.errors.WarehouseError: a PostgreSQL warehouse is
            unreachable, refuses the password or a grant, or timed out.
    """
    try:
        key, _ = address_keys(email)
    except ValueError:
        return None
    with connect(as_target(warehouse_path), timeout_s=lock_timeout_s, project=project) as con:
        still_open = {rid for rid, rtype, _ in open_requests(con) if rtype == request_type}
        rows = con.execute(
            "SELECT request_id FROM activation.src_privacy_requests "
            "WHERE subject_key = ? AND request_type = ? ORDER BY received_at, request_id",
            [key, request_type],
        ).fetchall()
    return next((rid for (rid,) in rows if rid in still_open), None)


def subject_known(warehouse_path: Warehouse, email: str, *, lock_timeout_s: float = 30) -> bool:
    """Whether a request for ``email`` names anyone we hold: a customer has or had the address
    (or the same Gmail mailbox), or a destination holds its key. What the command line says
    right after recording; the receipt's ``no_match`` status is decided when the request is
    handled (:func:`process_requests`).

    Raises:
        ValueError: ``email`` names no valid address
            (:func:`orchestrator.privacy.intake.address_keys`).
        duckdb.IOException: the warehouse stayed locked for ``lock_timeout_s`` seconds.
        orchestrator.warehouse.errors.WarehouseError: a PostgreSQL warehouse is
            unreachable, refuses the password or a grant, or timed out.
    """
    key, gkey = address_keys(email)
    with connect(as_target(warehouse_path), timeout_s=lock_timeout_s) as con:
        (found,) = con.execute(
            f"""
            SELECT EXISTS (SELECT 1 FROM activation.src_customers
                           WHERE {subject_key_sql("email")} = $key)
                OR EXISTS (SELECT 1 FROM activation.customer_keys
                           WHERE subject_key = $key OR google_key = $gkey)
                OR EXISTS (SELECT 1 FROM activation.customer_key_history
                           WHERE subject_key = $key OR google_key = $gkey)
                OR EXISTS (SELECT 1 FROM activation.sync_state WHERE subject_key = $key)
            """,
            {"key": key, "gkey": gkey},
        ).fetchone()
    return bool(found)


# --- resolving the person ----------------------------------------------------------------------


@dataclass(frozen=True)
class _Request:
    request_id: str
    request_type: str
    customer_id: int | None
    subject_key: str | None
    received_at: datetime


_CUSTOMER_KEYS_SQL = f"""
    SELECT customer_id, {subject_key_sql("email")} AS subject_key,
           {google_key_sql("email")} AS google_key, {normalized_email_sql("email")} AS email
    FROM activation.src_customers
"""

#: Temp table of every customer's keys (:data:`_CUSTOMER_KEYS_SQL`), built once per
#: processing run and read by each request's resolution.
_CUSTOMERS = "request_customer_keys"

_RESOLVE_SQL = f"""
    WITH cust AS (SELECT * FROM {_CUSTOMERS}),
    current_holders AS (
        SELECT * FROM cust WHERE customer_id = $customer_id OR subject_key = $key
    ),
    former_holders AS (
        -- the key is nobody's address now: the customers who had it (an earlier address a
        -- destination still holds, or a cache row not yet refreshed after a change)
        SELECT * FROM cust
        WHERE NOT EXISTS (SELECT 1 FROM current_holders) AND customer_id IN (
            SELECT customer_id FROM activation.customer_key_history WHERE subject_key = $key
            UNION
            SELECT customer_id FROM activation.customer_keys WHERE subject_key = $key)
    ),
    direct AS (
        SELECT * FROM current_holders UNION SELECT * FROM former_holders
    ),
    seeds AS (
        SELECT google_key FROM direct WHERE google_key IS NOT NULL
        UNION SELECT google_key FROM activation.suppression_list
        WHERE subject_key = $key AND google_key IS NOT NULL
    ),
    everyone AS (
        SELECT subject_key, google_key, email FROM direct
        UNION SELECT subject_key, google_key, email FROM cust
        WHERE google_key IN (SELECT google_key FROM seeds)
        UNION SELECT subject_key, google_key, NULL FROM activation.suppression_list
        WHERE subject_key = $key
        UNION SELECT subject_key, google_key, NULL FROM activation.customer_key_history
        WHERE customer_id IN (SELECT customer_id FROM direct)
        -- the pseudonym cache may still hold the address before a change (refreshed only by
        -- the next audience or diff step): what the destinations were sent
        UNION SELECT subject_key, google_key, email FROM activation.customer_keys
        WHERE customer_id IN (SELECT customer_id FROM direct)
    ),
    known AS (
        SELECT subject_key, min(email) AS email FROM activation.audience_members
        WHERE subject_key IN (SELECT subject_key FROM everyone)
        GROUP BY subject_key
    )
    SELECT e.subject_key, max(e.google_key), coalesce(max(e.email), max(k.email))
    FROM everyone AS e LEFT JOIN known AS k USING (subject_key)
    WHERE e.subject_key IS NOT NULL
    GROUP BY e.subject_key ORDER BY e.subject_key
"""


def _hash_customers(con: WarehouseConnection) -> None:
    """Write :data:`_CUSTOMERS`: every customer's subject key, Google key and normalized email
    (a temp table: this connection only, gone when it closes). About 5 s at 2M customers."""
    con.execute(f"CREATE OR REPLACE TEMP TABLE {_CUSTOMERS} AS {_CUSTOMER_KEYS_SQL}")


def _resolve(con: WarehouseConnection, request: _Request) -> list[Subject]:
    """Every key of the person named by ``request`` (see the module docstring, step 1), read
    from :data:`_CUSTOMERS`: :func:`_hash_customers` must have run on this connection."""
    key = subject_key(request.subject_key) if request.subject_key else None
    rows = con.execute(_RESOLVE_SQL, {"customer_id": request.customer_id, "key": key}).fetchall()
    subjects = {k: Subject(k, g, e) for k, g, e in rows}
    if key is not None and key not in subjects:
        subjects[key] = Subject(key, None, None)
    return [subjects[k] for k in sorted(subjects)]


_MATCHED_SQL = f"""
    SELECT EXISTS (SELECT 1 FROM {_CUSTOMERS}
                   WHERE customer_id = $customer_id OR list_contains($keys, subject_key))
        OR EXISTS (SELECT 1 FROM activation.customer_key_history
                   WHERE list_contains($keys, subject_key))
"""


def _matches_a_customer(
    con: WarehouseConnection, request: _Request, subjects: Sequence[Subject]
) -> bool:
    """True when a customer has or had one of the person's keys (or is named by id)."""
    keys = [s.subject_key for s in subjects]
    (found,) = con.execute(
        _MATCHED_SQL, {"customer_id": request.customer_id, "keys": keys}
    ).fetchone()
    return bool(found)


def _held_pairs(
    con: WarehouseConnection,
    keys: Sequence[str],
    request_type: str,
    targets: Mapping[tuple[str, str], PairTarget],
) -> dict[tuple[str, str], set[str]]:
    """(segment, destination) -> keys to remove there (step 3 of the module docstring)."""
    pairs: dict[tuple[str, str], set[str]] = {}
    if not keys:
        return pairs
    rows = con.execute(
        "SELECT segment, destination, subject_key FROM activation.sync_state "
        "WHERE list_contains(?, subject_key)",
        [list(keys)],
    ).fetchall()
    for segment, destination, key in rows:
        pairs.setdefault((segment, destination), set()).add(key)
    if request_type == "erasure":
        unsubscribed = con.execute(
            "SELECT destination, subject_key FROM activation.destination_suppressions "
            "WHERE status = 'unsubscribed' AND list_contains(?, subject_key)",
            [list(keys)],
        ).fetchall()
        for destination, key in unsubscribed:
            for (segment, dest), target in targets.items():
                if dest == destination and target.kind == "email":
                    pairs.setdefault((segment, dest), set()).add(key)
    return pairs


def _purge_audiences(con: WarehouseConnection, keys: Sequence[str]) -> int:
    """Delete the subjects' audience rows and pseudonym-cache rows; returns rows deleted.

    The cache row (``activation.customer_keys``) comes back at the next refresh while
    ``customers`` still holds the address: erasing the source is the data team's part.
    """
    if not keys:
        return 0
    total = 0
    for table in ("audience_members", "customer_keys"):
        (count,) = con.execute(
            f"DELETE FROM activation.{table} WHERE list_contains(?, subject_key)", [list(keys)]
        ).fetchone()
        total += count
    return total


# --- one (segment, destination) ----------------------------------------------------------------


@dataclass(frozen=True)
class _Context:
    warehouse_path: Warehouse
    state_dir: Path
    targets: Mapping[tuple[str, str], PairTarget]
    client_for: ClientFactory
    lock_timeout_s: float
    pair_wait_s: float
    project: ProjectConfig | None = None


def _state_rows(
    ctx: _Context, target: PairTarget, keys: set[str]
) -> dict[str, tuple[str | None, str]]:
    """Fold the pair's leftover journal, then subject_key -> (destination_ref, fields_hash)."""
    with connect(ctx.warehouse_path, timeout_s=ctx.lock_timeout_s) as con:
        journal.import_file_journal(con, ctx.state_dir, target.segment, target.destination)
        fold_journal(con, segment=target.segment, destination=target.destination, kind=target.kind)
        rows = con.execute(
            "SELECT subject_key, destination_ref, fields_hash FROM activation.sync_state "
            "WHERE segment = ? AND destination = ? AND list_contains(?, subject_key)",
            [target.segment, target.destination, sorted(keys)],
        ).fetchall()
    return {key: (ref, fields_hash) for key, ref, fields_hash in rows}


def _plan(
    target: PairTarget,
    request_type: str,
    keys: set[str],
    state: Mapping[str, tuple[str | None, str]],
    subjects: Mapping[str, Subject],
) -> tuple[dict[RemoveReason, list[Row]], list[str]]:
    """Rows to send per reason, and the keys that cannot be sent (address unknown)."""
    reason = RemoveReason.ERASURE if request_type == "erasure" else RemoveReason.OBJECTION
    groups: dict[RemoveReason, list[Row]] = {}
    unsendable: list[str] = []
    for key in sorted(keys | set(state)):
        ref = state.get(key, (None, ""))[0]
        if target.kind == "ad":
            groups.setdefault(reason, []).append(Row(key, ref or key))
            continue
        email = subjects[key].email if key in subjects else None
        if email is None and ref is None:
            unsendable.append(key)
        else:
            # no address any more: the client names the contact by its member id (an
            # objection unsubscribes it by id, it is not merely archived)
            groups.setdefault(reason, []).append(Row(key, email or "", {}, ref))
    return groups, unsendable


def _action(kind: str, reason: RemoveReason) -> str:
    if kind == "ad":
        return "remove"
    return {
        RemoveReason.ERASURE: "delete_permanent",
        RemoveReason.OBJECTION: "unsubscribe",
    }.get(reason, "archive")


def _send(
    client: Destination, audience_id: str, reason: RemoveReason, rows: list[Row]
) -> list[RowResult]:
    results: list[RowResult] = []
    for start in range(0, len(rows), client.max_batch_size):
        results += client.remove(audience_id, rows[start : start + client.max_batch_size], reason)
    return results


def _record_acks(
    ctx: _Context,
    target: PairTarget,
    request_type: str,
    acked: list[str],
    at: datetime,
    refs: Mapping[str, str | None] | None = None,
) -> None:
    """Delete acknowledged rows from the pair's state; objection on email: suppressed."""
    if not acked:
        return
    with connect(ctx.warehouse_path, timeout_s=ctx.lock_timeout_s) as con:
        con.begin()
        for table in ("sync_state", "destination_requests"):  # the remove supersedes both
            con.execute(
                f"DELETE FROM activation.{table} WHERE segment = ? AND destination = ? "
                "AND list_contains(?, subject_key)",
                [target.segment, target.destination, acked],
            )
        if request_type == "objection" and target.kind == "email":
            con.executemany(
                "INSERT INTO activation.destination_suppressions (destination, subject_key, "
                "status, suppressed_at, destination_ref) VALUES (?, ?, 'unsubscribed', ?, ?) "
                "ON CONFLICT (destination, subject_key) DO NOTHING",
                [[target.destination, key, at, (refs or {}).get(key)] for key in acked],
            )
        con.commit()


def _line(
    request: _Request, target: PairTarget, action: str, outcome: str, detail: str
) -> ReceiptLine:
    return ReceiptLine(
        request.request_id,
        target.segment,
        target.destination,
        target.audience_id,
        action,
        outcome,
        detail,
        utc_now(),
    )


def _clear_pair(
    ctx: _Context,
    request: _Request,
    target: PairTarget,
    keys: set[str],
    subjects: Mapping[str, Subject],
    clients: dict[str, Destination],
) -> ReceiptLine:
    """Step 3 of the module docstring for one pair, under its lock; returns the receipt."""
    with pair_lock(
        ctx.warehouse_path,
        target.segment,
        target.destination,
        wait_s=ctx.pair_wait_s,
        lock_timeout_s=ctx.lock_timeout_s,
    ):
        state = _state_rows(ctx, target, keys)
        groups, unsendable = _plan(target, request.request_type, keys, state, subjects)
        actions = "+".join(_action(target.kind, reason) for reason in groups) or "none"
        sent = "reason " + ("+".join(reason.value for reason in groups) or "none") + "; "
        if target.destination not in clients:
            clients[target.destination] = ctx.client_for(target.destination)
        client = clients[target.destination]
        results: list[RowResult] = []
        try:
            for reason, rows in groups.items():
                results += _send(client, target.audience_id, reason, rows)
        except DestinationError as error:
            detail = f"{sent}{type(error).__name__}: {error}; nothing acknowledged, kept for retry"
            return _line(request, target, actions, "error", detail)
        acked = [r.subject_key for r in results if r.ok]
        refs = {r.subject_key: r.destination_ref for r in results if r.ok}
        pending = sum(1 for key in acked if state.get(key, (None, ""))[1] == PENDING_HASH)
        _record_acks(ctx, target, request.request_type, acked, utc_now(), refs)
    refused = [r for r in results if not r.ok]
    asked = sum(len(rows) for rows in groups.values())
    unanswered = asked - len(results)  # asynchronous platforms: still processing
    detail = f"{sent}{len(acked)} of {asked + len(unsendable)} row(s) acknowledged"
    detail += f" ({pending} of unknown outcome before)" if pending else ""
    if refused:
        detail += "; refused: " + "; ".join(sorted({r.reason or "refused" for r in refused}))
    if unsendable:
        detail += f"; {len(unsendable)} row(s) not sent: address no longer known"
    if unanswered:
        detail += f"; {unanswered} row(s) still processing at the platform, kept for retry"
        return _line(request, target, actions, "error", detail)
    outcome = "ok" if not refused and not unsendable else "refused"
    return _line(request, target, actions, outcome, detail)


def _unknown_pair_line(request: _Request, segment: str, destination: str) -> ReceiptLine:
    target = PairTarget(segment, destination, "", "")
    detail = "segment or destination no longer declared: audience unknown, nothing sent"
    return _line(request, target, "none", "error", detail)


# --- one request -------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Resolved:
    """A request's subjects, and whether a customer has or had one of their keys."""

    subjects: list[Subject]
    customer_found: bool


def _resolve_all(ctx: _Context, requests: Sequence[_Request]) -> dict[str, _Resolved]:
    """Step 1 for every request of the run, with the customers hashed once: resolving each
    request on its own hashed every customer each time (5 to 6 s per request at 2M
    customers, so a backlog of 100 requests held every segment job for about 9 minutes).
    Returns request_id -> subjects and whether a customer matched. A request handled before
    another may purge cache rows the other's resolution read: both then name the same person,
    whose extra keys are suppressed and removed too."""
    if not requests:
        return {}
    with connect(ctx.warehouse_path, timeout_s=ctx.lock_timeout_s) as con:
        _hash_customers(con)
        resolved = {r.request_id: _resolve(con, r) for r in requests}
        matched = {
            r.request_id for r in requests if _matches_a_customer(con, r, resolved[r.request_id])
        }
    return {rid: _Resolved(subjects, rid in matched) for rid, subjects in resolved.items()}


def _prepare(
    ctx: _Context, request: _Request, subjects: list[Subject]
) -> tuple[dict[tuple[str, str], set[str]], int]:
    """Step 2 and the pairs of step 3 for the resolved ``subjects``: suppress, find the pairs
    holding them, purge audiences; returns pairs and purged rows."""
    with connect(ctx.warehouse_path, timeout_s=ctx.lock_timeout_s) as con:
        con.begin()
        keys = [s.subject_key for s in subjects]
        rows = [(s.subject_key, s.google_key) for s in subjects]
        _suppress(con, rows, request.request_type, request.received_at)
        pairs = _held_pairs(con, keys, request.request_type, ctx.targets)
        purged = _purge_audiences(con, keys)
        con.commit()
    return pairs, purged


def _purge_erased(ctx: _Context, keys: Sequence[str]) -> int:
    """Step 4: the erased person's rows in rejections, destination suppressions and requests
    still outstanding at an asynchronous platform."""
    if not keys:
        return 0
    with connect(ctx.warehouse_path, timeout_s=ctx.lock_timeout_s) as con:
        con.begin()
        total = 0
        for table in ("sync_rejections", "destination_suppressions", "destination_requests"):
            (count,) = con.execute(
                f"DELETE FROM activation.{table} WHERE list_contains(?, subject_key)",
                [list(keys)],
            ).fetchone()
            total += count
        con.commit()
    return total


def _pair_line(
    ctx: _Context,
    request: _Request,
    pair: tuple[str, str],
    keys: set[str],
    subjects: Mapping[str, Subject],
    clients: dict[str, Destination],
) -> ReceiptLine:
    """The receipt of one pair; a failure to reach it becomes an ``error`` receipt."""
    target = ctx.targets.get(pair)
    if target is None:
        return _unknown_pair_line(request, *pair)
    try:
        return _clear_pair(ctx, request, target, keys, subjects, clients)
    except SyncInProgressError:
        detail = f"a sync of this pair ran for more than {ctx.pair_wait_s:.0f} s; retry later"
    except (KeyError, MissingEnvironmentVariable) as error:
        detail = f"{type(error).__name__}: {error}"
    return _line(request, target, "none", "error", detail)


def _handle(
    ctx: _Context,
    request: _Request,
    resolved: _Resolved,
    clients: dict[str, Destination],
) -> RequestOutcome:
    subjects = resolved.subjects
    pairs, purged = _prepare(ctx, request, subjects)
    matched = resolved.customer_found or bool(pairs)
    by_key = {s.subject_key: s for s in subjects}
    lines = [_pair_line(ctx, request, pair, pairs[pair], by_key, clients) for pair in sorted(pairs)]
    acknowledged = sum(1 for line in lines if line.outcome == "ok")
    complete = matched and acknowledged == len(lines)
    if complete and request.request_type == "erasure":
        purged += _purge_erased(ctx, list(by_key))
    with connect(ctx.warehouse_path, timeout_s=ctx.lock_timeout_s) as con:
        write_receipts(con, lines)
        mark_processed(con, request.request_id, len(subjects), purged, utc_now(), matched=matched)
    return RequestOutcome(
        request.request_id,
        request.request_type,
        len(subjects),
        len(lines),
        acknowledged,
        complete,
        matched,
    )


def _load_requests(ctx: _Context, request_ids: Sequence[str] | None) -> list[_Request]:
    """The requests to handle, oldest first: the given ids, or every open one."""
    with connect(ctx.warehouse_path, timeout_s=ctx.lock_timeout_s, project=ctx.project) as con:
        ids = (
            list(request_ids)
            if request_ids is not None
            else [rid for rid, _, _ in open_requests(con)]
        )
        if not ids:
            return []
        rows = con.execute(
            "SELECT request_id, request_type, customer_id, subject_key, received_at "
            "FROM activation.src_privacy_requests WHERE list_contains(?, request_id) "
            "AND list_contains(?, request_type) ORDER BY received_at, request_id",
            [ids, list(REQUEST_TYPES)],
        ).fetchall()
    return [_Request(*row) for row in rows]


def process_requests(
    warehouse_path: Warehouse,
    state_dir: Path,
    *,
    targets: Mapping[tuple[str, str], PairTarget],
    client_for: ClientFactory,
    request_ids: Sequence[str] | None = None,
    lock_timeout_s: float = 60,
    pair_wait_s: float = 120,
    project: ProjectConfig | None = None,
) -> list[RequestOutcome]:
    """Carry erasure/objection requests to the destinations and out of our state (see the
    module docstring), writing ``activation.erasure_receipts`` and ``request_processing``.

    Args:
        warehouse_path: the DuckDB file (opened briefly, never during an HTTP call).
        state_dir: the sync scratch folder (``ACTIVATION_STATE_DIR``): a journal file an earlier
            version left there is imported into the warehouse before the pair is read.
        targets: (segment, destination) -> :class:`PairTarget` (:func:`targets_from_specs`).
        client_for: destination name -> client (closed here when done, if it has ``close``).
        request_ids: the requests to handle; None: every open (not complete) request. Ids
            unknown or of another type are ignored. Handling a request again is harmless.
        lock_timeout_s: how long to wait for the warehouse lock each time (s).
        pair_wait_s: how long to wait for a running sync of a pair to finish (s).
        project: the canonical views of its source model are made current before the
            requests are read (:func:`orchestrator.warehouse.connect.connect`).

    Returns:
        One :class:`RequestOutcome` per request handled, oldest first.

    Raises:
        duckdb.IOException: the warehouse stayed locked for ``lock_timeout_s``.
        orchestrator.warehouse.errors.WarehouseError: a PostgreSQL warehouse is
            unreachable, refuses the password or a grant, or timed out.
        A destination's failure (``DestinationError``), a sync of the pair running longer than
        ``pair_wait_s``, an unknown destination or a missing environment variable is not
        raised: it becomes an ``error`` receipt and the request stays open.
    """
    ctx = _Context(
        as_target(warehouse_path, project),
        Path(state_dir),
        targets,
        client_for,
        lock_timeout_s,
        pair_wait_s,
        project,
    )
    clients: dict[str, Destination] = {}
    try:
        requests = _load_requests(ctx, request_ids)
        resolved = _resolve_all(ctx, requests)
        return [_handle(ctx, r, resolved[r.request_id], clients) for r in requests]
    finally:
        for client in clients.values():
            close = getattr(client, "close", None)
            if close is not None:
                with suppress(Exception):
                    close()


__all__ = [
    "ClientFactory",
    "PairTarget",
    "RequestOutcome",
    "Subject",
    "new_request_id",
    "process_requests",
    "record_request",
    "subject_known",
    "targets_from_specs",
]
