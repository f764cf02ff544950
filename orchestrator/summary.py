"""The demo's closing tables: what Dagster recorded for each audience and each sync."""

from __future__ import annotations

import dagster as dg
from rich.console import Group
from rich.table import Table

from orchestrator.audience import EXCLUSION_REASONS


def _latest(instance: dg.DagsterInstance, key: dg.AssetKey) -> tuple[dict[str, object], str]:
    """Metadata of the latest materialization of ``key`` and the id of the run that made it."""
    event = instance.get_latest_materialization_event(key)
    if event is None or event.asset_materialization is None:
        return {}, ""
    meta = {k: getattr(v, "value", v) for k, v in event.asset_materialization.metadata.items()}
    return meta, event.run_id


def _when(made_by: str, run_id: str) -> str:
    if not made_by:
        return "never"
    return "this run" if made_by == run_id else "earlier run"


def audience_table(keys: list[dg.AssetKey], instance: dg.DagsterInstance, run_id: str) -> Table:
    """One row per segment: audience members (after exclusions), then exclusions, one column per
    reason (segment members = audience + exclusions)."""
    table = Table(title="Audiences: members kept, and segment members left out by reason")
    table.add_column("as of")
    table.add_column("segment")
    table.add_column("audience", justify="right")
    for reason in EXCLUSION_REASONS:
        table.add_column(reason.replace("_", " "), justify="right")
    for key in keys:
        if key.path[0] == "audience":
            meta, made_by = _latest(instance, key)
            counts = [str(meta.get(f"excluded_{reason}", "-")) for reason in EXCLUSION_REASONS]
            members = str(meta.get("dagster/row_count", "-"))
            table.add_row(_when(made_by, run_id), key.path[1], members, *counts)
    return table


def sync_table(keys: list[dg.AssetKey], instance: dg.DagsterInstance, run_id: str) -> Table:
    """One row per (segment, destination): what the latest sync sent and its API calls."""
    table = Table(title="Syncs: changes sent by the latest successful sync of each pair")
    table.add_column("as of")
    table.add_column("segment")
    table.add_column("destination")
    for column in ("adds", "removes", "updates", "unchanged", "rejected"):
        table.add_column(column, justify="right")
    table.add_column("API calls / minimum", justify="right")
    for key in keys:
        if key.path[0] == "sync":
            meta, made_by = _latest(instance, key)
            counts = [str(meta.get(k, "-")) for k in ("adds", "removes", "updates", "unchanged")]
            calls = f"{meta.get('api_calls', '-')} / {meta.get('min_api_calls', '-')}"
            rejected = str(meta.get("rejected", "-"))
            pair = (key.path[1], key.path[2])
            table.add_row(_when(made_by, run_id), *pair, *counts, rejected, calls)
    return table


def summarize(defs: dg.Definitions, instance: dg.DagsterInstance, run_id: str) -> Group:
    """Both tables, from the latest materializations in ``instance``; the first column says
    whether each row comes from run ``run_id`` or from an earlier one (a step of this run
    failed or was skipped). Counts only: never an identifier."""
    keys = sorted(defs.resolve_asset_graph().get_all_asset_keys(), key=lambda k: k.path)
    return Group(audience_table(keys, instance, run_id), sync_table(keys, instance, run_id))
