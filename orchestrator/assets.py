"""Build Dagster assets from one parsed segment (parse first, then build).

For a segment with id ``<sid>`` this module builds:

``segment/<sid>``
    members of the segment, written to ``activation.segment_members`` (segment, customer_id).
``audience/<sid>``
    consent-filtered, pseudonymized members, written to ``activation.audience_members``
    (segment, subject_key, google_key, customer_id, email, legal_basis, consent_ref) with the
    exclusions by reason in ``activation.audience_exclusions``.

Both are built by one step, ``segment__<sid>`` (:func:`build_segment_asset`); each sync to a
destination is a step of its own (:func:`build_sync_asset`).

The builder never reads files: it takes a :class:`LoadedSegment` and the project config.
Every asset that writes the DuckDB file is in pool ``duckdb`` (one writer at a time).
"""

import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from functools import cache, partial
from pathlib import Path

import dagster as dg
import duckdb

from destinations.redaction import redact
from destinations.registry import platform_max_batch_size, platform_rows_per_call
from destinations.resources import (
    DestinationsResource,
    PlatformResource,
    destination_resource_key,
)
from orchestrator.audience import EXCLUSION_REASONS, build_segment_audience
from orchestrator.config import DestinationConfig, DestinationKind, ProjectConfig
from orchestrator.consent import segment_counted_purposes
from orchestrator.consent_signals import as_mapping, signals_for
from orchestrator.model.catalog import live_drift
from orchestrator.model.spec import DEFAULT_MODEL, SourceModel
from orchestrator.model.views import SourceModelError, refresh_source_views
from orchestrator.phone import phone_platform_for
from orchestrator.progress import batch_message
from orchestrator.segments.compiler import compile_segment
from orchestrator.segments.loader import LoadedSegment
from orchestrator.segments.materialize import write_segment_members
from orchestrator.segments.spec import DestinationEntry
from orchestrator.sync.engine import BatchHook, run_sync
from orchestrator.sync.rejection_summary import RejectionSummary, summarize_rejections
from orchestrator.warehouse.connect import connect
from orchestrator.warehouse.product_schema import DEFAULT_PRODUCT_SCHEMA
from orchestrator.warehouse.resources import WarehouseResource
from orchestrator.warehouse.schema import create_activation_schema
from orchestrator.warehouse.target import WarehouseTarget

DUCKDB_POOL = "duckdb"
SOURCE_TABLES = ("customers", "events", "consents", "privacy_requests")


#: How long a sync step waits for a running sync of the same pair (s): a run started while
#: another is slowed by a platform's ``Retry-After`` then syncs right after it, with what
#: changed meanwhile (a withdrawal), instead of failing. Longer waits are the privacy changes
#: sensor's to follow up (:mod:`orchestrator.privacy.late_changes`).
SYNC_LOCK_WAIT_S = 300


class RunConfig(dg.Config):
    """Run configuration shared by the segment assets.

    ``as_of``: ISO timestamp (UTC) the segment is evaluated at; default: now. Windows such as
    ``within_days`` and consent validity count back from it. ``dry_run``: compute and report,
    send nothing. ``allow_mass_removal``: let a sync remove most of its audience because they
    left the segment (refused by default: see ``orchestrator.sync.engine.MassRemovalError``).
    """

    as_of: str | None = None
    dry_run: bool = False
    allow_mass_removal: bool = False


class SyncStateDir(dg.ConfigurableResource):
    """The local folder holding sync journals and scratch files (``ACTIVATION_STATE_DIR``).

    It must persist between runs of a (segment, destination) pair: a journal left by a crashed
    run is folded into ``sync_state`` first thing in the next run.
    """

    path: str


