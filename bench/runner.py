"""Run the whole benchmark: generate, start the mocks, three runs, compare, collect.

Runs, each over both segments of :mod:`bench.scenario`:

1. ``full``: first sync into empty destinations (then the mock is measured alone);
2. ``incremental``: after :func:`bench.generator.apply_changes` (about 1% of members move);
3. ``no_change``: nothing changed since run 2.

In each run: ``segment`` then ``audience`` for every segment; then per (segment, destination)
the two naive baselines (from our audience, :mod:`bench.baseline`; end to end from the source
tables, :mod:`bench.end_to_end`) and the two DuckDB floors (the issue's, and the same-work
one), all reading the state the sync starts from, then the sync (diff + send). The keys our
sync sent are compared with each naive diff (``diff_check``, ``diff_check_e2e``). Every stage
is a fresh process (:func:`bench.measure.run_stage`), run one after another, so no two touch
the warehouse at once.
"""

from __future__ import annotations

import math
import platform
import time
from collections.abc import Callable
from contextlib import ExitStack
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb

from bench import measure
from bench.backend import postgres_server, reload_tables
from bench.generator import apply_changes
from bench.scenario import AS_OF, SEGMENT_NAMES
from destinations.mock.testing import MockHandle, running_mock

RUNS: tuple[str, ...] = ("full", "incremental", "no_change")
OPS: tuple[str, ...] = ("add", "remove", "update")
#: The mock-alone probe sends at most this many Mailchimp batches (500 rows each): enough for a
#: steady rate, without doubling the 1M benchmark's time.
MAILCHIMP_PROBE_CAP = 400

Log = Callable[[str], None]
#: Runs one stage: (kind, job, jobs_dir, name) -> result (see :func:`bench.measure.run_stage`).
StageRunner = Callable[[str, dict[str, Any], Path, str], dict[str, Any]]


def _keys(con: duckdb.DuckDBPyConnection, path: Path, table: str) -> None:
    con.execute(f"CREATE OR REPLACE TEMP TABLE {table} (k VARCHAR)")
    if path.exists() and path.stat().st_size > 0:
        con.execute(
            f"INSERT INTO {table} SELECT k FROM read_csv(?, header = false, "
            "columns = {'k': 'VARCHAR'})",
            [str(path)],
        )


def compare_keys(ours_dir: Path, naive_dir: Path) -> dict[str, Any]:
    """Compare the keys our sync sent with the naive diff, per op.

    Returns ``{"identical": bool, "<op>": {"ours", "naive", "only_ours", "only_naive"}}``
    (counts; duplicates sent twice count in ``ours``).
    """
    out: dict[str, Any] = {}
    con = duckdb.connect()
    try:
        for op in OPS:
            _keys(con, ours_dir / f"{op}.keys", "ours")
            _keys(con, naive_dir / f"{op}.keys", "naive")
            ours, naive, only_ours, only_naive = con.execute(
                "SELECT (SELECT count(*) FROM ours), (SELECT count(*) FROM naive),"
                " (SELECT count(*) FROM ours ANTI JOIN naive USING (k)),"
                " (SELECT count(*) FROM naive ANTI JOIN ours USING (k))"
            ).fetchone()
            out[op] = {
                "ours": ours,
                "naive": naive,
                "only_ours": only_ours,
                "only_naive": only_naive,
            }
    finally:
        con.close()
    out["identical"] = all(
        v["ours"] == v["naive"] and v["only_ours"] == 0 and v["only_naive"] == 0
        for v in out.values()
    )
    return out


def _pair_result(
    segment: dict, audience: dict, compared: dict[str, dict], sync: dict
) -> dict[str, Any]:
    """One pair's results: our stages, the sync's report, and ``compared`` (``naive``,
    ``naive_e2e``, ``floor``, ``floor_same``, ``diff_check``, ``diff_check_e2e``)."""
    report = sync["report"]
    return {
        "platform": sync["platform"],
        "segment": segment,
        "audience": audience,
        "diff": sync["diff"],
        "send": sync["send"],
        "sync_seconds": sync["seconds"],
        "sync_peak_rss_mib": sync["peak_rss_mib"],
        "sync_memory_growths": sync.get("memory_growths", []),
        "peak_reset_ok": sync["peak_reset_ok"],
        "report": report,
        "api_calls": report["api_calls"],
        "min_api_calls": sync["min_api_calls"],
        "engine_min_api_calls": report["min_api_calls"],
        "bytes_sent": report["bytes_sent"],
        **compared,
    }


def _compared_kinds(job: dict[str, Any]) -> tuple[str, ...]:
    """The comparisons run beside the sync: both naive baselines on either backend; the two
    DuckDB floors (DuckDB's own SQL, by definition) on DuckDB only."""
    if job.get("postgres_url"):
        return ("naive", "naive_e2e")
    return ("naive", "naive_e2e", "floor", "floor_same")


def _run(
    name: str, job: dict[str, Any], workdir: Path, log: Log, run_stage: StageRunner
) -> dict[str, Any]:
    jobs = workdir / "jobs" / name
    pre: dict[str, dict[str, dict]] = {}
    for seg in SEGMENT_NAMES:
        seg_job = {**job, "segment": seg}
        pre[seg] = {
            "segment": run_stage("segment", seg_job, jobs, f"{seg}.segment"),
            "audience": run_stage("audience", seg_job, jobs, f"{seg}.audience"),
        }
        log(f"  {name}/{seg}: segment and audience done")
    pairs = {}
    for seg in SEGMENT_NAMES:
        keys = workdir / "keys" / name / seg
        seg_job = {**job, "segment": seg}
        compared = {
            kind: run_stage(kind, {**seg_job, "keys_dir": str(keys / kind)}, jobs, f"{seg}.{kind}")
            for kind in _compared_kinds(job)
        }
        sync_job = {**seg_job, "keys_dir": str(keys / "ours")}
        sync = run_stage("sync", sync_job, jobs, f"{seg}.sync")
        compared["diff_check"] = compare_keys(keys / "ours", keys / "naive")
        compared["diff_check_e2e"] = compare_keys(keys / "ours", keys / "naive_e2e")
        pairs[seg] = _pair_result(pre[seg]["segment"], pre[seg]["audience"], compared, sync)
        log(f"  {name}/{seg}: sync done, {sync['report']['api_calls']} calls")
    return {"name": name, "pairs": pairs}


