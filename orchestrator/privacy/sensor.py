"""Dagster pieces for privacy requests: the ``privacy/erasure_receipts`` asset, its
``requests_deadline`` check, the ``privacy_requests_job`` and the ``privacy_requests_sensor``.

The sensor (default RUNNING) reads ``privacy_requests`` for requests after its cursor and
launches ONE run of ``privacy_requests_job`` for them (at most :data:`MAX_REQUESTS_PER_RUN`;
the rest on the next tick), without waiting for any segment's schedule. It opens the warehouse
read-only for one query and gives up after :data:`SENSOR_LOCK_TIMEOUT_S` seconds when a writer
holds the file: the tick is skipped and the cursor kept, so nothing is missed.

Cursor: JSON ``{"received_at": ISO, "request_id": str}`` of the last request launched; the
next tick takes requests ordered by (received_at, request_id) after it. A request inserted
with an older ``received_at`` than the cursor is not seen by the sensor; a run of the job with
no ``request_ids`` handles every open request (and the deadline check reports it).
"""

import json
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path

import dagster as dg
import duckdb
from dagster_duckdb import DuckDBResource

from destinations.resources import DestinationsResource
from orchestrator.assets import RECEIPTS_KEY, SyncStateDir, source_key
from orchestrator.config import ProjectConfig
from orchestrator.privacy.receipts import (
    REQUEST_TYPES,
    open_requests,
    overdue_requests,
    utc_now,
)
from orchestrator.privacy.requests import PairTarget, process_requests, targets_from_specs
from orchestrator.warehouse.connect import connect

PRIVACY_JOB = "privacy_requests_job"
SENSOR_NAME = "privacy_requests_sensor"
MAX_REQUESTS_PER_RUN = 100
#: How long a sensor tick waits for the warehouse lock before skipping (s).
SENSOR_LOCK_TIMEOUT_S = 2.0
SENSOR_INTERVAL_S = 30


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


def build_receipts_asset(targets: Mapping[tuple[str, str], PairTarget]) -> dg.AssetsDefinition:
    """The ``privacy/erasure_receipts`` asset (group ``privacy``): handles requests with
    :func:`~orchestrator.privacy.requests.process_requests` and reports what it did.

    Depends only on ``warehouse/privacy_requests``; every ``sync/<sid>/<destination>`` depends
    on it, and every segment job (and ``all_segments_job``) includes it, so any segment run
    first honours the open requests (run config without ``request_ids``: every open request)
    and the syncs then have nothing left to send for the person.

    Not in the ``duckdb`` pool: it opens the warehouse only briefly (waiting for the lock up to
    60 s each time), never during HTTP calls. Fails (after writing every receipt) when a
    destination could not be reached, which skips the syncs downstream in the same run.
    """

    @dg.asset(
        key=RECEIPTS_KEY,
        deps=[source_key("privacy_requests")],
        group_name="privacy",
        kinds={"duckdb"},
        description=(
            "Erasure (GDPR Art. 17) and objection (Art. 21) requests carried to every "
            "destination holding the person: one receipt per request and (segment, "
            "destination) in activation.erasure_receipts, with the platform's answer."
        ),
    )
    def _receipts(
        context: dg.AssetExecutionContext,
        config: ReceiptsConfig,
        warehouse: DuckDBResource,
        destinations: DestinationsResource,
        sync_state: SyncStateDir,
    ) -> dg.MaterializeResult:
        if config.dry_run:
            with connect(Path(warehouse.database)) as con:
                waiting = len(open_requests(con))
            context.log.info(f"dry run: {waiting} open request(s) would be handled first")
            return dg.MaterializeResult(metadata={"dry_run": True, "open_requests": waiting})
        outcomes = process_requests(
            Path(warehouse.database),
            Path(sync_state.path),
            targets=targets,
            client_for=destinations.client,
            request_ids=config.request_ids,
        )
        with connect(Path(warehouse.database)) as con:
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


@dg.asset_check(
    asset=RECEIPTS_KEY,
    name="requests_deadline",
    description=(
        "ERROR when an erasure or objection request is open for more than one month "
        "(GDPR Art. 12(3)) without a complete receipt."
    ),
)
def requests_deadline(warehouse: DuckDBResource) -> dg.AssetCheckResult:
    """Severity ERROR: GDPR Art. 12(3) gives one month from receipt to act on a request.

    Metadata: ``count`` (overdue requests), ``oldest_received_at`` (ISO, '' when none),
    ``request_ids`` (at most 20, oldest first).
    """
    with connect(Path(warehouse.database)) as con:
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


def _parse_cursor(cursor: str | None) -> tuple[datetime, str] | None:
    if not cursor:
        return None
    data = json.loads(cursor)
    return datetime.fromisoformat(data["received_at"]), str(data["request_id"])


def new_requests(
    con: duckdb.DuckDBPyConnection, after: tuple[datetime, str] | None, limit: int
) -> list[tuple[str, datetime]]:
    """Erasure/objection requests after ``after`` (received_at, request_id), oldest first:
    (request_id, received_at), at most ``limit``."""
    received, request_id = after or (datetime.min, "")
    return con.execute(
        "SELECT request_id, received_at FROM main.privacy_requests "
        "WHERE list_contains(?, request_type) "
        "AND (received_at > ? OR (received_at = ? AND request_id > ?)) "
        "ORDER BY received_at, request_id LIMIT ?",
        [list(REQUEST_TYPES), received, received, request_id, limit],
    ).fetchall()


@dg.sensor(
    name=SENSOR_NAME,
    job_name=PRIVACY_JOB,
    default_status=dg.DefaultSensorStatus.RUNNING,
    minimum_interval_seconds=SENSOR_INTERVAL_S,
    description="Launches the removal of each new erasure/objection requester everywhere.",
)
def privacy_requests_sensor(
    context: dg.SensorEvaluationContext, warehouse: DuckDBResource
) -> dg.RunRequest | dg.SkipReason:
    """One run of :data:`PRIVACY_JOB` for the requests received after the cursor."""
    try:
        with connect(
            Path(warehouse.database), read_only=True, timeout_s=SENSOR_LOCK_TIMEOUT_S
        ) as con:
            rows = new_requests(con, _parse_cursor(context.cursor), MAX_REQUESTS_PER_RUN)
    except duckdb.Error as error:
        return dg.SkipReason(f"warehouse not readable now ({type(error).__name__}); next tick")
    if not rows:
        return dg.SkipReason("no new erasure or objection request")
    last_id, last_at = rows[-1]
    context.update_cursor(json.dumps({"received_at": last_at.isoformat(), "request_id": last_id}))
    ids = [request_id for request_id, _ in rows]
    return dg.RunRequest(
        run_key=f"privacy-{last_at.isoformat()}-{last_id}",
        run_config=receipts_run_config(ids),
        tags={"privacy_requests": str(len(ids))},
    )


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
        assets=[build_receipts_asset(targets_from_specs(specs, project))],
        asset_checks=[requests_deadline],
        jobs=[job],
        sensors=[privacy_requests_sensor],
    )


__all__ = [
    "MAX_REQUESTS_PER_RUN",
    "PRIVACY_JOB",
    "RECEIPTS_KEY",
    "SENSOR_NAME",
    "ReceiptsConfig",
    "build_receipts_asset",
    "new_requests",
    "privacy_request_definitions",
    "privacy_requests_sensor",
    "receipts_run_config",
    "requests_deadline",
]