@dataclass(frozen=True)
class SegmentCheck:
    """An asset check evaluated by the step of the asset it guards, right after the asset.

    ``spec`` goes to the asset's ``check_specs``; ``evaluate(warehouse, destinations)`` (the
    step's :class:`WarehouseResource` and its destination resource — a sync step's own
    :class:`PlatformResource`, or :class:`DestinationsResource`; None for a step without one)
    returns the result. One step per asset instead of one per check keeps
    the number of Dagster definitions, and so the time to load 500 segments, down; a blocking
    check that fails still stops the assets downstream (Dagster fails the step after it).
    """

    spec: dg.AssetCheckSpec
    evaluate: Callable[
        [WarehouseResource, DestinationsResource | PlatformResource | None], dg.AssetCheckResult
    ]


def run_checks(
    context: dg.AssetExecutionContext,
    checks: Sequence[SegmentCheck],
    warehouse: WarehouseResource,
    destinations: DestinationsResource | PlatformResource | None = None,
) -> Iterator[dg.AssetCheckResult]:
    """The results of the ``checks`` selected in this run (all of them in a segment's job; none
    when a run leaves checks out), in order."""
    selected = context.selected_asset_check_keys
    for check in checks:
        if check.spec.key in selected:
            result = check.evaluate(warehouse, destinations)
            yield result._replace(asset_key=check.spec.asset_key, check_name=check.spec.name)


@cache
def run_config_schema() -> dict[str, dg.Field]:
    """:class:`RunConfig` as a Dagster config schema, inferred once per process: inferring it
    for each of the segments' steps was a sixth of building 500 segments' definitions."""
    return RunConfig.to_fields_dict()


def step_run_config(context: dg.AssetExecutionContext) -> RunConfig:
    """The step's :class:`RunConfig` (its op config, defaults filled in by Dagster)."""
    return RunConfig(**(context.op_execution_context.op_config or {}))


def destination_pool(destination: str) -> str:
    """The concurrency pool of every sync to ``destination``: ``destination_<name>`` (its
    limit is the instance's ``concurrency.pools.default_limit`` unless set with ``dagster
    instance concurrency set destination_<name> N``)."""
    return f"destination_{destination}"


def resolve_as_of(config: RunConfig) -> datetime:
    """The evaluation time for a run, as a naive UTC datetime (the warehouse stores naive UTC)."""
    if config.as_of:
        parsed = datetime.fromisoformat(config.as_of)
        if parsed.tzinfo is not None:
            parsed = parsed.astimezone(UTC).replace(tzinfo=None)
        return parsed
    return datetime.now(UTC).replace(tzinfo=None)


def source_key(table: str) -> dg.AssetKey:
    """Asset key of a warehouse source table."""
    return dg.AssetKey(["warehouse", table])


def segment_key(segment_id: str) -> dg.AssetKey:
    return dg.AssetKey(["segment", segment_id])


def audience_key(segment_id: str) -> dg.AssetKey:
    return dg.AssetKey(["audience", segment_id])


def sync_key(segment_id: str, destination: str) -> dg.AssetKey:
    return dg.AssetKey(["sync", segment_id, destination])


#: The ``privacy/erasure_receipts`` asset (built in :mod:`orchestrator.privacy.sensor`): every
#: sync depends on it, so open erasure/objection requests are honoured (and receipted) before
#: any sync sends.
RECEIPTS_KEY = dg.AssetKey(["privacy", "erasure_receipts"])


def source_asset_specs(
    model: SourceModel = DEFAULT_MODEL, product_schema: str = DEFAULT_PRODUCT_SCHEMA
) -> list[dg.AssetSpec]:
    """One external AssetSpec per role of the source model (group ``warehouse``), its
    description and ``tables`` metadata naming the company's own tables (or SELECTs), and the
    product's intake tables in ``product_schema``."""
    relations: dict[str, list[str]] = {
        "customers": [model.customers.described()],
        "events": [source.described() for source in model.events],
        "consents": [model.consents.described(), f"{product_schema}.consent_intake"],
        "privacy_requests": [
            *([model.privacy_requests.described()] if model.privacy_requests else []),
            f"{product_schema}.request_intake",
        ],
    }
    descriptions = {
        "customers": "Customers (the parent model): key, raw email, traits.",
        "events": "Events of every declared source: type, time, value, fields.",
        "consents": "Append-only consent log per customer and purpose, mapped to our words.",
        "privacy_requests": "Erasure (GDPR Art. 17) and objection (Art. 21) requests.",
    }
    return [
        dg.AssetSpec(
            key=source_key(table),
            description=f"{descriptions[table]} Reads: {', '.join(relations[table])}.",
            group_name="warehouse",
            kinds={"duckdb"},
            metadata={"tables": ", ".join(relations[table])},
        )
        for table in SOURCE_TABLES
    ]


