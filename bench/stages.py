"""The stages, each run in its own process by ``python -m bench stage <kind> JOB RESULT``.

A job is a JSON object (see :mod:`bench.runner` for the fields); each stage returns a
JSON-able dict with at least ``seconds`` (wall time of the work, imports excluded), ``rows``,
``rows_per_s`` and ``peak_rss_mib`` (the process's ``VmHWM``: imports included), plus
``import_rss_mib`` (RSS once imports are done, before the work) and ``memory_growths`` (the
warnings of each time a step ran out of DuckDB memory and retried with a doubled limit).
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

from bench import measure
from bench.backend import load_postgres, warehouse_of
from bench.baseline import duckdb_floor, naive_diff
from bench.end_to_end import naive_end_to_end, same_work_floor
from bench.generator import generate_warehouse
from bench.scenario import project_config, segment_spec
from destinations.base import CallStats, RemoveReason, Row, RowResult, client_rows_per_call
from destinations.registry import build_client
from orchestrator.audience import build_segment_audience
from orchestrator.segments.materialize import write_segment_members
from orchestrator.sync.engine import SyncReport, run_sync
from orchestrator.warehouse.connect import connect

Job = dict[str, Any]


def _as_of(job: Job) -> datetime:
    return datetime.fromisoformat(job["as_of"])


def _result(seconds: float, rows: int, **extra: Any) -> dict[str, Any]:
    return {
        "seconds": seconds,
        "rows": rows,
        "rows_per_s": measure.rate(rows, seconds),
        "peak_rss_mib": measure.peak_rss_mib(),
        **extra,
    }


def generate_stage(job: Job) -> dict[str, Any]:
    """Generate the warehouse (:func:`bench.generator.generate_warehouse`); job fields
    ``warehouse``, ``customers``, ``seed``, ``as_of``. Returns the row counts and seconds."""
    stats = generate_warehouse(
        Path(job["warehouse"]), customers=job["customers"], seed=job["seed"], as_of=_as_of(job)
    )
    return {**vars(stats), "peak_rss_mib": measure.peak_rss_mib()}


def load_postgres_stage(job: Job) -> dict[str, Any]:
    """Copy the generated warehouse (``warehouse``) into the server at ``postgres_url``
    (:func:`bench.backend.load_postgres`). Returns ``load_s``, ``rows`` per table and the
    server's version."""
    loaded = load_postgres(Path(job["warehouse"]), job["postgres_url"])
    return {**loaded, "seconds": loaded["load_s"], "peak_rss_mib": measure.peak_rss_mib()}


def segment_stage(job: Job) -> dict[str, Any]:
    """:func:`orchestrator.segments.materialize.write_segment_members` (the ``segment/<id>``
    asset's body). ``rows``: customers scanned; ``members`` written."""
    spec = segment_spec(job["segment"], project_config())
    as_of = _as_of(job)
    started = time.perf_counter()
    with connect(warehouse_of(job)) as con:
        members = write_segment_members(con, spec, as_of)
        (customers,) = con.execute("SELECT count(*) FROM customers").fetchone()
    return _result(time.perf_counter() - started, customers, members=members)


def audience_stage(job: Job) -> dict[str, Any]:
    """:func:`orchestrator.audience.build_audience` for the segment. ``rows``: segment
    members classified; ``members`` and ``excluded`` (by reason) as it reports."""
    project = project_config()
    spec = segment_spec(job["segment"], project)
    started = time.perf_counter()
    with connect(warehouse_of(job)) as con:
        stats = build_segment_audience(con, spec, project, _as_of(job))
    rows = stats.members + sum(stats.excluded.values())
    return _result(
        time.perf_counter() - started, rows, members=stats.members, excluded=stats.excluded
    )


