"""Run a job on the Dagster instance from a terminal, with a live progress display.

Used by ``activation run`` and by ``make demo``. The run is an ordinary run of the instance in
``DAGSTER_HOME`` (it shows in the UI's run history, with its event log), executed by a child
process (``python -m orchestrator.launch``) whose steps run in that one process
(:mod:`orchestrator.executors`). A thread here reads the run's event log every :data:`POLL_S`
seconds and redraws the display (:mod:`orchestrator.progress`), so what is shown is what
Dagster recorded.

Ctrl-C: this process marks the run as being canceled on the instance, then interrupts the child
(Dagster turns the interrupt into an error inside the running step); Dagster ends the run as
``CANCELED``, not failed, a sync's journal keeps every acknowledged batch (the next run folds
it), and the caller is told ``interrupted``. The child is in a session of its own so the
terminal's Ctrl-C does not reach it before the run is marked. A second Ctrl-C is ignored while
the run closes.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dagster as dg
from dagster._core.definitions.reconstruct import ReconstructableRepository
from rich.console import Console
from rich.live import Live

from orchestrator.progress import RunProgress, apply_record, render, step_label
from orchestrator.settings import Settings

#: Seconds between two reads of the run's event log.
POLL_S = 0.5
#: The tag that lets the display find the run this process launched.
LAUNCH_TAG = "activation/launch"
#: The ops that take the segment assets' run config (``as_of``, ``dry_run``): ``segment__<sid>``
#: (which builds the audience too) and ``sync__<sid>__<destination>``.
SEGMENT_OP_PREFIXES = ("segment", "sync")
RECEIPTS_OP = "privacy__erasure_receipts"
#: Instance settings every ``DAGSTER_HOME`` of this project needs (pool ``duckdb``).
INSTANCE_TEMPLATE = Path(__file__).parent / "dagster_home" / "dagster.yaml"


@dataclass(frozen=True)
class LaunchOutcome:
    """How a run ended: ``run_id``; ``status`` ``success``, ``failure`` or ``canceled``;
    ``interrupted`` (Ctrl-C here); ``progress`` (steps, failed checks, errors)."""

    run_id: str
    status: str
    interrupted: bool
    progress: RunProgress

    @property
    def success(self) -> bool:
        return self.status == "success"


def ensure_dagster_home(settings: Settings, environ: dict[str, str] | None = None) -> Path:
    """The instance folder: ``DAGSTER_HOME``, or ``<project>/.dagster_home`` (what ``make ui``
    and ``make demo`` use) when unset, with the project's ``dagster.yaml`` copied in when it has
    none. Sets ``DAGSTER_HOME`` in ``environ`` (default ``os.environ``) for Dagster to find."""
    env = os.environ if environ is None else environ
    home = Path(env.get("DAGSTER_HOME") or settings.project_dir / ".dagster_home")
    home.mkdir(parents=True, exist_ok=True)
    if not (home / "dagster.yaml").exists():
        shutil.copyfile(INSTANCE_TEMPLATE, home / "dagster.yaml")
    env["DAGSTER_HOME"] = str(home)
    return home


def segment_run_config(
    job: dg.JobDefinition, *, dry_run: bool = False, as_of: str | None = None
) -> dict[str, Any]:
    """Run config setting ``dry_run`` (and ``as_of`` when given) on every segment (and
    audience) and sync op of ``job`` and ``dry_run`` on the privacy receipts op (which only
    counts open requests in a dry run). Empty when there is nothing to set."""
    config: dict[str, Any] = {"dry_run": True} if dry_run else {}
    if as_of:
        config["as_of"] = as_of
    if not config:
        return {}
    names = [node.name for node in job.graph.nodes]
    ops = {n: {"config": config} for n in names if n.split("__")[0] in SEGMENT_OP_PREFIXES}
    if dry_run and RECEIPTS_OP in names:
        ops[RECEIPTS_OP] = {"config": {"dry_run": True}}
    return {"ops": ops}


def reconstructable_job(job_name: str, settings: Settings) -> Any:
    """The job ``job_name`` of ``orchestrator.definitions`` as Dagster reconstructs it in other
    processes. Raises ``dagster.DagsterInvariantViolationError`` for an unknown job."""
    repository = ReconstructableRepository.for_module(
        "orchestrator.definitions", "defs", working_directory=str(settings.project_dir)
    )
    return repository.get_reconstructable_job(job_name)


def _find_run(instance: dg.DagsterInstance, launch_id: str) -> dg.DagsterRun | None:
    runs = instance.get_runs(filters=dg.RunsFilter(tags={LAUNCH_TAG: launch_id}), limit=1)
    return runs[0] if runs else None


class _Watcher(threading.Thread):
    """Reads the run's event log into a :class:`RunProgress` until told to stop."""

    def __init__(self, instance: dg.DagsterInstance, launch_id: str, title: str) -> None:
        super().__init__(daemon=True, name="run-progress")
        self.instance, self.launch_id = instance, launch_id
        self.progress = RunProgress(run_id="", title=title)
        self.stopped = threading.Event()
        self._cursor: str | None = None

    def poll(self) -> None:
        if not self.progress.run_id:
            run = _find_run(self.instance, self.launch_id)
            if run is None:
                return
            self.progress.run_id = run.run_id
        while True:
            page = self.instance.get_records_for_run(
                self.progress.run_id, cursor=self._cursor, limit=500
            )
            for record in page.records:
                apply_record(self.progress, record.event_log_entry)
            self._cursor = page.cursor
            if not page.has_more:
                return

    def run(self) -> None:
        while not self.stopped.wait(POLL_S):
            self.poll()