def _definition_metadata(loaded: LoadedSegment) -> dict[str, object]:
    spec = loaded.spec
    return {
        "purpose": spec.purpose,
        "legal_basis": str(spec.legal_basis),
        "retention_days": spec.retention_days,
        "owner": spec.owner,
        "source_file": str(loaded.path),
    }


def _tags(loaded: LoadedSegment) -> dict[str, str]:
    return {"purpose": loaded.spec.purpose, "legal_basis": str(loaded.spec.legal_basis)}


def segment_column_lineage(model: SourceModel = DEFAULT_MODEL) -> dg.TableColumnLineage:
    """``segment_members.customer_id`` comes from the customers key and the events' keys
    (the company's own column names)."""
    keys = [dg.TableColumnDep(asset_key=source_key("customers"), column_name=model.customers.key)]
    keys += [
        dg.TableColumnDep(asset_key=source_key("events"), column_name=key)
        for key in sorted({source.key for source in model.events})
    ]
    return dg.TableColumnLineage(deps_by_column={"customer_id": keys})


def audience_column_lineage(model: SourceModel = DEFAULT_MODEL) -> dg.TableColumnLineage:
    """Which warehouse columns (the company's own names) each audience column comes from."""
    customers, consents = model.customers, model.consents
    email = dg.TableColumnDep(asset_key=source_key("customers"), column_name=customers.email)
    customer = dg.TableColumnDep(asset_key=source_key("customers"), column_name=customers.key)
    consent_id = dg.TableColumnDep(
        asset_key=source_key("consents"), column_name=consents.column("consent_id")
    )
    status = dg.TableColumnDep(
        asset_key=source_key("consents"), column_name=consents.column("status")
    )
    purchase = [  # one dep per column: two sources over one table share their id column
        dg.TableColumnDep(asset_key=source_key("events"), column_name=column)
        for column in dict.fromkeys(source.id for source in model.events if source.id)
    ]
    return dg.TableColumnLineage(
        deps_by_column={
            "subject_key": [email],
            "google_key": [email],
            "email": [email],
            "customer_id": [customer],
            "consent_ref": [consent_id, *purchase],
            "legal_basis": [status, *purchase],
        }
    )


AUDIENCE_SCHEMA = dg.TableSchema(
    columns=[
        dg.TableColumn("subject_key", "VARCHAR", description="sha256 of the normalized email"),
        dg.TableColumn("google_key", "VARCHAR", description="sha256, Google normalization"),
        dg.TableColumn("customer_id", "BIGINT"),
        dg.TableColumn("email", "VARCHAR", description="normalized email, stays in warehouse"),
        dg.TableColumn("legal_basis", "VARCHAR", description="consent or legitimate_interest"),
        dg.TableColumn("consent_ref", "VARCHAR", description="consent_id or purchase:<event_id>"),
    ]
)


def segment_spec(loaded: LoadedSegment, model: SourceModel = DEFAULT_MODEL) -> dg.AssetSpec:
    """The ``segment/<sid>`` asset: the members of the segment (``activation.segment_members``)."""
    spec = loaded.spec
    return dg.AssetSpec(
        key=segment_key(spec.id),
        deps=[source_key("customers"), source_key("events")],
        group_name=spec.id,
        description=f"Members of segment {spec.id}: {spec.description}",
        owners=[spec.owner],
        kinds={"duckdb"},
        tags=_tags(loaded),
        metadata={
            **_definition_metadata(loaded),
            "dagster/column_lineage": segment_column_lineage(model),
        },
    )