class RecordingClient:
    """A destination client wrapper that times the calls and writes the sent subject keys.

    Delegates to ``inner``; for each call appends the rows' subject keys to
    ``<keys_dir>/<op>.keys`` (one per line), adds the call's wall time to ``call_s``, and at
    the FIRST call notes the time (``first_call_at``, ``time.perf_counter``) and the peak RSS
    so far (``peak_before_first_call_mib``), then resets the peak (see :mod:`bench.measure`).
    """

    def __init__(self, inner: Any, keys_dir: Path) -> None:
        self._inner = inner
        self.name: str = inner.name
        self.kind: str = inner.kind
        self.max_batch_size: int = inner.max_batch_size
        self.keys_dir = keys_dir
        self.call_s = 0.0
        self.first_call_at: float | None = None
        self.first_call_cpu_s: float | None = None
        self.peak_before_first_call_mib: float | None = None
        self.peak_reset = False
        keys_dir.mkdir(parents=True, exist_ok=True)

    @property
    def stats(self) -> CallStats:
        """The inner client's counters."""
        return self._inner.stats

    def _timed(self, op: str, rows: Sequence[Row], call: Callable[[], list[RowResult]]):
        if self.first_call_at is None:
            self.first_call_at = time.perf_counter()
            self.first_call_cpu_s = measure.cpu_s()
            self.peak_before_first_call_mib = measure.vm_hwm_mib()
            self.peak_reset = measure.reset_peak()
        with (self.keys_dir / f"{op}.keys").open("a") as handle:
            handle.writelines(f"{row.subject_key}\n" for row in rows)
        started = time.perf_counter()
        try:
            return call()
        finally:
            self.call_s += time.perf_counter() - started

    def add(self, audience_id: str, rows: Sequence[Row]) -> list[RowResult]:
        return self._timed("add", rows, lambda: self._inner.add(audience_id, rows))

    def update(self, audience_id: str, rows: Sequence[Row]) -> list[RowResult]:
        return self._timed("update", rows, lambda: self._inner.update(audience_id, rows))

    def remove(
        self, audience_id: str, rows: Sequence[Row], reason: RemoveReason
    ) -> list[RowResult]:
        return self._timed("remove", rows, lambda: self._inner.remove(audience_id, rows, reason))

    def rows_per_call(self, op: str, reason: RemoveReason | None) -> int:
        """The inner client's rows per call (see ``destinations.base.client_rows_per_call``)."""
        return client_rows_per_call(self._inner, op, reason)

    def member_count(self, audience_id: str) -> int | None:
        return self._inner.member_count(audience_id)

    def close(self) -> None:
        """Close the inner client."""
        self._inner.close()


def minimum_calls(platform: str, report: SyncReport, max_batch_size: int) -> int:
    """The fewest HTTP requests the destination's API allows for what ``report`` sent.

    Batch endpoints: ceil(rows / max_batch_size) per send group. Mailchimp has no batch
    archive or batch permanent delete (Marketing API: ``DELETE /lists/{id}/members/{hash}``
    and ``.../actions/delete-permanent`` take one member), so ``left_segment`` and
    ``erasure`` removes there cost one request per row. Meta's update is a no-op (no fields).
    """
    by_reason = report.removes_by_reason

    def batches(n: int) -> int:
        return math.ceil(n / max_batch_size)

    if platform == "meta":
        return sum(batches(n) for n in by_reason.values()) + batches(report.adds)
    per_row = by_reason.get("left_segment", 0) + by_reason.get("erasure", 0)
    batched = by_reason.get("consent_withdrawn", 0) + by_reason.get("objection", 0)
    return per_row + batches(batched) + batches(report.adds) + batches(report.updates)


def _client(job: Job, destination: str, platform: str, project: Any) -> Any:
    cfg = project.destinations[destination]
    if platform == "meta":
        return build_client(destination, cfg, job["meta_url"], job["meta_token"])
    return build_client(destination, cfg, job["mailchimp_url"], job["mailchimp_token"])


def _pair(job: Job) -> tuple[Any, Any, Any, Any]:
    """(project, segment spec, its first destination entry, that destination's config)."""
    project = project_config()
    spec = segment_spec(job["segment"], project)
    entry = spec.destinations[0]
    return project, spec, entry, project.destinations[entry.destination]


