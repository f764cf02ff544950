"""``make demo``: build the demo warehouse, start the mock destinations, materialize every
segment through Dagster, print a summary.

Run as ``python -m orchestrator.demo``. Uses the Dagster instance in ``DAGSTER_HOME`` (the
Makefile sets it to ``.dagster_home``), so the runs show up in ``make ui`` afterwards.
The warehouse is built only when missing: sync state lives in it, so a second ``make demo``
finds nothing to send. ``make clean-demo`` starts over.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import click
import requests
from rich.console import Console, Group

from orchestrator.config import load_project_config
from orchestrator.segments.loader import load_segments
from orchestrator.settings import Settings

if TYPE_CHECKING:
    from dagster import DagsterInstance

ALL_SEGMENTS_JOB = "all_segments_job"
PRIVACY_CHECKS_JOB = "privacy_checks_job"
DEMO_PID_TAG = "activation/demo_pid"


def ensure_warehouse(settings: Settings, console: Console) -> None:
    """Build the demo warehouse from the shipped real data if the file does not exist, or
    rebuild it when it predates the retailer's layout the demo's model maps (its tables of
    :data:`orchestrator.warehouse.demo.DEMO_TABLES` missing)."""
    from orchestrator.warehouse.demo import build_demo_warehouse, has_demo_layout

    if settings.warehouse_path.exists():
        if has_demo_layout(settings.warehouse_path):
            console.print(f"warehouse: reusing {settings.warehouse_path}")
            return
        console.print(
            f"warehouse: {settings.warehouse_path} has an older layout; rebuilding it "
            "(its activation tables go too)"
        )

    settings.warehouse_path.parent.mkdir(parents=True, exist_ok=True)
    now = datetime.now(UTC).replace(tzinfo=None, microsecond=0)  # the web events end now
    report = build_demo_warehouse(settings.warehouse_path, as_of=now.date(), built_at=now)
    counts = ", ".join(f"{n:,} {table}" for table, n in report.table_counts().items())
    console.print(f"warehouse: built {settings.warehouse_path} ({counts})")


def _healthy(port: int) -> bool:
    try:
        return requests.get(f"http://127.0.0.1:{port}/healthz", timeout=1).ok
    except requests.RequestException:
        return False


def start_mock(port: int, state_dir: Path, console: Console) -> None:
    """Start the mock destinations in the background unless one already answers on ``port``.

    Raises:
        click.ClickException: the server did not become healthy within 20 seconds.
    """
    if _healthy(port):
        console.print(f"mock destinations: already running on port {port}")
        return
    state_dir.mkdir(parents=True, exist_ok=True)
    log = open(state_dir / "server.log", "ab")  # noqa: SIM115 - handed to the child process
    command = [sys.executable, "-m", "destinations.mock", "--port", str(port)]
    proc = subprocess.Popen(
        [*command, "--state-dir", str(state_dir)],
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    (state_dir / "server.pid").write_text(str(proc.pid))
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if _healthy(port):
            console.print(f"mock destinations: started on port {port} (pid {proc.pid})")
            return
        if proc.poll() is not None:
            break
        time.sleep(0.2)
    raise click.ClickException(f"mock destinations did not start; see {state_dir}/server.log")


def stop_mock(state_dir: Path, console: Console) -> None:
    """Stop a mock server started by :func:`start_mock` (no-op when none is recorded)."""
    pid_file = state_dir / "server.pid"
    if not pid_file.exists():
        return
    try:
        os.killpg(int(pid_file.read_text()), signal.SIGTERM)
        console.print("mock destinations: stopped")
    except (ProcessLookupError, PermissionError, ValueError):
        pass
    pid_file.unlink(missing_ok=True)


def release_slots_of_dead_runs(instance: DagsterInstance, console: Console) -> None:
    """Free the pool slots of runs that are over.

    A demo killed mid-step (Ctrl-C, a closed terminal) can leave its ``duckdb`` pool slot
    claimed, and every later run would then wait for that pool forever. Runs that ended keep
    no slot; a run this demo started whose process is gone is marked failed first.
    """
    storage = instance.event_log_storage
    for run_id in sorted(storage.get_concurrency_run_ids()):
        run = instance.get_run_by_id(run_id)
        if run is not None and not run.is_finished and not _demo_process_gone(run.tags):
            continue
        if run is not None and not run.is_finished:
            instance.report_run_failed(run, "the demo process that ran it is gone")
        storage.free_concurrency_slots_for_run(run_id)
        console.print(f"released the pool slot held by ended run {run_id[:8]}")


def _demo_process_gone(tags: Mapping[str, str]) -> bool:
    pid = tags.get(DEMO_PID_TAG)
    if pid is None:
        return False  # not ours (e.g. a run launched from the UI): leave it alone
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except (PermissionError, ValueError):
        return False
    return False


def materialize_all(
    console: Console, log_path: Path, job: str = ALL_SEGMENTS_JOB, title: str = ""
) -> tuple[str, bool]:
    """Run ``job`` (default ``all_segments_job``) on the instance in ``DAGSTER_HOME`` with the
    live progress display of ``activation run`` (:mod:`orchestrator.launch`); return its run id
    and whether it succeeded, after printing why it failed if it did.

    Dagster's step-by-step log goes to ``log_path``; the same events are in the Dagster UI
    (``make ui``). Ctrl-C cancels the run cleanly and exits with status 130.
    """
    from dagster import DagsterInstance

    from orchestrator.launch import launch_job, summary_lines

    with DagsterInstance.get() as instance:
        release_slots_of_dead_runs(instance, console)
        outcome = launch_job(
            instance,
            job,
            console=console,
            title=title or "every segment: segment -> audience -> sync",
            tags={DEMO_PID_TAG: str(os.getpid())},
            log_path=log_path,
        )
    for line in summary_lines(outcome):
        console.print(line, style="red" if "failed:" in line else None, highlight=False)
    if outcome.interrupted:
        raise SystemExit(130)
    return outcome.run_id, outcome.success


def report_segment_errors(settings: Settings, console: Console) -> int:
    """Print each broken segment file as ``file:line field: message`` (the valid segments still
    run); returns how many problems were found. Dagster shows the same list in the
    ``segment_file_errors`` asset, which a terminal user may never open."""
    errors = load_segments(settings.segments_dir, load_project_config(settings.config_path)).errors
    for error in errors:
        console.print(f"[red]segment file skipped: {error}[/red]", highlight=False)
    if errors:
        console.print("the other segments run; `activation validate` checks the files again")
    return len(errors)


def summary_table(console: Console, run_id: str) -> Group:
    """Segment, members and exclusions by reason, plus what each sync sent, read from the
    latest materializations recorded in the Dagster instance."""
    from dagster import DagsterInstance

    from orchestrator.definitions import defs
    from orchestrator.summary import summarize

    with DagsterInstance.get() as instance:
        return summarize(defs, instance, run_id)


@click.command()
@click.option("--mock-port", default=8765, show_default=True)
@click.option("--mock-state-dir", type=click.Path(path_type=Path), default=Path(".data/mock"))
@click.option("--only-mock", is_flag=True, help="Only start the mock destinations.")
@click.option("--stop-mock", "stop", is_flag=True, help="Stop the mock destinations.")
def main(mock_port: int, mock_state_dir: Path, only_mock: bool, stop: bool) -> None:
    """Run the whole demo."""
    console = Console()
    if not console.is_terminal:  # piped or in CI: do not squeeze the tables into 80 columns
        console = Console(width=160)
    if stop:
        stop_mock(mock_state_dir, console)
        return
    start_mock(mock_port, mock_state_dir, console)
    if only_mock:
        return
    ensure_warehouse(Settings.from_env(), console)
    settings = Settings.from_env()
    broken = report_segment_errors(settings, console)
    log = settings.state_dir.parent / "dagster-run.log"
    run_id, ok = materialize_all(console, log)
    console.print(summary_table(console, run_id))
    # The privacy checks (consent proof, source retention, the register's own check) also run
    # daily on their schedule; run them now so their evidence exists after the first demo.
    _, checked = materialize_all(
        console, log, PRIVACY_CHECKS_JOB, "privacy checks: register, consent proof, retention"
    )
    ok = ok and checked
    console.print(
        f"Mock destinations keep running on http://127.0.0.1:{mock_port} "
        "(`make mock-stop` stops them). `make ui` opens the Dagster UI."
    )
    if not ok or broken:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