def audience_spec(loaded: LoadedSegment, model: SourceModel = DEFAULT_MODEL) -> dg.AssetSpec:
    """The ``audience/<sid>`` asset: consent-filtered, pseudonymized members."""
    spec = loaded.spec
    sid = spec.id
    return dg.AssetSpec(
        key=audience_key(sid),
        deps=[
            segment_key(sid),
            source_key("customers"),
            source_key("events"),
            source_key("consents"),
            source_key("privacy_requests"),
        ],
        group_name=sid,
        description=(
            f"Audience of {sid}: members with a valid legal basis ({spec.legal_basis}) for "
            f"{spec.purpose}, pseudonymized (SHA-256 of the normalized email)."
        ),
        owners=[spec.owner],
        kinds={"duckdb"},
        tags=_tags(loaded),
        metadata={
            **_definition_metadata(loaded),
            "dagster/column_schema": AUDIENCE_SCHEMA,
            "dagster/column_lineage": audience_column_lineage(model),
        },
    )


def segment_op_name(segment_id: str) -> str:
    """The op (and step) that builds ``segment/<sid>`` and ``audience/<sid>``:
    ``segment__<sid>``; its run config goes under that name."""
    return segment_key(segment_id).to_python_identifier()


def build_segment_asset(
    loaded: LoadedSegment, project: ProjectConfig, checks: Sequence[SegmentCheck] = ()
) -> dg.AssetsDefinition:
    """The ``segment/<sid>`` and ``audience/<sid>`` assets, built in one step (op
    :func:`segment_op_name`, pool ``duckdb``), then the audience's ``checks``
    (:func:`orchestrator.privacy.checks.audience_checks`).

    ``segment/<sid>`` refreshes the canonical views of the project's source model
    (:func:`orchestrator.model.views.refresh_source_views`), checks the catalog for drift, runs
    the compiled segment query and stores its members; ``audience/<sid>`` applies the consent
    filter and pseudonymizes them. A subsettable multi-asset: a run may select either asset, or
    the checks alone (what is not selected is left as it is). One step instead of two keeps the
    definitions of 500 segments small (``bench/README.md``); both were in pool ``duckdb``
    anyway, and a failed segment still leaves the audience unbuilt (the step fails before it).
    """
    model = project.source
    sid = loaded.spec.id
    keys = segment_key(sid), audience_key(sid)

    @dg.multi_asset(
        name=segment_op_name(sid),
        specs=[segment_spec(loaded, model), audience_spec(loaded, model)],
        check_specs=[check.spec for check in checks],
        can_subset=True,
        pool=DUCKDB_POOL,
        config_schema=run_config_schema(),
    )
    def _segment_and_audience(
        context: dg.AssetExecutionContext, warehouse: WarehouseResource
    ) -> Iterator[dg.MaterializeResult | dg.AssetCheckResult]:
        selected = context.selected_asset_keys
        if keys[0] in selected:
            yield _build_segment(context, loaded, project, warehouse)
        if keys[1] in selected:
            yield _build_audience(context, loaded, project, warehouse)
        yield from run_checks(context, checks, warehouse)

    return _segment_and_audience


def _build_segment(
    context: dg.AssetExecutionContext,
    loaded: LoadedSegment,
    project: ProjectConfig,
    warehouse: WarehouseResource,
) -> dg.MaterializeResult:
    spec = loaded.spec
    as_of = resolve_as_of(step_run_config(context))
    query = compile_segment(spec, as_of)
    with warehouse.get_connection() as con:
        create_activation_schema(con)
        drift_warnings = _check_drift(con, project, loaded)
        members = write_segment_members(con, spec, as_of)
    for warning in drift_warnings:
        context.log.warning(f"catalog drift: {warning}")
    context.log.info(f"segment {spec.id}: {members} members as of {as_of.isoformat()}")
    return dg.MaterializeResult(
        asset_key=segment_key(spec.id),
        metadata={
            "dagster/row_count": members,
            "as_of": as_of.isoformat(),
            "query": dg.MetadataValue.md(f"```sql\n{query.sql}\n```"),
            "catalog_drift_warnings": len(drift_warnings),
        },
    )