def sync_stage(job: Job) -> dict[str, Any]:
    """:func:`orchestrator.sync.engine.run_sync` for the segment's (only) destination.

    Splits the run at the first destination call: ``diff`` is everything before it (journal
    fold, SQL diff, Parquet export), ``send`` everything after (batches, journal, calls, final
    fold). Without any call the whole run is the diff.
    """
    project, spec, entry, dest = _pair(job)
    client = RecordingClient(
        _client(job, entry.destination, dest.platform, project), Path(job["keys_dir"])
    )
    started, started_cpu = time.perf_counter(), measure.cpu_s()
    try:
        report = run_sync(
            warehouse_of(job),
            Path(job["state_dir"]),
            segment=spec.id,
            destination=entry.destination,
            audience_id=entry.audience_id,
            mode=str(entry.mode),
            fields=dict(entry.fields),
            kind=str(dest.kind),
            normalization=dest.normalization,
            client=client,
            as_of=_as_of(job),
        )
    finally:
        client.close()
    ended, ended_cpu = time.perf_counter(), measure.cpu_s()
    split = client.first_call_at or ended
    split_cpu = client.first_call_cpu_s or ended_cpu
    if client.first_call_at is None:
        diff_peak, send_peak = measure.peak_rss_mib(), 0.0
    else:  # the peak was reset at the first call (see RecordingClient)
        diff_peak = client.peak_before_first_call_mib or measure.peak_rss_mib()
        send_peak = measure.peak_rss_mib()
    total_peak = max(diff_peak, send_peak)
    report_dict = {k: v for k, v in vars(report).items()}
    diff_rows = report.adds + report.updates + report.unchanged + report.removes + report.kept
    sent = report.adds + report.updates + report.removes
    return {
        "seconds": ended - started,
        "peak_rss_mib": total_peak,
        "peak_reset_ok": client.peak_reset,
        "diff": {
            "seconds": split - started,
            "rows": diff_rows,
            "rows_per_s": measure.rate(diff_rows, split - started),
            "cpu_s": split_cpu - started_cpu,
            "peak_rss_mib": diff_peak,
        },
        "send": {
            "seconds": ended - split,
            "rows": sent,
            "rows_per_s": measure.rate(sent, ended - split),
            "cpu_s": ended_cpu - split_cpu,
            "peak_rss_mib": send_peak,
            "http_s": client.call_s,
        },
        "report": report_dict,
        "platform": dest.platform,
        "min_api_calls": minimum_calls(dest.platform, report, client.max_batch_size),
    }


def _batch_size(platform: str) -> int:
    """The destination's largest batch (rows): Meta 10,000, Mailchimp 500."""
    return 10_000 if platform == "meta" else 500


def naive_stage(job: Job) -> dict[str, Any]:
    """The naive baseline from our audience (:func:`bench.baseline.naive_diff`, the issue's
    definition) for the pair; writes its keys to ``<keys_dir>/<op>.keys``."""
    _project, spec, entry, dest = _pair(job)
    result = naive_diff(
        warehouse_of(job),
        segment=spec.id,
        destination=entry.destination,
        kind=str(dest.kind),
        mode=str(entry.mode),
        fields=dict(entry.fields),
        batch_size=_batch_size(dest.platform),
    )
    _write_keys(Path(job["keys_dir"]), result.keys)
    return _result(
        result.hashing_s + result.diff_s,
        result.rows,
        pull_s=result.pull_s,
        hash_s=result.hash_s,
        hashing_s=result.hashing_s,
        diff_s=result.diff_s,
        state_rows=result.state_rows,
        batches=result.batches,
        counts={op: len(keys) for op, keys in result.keys.items()},
    )


def _write_keys(keys_dir: Path, keys: dict[str, list[str]]) -> None:
    keys_dir.mkdir(parents=True, exist_ok=True)
    for op, op_keys in keys.items():
        (keys_dir / f"{op}.keys").write_text("".join(f"{k}\n" for k in op_keys))


def naive_e2e_stage(job: Job) -> dict[str, Any]:
    """The naive tool end to end (:func:`bench.end_to_end.naive_end_to_end`): from the source
    tables, not from our audience. Writes its keys to ``<keys_dir>/<op>.keys``. ``seconds``:
    query + pull + hash + diff; ``rows``: subjects in its target."""
    project, spec, entry, dest = _pair(job)
    result = naive_end_to_end(
        warehouse_of(job),
        spec=spec,
        project=project,
        as_of=_as_of(job),
        destination=entry.destination,
        kind=str(dest.kind),
        mode=str(entry.mode),
        fields=dict(entry.fields),
        batch_size=_batch_size(dest.platform),
    )
    _write_keys(Path(job["keys_dir"]), result.keys)
    return _result(
        result.total_s,
        result.rows,
        query_s=result.query_s,
        pull_s=result.pull_s,
        hash_s=result.hash_s,
        diff_s=result.diff_s,
        model_rows=result.model_rows,
        state_rows=result.state_rows,
        batches=result.batches,
        counts={op: len(keys) for op, keys in result.keys.items()},
    )


