"""Alerts for the people on duty: a Dagster sensor posting one notification per problem to a
webhook (Slack-compatible JSON, ``{"text": ...}``), and one when the problem is over.

Problems watched (each has a key; an alert fires when its key starts failing, a recovery when
it stops):

``sync:<op>``
    a sync step failed; over when the sync materializes again.
``check:<asset>:<check>``
    a blocking check failed (``legal_basis_valid``, ``no_raw_identifier``: that segment's syncs
    did not run); over when it passes again.
``privacy_removal:<asset>``
    the ``rejections`` check failed with severity ERROR: a destination refused to remove a
    person who asked for erasure or objected; over when the check passes.
``request:<request_id>``
    a privacy request still open past half of its one-month deadline (GDPR Art. 12(3));
    over when it is complete.

The sensor reads the events of the runs finished since the last one it read (its cursor), and
the warehouse (read-only, briefly) for the requests. Its cursor is JSON ``{"after": the last
run's update time (s since the epoch), "failing":
{key: message}, "notified": {key: message}}``: what is failing and what was announced survive
restarts, so a problem is announced once and its recovery once. A post that fails (the
receiver is down) is retried on the next tick: ``notified`` changes only once the receiver
answered 2xx. Messages hold step, asset and check names,
counts and request ids, never an address. The webhook URL is a secret: it is read from the
environment variable named by ``alerts.webhook_url_env`` in ``activation.yaml`` and never
logged; with the variable unset the sensor skips.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

import dagster as dg
import requests

from orchestrator.config import AlertsConfig
from orchestrator.privacy.receipts import one_month_after, open_requests, utc_now
from orchestrator.warehouse.connect import connect
from orchestrator.warehouse.target import Warehouse

SENSOR_NAME = "activation_alerts_sensor"
INTERVAL_S = 30
#: Checks whose failure stops a segment's syncs (``orchestrator.privacy.checks``).
BLOCKING_CHECKS = ("legal_basis_valid", "no_raw_identifier")
REJECTIONS_CHECK = "rejections"
POST_TIMEOUT_S = 10
_FINISHED = [
    dg.DagsterRunStatus.SUCCESS,
    dg.DagsterRunStatus.FAILURE,
    dg.DagsterRunStatus.CANCELED,
]
_EVENTS = (
    dg.DagsterEventType.STEP_FAILURE,
    dg.DagsterEventType.ASSET_MATERIALIZATION,
    dg.DagsterEventType.ASSET_CHECK_EVALUATION,
)


@dataclass(frozen=True)
class Change:
    """One notification: ``key`` of the problem, ``firing`` (True) or recovered, ``text``."""

    key: str
    firing: bool
    text: str


def _sync_key(path: Iterable[str]) -> str:
    return "sync:" + "__".join(path)


def apply_event(
    failing: dict[str, str],
    event: dg.DagsterEvent,
    run_id: str = "",
    sync_steps: frozenset | None = None,
) -> None:
    """Update ``failing`` (problem key -> message) with one event of run ``run_id``.
    ``sync_steps``: the step keys of the sync assets (``sync__<segment>__<destination>``; a
    check step's key only extends one), default: any ``sync__`` step."""
    kind = event.event_type
    step = event.step_key or ""
    is_sync = step in sync_steps if sync_steps is not None else step.startswith("sync__")
    if kind == dg.DagsterEventType.STEP_FAILURE and is_sync:
        pair = step.removeprefix("sync__").replace("__", "/")
        failing[f"sync:{step}"] = f"sync {pair} failed (run {run_id})"
    elif kind == dg.DagsterEventType.ASSET_MATERIALIZATION:
        key = event.event_specific_data.materialization.asset_key
        if key.path[0] == "sync":
            failing.pop(_sync_key(key.path), None)
    elif kind == dg.DagsterEventType.ASSET_CHECK_EVALUATION:
        _apply_check(failing, event.event_specific_data, run_id)


def _apply_check(failing: dict[str, str], check: object, run_id: str) -> None:
    asset = check.asset_key.to_user_string()
    name = check.check_name
    if name in BLOCKING_CHECKS:
        key = f"check:{asset}:{name}"
        text = f"blocking check {asset}:{name} failed: that segment's syncs did not run"
    elif name == REJECTIONS_CHECK:
        key = f"privacy_removal:{asset}"
        text = f"{asset} refused to remove someone who asked for erasure or objected"
        if check.severity != dg.AssetCheckSeverity.ERROR:
            failing.pop(key, None)
            return
    else:
        return
    if check.passed:
        failing.pop(key, None)
    else:
        failing[key] = f"{text} (run {run_id})"


def late_requests(open_now: Iterable[tuple[str, str, datetime]], now: datetime) -> dict[str, str]:
    """Problem keys of requests open past half their one-month deadline: ``request:<id>`` ->
    message. ``open_now``: (request_id, request_type, received_at naive UTC)."""
    late = {}
    for request_id, request_type, received in open_now:
        deadline = one_month_after(received)
        if received + (deadline - received) / 2 < now:
            late[f"request:{request_id}"] = (
                f"{request_type} request {request_id} is still open past half its deadline "
                f"({deadline:%Y-%m-%d %H:%M} UTC, GDPR Art. 12(3))"
            )
    return late


def changes(before: Mapping[str, str], now: Mapping[str, str]) -> list[Change]:
    """One :class:`Change` per problem that started (firing) or ended (recovered)."""
    started = [Change(k, True, f":red_circle: {now[k]}") for k in sorted(set(now) - set(before))]
    ended = [
        Change(k, False, f":large_green_circle: recovered: {before[k]}")
        for k in sorted(set(before) - set(now))
    ]
    return started + ended


def post(url: str, text: str) -> None:
    """POST ``{"text": text}`` (Slack's incoming-webhook shape) to ``url``.

    Raises:
        requests.RequestException: no 2xx answer (the message names no URL).
    """
    try:
        answer = requests.post(url, json={"text": text}, timeout=POST_TIMEOUT_S)
        answer.raise_for_status()
    except requests.RequestException as error:
        status = getattr(getattr(error, "response", None), "status_code", None)
        raise requests.RequestException(
            f"alert webhook did not accept the notification (status {status})"
        ) from None


def _read_runs(
    instance: dg.DagsterInstance, after: float, failing: dict[str, str], sync_steps: frozenset
) -> float:
    """Apply the events of every run that finished after ``after`` (a run's update time, s
    since the epoch), oldest first; returns the latest update time read. Runs, not a global
    event cursor: the default SQLite storage keeps one event log per run."""
    since = datetime.fromtimestamp(after, UTC) if after else None
    runs = instance.get_run_records(
        filters=dg.RunsFilter(statuses=_FINISHED, updated_after=since), ascending=True
    )
    last = after
    for record in sorted(runs, key=lambda r: r.update_timestamp.timestamp()):
        stamp = record.update_timestamp.timestamp()
        if stamp <= after:
            continue
        for entry in instance.all_logs(record.dagster_run.run_id, of_type=set(_EVENTS)):
            apply_event(failing, entry.dagster_event, entry.run_id, sync_steps)
        last = max(last, stamp)
    return last


def _open_requests(warehouse: Warehouse) -> list[tuple[str, str, datetime]] | None:
    """Open requests, or None when the warehouse cannot be read now (locked, not built)."""
    try:
        with connect(warehouse, read_only=True, timeout_s=2) as con:
            return open_requests(con)
    except Exception:
        return None


def evaluate(
    cursor: str | None,
    instance: dg.DagsterInstance,
    warehouse: Warehouse,
    now: datetime,
    sync_steps: frozenset,
) -> tuple[dict, list[Change]]:
    """The new cursor state (``after``, ``failing``, ``notified`` unchanged) and the
    notifications to send, from the event log since the cursor and the open requests."""
    state = json.loads(cursor) if cursor else {"after": 0, "failing": {}, "notified": {}}
    events_failing = {k: v for k, v in state["failing"].items() if not k.startswith("request:")}
    after = _read_runs(instance, state["after"], events_failing, sync_steps)
    requests_now = _open_requests(warehouse)
    if requests_now is None:  # keep what was known
        late = {k: v for k, v in state["failing"].items() if k.startswith("request:")}
    else:
        late = late_requests(requests_now, now)
    failing = {**events_failing, **late}
    new_state = {"after": after, "failing": failing, "notified": dict(state["notified"])}
    return new_state, changes(state["notified"], failing)


def build_alerts_sensor(
    config: AlertsConfig, warehouse: Warehouse, sync_assets: Iterable[dg.AssetKey]
) -> dg.SensorDefinition:
    """The alerts sensor (RUNNING by default, every :data:`INTERVAL_S` seconds) watching the
    ``sync_assets`` (``sync/<segment>/<destination>``) and every check and request."""
    sync_steps = frozenset("__".join(key.path) for key in sync_assets)

    @dg.sensor(
        name=SENSOR_NAME,
        minimum_interval_seconds=INTERVAL_S,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description=(
            "Posts one notification per failed sync, failed blocking check, refused privacy "
            "removal and privacy request past half its deadline, and one when it recovers, to "
            f"the webhook in ${config.webhook_url_env} (Slack-compatible JSON)."
        ),
    )
    def _sensor(context: dg.SensorEvaluationContext) -> dg.SkipReason:
        url = os.environ.get(config.webhook_url_env)
        if not url:
            return dg.SkipReason(f"no alert webhook: {config.webhook_url_env} is not set")
        state, todo = evaluate(context.cursor, context.instance, warehouse, utc_now(), sync_steps)
        sent = state["notified"]
        for change in todo:
            try:
                post(url, change.text)
            except requests.RequestException as error:
                context.log.warning(f"{error}; retried on the next tick")
                continue
            if change.firing:
                sent[change.key] = state["failing"][change.key]
            else:
                sent.pop(change.key, None)
        context.update_cursor(json.dumps(state))
        return dg.SkipReason(f"{len(todo)} notification(s); {len(sent)} problem(s) open")

    return _sensor