def _check_drift(
    con: duckdb.DuckDBPyConnection, project: ProjectConfig, loaded: LoadedSegment
) -> list[str]:
    """Refresh the source model's views and compare the warehouse with the committed catalog
    for this segment (:func:`orchestrator.model.catalog.live_drift`): return the warnings.

    Raises:
        dagster.Failure: the model does not match the warehouse, or a column the segment uses
            is missing or retyped (the message names the column and the segment file).
    """
    try:
        refresh_source_views(con, project.source, project.purposes)
        drift = live_drift(con, project, {loaded.spec.id: (loaded.spec, str(loaded.path))})
    except SourceModelError as error:
        raise dg.Failure(
            description="The source model does not match the warehouse:\n" + str(error)
        ) from None
    if drift.errors:
        raise dg.Failure(
            description="Catalog drift breaks this segment:\n"
            + "\n".join(drift.errors[loaded.spec.id])
        )
    return drift.warnings


def _build_audience(
    context: dg.AssetExecutionContext,
    loaded: LoadedSegment,
    project: ProjectConfig,
    warehouse: WarehouseResource,
) -> dg.MaterializeResult:
    spec = loaded.spec
    sid = spec.id
    as_of = resolve_as_of(step_run_config(context))
    with warehouse.get_connection() as con:
        stats = build_segment_audience(con, spec, project, as_of)
    excluded = {reason: stats.excluded.get(reason, 0) for reason in EXCLUSION_REASONS}
    context.log.info(f"audience {sid}: {stats.members} members, {sum(excluded.values())} excluded")
    for match in stats.unmatched_purposes:
        context.log.warning(f"consent log purpose {match.describe()}")
    return dg.MaterializeResult(
        asset_key=audience_key(sid),
        metadata={
            "dagster/row_count": stats.members,
            "excluded_total": sum(excluded.values()),
            **{f"excluded_{reason}": count for reason, count in excluded.items()},
            # purpose names of the consent log that are not a declared purpose: never
            # silently ignored (orchestrator.consent; check consent_purposes_declared)
            "consent_purposes_unmatched": len(stats.unmatched_purposes),
            "consent_purposes_unmatched_detail": "; ".join(
                match.describe() for match in stats.unmatched_purposes
            )
            or "none",
            "as_of": as_of.isoformat(),
            # Recorded on each event too: the event log is the record of processing.
            "purpose": spec.purpose,
            "legal_basis": str(spec.legal_basis),
            "retention_days": spec.retention_days,
            "dagster/column_schema": AUDIENCE_SCHEMA,
            "dagster/column_lineage": audience_column_lineage(project.source),
        },
    )


def sync_column_lineage(
    sid: str, entry: DestinationEntry, dest: DestinationConfig
) -> dg.TableColumnLineage:
    """Destination field <- audience column (and customers columns for merge fields)."""
    audience = audience_key(sid)
    if dest.kind is DestinationKind.AD:
        column = "google_key" if dest.normalization == "google" else "subject_key"
        return dg.TableColumnLineage(
            deps_by_column={"EMAIL_SHA256": [dg.TableColumnDep(audience, column)]}
        )
    deps = {"email_address": [dg.TableColumnDep(audience, "email")]}
    for tag, trait in entry.fields.items():
        deps[tag] = [dg.TableColumnDep(source_key("customers"), trait)]  # traits keep their names
    return dg.TableColumnLineage(deps_by_column=deps)


def batch_logger(log: dg.DagsterLogManager, every_s: float = 1.0) -> BatchHook:
    """A ``run_sync`` hook writing :func:`orchestrator.progress.batch_message` to the run's log
    after the first batch and then at most once per ``every_s`` seconds (a sync of thousands of
    one-member calls must not write thousands of log events); ``activation run`` and
    ``make demo`` show it live."""
    last = [float("-inf")]

    def _hook(batches: int) -> None:
        now = time.monotonic()
        if now - last[0] >= every_s:
            last[0] = now
            log.info(batch_message(batches))

    return _hook