def floor_same_stage(job: Job) -> dict[str, Any]:
    """The same-work DuckDB floor (:func:`bench.end_to_end.same_work_floor`): one read-only
    query from the source tables to the add and remove key sets. ``rows``: target keys."""
    project = project_config()
    spec = segment_spec(job["segment"], project)
    floor = same_work_floor(
        Path(job["warehouse"]),
        spec=spec,
        project=project,
        as_of=_as_of(job),
        destination=spec.destinations[0].destination,
    )
    return _result(
        floor.seconds,
        floor.target_keys,
        target_keys=floor.target_keys,
        adds=floor.adds,
        removes=floor.removes,
    )


def floor_stage(job: Job) -> dict[str, Any]:
    """The raw DuckDB floor for the pair."""
    spec = segment_spec(job["segment"], project_config())
    floor = duckdb_floor(
        Path(job["warehouse"]), segment=spec.id, destination=spec.destinations[0].destination
    )
    return _result(
        floor.floor_s,
        floor.emails,
        sha256_s=floor.sha256_s,
        our_key_expr_s=floor.our_key_expr_s,
        antijoin_s=floor.antijoin_s,
        target_keys=floor.target_keys,
        state_keys=floor.state_keys,
    )


STAGES: dict[str, Callable[[Job], dict[str, Any]]] = {
    "generate": generate_stage,
    "load_postgres": load_postgres_stage,
    "segment": segment_stage,
    "audience": audience_stage,
    "sync": sync_stage,
    "naive": naive_stage,
    "floor": floor_stage,
    "naive_e2e": naive_e2e_stage,
    "floor_same": floor_same_stage,
}


def _stage(kind: str) -> Callable[[Job], dict[str, Any]]:
    from bench.mock_probe import probe_stage

    return {**STAGES, "mock_probe": probe_stage}[kind]


class _Collect(logging.Handler):
    def __init__(self, into: list[str]) -> None:
        super().__init__(logging.WARNING)
        self.into = into

    def emit(self, record: logging.LogRecord) -> None:
        self.into.append(record.getMessage())


@contextmanager
def collecting_memory_growths() -> Iterator[list[str]]:
    """Collect, while the block runs, the warnings of
    :func:`orchestrator.warehouse.memory.with_memory_growth` (one per time a step ran out of
    DuckDB memory and was retried with the limit doubled), so a stage's peak RSS can be read
    against the limit it actually ran with."""
    grown: list[str] = []
    handler = _Collect(grown)
    logger = logging.getLogger("orchestrator.warehouse.memory")
    logger.addHandler(handler)
    try:
        yield grown
    finally:
        logger.removeHandler(handler)


def run_stage_file(kind: str, job_file: Path, result_file: Path) -> None:
    """Entry point of a stage process: read the job, run the stage, write the result.

    Raises:
        KeyError: unknown ``kind``.
    """
    stage = _stage(kind)
    job = json.loads(Path(job_file).read_text())
    import_rss, cpu_before = measure.vm_rss_mib(), measure.cpu_s()
    with collecting_memory_growths() as grown:
        result = stage(job)
    result["import_rss_mib"] = import_rss
    result["memory_growths"] = grown
    result.setdefault("cpu_s", measure.cpu_s() - cpu_before)
    Path(result_file).write_text(json.dumps(result, indent=2, default=str))


def run_stage_inline(kind: str, job: Job, jobs_dir: Path, name: str) -> dict[str, Any]:
    """Run a stage in THIS process, with the job and result passing through JSON files like
    :func:`bench.measure.run_stage` (same signature). For tests: fast, but its peak RSS
    figures are the whole process's, not the stage's."""
    jobs_dir.mkdir(parents=True, exist_ok=True)
    job_file = jobs_dir / f"{name}.job.json"
    result_file = jobs_dir / f"{name}.result.json"
    job_file.write_text(json.dumps(job))
    run_stage_file(kind, job_file, result_file)
    return json.loads(result_file.read_text())


__all__ = [
    "STAGES",
    "RecordingClient",
    "minimum_calls",
    "run_stage_file",
    "run_stage_inline",
]
