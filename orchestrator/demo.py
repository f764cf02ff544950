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
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

import click
import requests
from rich.console import Console, Group

from orchestrator.settings import Settings

ALL_SEGMENTS_JOB = "all_segments_job"


def ensure_warehouse(settings: Settings, console: Console) -> None:
    """Build the demo warehouse from the shipped real data if the file does not exist."""
    if settings.warehouse_path.exists():
        console.print(f"warehouse: reusing {settings.warehouse_path}")
        return
    from orchestrator.warehouse.demo import build_demo_warehouse

    settings.warehouse_path.parent.mkdir(parents=True, exist_ok=True)
    report = build_demo_warehouse(settings.warehouse_path, as_of=datetime.now(UTC).date())
    console.print(f"warehouse: built {settings.warehouse_path} ({report})")


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


def materialize_all(console: Console, log_path: Path) -> bool:
    """Run ``all_segments_job`` on the instance in ``DAGSTER_HOME``; True when it succeeded.

    Dagster's step-by-step log (the steps run in child processes) goes to ``log_path``; the
    same events are in the Dagster UI (``make ui``).
    """
    from dagster import DagsterInstance, execute_job, reconstructable

    from orchestrator.definitions import all_segments_job_def

    log_path.parent.mkdir(parents=True, exist_ok=True)
    with (
        open(log_path, "ab") as log,
        _stderr_to(log.fileno()),
        DagsterInstance.get() as instance,
        console.status("materializing every segment (segment -> audience -> sync)..."),
    ):
        result = execute_job(reconstructable(all_segments_job_def), instance=instance)
    state = "success" if result.success else "FAILED"
    console.print(f"dagster run {result.run_id}: {state} (log: {log_path})")
    return result.success


@contextmanager
def _stderr_to(fd: int) -> Iterator[None]:
    """Point file descriptor 2 (inherited by Dagster's step processes) at ``fd`` for a while."""
    sys.stderr.flush()
    saved = os.dup(2)
    os.dup2(fd, 2)
    try:
        yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)


def summary_table(console: Console) -> Group:
    """Segment, members and exclusions by reason, plus what each sync sent, read from the
    latest materializations recorded in the Dagster instance."""
    from dagster import DagsterInstance

    from orchestrator.definitions import defs
    from orchestrator.summary import summarize

    with DagsterInstance.get() as instance:
        return summarize(defs, instance)


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
    ok = materialize_all(console, settings.state_dir.parent / "dagster-run.log")
    console.print(summary_table(console))
    console.print(
        f"Mock destinations keep running on http://127.0.0.1:{mock_port} "
        "(`make mock-stop` stops them). `make ui` opens the Dagster UI."
    )
    if not ok:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