def _refusals(summary: RejectionSummary) -> dict[str, object]:
    """Metadata on what the destination refuses now (every run, not only this one's rows):
    ``refused_now`` rows, ``refused_permanent``, ``refused_by_reason`` (reason -> rows),
    ``refused_samples`` (hash prefixes), ``privacy_removals_refused``."""
    return {
        "refused_now": summary.total,
        "refused_permanent": summary.permanent,
        "refused_by_reason": dg.MetadataValue.json(summary.by_reason),
        "refused_samples": ", ".join(summary.samples) or "none",
        "privacy_removals_refused": summary.privacy_removals,
    }


def stuck_markdown(stuck: list[dict[str, object]]) -> str:
    """What a pair cannot get through, as a Markdown table (operation, remove reason, the
    platform's words, status kept, rows, refused for good, next retry), redacted."""
    if not stuck:
        return "Nothing stuck: the destination confirmed every row sent."
    lines = [
        "| operation | remove reason | platform says | kept as | rows | permanent | next retry |",
        "|---|---|---|---|---|---|---|",
    ]
    for g in stuck:
        cells = [
            g["operation"],
            g["remove_reason"] or "",
            str(g["reason"]).replace("|", "/"),
            g["platform_status"] or "",
            g["rows"],
            "yes" if g["permanent"] else "no (not confirmed)",
            g["next_retry_at"] or "next run",
        ]
        lines.append("| " + " | ".join(str(c) for c in cells) + " |")
    return redact("\n".join(lines))


def _sync_metadata(report: object) -> dict[str, object]:
    values = asdict(report)
    by_reason = values.pop("removes_by_reason", {}) or {}
    stuck = values.pop("stuck", []) or []
    meta: dict[str, object] = {k: v for k, v in values.items() if k != "duration_s"}
    meta["duration_s"] = round(values["duration_s"], 3)
    meta["throttled_seconds"] = round(values["throttled_seconds"], 3)
    for reason, count in sorted(by_reason.items()):
        meta[f"removes_{reason}"] = count
    meta["stuck_rows"] = sum(int(g["rows"]) for g in stuck)
    kept: dict[str, int] = {}
    for g in stuck:
        if g["platform_status"]:
            status = str(g["platform_status"])
            kept[status] = kept.get(status, 0) + int(g["rows"])
    for status, count in sorted(kept.items()):
        meta[f"kept_{status}_by_platform"] = count
    meta["stuck"] = dg.MetadataValue.md(stuck_markdown(stuck))
    return meta


