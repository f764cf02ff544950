"""Dagster entry point: ``Definitions`` built from the segment files (see ``workspace.yaml``).

Reads ``activation.yaml`` and ``segments/*.yaml`` at import (nothing else: no DuckDB
connection). A broken segment file never stops the others from loading: its errors are shown
on the ``segment_file_errors`` asset in the UI, whose materialization fails with the list.
"""

from collections.abc import Sequence

import dagster as dg

from destinations.resources import (
    DestinationsResource,
    destination_resources,
    destination_variables,
)
from orchestrator.alerts import build_alerts_sensor
from orchestrator.assets import (
    RECEIPTS_KEY,
    SyncStateDir,
    audience_key,
    build_segment_asset,
    build_sync_asset,
    segment_key,
    source_asset_specs,
    sync_key,
)
from orchestrator.config import ProjectConfig, load_project_config
from orchestrator.executors import executor_from_env
from orchestrator.long_lived import built_to_live
from orchestrator.privacy.checks import audience_checks, privacy_checks_definitions, sync_checks
from orchestrator.privacy.late_changes import build_changes_sensor
from orchestrator.privacy.sensor import privacy_request_definitions
from orchestrator.scoped_jobs import ScopedAssetJob, scoped_asset_job
from orchestrator.segments.loader import LoadedSegment, SegmentError, load_segments
from orchestrator.settings import Settings
from orchestrator.warehouse.factory import target_for
from orchestrator.warehouse.resources import warehouse_resource

DEFAULT_TIMEZONE = "Europe/Paris"
ALL_SEGMENTS_JOB = "all_segments_job"
SEGMENT_FILE_ERRORS_KEY = dg.AssetKey(["segment_file_errors"])


def segment_file_errors_asset(errors: list[SegmentError]) -> dg.AssetsDefinition:
    """An asset that makes broken segment files visible in the UI (description + failure)."""
    lines = [str(e) for e in errors]
    description = (
        f"{len(lines)} segment file error(s); these segments are not loaded:\n\n"
        + "\n".join(f"- `{line}`" for line in lines)
        if lines
        else "All segment files are valid."
    )

    @dg.asset(
        key=SEGMENT_FILE_ERRORS_KEY,
        group_name="warehouse",
        description=description,
        metadata={"error_count": len(lines)},
    )
    def _errors(context: dg.AssetExecutionContext) -> dg.MaterializeResult:
        if lines:
            raise dg.Failure(
                description="Segment files failed validation:\n" + "\n".join(lines),
                metadata={"error_count": len(lines)},
            )
        return dg.MaterializeResult(metadata={"error_count": 0})

    return _errors


SEGMENT_FILES_VALID = "segment_files_valid"


def segment_files_check(
    errors: list[SegmentError], warnings: Sequence[SegmentError] = ()
) -> dg.AssetChecksDefinition:
    """``segment_files_valid`` on ``segment_file_errors`` (ERROR, red in the UI): fails while a
    segment file is broken, listing each ``file:line field: message`` (the other segments
    load and run). With no error but ``warnings`` (an ad segment reading data marked health or
    financial, :mod:`orchestrator.segments.restricted`) it fails at WARN severity, listing
    them. Runs with every segment job and the privacy checks' schedule."""
    lines = [str(e) for e in errors]
    warned = [str(w) for w in warnings]

    @dg.asset_check(
        asset=SEGMENT_FILE_ERRORS_KEY,
        name=SEGMENT_FILES_VALID,
        description="ERROR: every file in segments/ is a valid segment.",
    )
    def _check() -> dg.AssetCheckResult:
        if lines:
            description = f"{len(lines)} broken segment file(s), not loaded: " + "; ".join(lines)
        elif warned:
            description = f"{len(warned)} warning(s): " + "; ".join(warned)
        else:
            description = "all segment files are valid"
        return dg.AssetCheckResult(
            passed=not lines and not warned,
            severity=dg.AssetCheckSeverity.ERROR if lines else dg.AssetCheckSeverity.WARN,
            description=description,
            metadata={
                "error_count": len(lines),
                "errors": dg.MetadataValue.md("\n".join(f"- `{line}`" for line in lines) or "none"),
                "warning_count": len(warned),
                "warnings": dg.MetadataValue.md("\n".join(f"- `{w}`" for w in warned) or "none"),
            },
        )

    return _check


def segment_job(loaded: LoadedSegment) -> ScopedAssetJob:
    """The job that refreshes one segment end to end (segment, audience, syncs), handling the
    open erasure/objection requests first (``privacy/erasure_receipts``, upstream of every
    sync). Resolved in its own part of the asset graph (:mod:`orchestrator.scoped_jobs`), so
    500 of them resolve in linear time."""
    sid = loaded.spec.id
    own = [segment_key(sid), audience_key(sid)]
    own += [sync_key(sid, entry.destination) for entry in loaded.spec.destinations]
    selection = (
        dg.AssetSelection.assets(*own[:2]).downstream()
        | dg.AssetSelection.assets(RECEIPTS_KEY)
        | dg.AssetSelection.checks(dg.AssetCheckKey(SEGMENT_FILE_ERRORS_KEY, SEGMENT_FILES_VALID))
    )
    scope = [*own, RECEIPTS_KEY, SEGMENT_FILE_ERRORS_KEY]
    return scoped_asset_job(f"{sid}_job", selection, scope, tags={"segment": sid})