def _probe(
    job: dict[str, Any], full: dict[str, Any], workdir: Path, run_stage: StageRunner
) -> dict[str, Any]:
    """The mock alone, with as many max-size batches as the full sync sent (Mailchimp capped
    at :data:`MAILCHIMP_PROBE_CAP`)."""
    sent = {p["platform"]: p["report"]["adds"] for p in full["pairs"].values()}
    probe_job = {
        **job,
        "meta_batches": math.ceil(sent.get("meta", 0) / 10_000),
        "mailchimp_batches": min(MAILCHIMP_PROBE_CAP, math.ceil(sent.get("mailchimp", 0) / 500)),
    }
    return run_stage("mock_probe", probe_job, workdir / "jobs", "mock_probe")


def _base_job(
    warehouse: Path, workdir: Path, mock: MockHandle, postgres_url: str | None
) -> dict[str, Any]:
    return {
        "warehouse": str(warehouse),
        "postgres_url": postgres_url,
        "state_dir": str(workdir / "state"),
        "as_of": AS_OF.isoformat(),
        "meta_url": mock.meta_url,
        "meta_token": mock.meta_token,
        "mailchimp_url": mock.mailchimp_url,
        "mailchimp_token": mock.mailchimp_token,
    }


def _machine() -> dict[str, Any]:
    import os

    from orchestrator.settings import duckdb_config

    return {
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "duckdb": duckdb.__version__,
        "platform": platform.platform(),
        "duckdb_memory_limit": duckdb_config()["memory_limit"],
    }


def run_benchmark(
    customers: int,
    workdir: Path,
    *,
    seed: int,
    log: Log = print,
    run_stage: StageRunner = measure.run_stage,
    backend: str = "duckdb",
    postgres_url: str | None = None,
) -> dict[str, Any]:
    """Run the whole benchmark in ``workdir`` (created; must not hold a warehouse yet).

    ``run_stage`` runs each stage; the default starts a fresh process per stage (the only way
    the per-stage peak RSS means anything). Tests pass an in-process runner for speed.
    ``backend``: ``duckdb`` (the generated file) or ``postgres`` (a copy of it on the server
    at ``postgres_url``, password in the environment, or on a local server started in
    ``workdir``: :mod:`bench.backend`); on PostgreSQL the DuckDB floors are not run.

    Returns the results document (JSON-able): ``customers``, ``seed``, ``as_of``,
    ``started_at``, ``machine``, ``warehouse`` (row counts, build seconds), ``changes``,
    ``mock_probe``, ``runs`` (list of ``{"name", "pairs": {segment: ...}}``), ``wall_s``,
    ``parent_peak_rss_mib``, ``backend`` and, on PostgreSQL, ``postgres`` (the load's
    seconds and rows, the server's version, the reload after the changes).

    Raises:
        FileExistsError: ``workdir`` already holds a warehouse.
        bench.measure.StageError: a stage failed.
    """
    started = time.perf_counter()
    started_at = datetime.now(UTC).replace(microsecond=0).isoformat()
    workdir.mkdir(parents=True, exist_ok=True)
    warehouse = workdir / "warehouse.duckdb"
    log(f"generating {customers:,} customers in {warehouse}")
    gen_job = {"warehouse": str(warehouse), "customers": customers, "seed": seed}
    built = run_stage("generate", {**gen_job, "as_of": AS_OF.isoformat()}, workdir, "generate")
    log(f"  {built['events']:,} events, {built['consents']:,} consents in {built['seconds']:.1f} s")
    runs, changes, probe, loaded = [], None, None, None
    with ExitStack() as stack:
        url = None
        if backend == "postgres":
            url = stack.enter_context(postgres_server(workdir, postgres_url))
            load_job = {"warehouse": str(warehouse), "postgres_url": url}
            loaded = run_stage("load_postgres", load_job, workdir, "load_postgres")
            log(f"  copied into PostgreSQL {loaded['server_version']} in {loaded['load_s']:.1f} s")
        mock = stack.enter_context(running_mock(workdir / "mock"))
        job = _base_job(warehouse, workdir, mock, url)
        for name in RUNS:
            if name == "incremental":
                changes = apply_changes(warehouse, seed=seed, as_of=AS_OF)
                log(f"changes: {changes}")
                if url is not None:
                    loaded["reload_s"] = reload_tables(warehouse, url)
            log(f"run {name}")
            runs.append(_run(name, job, workdir, log, run_stage))
            if name == "full":
                probe = _probe(job, runs[0], workdir, run_stage)
                log("mock probe done")
    return {
        "customers": customers,
        "seed": seed,
        "as_of": AS_OF.isoformat(),
        "started_at": started_at,
        "machine": _machine(),
        "warehouse": built,
        "changes": vars(changes) if changes else None,
        "mock_probe": probe,
        "runs": runs,
        "wall_s": time.perf_counter() - started,
        "parent_peak_rss_mib": measure.peak_rss_mib(),
        "backend": backend,
        "postgres": loaded,
    }


__all__ = ["MAILCHIMP_PROBE_CAP", "RUNS", "compare_keys", "run_benchmark"]