def build_sync_asset(
    loaded: LoadedSegment,
    entry: DestinationEntry,
    project: ProjectConfig,
    checks: Sequence[SegmentCheck] = (),
) -> dg.AssetsDefinition:
    """The ``sync/<sid>/<destination>`` asset: diff the audience against what the destination
    acknowledged and send only the changes (removes, then adds, then updates).

    Depends on ``privacy/erasure_receipts`` as well as its audience: in a run, open erasure and
    objection requests are carried to every destination (with a receipt per destination)
    before the sync diffs, so the sync never removes a requester without a receipt; when the
    receipts step fails (a destination did not acknowledge), the syncs of the run are skipped.

    Not in the ``duckdb`` pool: it holds the warehouse only for short moments (pair lock, diff
    export, one journal write per window of batches, state fold, each waiting for the lock if
    needed) and never during HTTP calls, so syncs to different destinations run in parallel.
    In the destination's pool instead (:func:`destination_pool`): the instance caps how many
    steps call one platform at once, across runs (one by default), so parallel runs share its
    rate limit rather than each hitting it.

    Requires the resources ``warehouse``, ``sync_state`` and ``destination_<name>`` of its own
    destination only (:func:`destinations.resources.destination_resources`), so a segment's
    job needs only its own destinations' environment variables, set when the run starts.
    Its ``checks`` (:func:`orchestrator.privacy.checks.sync_checks`) run in the same step,
    after the sync, with that same destination resource; a run may select them without the
    sync.
    """
    spec = loaded.spec
    sid = spec.id
    dest = project.destinations[entry.destination]
    client_key = destination_resource_key(entry.destination)
    key = sync_key(sid, entry.destination)
    asset = dg.AssetSpec(
        key=key,
        deps=[audience_key(sid), RECEIPTS_KEY],
        group_name=sid,
        description=(
            f"Sync of audience {sid} to {entry.destination} ({dest.platform}, {dest.kind}) "
            f"audience {entry.audience_id}, mode {entry.mode}."
        ),
        owners=[spec.owner],
        kinds={project.warehouse.kind, dest.platform},  # duckdb or postgres
        tags={**_tags(loaded), "destination": entry.destination},
        metadata={
            **_definition_metadata(loaded),
            "destination": entry.destination,
            "platform": dest.platform,
            "audience_id": entry.audience_id,
            "mode": str(entry.mode),
            "recipient_country": dest.country,
            "transfer_safeguard": dest.transfer_safeguard,
            "dagster/column_lineage": sync_column_lineage(sid, entry, dest),
        },
    )

    @dg.multi_asset(
        name=key.to_python_identifier(),
        specs=[asset],
        check_specs=[check.spec for check in checks],
        can_subset=True,
        pool=destination_pool(entry.destination),
        config_schema=run_config_schema(),
        # only its own destination's resource: a job needs only its destinations' variables
        required_resource_keys={"warehouse", "sync_state", client_key},
    )
    def _sync_step(
        context: dg.AssetExecutionContext,
    ) -> Iterator[dg.MaterializeResult | dg.AssetCheckResult]:
        warehouse: WarehouseResource = context.resources.warehouse
        sync_state: SyncStateDir = context.resources.sync_state
        destinations: PlatformResource = getattr(context.resources, client_key)
        if key in context.selected_asset_keys:
            config = step_run_config(context)
            yield _sync(context, config, warehouse, destinations, sync_state)
        yield from run_checks(context, checks, warehouse, destinations)

    def _sync(
        context: dg.AssetExecutionContext,
        config: RunConfig,
        warehouse: WarehouseResource,
        destinations: PlatformResource,
        sync_state: SyncStateDir,
    ) -> dg.MaterializeResult:
        as_of = resolve_as_of(config)
        client = None if config.dry_run else destinations.client(entry.destination)
        try:
            report = run_sync(
                WarehouseTarget.from_resource(warehouse),
                Path(sync_state.path),
                segment=sid,
                destination=entry.destination,
                audience_id=entry.audience_id,
                mode=str(entry.mode),
                fields=dict(entry.fields),
                kind=str(dest.kind),
                normalization=dest.normalization,
                purpose=spec.purpose,
                other_purposes=segment_counted_purposes(spec, project)[1:],
                retention_days=spec.retention_days,
                client=client,
                as_of=as_of,
                dry_run=config.dry_run,
                allow_mass_removal=config.allow_mass_removal,
                on_batch=batch_logger(context.log),
                lock_wait_s=0 if config.dry_run else SYNC_LOCK_WAIT_S,
                signals=as_mapping(signals_for(project, spec.purpose, dest.platform)),
                phone_platform=phone_platform_for(dest.platform, str(dest.kind)),
                project=project,
                batch_size=platform_max_batch_size(dest.platform) if config.dry_run else None,
                rows_per_call=(
                    partial(platform_rows_per_call, dest.platform) if config.dry_run else None
                ),
            )
        finally:
            if client is not None and hasattr(client, "close"):
                client.close()
        context.log.info(
            f"sync {sid} -> {entry.destination}: +{report.adds} -{report.removes} "
            f"~{report.updates}, rejected {report.rejected}, "
            f"{report.api_calls} API calls (minimum {report.min_api_calls})"
        )
        with connect(WarehouseTarget.from_resource(warehouse)) as con:
            refused = summarize_rejections(con, segment=sid, destination=entry.destination)
        return dg.MaterializeResult(
            asset_key=key, metadata={**_sync_metadata(report), **_refusals(refused)}
        )

    return _sync_step
