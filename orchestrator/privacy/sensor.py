"""Dagster pieces for privacy requests: the ``privacy/erasure_receipts`` asset, its
``requests_deadline`` check, the ``privacy_requests_job`` and the ``privacy_requests_sensor``.

The sensor (default RUNNING) launches ONE run of ``privacy_requests_job`` per tick for the
OPEN erasure/objection requests (not complete per
:func:`~orchestrator.privacy.receipts.open_requests`: not handled yet, or some destination has
not acknowledged) that no recent run was launched for, oldest ``received_at`` first (nearest
GDPR Art. 12(3) deadline first), at most :data:`MAX_REQUESTS_PER_RUN` per run (the rest on the
next ticks), without waiting for any segment's schedule. Arrival order does not matter: a
request inserted with a ``received_at`` older than requests already launched (a back-dated
import, a late CRM sync, a letter keyed in a week later) is open, so the next tick launches it.

Why "open in the warehouse" plus "in flight in the cursor" (rather than a cursor over arrival
order, or one holding every id ever launched): what has to be done is exactly what the
warehouse says is not done yet, whatever the order requests arrive in, and a request a segment
job's receipts step completed meanwhile is simply no longer open. The cursor only remembers what
the warehouse cannot know yet: the runs launched but not finished. It is JSON
``{"in_flight": {launched_at ISO (naive UTC): [request_id, ...]}}``; an id stays in it while the
request is open and was launched less than :data:`RELAUNCH_AFTER_S` ago
(:data:`RELAUNCH_IDLE_AFTER_S` when no run of the job is queued or running), so it is not
launched twice while its run is queued or running. A request still open after that (its run
failed, a sync held the pair's lock longer than the job waits, a destination refused, the run
was lost) is launched again, by a later tick, until it completes.
At most :data:`MAX_IN_FLIGHT` ids are in flight at once (launching waits for room), so the
cursor stays small (about 10 KB at most with ``pr-`` + 12 hex ids). A cursor of another shape
(the former ``{"received_at", "request_id"}``) counts as nothing in flight: every open request
is launched.

Each tick opens the warehouse read-only for one query (a second one only while the
``activation`` tables do not exist yet: then every request is open) and gives up after
:data:`SENSOR_LOCK_TIMEOUT_S` seconds when a writer holds the file: the tick is skipped and the
cursor kept, so nothing is missed. Run keys are ``privacy-<tick time>-<digest of the ids>``:
unique per tick, so a relaunch is not taken by Dagster for a duplicate. Should Dagster evaluate
a tick twice (a daemon crash before the cursor was stored), a request may be handled twice,
which is harmless (:func:`~orchestrator.privacy.requests.process_requests`).
"""

import hashlib
import json
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from pathlib import Path

import dagster as dg

from destinations.resources import DestinationsResource
from orchestrator.assets import RECEIPTS_KEY, SyncStateDir, source_key
from orchestrator.config import ProjectConfig
from orchestrator.model.views import SourceModelError
from orchestrator.privacy.receipts import (
    REQUEST_TYPES,
    open_requests,
    overdue_requests,
    utc_now,
)
from orchestrator.privacy.requests import PairTarget, process_requests, targets_from_specs
from orchestrator.warehouse.connect import connect
from orchestrator.warehouse.connection import WarehouseConnection
from orchestrator.warehouse.errors import DATABASE_ERRORS, MISSING_RELATION_ERRORS, WarehouseError
from orchestrator.warehouse.resources import WarehouseResource
from orchestrator.warehouse.target import Warehouse, WarehouseTarget

PRIVACY_JOB = "privacy_requests_job"
SENSOR_NAME = "privacy_requests_sensor"
MAX_REQUESTS_PER_RUN = 100
#: How long a sensor tick waits for the warehouse lock before skipping (s).
SENSOR_LOCK_TIMEOUT_S = 2.0
SENSOR_INTERVAL_S = 30
#: A request still open this long after its launch is launched again (s): its run failed,
#: a destination did not acknowledge, or the run was lost. Long enough for a queued run of
#: :data:`MAX_REQUESTS_PER_RUN` requests to finish; short next to the one-month deadline.
RELAUNCH_AFTER_S = 1800
#: When no run of the privacy job is queued or running, a request still open this long after
#: its launch is launched again (s): its run ended without completing it (a sync held the
#: pair's lock longer than the job waits, a destination failed), so waiting the full
#: :data:`RELAUNCH_AFTER_S` would leave the person at a destination for half an hour.
RELAUNCH_IDLE_AFTER_S = 300
#: At most this many requests in flight at once (bounds the cursor to about 10 KB).
MAX_IN_FLIGHT = 5 * MAX_REQUESTS_PER_RUN


