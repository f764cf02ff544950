"""A run's progress as a person watching it needs it: each step's state, batches sent per sync,
what each sync changed, the checks that failed; rendered with rich.

:func:`apply_record` folds one Dagster event-log record into a :class:`RunProgress`;
:func:`render` draws it. The sync step reports its batches with a log line written by
:func:`batch_message` and read back by :func:`parse_batch_message` (one place for the format),
so any process that can read the run's event log (this one, or another machine's) can show
the progress. Nothing here holds an identifier: counts, step names and check names only.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from enum import StrEnum

import dagster as dg
from rich.console import Group
from rich.table import Table
from rich.text import Text

_BATCH_RE = re.compile(r"^progress: (?P<batches>\d+) batch(?:es)? sent$")


def batch_message(batches: int) -> str:
    """The log line a sync writes after each batch: ``progress: <n> batches sent``."""
    return f"progress: {batches} batch{'es' if batches != 1 else ''} sent"


def parse_batch_message(message: str) -> int | None:
    """Batches sent so far from a :func:`batch_message` line; None for any other line."""
    found = _BATCH_RE.match(message.strip())
    return int(found["batches"]) if found else None


class StepState(StrEnum):
    """Where a step is: ``running``, ``done``, ``failed``, ``skipped``."""

    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    SKIPPED = "skipped"


_STYLE = {
    StepState.RUNNING: "yellow",
    StepState.DONE: "green",
    StepState.FAILED: "bold red",
    StepState.SKIPPED: "dim",
}
_SYNC_COUNTS = ("adds", "removes", "updates", "rejected")


@dataclass
class StepProgress:
    """One step: ``state``, ``batches`` sent (syncs), ``detail`` (what its asset did, a short
    line), and the checks it evaluated (a segment's checks run in the step of the asset they
    guard): ``checks_passed`` (count), ``checks_failed`` (``check (severity)``)."""

    state: StepState = StepState.RUNNING
    batches: int = 0
    detail: str = ""
    checks_passed: int = 0
    checks_failed: list[str] = field(default_factory=list)

    @property
    def result(self) -> str:
        """``detail``, then the checks: ``N check(s) passed`` and each failed one."""
        parts = [self.detail] if self.detail else []
        if self.checks_passed:
            parts.append(f"{self.checks_passed} check(s) passed")
        parts += [f"{check} FAILED" for check in self.checks_failed]
        return "; ".join(parts)


@dataclass
class RunProgress:
    """A run seen through its event log.

    ``steps``: step key -> :class:`StepProgress`, in start order. ``failed_checks``: ``asset:check
    (severity)`` of every check that did not pass. ``status``: ``started``, ``success``,
    ``failure`` or ``canceled`` (Dagster's run-end events). ``errors``: first line of each step
    failure. ``segment``: left out of step labels when the run is one segment's.
    """

    run_id: str
    title: str
    segment: str = ""
    steps: dict[str, StepProgress] = field(default_factory=dict)
    failed_checks: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    status: str = "starting"

    def step(self, key: str) -> StepProgress:
        return self.steps.setdefault(key, StepProgress())

    @property
    def error_checks(self) -> int:
        """Failed checks of severity ERROR (a WARN tells, an ERROR fails the command)."""
        return sum(1 for check in self.failed_checks if check.endswith("(error)"))

    @property
    def batches(self) -> int:
        """Batches sent by every sync of the run so far."""
        return sum(s.batches for s in self.steps.values())


def _sync_detail(metadata: dict[str, object]) -> str:
    values = {k: getattr(v, "value", v) for k, v in metadata.items()}
    if "adds" not in values:
        return ""
    adds, removes, updates, rejected = (values.get(name, 0) for name in _SYNC_COUNTS)
    counts = f"+{adds} -{removes} ~{updates}, {rejected} rejected"
    return f"{counts}{' (dry run)' if values.get('dry_run') else ''}"


def root_message(error: object) -> str:
    """The first line of the innermost cause of a Dagster error (what the step itself raised,
    not Dagster's "Error occurred while executing op" wrapper)."""
    while error is not None and getattr(error, "cause", None) is not None:
        error = error.cause
    message = getattr(error, "message", None) or "failed"
    return message.strip().splitlines()[0]


def _apply_event(progress: RunProgress, event: dg.DagsterEvent) -> None:
    kind = event.event_type
    key = event.step_key
    T = dg.DagsterEventType
    if kind == T.RUN_START:
        progress.status = "started"
    elif kind in (T.RUN_SUCCESS, T.RUN_FAILURE, T.RUN_CANCELED):
        progress.status = {T.RUN_SUCCESS: "success", T.RUN_FAILURE: "failure"}.get(kind, "canceled")
    elif key is None:
        return
    elif kind == T.STEP_START:
        progress.step(key).state = StepState.RUNNING
    elif kind == T.STEP_SUCCESS:
        progress.step(key).state = StepState.DONE
    elif kind == T.STEP_SKIPPED:
        progress.step(key).state = StepState.SKIPPED
    elif kind == T.STEP_FAILURE:
        progress.step(key).state = StepState.FAILED
        progress.errors.append(f"{key}: {root_message(event.event_specific_data.error)}")
    elif kind == T.ASSET_MATERIALIZATION:
        detail = _sync_detail(dict(event.event_specific_data.materialization.metadata))
        if detail:
            progress.step(key).detail = detail
    elif kind == T.ASSET_CHECK_EVALUATION:
        check = event.event_specific_data
        severity = check.severity.value.lower()
        step = progress.step(key)
        if check.passed:
            step.checks_passed += 1
        else:
            step.checks_failed.append(f"{check.check_name} ({severity})")
            name = f"{check.asset_key.to_user_string()}:{check.check_name}"
            progress.failed_checks.append(f"{name} ({severity})")


def apply_record(progress: RunProgress, record: dg.EventLogEntry) -> None:
    """Fold one event-log record (a Dagster event, or a log line of a step) into ``progress``."""
    if record.dagster_event is not None:
        _apply_event(progress, record.dagster_event)
        return
    batches = parse_batch_message(record.user_message or "")
    if batches is not None and record.step_key:
        step = progress.step(record.step_key)
        step.batches = max(step.batches, batches)


def step_label(step_key: str, hide: str = "") -> str:
    """A step key as a person reads it: ``sync__a__meta_ads`` -> ``sync/a/meta_ads``; with
    ``hide="a"`` (the segment in the title) -> ``sync/meta_ads``."""
    label = step_key.replace("__", "/")
    if not hide:
        return label
    return label.replace(f"/{hide}/", "/").replace(f"/{hide}_", ": ").removesuffix(f"/{hide}")


def render(progress: RunProgress) -> Group:
    """The steps table (state, batches sent, result) and a line for the run as a whole."""
    table = Table(title=progress.title, title_justify="left", expand=False)
    table.add_column("step", no_wrap=True, overflow="ellipsis")
    table.add_column("state", no_wrap=True, min_width=7)
    table.add_column("batches", justify="right", no_wrap=True, min_width=7)
    table.add_column("result")
    for key, step in progress.steps.items():
        table.add_row(
            step_label(key, progress.segment),
            Text(step.state.value, style=_STYLE[step.state]),
            str(step.batches) if step.batches else "",
            step.result,
        )
    done = sum(s.state is not StepState.RUNNING for s in progress.steps.values())
    footer = Text(
        f"run {progress.run_id[:8]}: {progress.status}, {done}/{len(progress.steps)} steps "
        f"finished, {progress.batches} batches sent, {len(progress.failed_checks)} check(s) "
        "failed\n"
    )
    return Group(table, footer)
