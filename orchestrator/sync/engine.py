"""``run_sync``: diff -> Parquet -> batches -> destination -> journal -> ``sync_state``.

The flow, for one (segment, destination) at a time (the pair's lock row in the warehouse keeps
a second run out, on this machine or another: :mod:`orchestrator.sync.pair_lock`):

1. Open the warehouse briefly: fold any journal a crashed run left, on whatever machine (so the
   diff starts from everything the destination acknowledged), classify the subjects and export
   the rows to send to Parquet in ``<state_dir>/scratch/<segment>__<destination>/``; close the
   warehouse. The scratch files are disposable: a run that finds none computes them again.
2. With no warehouse connection open: stream batches of ``max_batch_size`` rows from the
   Parquet files (removes first, most urgent reason first, then adds, then updates). Batches
   go in journal windows (:func:`window_batches`): one short warehouse transaction writes the
   answers of the previous window and the ``intent`` lines of the next window's batches
   (checking the lock is still ours), then the window's calls are made with the warehouse
   closed. For a destination that processes requests asynchronously (Google), the same
   transactions write the pair's request journal (:mod:`orchestrator.sync.async_requests`).
3. Open the warehouse briefly and, in one transaction, write the last answers, withdraw the
   intents of batches never called (the run stopped on an error), fold the journal into
   ``sync_state`` (and the request journal into ``destination_requests``) and delete the
   folded lines; delete the scratch files.

A crash at any point leaves ``sync_state`` holding only what a destination acknowledged, plus
rows of unknown outcome marked ``pending`` (never counted as synced): intents journaled ahead
and answers not yet written are such rows, which the next run resends, and it converges. A
:class:`~destinations.errors.DestinationError` folds what was acknowledged so far, then
propagates.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING

import duckdb
import pyarrow.parquet as pq

from destinations.base import (
    Destination,
    RemoveReason,
    Row,
    RowResult,
    RowsPerCall,
    client_rows_per_call,
    min_calls,
)
from destinations.redaction import redact
from orchestrator.privacy.retention import track_departures
from orchestrator.sync import async_requests, journal
from orchestrator.sync.diff import DiffParams, DiffPlan, compute_diff
from orchestrator.sync.journal import JournalLine
from orchestrator.sync.pair_lock import DEFAULT_LEASE_S, HeldPairLock, pair_lock
from orchestrator.sync.prefetch import prefetched
from orchestrator.sync.rejections import pending_rows, stuck_rows
from orchestrator.sync.state import fold_journal
from orchestrator.warehouse.connect import connect
from orchestrator.warehouse.target import Warehouse, as_target

if TYPE_CHECKING:
    from orchestrator.config import ProjectConfig

#: Called after each batch is journaled with the number of batches journaled so far in this
#: run (tests use it to kill the process at a chosen point).
BatchHook = Callable[[int], None]


@dataclass
class SyncReport:
    """What one sync did (or, with ``dry_run``, would do).

    Subject counts: ``adds``, ``updates``, ``removes`` (rows sent, or to send in a dry run),
    ``unchanged`` (in the audience and already synced), ``kept`` (synced, no longer in the
    audience, kept because the mode is not ``mirror``), ``rejected`` (sent and refused by the
    destination), ``suppressed`` (not sent: the destination holds them as unsubscribed or
    forgotten), ``skipped_rejected`` (not sent: refused for good before, unchanged since),
    ``pending_recovered`` (rows of unknown outcome from an earlier crash, folded first),
    ``removes_deferred`` (not sent: the destination refused the same remove before and its
    back-off has not ended, :mod:`orchestrator.sync.rejections`), ``rekeys`` (held in another
    form of the key: removed as added, then added in the new form), ``pending`` (after the
    run: rows whose outcome the destination's answer did not confirm).
    ``stuck``: what the destination does not take, per group (operation, remove reason, the
    platform's words, the status it keeps the contacts in, rows, next retry), see
    :class:`orchestrator.sync.rejections.StuckGroup`.
    ``removes_by_reason``: RemoveReason value -> count. Calls: ``api_calls`` (HTTP requests made,
    retries included), ``min_api_calls`` (the least possible: sum over send groups of
    ceil(rows / rows one call carries), see :func:`destinations.base.min_calls`; e.g.
    Mailchimp archives one member per call), ``retries``, ``throttled_seconds`` (s), ``bytes_sent``
    (request body bytes). ``duration_s``: wall time (s). ``dry_run``: nothing was sent.
    ``requests_processing``: requests the platform had not finished processing when the run
    ended (asynchronous platforms: their rows stay pending, confirmed by the next run).
    ``awaiting``: pending rows not sent again because such a request already carries them.
    """

    adds: int = 0
    removes: int = 0
    updates: int = 0
    unchanged: int = 0
    kept: int = 0
    rejected: int = 0
    suppressed: int = 0
    skipped_rejected: int = 0
    pending_recovered: int = 0
    removes_deferred: int = 0
    rekeys: int = 0
    pending: int = 0
    api_calls: int = 0
    min_api_calls: int = 0
    retries: int = 0
    throttled_seconds: float = 0.0
    bytes_sent: int = 0
    duration_s: float = 0.0
    removes_by_reason: dict[str, int] = field(default_factory=dict)
    stuck: list[dict[str, object]] = field(default_factory=list)
    dry_run: bool = False
    requests_processing: int = 0
    awaiting: int = 0


#: A journal window holds at most this many rows, and this many batches (see
#: :func:`window_batches`).
JOURNAL_WINDOW_ROWS = 20_000
JOURNAL_WINDOW_BATCHES = 32


def window_batches(batch_size: int) -> int:
    """Batches per journal window: as many as hold :data:`JOURNAL_WINDOW_ROWS` rows, between 1
    and :data:`JOURNAL_WINDOW_BATCHES`.

    One warehouse transaction per window instead of one per call: opening the DuckDB file,
    writing and closing it costs about 30 ms (13 ms of it the open), as long as a 500-member
    Mailchimp call. A crash loses at most one window of answers (resent, never over-claimed).
    The batches of the next window are built ahead while the current one is sent (the prefetch
    depth equals the window), so a window costs no more than its calls.
    """
    return max(1, min(JOURNAL_WINDOW_BATCHES, JOURNAL_WINDOW_ROWS // max(batch_size, 1)))


#: The ``fields`` of every row sent to a destination without merge fields (shared, read-only).
_NO_FIELDS: Mapping[str, str] = MappingProxyType({})


@dataclass(frozen=True)
class _Batch:
    """One batch to send, built ahead of its call (in the prefetch thread).

    ``rows`` for the client; per row, in the same order: ``subject_keys``, ``hashes``
    (fields_hash) and ``intent_refs`` (the ref an intent records, see :func:`_intent_refs`).
    ``keys_json``: the encoded ``"subject_keys":[...],"fields_hashs":[...]`` members of the
    batch's intent line; ``intent_refs_json``: the encoded array of the intent refs.
    """

    op: str
    reason: str | None
    rows: list[Row]
    subject_keys: list[str]
    hashes: list[str]
    intent_refs: list[str | None]
    keys_json: str
    intent_refs_json: str


def _now(as_of: datetime | None) -> str:
    moment = as_of if as_of is not None else datetime.now(UTC)
    if moment.tzinfo is not None:
        moment = moment.astimezone(UTC).replace(tzinfo=None)
    return moment.isoformat()


def _scrub(reason: str | None) -> str | None:
    """The platform's words without any email address (some platforms echo the address) or
    credential (:func:`destinations.redaction.redact`; the client already blanked every form
    of its own secret)."""
    return None if reason is None else redact(reason)


def _column_chunks(path: Path, size: int) -> Iterator[dict[str, list]]:
    """The columns of one Parquet send file, ``size`` rows at a time (the last may be shorter).

    Re-chunked here because Parquet record batches stop at row-group boundaries, which would
    make short batches and more calls than needed.
    """
    held: dict[str, list] = {}
    for record_batch in pq.ParquetFile(path).iter_batches(batch_size=size):
        cols = record_batch.to_pydict()
        if held:
            for name, values in cols.items():
                held[name].extend(values)
        else:
            held = cols
        while len(held["subject_key"]) >= size:
            yield {name: values[:size] for name, values in held.items()}
            held = {name: values[size:] for name, values in held.items()}
    if held and held["subject_key"]:
        yield held


def _intent_refs(cols: Mapping[str, list], kind: str) -> list[str | None]:
    """The ref to remember per row: the Google key sent to an ad platform (a ``send_key`` that
    is not the ``subject_key``), else the row's old ``destination_ref``."""
    keys, sends, refs = cols["subject_key"], cols["send_key"], cols["destination_ref"]
    if kind != "ad":
        return list(refs)
    return [s if s != k else r for k, s, r in zip(keys, sends, refs, strict=True)]


def _build_rows(cols: Mapping[str, list], field_names: Sequence[str]) -> list[Row]:
    keys, sends, refs = cols["subject_key"], cols["send_key"], cols["destination_ref"]
    if not field_names:
        return [Row(k, s, _NO_FIELDS, r) for k, s, r in zip(keys, sends, refs, strict=True)]
    columns = [cols[f"f{j}"] for j in range(len(field_names))]
    return [
        Row(k, s, dict(zip(field_names, values, strict=True)), r)
        for k, s, r, *values in zip(keys, sends, refs, *columns, strict=True)
    ]


def _make_batch(
    op: str, reason: str | None, cols: Mapping[str, list], field_names: Sequence[str], kind: str
) -> _Batch:
    """A :class:`_Batch` from one chunk of a send file's columns."""
    encode = journal.line_encoder()
    keys, hashes = cols["subject_key"], cols["fields_hash"]
    intent_refs = _intent_refs(cols, kind)
    return _Batch(
        op=op,
        reason=reason,
        rows=_build_rows(cols, field_names),
        subject_keys=keys,
        hashes=hashes,
        intent_refs=intent_refs,
        keys_json=f'"subject_keys":{encode(keys)},"fields_hashs":{encode(hashes)}',
        intent_refs_json=encode(intent_refs),
    )


def _plan_batches(plan: DiffPlan, size: int, kind: str) -> Iterator[_Batch]:
    """Every batch of the plan, in sending order (the order of ``plan.files``)."""
    for op, reason, path in plan.files:
        for cols in _column_chunks(path, size):
            yield _make_batch(op, reason, cols, plan.field_names, kind)


def _line(
    run: str,
    seq: int,
    kind: str,
    batch: _Batch,
    rows: Sequence[int],
    at: str,
    refs: list[str | None],
    reasons: list[str | None] | None = None,
    permanent: list[bool | None] | None = None,
    statuses: list[str | None] | None = None,
) -> dict:
    """One journal line for the rows at positions ``rows`` of ``batch`` (per-row values as
    arrays of the same length, see :mod:`orchestrator.sync.journal`)."""
    line = {
        **_header(run, seq, kind, batch, at),
        "subject_keys": [batch.subject_keys[i] for i in rows],
        "fields_hashs": [batch.hashes[i] for i in rows],
        "destination_refs": refs,
        "reasons": reasons if reasons is not None else [None] * len(rows),
        "permanents": permanent if permanent is not None else [False] * len(rows),
    }
    if statuses is not None and any(s is not None for s in statuses):
        line["statuses"] = statuses
    return line


def _header(run: str, seq: int, kind: str, batch: _Batch, at: str) -> dict:
    """The per-batch members every journal line starts with."""
    return {
        "run": run,
        "seq": seq,
        "kind": kind,
        "op": batch.op,
        "remove_reason": batch.reason,
        "at": at,
    }


def _head(run: str, seq: int, kind: str, batch: _Batch, at: str) -> str:
    """The encoded per-batch members of a line, without the closing brace."""
    return journal.line_encoder()(_header(run, seq, kind, batch, at))[:-1]


def _intent_line(run: str, seq: int, batch: _Batch, at: str) -> str:
    """The encoded ``intent`` line of a whole batch, written before the call (no ``reasons``
    or ``permanents``: an intent has none), built from the arrays the prefetch thread
    encoded."""
    return (
        f"{_head(run, seq, 'intent', batch, at)},{batch.keys_json},"
        f'"destination_refs":{batch.intent_refs_json}}}'
    )


def _all_acked_line(
    run: str, seq: int, batch: _Batch, results: Sequence[RowResult], at: str
) -> str | None:
    """The compact ``ack`` line when the client answered every row, in order, with ``ok`` (the
    common case): ``"whole_batch":true`` and no per-row arrays but ``destination_refs``, which
    is left out too when every row keeps its intent ref (see :mod:`orchestrator.sync.journal`).
    None otherwise (the per-row path)."""
    if len(results) != len(batch.subject_keys) or not all(r.ok for r in results):
        return None
    if [r.subject_key for r in results] != batch.subject_keys:
        return None
    refs = [r.destination_ref or i for r, i in zip(results, batch.intent_refs, strict=True)]
    head = f'{_head(run, seq, "ack", batch, at)},"whole_batch":true'
    if refs == batch.intent_refs:
        return head + "}"
    return f'{head},"destination_refs":{journal.line_encoder()(refs)}}}'


def _result_lines(
    run: str, seq: int, batch: _Batch, results: Sequence[RowResult], at: str
) -> tuple[list[JournalLine], int]:
    """At most two journal lines for a batch's answers: one ``ack`` and one ``reject`` line,
    each holding its rows as arrays; rows without an answer stay as intents. Returns the lines
    and the number of rows rejected."""
    whole = _all_acked_line(run, seq, batch, results, at)
    if whole is not None:
        return [JournalLine(run, seq, "ack", whole)], 0
    by_key = {r.subject_key: r for r in results}
    acked: list[int] = []
    refs: list[str | None] = []
    refused: list[int] = []
    reasons: list[str | None] = []
    permanent: list[bool | None] = []
    statuses: list[str | None] = []
    held_refs: list[str | None] = []
    for i, key in enumerate(batch.subject_keys):
        result = by_key.get(key)
        if result is None:
            continue
        if result.ok:
            acked.append(i)
            refs.append(result.destination_ref or batch.intent_refs[i])
        else:
            refused.append(i)
            held_refs.append(result.destination_ref or batch.intent_refs[i])
            reasons.append(_scrub(result.reason))
            # null: the answer did not confirm the row (outcome unknown, held as pending)
            permanent.append(None if result.unknown else bool(result.permanent))
            statuses.append(result.status)
    lines = []
    if acked:
        lines.append(_line(run, seq, "ack", batch, acked, at, refs))
    if refused:
        lines.append(
            _line(run, seq, "reject", batch, refused, at, held_refs, reasons, permanent, statuses)
        )
    encode = journal.line_encoder()
    return [JournalLine(run, seq, line["kind"], encode(line)) for line in lines], sum(
        1 for p in permanent if p is not None
    )


#: Why a row that names nobody is not sent (it is refused here, for good, per row).
NO_IDENTIFIER = (
    "not sent: no identifier held for this subject (no address, no member id or key recorded)"
)


def _call(client: Destination, audience_id: str, batch: _Batch) -> list[RowResult]:
    """Call the client for the batch. A row with neither a ``send_key`` nor a
    ``destination_ref`` (an old state row of a person who left the warehouse) names nobody:
    it is refused here with :data:`NO_IDENTIFIER` and never sent, so one such row does not
    stop the batch (clients raise ``EmptyIdentifierError`` for it)."""
    nameless = {r.subject_key for r in batch.rows if not r.send_key and not r.destination_ref}
    rows = [r for r in batch.rows if r.subject_key not in nameless] if nameless else batch.rows
    answered: list[RowResult] = []
    if rows:
        if batch.op == "remove":
            answered = client.remove(audience_id, rows, RemoveReason(batch.reason))
        elif batch.op == "add":
            answered = client.add(audience_id, rows)
        else:
            answered = client.update(audience_id, rows)
    return answered + [RowResult(key, False, None, NO_IDENTIFIER, True) for key in nameless]


@dataclass(frozen=True)
class _Job:
    """Everything one run needs besides the plan (paths, pair, lock, batching, hooks)."""

    warehouse_path: Warehouse
    params: DiffParams
    audience_id: str
    batch_size: int
    as_of: datetime | None
    lock_timeout_s: float
    on_batch: BatchHook | None
    lock: HeldPairLock

    def write(
        self, lines: Sequence[JournalLine], requests: Sequence[async_requests.RequestLine] = ()
    ) -> None:
        """Write journal lines (and request journal lines of an asynchronous destination) in
        one short transaction, after checking the lock is ours.

        Raises:
            PairLockLost: another run took the pair over (nothing written).
        """
        p = self.params
        with connect(self.warehouse_path, timeout_s=self.lock_timeout_s) as con:
            con.begin()
            try:
                self.lock.fence(con)
                journal.append_lines(con, p.segment, p.destination, lines)
                async_requests.append_lines(con, p.segment, p.destination, requests)
                con.commit()
            except BaseException:
                con.rollback()
                raise

    def fold(self, progress: _Progress, report: SyncReport | None = None) -> int:
        """Write the answers (and request lines) not yet written, withdraw the intents of
        batches never called and fold the pair's journal and request journal, in one short
        transaction; returns rows of unknown outcome. With ``report``, also fills its
        ``pending`` and ``stuck`` from the folded state."""
        p = self.params

        def finish(con: duckdb.DuckDBPyConnection) -> None:
            self.lock.fence(con)
            journal.append_lines(con, p.segment, p.destination, progress.unwritten)
            async_requests.append_lines(con, p.segment, p.destination, progress.requests)
            if progress.run is not None and progress.first_unsent is not None:
                journal.withdraw_unsent(
                    con, p.segment, p.destination, progress.run, progress.first_unsent
                )
                async_requests.withdraw_unsent(
                    con, p.segment, p.destination, progress.run, progress.first_unsent
                )
            async_requests.fold_requests(con, segment=p.segment, destination=p.destination)

        with connect(self.warehouse_path, timeout_s=self.lock_timeout_s) as con:
            stats = fold_journal(
                con, segment=p.segment, destination=p.destination, kind=p.kind, before_fold=finish
            )
            if report is not None:
                _fill_stuck(con, p.segment, p.destination, report)
        return stats.pending


@dataclass
class _Progress:
    """Where a send stands: ``run`` id, answers not yet written (``unwritten``), the first
    batch not called (``first_unsent``: its intent, and those of later batches of its window,
    were journaled ahead; None before the first window), rows rejected so far and, for an
    asynchronous destination, request journal lines not yet written (``requests``)."""

    run: str | None = None
    unwritten: list[JournalLine] = field(default_factory=list)
    requests: list[async_requests.RequestLine] = field(default_factory=list)
    first_unsent: int | None = None
    rejected: int = 0


def _windows(batches: Iterator[_Batch], size: int) -> Iterator[list[tuple[int, _Batch]]]:
    """The batches numbered from 0, in lists of at most ``size``."""
    window: list[tuple[int, _Batch]] = []
    for seq, batch in enumerate(batches):
        window.append((seq, batch))
        if len(window) == size:
            yield window
            window = []
    if window:
        yield window


def _request_batch(request: async_requests.Outstanding, kind: str) -> _Batch:
    """A :class:`_Batch` holding the rows of an outstanding asynchronous request."""
    rows = request.rows
    cols = {
        "subject_key": [r.subject_key for r in rows],
        "send_key": [r.send_key for r in rows],
        "destination_ref": [r.destination_ref for r in rows],
    }
    encode = journal.line_encoder()
    refs = _intent_refs(cols, kind)
    keys = cols["subject_key"]
    return _Batch(
        op=request.op,
        reason=request.remove_reason,
        rows=rows,
        subject_keys=keys,
        hashes=request.hashes,
        intent_refs=refs,
        keys_json=f'"subject_keys":{encode(keys)},"fields_hashs":{encode(request.hashes)}',
        intent_refs_json=encode(refs),
    )


def _confirm_requests(job: _Job, client: Destination) -> int:
    """First thing in a run with an asynchronous client: fold what a crashed run left, read
    the status of every request still outstanding for the pair, and in one transaction journal
    the rows it settles (acknowledged or rejected with the platform's reason), mark the
    requests resolved and fold. Returns the number of requests still processing. No warehouse
    connection is open while the platform is asked."""
    p = job.params
    job.fold(_Progress())
    with connect(job.warehouse_path, timeout_s=job.lock_timeout_s) as con:
        waiting = async_requests.outstanding(con, segment=p.segment, destination=p.destination)
    if not waiting:
        return 0
    found = async_requests.confirm(client, waiting)
    progress = _Progress(run=journal.new_run_id())
    run = progress.run
    for seq, (request, results) in enumerate(found.results):
        batch = _request_batch(request, p.kind)
        at = _now(job.as_of)
        progress.unwritten.append(
            JournalLine(run, seq, "intent", _intent_line(run, seq, batch, at))
        )
        lines, _ = _result_lines(run, seq, batch, results, at)
        progress.unwritten += lines
        keys, hashes = batch.subject_keys, batch.hashes
        requests = [async_requests.sent_line(keys)]
        requests += async_requests.submitted_lines(client, keys, hashes, batch.reason, at)
        progress.requests += async_requests.numbered(run, seq, requests)
    resolved = async_requests.resolve_lines(found.resolved)
    progress.requests += async_requests.numbered(run, len(found.results), resolved)
    job.fold(progress)
    return found.still_processing


def _send_window(
    job: _Job, client: Destination, window: list[tuple[int, _Batch]], progress: _Progress
) -> None:
    """Journal the window's intents (with the previous window's answers), then call the
    client for each batch, keeping its answers for the next write. For an asynchronous
    destination, a ``sent`` request line goes with each intent and the requests left
    processing with the answers (:mod:`orchestrator.sync.async_requests`)."""
    run = progress.run
    intents = [
        JournalLine(run, seq, "intent", _intent_line(run, seq, batch, _now(job.as_of)))
        for seq, batch in window
    ]
    asynchronous = async_requests.is_async(client)
    sent = (
        [async_requests.RequestLine(run, seq, 0, async_requests.sent_line(batch.subject_keys))
         for seq, batch in window]
        if asynchronous else []
    )  # fmt: skip
    job.write([*progress.unwritten, *intents], [*progress.requests, *sent])
    progress.unwritten = []
    progress.requests = []
    for seq, batch in window:
        progress.first_unsent = seq + 1  # this batch is called: its intent stays
        results = _call(client, job.audience_id, batch)
        at = _now(job.as_of)
        lines, rejected = _result_lines(run, seq, batch, results, at)
        progress.unwritten += lines
        progress.rejected += rejected
        if asynchronous:
            submitted = async_requests.submitted_lines(
                client, batch.subject_keys, batch.hashes, batch.reason, at
            )
            progress.requests += [
                async_requests.RequestLine(run, seq, 1 + i, line)
                for i, line in enumerate(submitted)
            ]
        if job.on_batch is not None:
            job.on_batch(seq + 1)


def _send(job: _Job, plan: DiffPlan, client: Destination, progress: _Progress) -> None:
    """Send every batch of the plan in order, a journal window at a time (see the module
    docstring), filling ``progress``.

    The batches of the next window are read and built in a background thread while this one
    is sent (:func:`orchestrator.sync.prefetch.prefetched`); everything that touches the
    journal or the destination stays here, in this thread: a window's intents are committed
    before its first call. A failing call stops the producer and joins it before the error
    propagates.
    """
    progress.run = journal.new_run_id()
    size = window_batches(job.batch_size)
    batches = _plan_batches(plan, job.batch_size, job.params.kind)
    with prefetched(batches, depth=size) as ready:
        for window in _windows(ready, size):
            _send_window(job, client, window, progress)


def _send_and_fold(job: _Job, plan: DiffPlan, client: Destination, report: SyncReport) -> None:
    """Send the plan, then fold the journal (also when a call raised), filling ``report``."""
    stats = client.stats
    before = (stats.calls, stats.retries, stats.throttled_seconds, stats.bytes_sent)
    progress = _Progress()
    try:
        _send(job, plan, client, progress)
    finally:
        report.rejected = progress.rejected
        job.fold(progress, report)
        report.api_calls = stats.calls - before[0]
        report.retries = stats.retries - before[1]
        report.throttled_seconds = stats.throttled_seconds - before[2]
        report.bytes_sent = stats.bytes_sent - before[3]


def _fill_stuck(con: object, segment: str, destination: str, report: SyncReport) -> None:
    """``report.pending`` and ``report.stuck`` from the pair's state and rejections."""
    report.pending = pending_rows(con, segment, destination)
    report.stuck = [group.as_dict() for group in stuck_rows(con, segment, destination)]


def _count_outstanding(job: _Job) -> int:
    """Requests of the pair the platform had not finished processing."""
    p = job.params
    with connect(job.warehouse_path, timeout_s=job.lock_timeout_s) as con:
        waiting = async_requests.outstanding(con, segment=p.segment, destination=p.destination)
    return len(waiting)


def _min_calls(plan: DiffPlan, batch_size: int, per_call: RowsPerCall | None) -> int:
    total = 0
    for op, reason, _path in plan.files:
        n = plan.removes_by_reason[reason] if op == "remove" else plan.counts[op]
        n += plan.counts["rekey"] if op == "add" else 0
        rows_per_call = batch_size if per_call is None else per_call(op, _reason(reason))
        total += min_calls(n, rows_per_call, batch_size)
    return total


def _reason(value: str | None) -> RemoveReason | None:
    return None if value is None else RemoveReason(value)


def _report(
    plan: DiffPlan, batch_size: int, per_call: RowsPerCall | None, pending: int, dry_run: bool
) -> SyncReport:
    c = plan.counts
    return SyncReport(
        adds=c["add"],
        removes=c["remove"],
        updates=c["update"],
        unchanged=c["unchanged"],
        kept=c["kept"],
        suppressed=c["suppressed"],
        skipped_rejected=c["skipped_rejected"],
        removes_deferred=c["remove_deferred"],
        rekeys=c["rekey"],
        awaiting=c["awaiting"],
        pending_recovered=pending,
        min_api_calls=_min_calls(plan, batch_size, per_call),
        removes_by_reason=dict(plan.removes_by_reason),
        dry_run=dry_run,
    )


#: A sync refuses to remove more than this share of the members a destination holds for leaving
#: the segment, and at least :data:`MASS_REMOVAL_MIN_ROWS` of them, unless told to.
MASS_REMOVAL_FRACTION = 0.5
MASS_REMOVAL_MIN_ROWS = 10


class MassRemovalError(RuntimeError):
    """The diff would remove most of an audience because its members left the segment.

    A typo in a segment (a country code, a date) silently empties it, and a mirror sync would
    then remove everyone from the ad account or list. Removals the person asked for (erasure,
    objection, withdrawn consent) are never held back. Rerun with ``allow_mass_removal`` when
    the shrink is intended.
    """


def check_mass_removal(plan: DiffPlan, segment: str, destination: str) -> None:
    """Raise :class:`MassRemovalError` when ``left_segment`` removes exceed the limits."""
    leaving = plan.removes_by_reason.get(RemoveReason.LEFT_SEGMENT.value, 0)
    held = sum(
        plan.counts[k]
        for k in ("unchanged", "update", "remove", "kept", "remove_deferred", "rekey")
    )
    if leaving >= MASS_REMOVAL_MIN_ROWS and leaving > MASS_REMOVAL_FRACTION * held:
        raise MassRemovalError(
            f"sync {segment} -> {destination}: would remove {leaving} of the {held} members "
            f"it holds because they left the segment (more than {MASS_REMOVAL_FRACTION:.0%}); "
            "nothing was sent. Check the segment with `activation preview`, then rerun with "
            "allow_mass_removal: true in the sync's run config if the shrink is intended."
        )


def _naive_utc(moment: datetime) -> datetime:
    """The warehouse stores naive UTC timestamps."""
    return moment.astimezone(UTC).replace(tzinfo=None) if moment.tzinfo else moment


def run_sync(
    warehouse_path: Warehouse,
    state_dir: Path,
    *,
    segment: str,
    destination: str,
    audience_id: str,
    mode: str,
    fields: Mapping[str, str],
    kind: str,
    normalization: str = "base",
    purpose: str | None = None,
    retention_days: int | None = None,
    client: Destination | None = None,
    as_of: datetime | None = None,
    dry_run: bool = False,
    batch_size: int | None = None,
    lock_timeout_s: float = 60,
    on_batch: BatchHook | None = None,
    rows_per_call: RowsPerCall | None = None,
    allow_mass_removal: bool = False,
    other_purposes: Sequence[str] = (),
    lease_s: float = DEFAULT_LEASE_S,
    lock_wait_s: float = 0,
    signals: Mapping[str, tuple[str, int]] | None = None,
    phone_platform: str | None = None,
    project: ProjectConfig | None = None,
) -> SyncReport:
    """Bring ``audience_id`` at ``destination`` in line with the segment's audience.

    Args:
        warehouse_path: the DuckDB file (opened briefly: to take the pair lock, to diff, once
            per journal window, to fold; never during HTTP calls). It holds the journal and
            the pair lock too, so a run may follow a crashed one on another machine.
        state_dir: a local folder for scratch Parquet files (``scratch/``): disposable, any
            folder will do (a journal file an earlier version left in ``journal/`` is
            imported into the warehouse first).
        segment, destination: names (``^[a-z][a-z0-9_]*$``), keys of ``sync_state``.
        audience_id: the platform's audience or list id.
        mode: ``mirror`` (adds, updates, removes), ``upsert`` (adds, updates) or ``add_only``.
        fields: merge field name -> ``customers`` column (email destinations; ``{}`` for ad).
        kind: ``ad`` | ``email``; normalization: ``base`` | ``google`` (which key an ad
            destination matches on).
        purpose: the segment's purpose; a subject whose latest consent for it is withdrawn is
            removed in every mode (see :mod:`orchestrator.sync.diff`).
        other_purposes: purposes whose withdrawals do the same (the other marketing purposes
            of a marketing segment: :func:`orchestrator.consent.segment_counted_purposes`).
        retention_days: in modes upsert and add_only, members who left the audience more than
            this many days before ``as_of`` are removed (None: kept until they act).
        client: the destination client (required unless ``dry_run``).
        as_of: timestamp recorded as ``synced_at``/``rejected_at`` (UTC); default: wall clock.
        dry_run: compute the diff and the report, send nothing (``api_calls`` 0).
        batch_size: rows per call, at most ``client.max_batch_size`` (default: that maximum).
        lock_timeout_s: how long to wait for the warehouse lock each time it is opened (s).
        on_batch: called after each batch's call with the count of batches called so far.
        rows_per_call: how many rows one call carries per operation, for ``min_api_calls``
            (e.g. ``functools.partial(destinations.registry.platform_rows_per_call, platform)``
            in a dry run); default: the client's (:func:`destinations.base.client_rows_per_call`),
            or ``batch_size`` for every operation without a client.
        allow_mass_removal: send even when the diff would remove more than
            :data:`MASS_REMOVAL_FRACTION` of the members held for leaving the segment (see
            :class:`MassRemovalError`).
        lease_s: the pair lock's lease (s): how long after this process stops renewing it
            (killed, its machine gone) another run may take the pair over; on this host a dead
            holder is replaced at once.
        lock_wait_s: how long to wait for another sync of the pair to finish (s; 0: fail at
            once). The diff is computed after the wait, so it sees what changed meanwhile.
        signals: consent signals sent with each ad member, name -> (purpose, validity days)
            (:mod:`orchestrator.consent_signals`).
        phone_platform: ``google`` | ``meta``: send the customer's phone as a second
            identifier, hashed by that platform's rules, when ``customers`` has a phone column.
        project: the project whose source model's views the diff reads (made current before
            the diff, like every other reader: :func:`orchestrator.warehouse.connect.connect`);
            None: the views as they are.

    Returns:
        The :class:`SyncReport`.

    Raises:
        MassRemovalError: the diff would empty most of the destination for leaving the segment
            (a segment edit that matches nobody?); nothing was sent.
        ValueError: a bad mode/kind/normalization/field mapping or name, or no client.
        SyncInProgressError: another run (any process, any machine) is still syncing this pair
            after ``lock_wait_s``; the message names its host and process. ``PairLockLost`` (a
            subclass): this run's lease ran out and another run took over; it stopped before
            its next call.
        destinations.errors.DestinationError: a call failed after the client's retries; what
            was acknowledged before it is folded into ``sync_state`` first.
        duckdb.IOException: the warehouse stayed locked for ``lock_timeout_s``.
    """
    started = time.monotonic()
    now = _naive_utc(as_of) if as_of else datetime.now(UTC).replace(tzinfo=None)
    params = DiffParams(
        segment,
        destination,
        mode,
        kind,
        normalization,
        dict(fields),
        purpose,
        retention_days,
        now,
        tuple(other_purposes),
        signals=dict(signals or {}),
        phone_platform=phone_platform,
    )
    if client is None and not dry_run:
        raise ValueError("a client is required unless dry_run")
    size = min(batch_size or 10**9, client.max_batch_size) if client else batch_size or 10_000
    if size < 1:
        raise ValueError("batch_size must be at least 1")
    journal.check_pair(segment, destination)
    scratch = Path(state_dir) / "scratch" / f"{segment}__{destination}"
    with pair_lock(
        as_target(warehouse_path, project),
        segment,
        destination,
        lease_s=lease_s,
        lock_timeout_s=lock_timeout_s,
    ) as lock:
        job = _Job(
            as_target(warehouse_path, project),
            params,
            audience_id,
            size,
            as_of,
            lock_timeout_s,
            on_batch,
            lock,
        )
        shutil.rmtree(scratch, ignore_errors=True)  # a crashed run's files (may hold emails)
        scratch.mkdir(parents=True)
        try:
            with connect(job.warehouse_path, timeout_s=lock_timeout_s) as con:
                # journals earlier versions kept as local files
                journal.import_file_journal(con, Path(state_dir), segment, destination)
                async_requests.import_file_requests(con, Path(state_dir), segment, destination)
            if client is not None and not dry_run and async_requests.is_async(client):
                _confirm_requests(job, client)
            with connect(job.warehouse_path, timeout_s=lock_timeout_s, project=project) as con:
                recovered = fold_journal(
                    con,
                    segment=segment,
                    destination=destination,
                    kind=kind,
                    before_fold=partial(
                        async_requests.fold_requests, segment=segment, destination=destination
                    ),
                )
                track_departures(con, segment=segment, destination=destination, now=now)
                plan = compute_diff(con, params, scratch)
                if rows_per_call is None and client is not None:
                    rows_per_call = partial(client_rows_per_call, client)
                report = _report(plan, size, rows_per_call, recovered.pending, dry_run)
                _fill_stuck(con, segment, destination, report)
            if not dry_run:
                if not allow_mass_removal:
                    check_mass_removal(plan, segment, destination)
                _send_and_fold(job, plan, client, report)
                if async_requests.is_async(client):
                    report.requests_processing = _count_outstanding(job)
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
    report.duration_s = time.monotonic() - started
    return report


def preview_diff(
    warehouse_path: Warehouse,
    state_dir: Path,
    *,
    segment: str,
    destination: str,
    mode: str,
    fields: Mapping[str, str],
    kind: str,
    normalization: str = "base",
    purpose: str | None = None,
    retention_days: int | None = None,
    max_batch_size: int = 10_000,
    lock_timeout_s: float = 60,
    rows_per_call: RowsPerCall | None = None,
) -> SyncReport:
    """What :func:`run_sync` would send, without sending (a dry run; ``min_api_calls`` uses
    ``max_batch_size`` and ``rows_per_call``, as in :func:`run_sync`). Folds a leftover journal
    first, like a real run."""
    return run_sync(
        warehouse_path,
        state_dir,
        segment=segment,
        destination=destination,
        audience_id="",
        mode=mode,
        fields=fields,
        kind=kind,
        normalization=normalization,
        purpose=purpose,
        retention_days=retention_days,
        dry_run=True,
        batch_size=max_batch_size,
        lock_timeout_s=lock_timeout_s,
        rows_per_call=rows_per_call,
    )


__all__ = [
    "BatchHook",
    "MassRemovalError",
    "SyncReport",
    "check_mass_removal",
    "preview_diff",
    "run_sync",
]