class ReceiptsConfig(dg.Config):
    """``request_ids``: the requests to handle; None: every open (not complete) request.
    ``dry_run``: only count the open requests; send nothing, write nothing (set it with the
    other assets' ``dry_run`` when previewing a segment job)."""

    request_ids: list[str] | None = None
    dry_run: bool = False


def receipts_run_config(request_ids: list[str] | None) -> dict:
    """Run config of ``privacy_requests_job`` handling ``request_ids`` (None: all open)."""
    op = RECEIPTS_KEY.to_python_identifier()
    return {"ops": {op: {"config": {"request_ids": request_ids}}}}


def build_receipts_asset(
    targets: Mapping[tuple[str, str], PairTarget], project: ProjectConfig | None = None
) -> dg.AssetsDefinition:
    """The ``privacy/erasure_receipts`` asset (group ``privacy``): handles requests with
    :func:`~orchestrator.privacy.requests.process_requests` and reports what it did.

    Depends only on ``warehouse/privacy_requests``; every ``sync/<sid>/<destination>`` depends
    on it, and every segment job (and ``all_segments_job``) includes it, so any segment run
    first honours the open requests (run config without ``request_ids``: every open request)
    and the syncs then have nothing left to send for the person.

    Not in the ``duckdb`` pool: it opens the warehouse only briefly (waiting for the lock up to
    60 s each time), never during HTTP calls. ``project``: the canonical views of its source
    model are made current before the requests are read. Fails (after writing every receipt) when a
    destination could not be reached, which skips the syncs downstream in the same run.
    """

    @dg.asset(
        key=RECEIPTS_KEY,
        deps=[source_key("privacy_requests")],
        group_name="privacy",
        kinds={project.warehouse.kind if project is not None else "duckdb"},
        description=(
            "Erasure (GDPR Art. 17) and objection (Art. 21) requests carried to every "
            "destination holding the person: one receipt per request and (segment, "
            "destination) in activation.erasure_receipts, with the platform's answer."
        ),
    )
    def _receipts(
        context: dg.AssetExecutionContext,
        config: ReceiptsConfig,
        warehouse: WarehouseResource,
        destinations: DestinationsResource,
        sync_state: SyncStateDir,
    ) -> dg.MaterializeResult:
        if config.dry_run:
            with connect(WarehouseTarget.from_resource(warehouse), project=project) as con:
                waiting = len(open_requests(con))
            context.log.info(f"dry run: {waiting} open request(s) would be handled first")
            return dg.MaterializeResult(metadata={"dry_run": True, "open_requests": waiting})
        outcomes = process_requests(
            WarehouseTarget.from_resource(warehouse),
            Path(sync_state.path),
            targets=targets,
            client_for=destinations.client,
            request_ids=config.request_ids,
            project=project,
        )
        with connect(WarehouseTarget.from_resource(warehouse)) as con:
            still_open = len(open_requests(con))
        acknowledged = sum(o.acknowledged for o in outcomes)
        failed = sum(o.pairs - o.acknowledged for o in outcomes)
        context.log.info(
            f"{len(outcomes)} request(s) handled; {acknowledged} destination(s) acknowledged, "
            f"{failed} not; {still_open} request(s) open"
        )
        metadata = {
            "requests_handled": len(outcomes),
            "requests_complete": sum(o.complete for o in outcomes),
            "destinations_acknowledged": acknowledged,
            "destinations_not_acknowledged": failed,
            "open_requests": still_open,
            "request_ids": dg.MetadataValue.json([o.request_id for o in outcomes]),
        }
        if failed:
            raise dg.Failure(
                description=f"{failed} destination(s) did not acknowledge; see the receipts",
                metadata=metadata,
            )
        return dg.MaterializeResult(metadata=metadata)

    return _receipts


def build_requests_deadline(project: ProjectConfig | None = None) -> dg.AssetChecksDefinition:
    """The ``requests_deadline`` check, reading the requests through ``project``'s source model
    (its views made current first, like every other reader; None: the views as they are)."""

    @dg.asset_check(
        asset=RECEIPTS_KEY,
        name="requests_deadline",
        description=(
            "ERROR when an erasure or objection request is open for more than one month "
            "(GDPR Art. 12(3)) without a complete receipt."
        ),
    )
    def requests_deadline(warehouse: WarehouseResource) -> dg.AssetCheckResult:
        """Severity ERROR: GDPR Art. 12(3) gives one month from receipt to act on a request.

        Metadata: ``count`` (overdue requests), ``oldest_received_at`` (ISO, '' when none),
        ``request_ids`` (at most 20, oldest first).
        """
        with connect(WarehouseTarget.from_resource(warehouse), project=project) as con:
            late = overdue_requests(con, utc_now())
        oldest = late.oldest_received_at.isoformat() if late.oldest_received_at else ""
        return dg.AssetCheckResult(
            passed=late.count == 0,
            severity=dg.AssetCheckSeverity.ERROR,
            metadata={
                "count": late.count,
                "oldest_received_at": oldest,
                "request_ids": dg.MetadataValue.json(late.request_ids[:20]),
            },
        )

    return requests_deadline