def segment_schedule(loaded: LoadedSegment, job: ScopedAssetJob) -> dg.ScheduleDefinition:
    """One schedule per segment from its cron, in its time zone; starts STOPPED unless the
    segment sets ``schedule_running: true`` (a new segment never sends by surprise)."""
    spec = loaded.spec
    running = getattr(spec, "schedule_running", False)
    return dg.ScheduleDefinition(
        name=f"{spec.id}_schedule",
        cron_schedule=spec.schedule,
        execution_timezone=getattr(spec, "timezone", None) or DEFAULT_TIMEZONE,
        job=job,
        default_status=(
            dg.DefaultScheduleStatus.RUNNING if running else dg.DefaultScheduleStatus.STOPPED
        ),
    )


def build_definitions(settings: Settings, project: ProjectConfig) -> dg.Definitions:
    """Definitions for every valid segment in ``settings.segments_dir``. Every job runs its
    steps in one process by default, or as ``ACTIVATION_EXECUTOR`` selects
    (:func:`orchestrator.executors.executor_from_env`)."""
    loaded = load_segments(settings.segments_dir, project)
    assets: list = [
        *source_asset_specs(project.source, project.product_schema),
        segment_file_errors_asset(loaded.errors),
    ]
    jobs, schedules = [], []
    for sid in sorted(loaded.specs):
        seg = loaded.specs[sid]
        assets.append(build_segment_asset(seg, project, audience_checks(seg, project)))
        assets += [
            build_sync_asset(seg, entry, project, sync_checks(seg, entry, project))
            for entry in seg.spec.destinations
        ]
        job = segment_job(seg)
        jobs.append(job)
        schedules.append(segment_schedule(seg, job))
    sensors = []
    if loaded.specs:
        sensors.append(
            build_changes_sensor(
                {sid: seg.spec.purpose for sid, seg in loaded.specs.items()},
                list(jobs),
                job_for={sid: f"{sid}_job" for sid in loaded.specs},
                all_job=ALL_SEGMENTS_JOB,
                variables={
                    sid: destination_variables(
                        project, [e.destination for e in seg.spec.destinations]
                    )
                    for sid, seg in loaded.specs.items()
                },
            )
        )
        everything = (
            dg.AssetSelection.key_prefixes(["segment"], ["audience"], ["sync"])
            | dg.AssetSelection.assets(RECEIPTS_KEY)
            | dg.AssetSelection.checks(
                dg.AssetCheckKey(SEGMENT_FILE_ERRORS_KEY, SEGMENT_FILES_VALID)
            )
        )
        jobs.append(dg.define_asset_job(name=ALL_SEGMENTS_JOB, selection=everything))
    target = target_for(project.warehouse, settings.project_dir, settings.warehouse_path)
    segments = dg.Definitions(
        assets=assets,
        asset_checks=[segment_files_check(loaded.errors, loaded.warnings)],
        jobs=jobs,
        schedules=schedules,
        sensors=sensors,
        resources={
            # DuckDBResource or PostgresResource, as ``warehouse:`` of activation.yaml says
            "warehouse": warehouse_resource(project.warehouse, str(target.duckdb_path or "")),
            # privacy receipts: any destination holding a person, variables read per call
            "destinations": DestinationsResource(config_path=str(settings.config_path)),
            # syncs and their checks: destination_<name>, EnvVar fields read at run start
            **destination_resources(project),
            "sync_state": SyncStateDir(path=str(settings.state_dir)),
        },
        executor=executor_from_env(),
    )
    syncs = [
        sync_key(sid, entry.destination)
        for sid, seg in loaded.specs.items()
        for entry in seg.spec.destinations
    ]
    alerts = [build_alerts_sensor(project.alerts, target, syncs)] if project.alerts else []
    return dg.Definitions.merge(
        segments,
        dg.Definitions(sensors=alerts),
        privacy_request_definitions(loaded.specs, project),
        privacy_checks_definitions(loaded.specs, project, settings.project_dir),
    )


def load_definitions() -> dg.Definitions:
    """Definitions from the environment (``orchestrator.settings``), built once per process
    and kept for its life: built with the cyclic garbage collector paused and frozen after
    (:func:`orchestrator.long_lived.built_to_live`)."""
    settings = Settings.from_env()
    with built_to_live():
        return build_definitions(settings, load_project_config(settings.config_path))


defs = load_definitions()


def all_segments_job_def() -> dg.JobDefinition:
    """The job refreshing every segment (used by ``make demo`` through ``reconstructable``)."""
    return defs.resolve_job_def(ALL_SEGMENTS_JOB)
