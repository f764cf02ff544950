"""DuckDB and PostgreSQL side by side: the stages ported to PostgreSQL (segment members,
audience, diff) timed on the same generated warehouse on both backends.

``python -m bench warehouses --customers 100000`` generates the bench warehouse
(:func:`bench.generator.generate_warehouse`), copies its tables into PostgreSQL
(:func:`orchestrator.warehouse.transfer.copy_duckdb_to_postgres`; a server started in a
temporary folder from Debian's binaries when ``--postgres-url`` is not given, as the tests
start theirs), then runs, per backend and per bench segment, the segment, audience and diff
stages twice: a first run (empty product tables) and a second with nothing changed.
Reported per stage and backend: wall seconds, the client process's CPU seconds and, for
PostgreSQL, the server backend's CPU seconds (``/proc/<pid>/stat`` of the session's
process: the server must run on this machine for that column). The send to the platforms
and the sync state are not ported yet: not measured here (``python -m bench run``).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import date
from pathlib import Path
from typing import Any

import duckdb

from bench.generator import generate_warehouse
from bench.scenario import AS_OF, SEGMENT_NAMES, project_config, segment_spec
from orchestrator.audience import build_segment_audience
from orchestrator.config import PostgresWarehouse
from orchestrator.model.views import refresh_source_views
from orchestrator.segments.materialize import write_segment_members
from orchestrator.sync.diff import DiffParams, compute_diff
from orchestrator.warehouse.connect import connect
from orchestrator.warehouse.factory import open_postgres
from orchestrator.warehouse.transfer import copy_duckdb_to_postgres

_PASSWORD_ENV = "BENCH_PG_PASSWORD"
_TICKS = os.sysconf("SC_CLK_TCK")


def _server_cpu_s(pid: int | None) -> float:
    """utime + stime of a local server process (0 when unknown)."""
    if pid is None:
        return 0.0
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / _TICKS


def _timed(work: Callable[[], Any], server_pid: int | None) -> dict[str, float]:
    wall, cpu, server = time.perf_counter(), time.process_time(), _server_cpu_s(server_pid)
    work()
    return {
        "seconds": round(time.perf_counter() - wall, 3),
        "client_cpu_s": round(time.process_time() - cpu, 3),
        "server_cpu_s": round(_server_cpu_s(server_pid) - server, 3),
    }


def _stages(con: Any, scratch: Path, server_pid: int | None, run: str) -> dict[str, Any]:
    project = project_config()
    out: dict[str, Any] = {}
    for name in SEGMENT_NAMES:
        spec = segment_spec(name, project)
        entry = spec.destinations[0]
        destination = project.destinations[entry.destination]
        params = DiffParams(
            segment=spec.id, destination=entry.destination, mode=entry.mode,
            kind=destination.kind.value, normalization=destination.normalization,
            fields=dict(entry.fields), purpose=spec.purpose, as_of=AS_OF,
        )  # fmt: skip
        folder = scratch / f"{run}-{name}"
        folder.mkdir(parents=True)
        out[f"{name}/segment"] = _timed(
            lambda spec=spec: write_segment_members(con, spec, AS_OF), server_pid
        )
        out[f"{name}/audience"] = _timed(
            lambda spec=spec: build_segment_audience(con, spec, project, AS_OF), server_pid
        )
        out[f"{name}/diff"] = _timed(lambda p=params, f=folder: compute_diff(con, p, f), server_pid)
    return out


@contextmanager
def _postgres(url: str | None) -> Iterator[str]:
    """A PostgreSQL URL (password in :data:`_PASSWORD_ENV`): ``url``, or a local server in a
    temporary folder for the run (the tests' starter, :mod:`tests.servers`)."""
    if url is not None:
        yield url
        return
    from tests.servers import running_postgres

    with running_postgres("bench") as server:
        os.environ[_PASSWORD_ENV] = server.password
        yield f"postgresql://{server.user}@{server.host}:{server.port}/{server.dbname}"


def compare_warehouses(
    customers: int, work: Path, *, seed: int, postgres_url: str | None = None
) -> dict[str, Any]:
    """Run the comparison (module docstring); return the results as a JSON-able dict."""
    path = work / "warehouse.duckdb"
    generate_warehouse(path, customers=customers, seed=seed, as_of=AS_OF)
    project = project_config()
    results: dict[str, Any] = {"customers": customers, "seed": seed, "date": str(date.today())}
    with connect(path, project=project) as con:
        for run in ("first", "no_change"):
            results[f"duckdb/{run}"] = _stages(con, work / "duck", None, run)
    with _postgres(postgres_url) as url:
        config = PostgresWarehouse(kind="postgres", url=url, password_env=_PASSWORD_ENV)
        con = open_postgres(config)
        duck = duckdb.connect(str(path), read_only=True)
        try:
            started = time.perf_counter()
            copy_duckdb_to_postgres(duck, con)
            results["postgres/load_s"] = round(time.perf_counter() - started, 3)
            refresh_source_views(con, project.source, project.purposes)
            con.execute("ANALYZE")
            (pid,) = con.execute("SELECT pg_backend_pid()").fetchone()
            local = Path(f"/proc/{pid}").exists()
            for run in ("first", "no_change"):
                results[f"postgres/{run}"] = _stages(con, work / "pg", pid if local else None, run)
        finally:
            duck.close()
            con.close()
    return results


def render_markdown(results: dict[str, Any]) -> str:
    """The results as a table: one row per stage and run, DuckDB and PostgreSQL side by side."""
    lines = [
        f"# DuckDB and PostgreSQL side by side, {results['customers']:,} customers "
        f"({results['date']}, seed {results['seed']})",
        "",
        f"Copy of the generated warehouse into PostgreSQL: {results['postgres/load_s']} s.",
        "",
        "| run | stage | DuckDB s | DuckDB CPU s | PostgreSQL s | client CPU s | server CPU s |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for run in ("first", "no_change"):
        duck, pg = results[f"duckdb/{run}"], results[f"postgres/{run}"]
        for stage, d in duck.items():
            p = pg[stage]
            lines.append(
                f"| {run} | {stage} | {d['seconds']} | {d['client_cpu_s']} | {p['seconds']} "
                f"| {p['client_cpu_s']} | {p['server_cpu_s']} |"
            )
    return "\n".join(lines) + "\n"


def write_results(results: dict[str, Any], results_dir: Path) -> tuple[Path, Path]:
    """``<date>-<customers>-warehouses.json`` and ``.md`` in ``results_dir``."""
    stem = f"{results['date']}-{results['customers']}-warehouses"
    json_path, md_path = results_dir / f"{stem}.json", results_dir / f"{stem}.md"
    json_path.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    md_path.write_text(render_markdown(results), encoding="utf-8")
    return json_path, md_path


__all__ = ["compare_warehouses", "render_markdown", "write_results"]