#: The check without a project (the views as they are), for callers that have none.
requests_deadline = build_requests_deadline()


def parse_cursor(cursor: str | None) -> dict[str, datetime]:
    """The requests in flight in a sensor cursor: request_id -> launched_at (naive UTC).

    An empty, unreadable or other-shaped cursor (such as the former
    ``{"received_at", "request_id"}``) gives ``{}``: nothing in flight, so every open request
    is launched (handling a request again is harmless; missing one is not).
    """
    try:
        data = json.loads(cursor or "{}")
        launches = data.get("in_flight", {}) if isinstance(data, dict) else {}
        return {
            str(request_id): datetime.fromisoformat(at)
            for at, ids in launches.items()
            for request_id in ids
        }
    except (ValueError, TypeError, AttributeError):
        return {}


def format_cursor(in_flight: Mapping[str, datetime]) -> str:
    """The cursor JSON for ``in_flight`` (request_id -> launched_at): ids grouped by launch
    time, so one tick's launch costs one timestamp (see the module docstring)."""
    by_time: dict[str, list[str]] = {}
    for request_id, at in sorted(in_flight.items(), key=lambda item: (item[1], item[0])):
        by_time.setdefault(at.isoformat(), []).append(request_id)
    return json.dumps({"in_flight": by_time}, separators=(",", ":"))


def plan_launch(
    open_ids: Sequence[str],
    in_flight: Mapping[str, datetime],
    now: datetime,
    *,
    limit: int,
    max_in_flight: int,
    relaunch_after: timedelta,
) -> tuple[list[str], dict[str, datetime]]:
    """Which open requests to launch now, and what is in flight afterwards.

    Args:
        open_ids: the open requests, in launch priority (oldest ``received_at`` first).
        in_flight: request_id -> launched_at (naive UTC) from the cursor.
        now: the tick's time (naive UTC).
        limit: at most this many ids launched.
        max_in_flight: at most this many ids in flight after the launch.
        relaunch_after: an open request launched this long ago (or at a time after ``now``: a
            clock set back) is no longer in flight, so it is launched again.

    Returns:
        (ids to launch, in ``open_ids`` order; request_id -> launched_at still in flight,
        the launched ids at ``now`` included). Ids no longer open leave the in-flight map.
    """
    still_open = set(open_ids)
    pending = {
        request_id: at
        for request_id, at in in_flight.items()
        if request_id in still_open and timedelta(0) <= now - at < relaunch_after
    }
    room = max(0, min(limit, max_in_flight - len(pending)))
    launch = [request_id for request_id in open_ids if request_id not in pending][:room]
    pending.update(dict.fromkeys(launch, now))
    return launch, pending


def launchable_requests(con: WarehouseConnection) -> list[str]:
    """Ids of the open erasure/objection requests, oldest ``received_at`` first (one query).

    While the ``activation`` tables do not exist yet (a read-only open does not create them),
    no request was handled, so every erasure/objection request is open.

    Raises:
        duckdb.Error, psycopg.Error: ``privacy_requests`` cannot be read (the sensor skips
            the tick).
    """
    try:
        return [request_id for request_id, _, _ in open_requests(con)]
    except MISSING_RELATION_ERRORS:
        rows = con.execute(
            "SELECT request_id FROM activation.src_privacy_requests "
            "WHERE list_contains(?, request_type) "
            "ORDER BY received_at, request_id",
            [list(REQUEST_TYPES)],
        ).fetchall()
        return [request_id for (request_id,) in rows]


def _privacy_runs_active(context: dg.SensorEvaluationContext) -> bool:
    """Whether a run of :data:`PRIVACY_JOB` is queued or running (True when the instance
    cannot tell: then the longer relaunch delay applies)."""
    try:
        instance = context.instance
    except dg.DagsterInvariantViolationError:
        return True
    statuses = [
        dg.DagsterRunStatus.QUEUED,
        dg.DagsterRunStatus.NOT_STARTED,
        dg.DagsterRunStatus.STARTING,
        dg.DagsterRunStatus.STARTED,
    ]
    return instance.get_runs_count(dg.RunsFilter(job_name=PRIVACY_JOB, statuses=statuses)) > 0