def _child_command(job_name: str, launch_id: str, run_config: Mapping, tags: Mapping) -> list:
    payload = json.dumps({"run_config": dict(run_config), "tags": dict(tags)})
    return [sys.executable, "-m", "orchestrator.launch", job_name, launch_id, payload]


@contextmanager
def _interrupts_cancel(
    instance: dg.DagsterInstance, launch_id: str, child: subprocess.Popen
) -> Iterator[list[bool]]:
    """While inside, Ctrl-C (SIGINT or SIGTERM) marks the run CANCELING on the instance, then
    interrupts the process running it, once: Dagster then ends the run as CANCELED. Yields a
    one-element list set to True when that happened."""
    interrupted = [False]

    def _on_signal(_signum: int, _frame: object) -> None:
        if interrupted[0]:
            return  # the run is closing already
        interrupted[0] = True
        run = _find_run(instance, launch_id)
        if run is not None and not run.is_finished:
            instance.report_run_canceling(run, message="Interrupted from the terminal (Ctrl-C).")
        if child.poll() is None:
            child.send_signal(signal.SIGINT)

    previous = {sig: signal.signal(sig, _on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield interrupted
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def launch_job(
    instance: dg.DagsterInstance,
    job_name: str,
    *,
    console: Console,
    title: str,
    log_path: Path,
    segment: str = "",
    run_config: Mapping[str, Any] | None = None,
    tags: Mapping[str, str] | None = None,
) -> LaunchOutcome:
    """Execute job ``job_name`` of ``orchestrator.definitions`` as a run of ``instance`` (in a
    child process of its own session, so a terminal's Ctrl-C reaches only this process, which
    cancels the run first and then interrupts the child) while drawing its progress on
    ``console`` (live on a terminal; the final state only when piped). ``segment`` is left out
    of step labels (the run is that segment's). Dagster's own step-by-step log goes to
    ``log_path`` (the same events are in the UI).

    Returns the :class:`LaunchOutcome`; a step failure or a failed check is reported in it,
    never raised. Must be called from the main thread (it handles Ctrl-C there).
    """
    launch_id = uuid.uuid4().hex
    watcher = _Watcher(instance, launch_id, title)
    watcher.progress.segment = segment
    command = _child_command(
        job_name, launch_id, run_config or {}, {**(tags or {}), LAUNCH_TAG: launch_id}
    )
    log_path.parent.mkdir(parents=True, exist_ok=True)
    live = Live(get_renderable=lambda: render(watcher.progress), console=console)
    with open(log_path, "ab") as log, live:
        child = subprocess.Popen(
            command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        with _interrupts_cancel(instance, launch_id, child) as interrupted:
            watcher.start()
            try:
                child.wait()
            finally:
                watcher.stopped.set()
                watcher.join()
        watcher.poll()
        live.refresh()
    run = _find_run(instance, launch_id)
    status = _status(run, watcher.progress.status)
    return LaunchOutcome(run.run_id if run else "", status, interrupted[0], watcher.progress)


def _status(run: dg.DagsterRun | None, seen: str) -> str:
    if run is None:
        return "canceled"
    value = run.status
    if value == dg.DagsterRunStatus.SUCCESS:
        return "success"
    if value in (dg.DagsterRunStatus.CANCELED, dg.DagsterRunStatus.CANCELING):
        return "canceled"
    return "failure" if run.is_finished else seen


def summary_lines(outcome: LaunchOutcome) -> list[str]:
    """A closing summary for a person: how the run ended (``interrupted`` said as such), each
    failed step and failed check, and where the run is in the UI."""
    p = outcome.progress
    done = sum(1 for s in p.steps.values() if s.state.value == "done")
    if outcome.interrupted:
        head = "interrupted (Ctrl-C): the run was canceled, not crashed"
    else:
        head = {"success": "succeeded", "canceled": "was canceled"}.get(outcome.status, "FAILED")
    lines = [
        f"run {outcome.run_id or '(not started)'} {head}: {done} of {len(p.steps)} steps done, "
        f"{p.batches} batches sent"
    ]
    lines += [
        f"  {step_label(key, p.segment)}: {step.detail}"
        for key, step in p.steps.items()
        if key.startswith("sync__") and step.detail
    ]
    lines += [f"  step failed: {error}" for error in p.errors]
    lines += [f"  check failed: {check}" for check in p.failed_checks]
    if outcome.interrupted:
        lines.append(
            "  what a destination acknowledged is kept; the next run sends the rest "
            "(and folds any batch in flight)"
        )
    if outcome.run_id:
        lines.append(f"  in the UI (`make ui`): /runs/{outcome.run_id}")
    return lines


def _execute(job_name: str, launch_id: str, payload: str) -> None:
    """The child's side of :func:`launch_job`: one run of ``job_name`` on the instance in
    ``DAGSTER_HOME`` (a failure is recorded in the run, not raised)."""
    options = json.loads(payload)
    with dg.DagsterInstance.get() as instance:
        dg.execute_job(
            reconstructable_job(job_name, Settings.from_env()),
            instance=instance,
            run_config=options["run_config"],
            tags=options["tags"],
            raise_on_error=False,
        )


if __name__ == "__main__":
    _execute(*sys.argv[1:4])