def _run_key(now: datetime, request_ids: Sequence[str]) -> str:
    digest = hashlib.sha256("\n".join(request_ids).encode()).hexdigest()[:12]
    return f"privacy-{now.isoformat()}-{digest}"


def build_privacy_requests_sensor(
    project: ProjectConfig | None = None,
) -> dg.SensorDefinition:
    """The ``privacy_requests_sensor`` (module docstring). ``project``: each tick first makes
    the canonical views of its source model current (a short read-write open only when one
    changed), so a request recorded through the model's own table is seen before any segment
    run; a model that does not match the warehouse skips the tick and says so."""

    @dg.sensor(
        name=SENSOR_NAME,
        job_name=PRIVACY_JOB,
        default_status=dg.DefaultSensorStatus.RUNNING,
        minimum_interval_seconds=SENSOR_INTERVAL_S,
        description=(
            "Launches the removal everywhere of each open erasure/objection request no run is "
            "in flight for, whatever its received_at; relaunches requests still open after a "
            "while."
        ),
    )
    def _sensor(
        context: dg.SensorEvaluationContext, warehouse: WarehouseResource
    ) -> dg.RunRequest | dg.SkipReason:
        return _tick(context, WarehouseTarget.from_resource(warehouse), project)

    return _sensor


def _tick(
    context: dg.SensorEvaluationContext, path: Warehouse, project: ProjectConfig | None
) -> dg.RunRequest | dg.SkipReason:
    """One run of :data:`PRIVACY_JOB` for the open requests not in flight (module docstring)."""
    in_flight = parse_cursor(context.cursor)
    try:
        with connect(path, read_only=True, timeout_s=SENSOR_LOCK_TIMEOUT_S, project=project) as con:
            open_ids = launchable_requests(con)
    except SourceModelError as error:
        return dg.SkipReason(f"the source model does not match the warehouse: {error}")
    except DATABASE_ERRORS as error:
        return dg.SkipReason(f"warehouse not readable now ({unreadable(error)}); next tick")
    now = utc_now()
    idle = in_flight and not _privacy_runs_active(context)
    launch, pending = plan_launch(
        open_ids,
        in_flight,
        now,
        limit=MAX_REQUESTS_PER_RUN,
        max_in_flight=MAX_IN_FLIGHT,
        relaunch_after=timedelta(seconds=RELAUNCH_IDLE_AFTER_S if idle else RELAUNCH_AFTER_S),
    )
    if pending != in_flight:
        context.update_cursor(format_cursor(pending))
    if not launch:
        return dg.SkipReason(
            f"no erasure or objection request to launch ({len(pending)} in flight)"
        )
    return dg.RunRequest(
        run_key=_run_key(now, launch),
        run_config=receipts_run_config(launch),
        tags={"privacy_requests": str(len(launch))},
    )


def unreadable(error: Exception) -> str:
    """Why a sensor tick could not read the warehouse, in one line: a
    :class:`~orchestrator.warehouse.errors.WarehouseError`'s own message (it names the
    warehouse and what to check, never the password), else the error's type (a DuckDB lock
    message names the file's path and the holder's process, which a skip need not show)."""
    if isinstance(error, WarehouseError):
        return str(error)
    return type(error).__name__


def privacy_request_definitions(
    specs: Mapping[str, object], project: ProjectConfig
) -> dg.Definitions:
    """The asset, check, job and sensor, for ``build_definitions`` to merge. ``specs``:
    segment id -> ``LoadedSegment`` (or ``SegmentSpec``). Needs the resources ``warehouse``,
    ``destinations`` and ``sync_state``."""
    job = dg.define_asset_job(
        name=PRIVACY_JOB,
        selection=dg.AssetSelection.assets(RECEIPTS_KEY),
        tags={"privacy": "requests"},
    )
    return dg.Definitions(
        assets=[build_receipts_asset(targets_from_specs(specs, project), project)],
        asset_checks=[build_requests_deadline(project)],
        jobs=[job],
        sensors=[build_privacy_requests_sensor(project)],
    )


__all__ = [
    "MAX_IN_FLIGHT",
    "MAX_REQUESTS_PER_RUN",
    "PRIVACY_JOB",
    "RECEIPTS_KEY",
    "RELAUNCH_AFTER_S",
    "RELAUNCH_IDLE_AFTER_S",
    "SENSOR_NAME",
    "ReceiptsConfig",
    "build_privacy_requests_sensor",
    "build_receipts_asset",
    "build_requests_deadline",
    "format_cursor",
    "launchable_requests",
    "parse_cursor",
    "plan_launch",
    "privacy_request_definitions",
    "receipts_run_config",
    "requests_deadline",
    "unreadable",
]
