"""The demo's closing tables: what Dagster recorded for each audience and each sync."""

from __future__ import annotations

import dagster as dg
from rich.console import Group
from rich.table import Table

from orchestrator.audience import EXCLUSION_REASONS


def _latest_metadata(instance: dg.DagsterInstance, key: dg.AssetKey) -> dict[str, object]:
    event = instance.get_latest_materialization_event(key)
    if event is None or event.asset_materialization is None:
        return {}
    return {k: getattr(v, "value", v) for k, v in event.asset_materialization.metadata.items()}


def audience_table(keys: list[dg.AssetKey], instance: dg.DagsterInstance) -> Table:
    """One row per segment: members, then exclusions, one column per reason."""
    table = Table(title="Audiences: members and exclusions by reason")
    table.add_column("segment")
    table.add_column("members", justify="right")
    for reason in EXCLUSION_REASONS:
        table.add_column(reason.replace("_", " "), justify="right")
    for key in keys:
        if key.path[0] == "audience":
            meta = _latest_metadata(instance, key)
            counts = [str(meta.get(f"excluded_{reason}", "-")) for reason in EXCLUSION_REASONS]
            table.add_row(key.path[1], str(meta.get("dagster/row_count", "-")), *counts)
    return table


def sync_table(keys: list[dg.AssetKey], instance: dg.DagsterInstance) -> Table:
    """One row per (segment, destination): what the latest sync sent and its API calls."""
    table = Table(title="Syncs: changes sent in the latest run")
    table.add_column("segment")
    table.add_column("destination")
    for column in ("adds", "removes", "updates", "unchanged", "rejected"):
        table.add_column(column, justify="right")
    table.add_column("API calls / minimum", justify="right")
    for key in keys:
        if key.path[0] == "sync":
            meta = _latest_metadata(instance, key)
            counts = [str(meta.get(k, "-")) for k in ("adds", "removes", "updates", "unchanged")]
            calls = f"{meta.get('api_calls', '-')} / {meta.get('min_api_calls', '-')}"
            table.add_row(key.path[1], key.path[2], *counts, str(meta.get("rejected", "-")), calls)
    return table


def summarize(defs: dg.Definitions, instance: dg.DagsterInstance) -> Group:
    """Both tables, from the latest materializations in ``instance``. Counts only: never an
    identifier."""
    keys = sorted(defs.resolve_asset_graph().get_all_asset_keys(), key=lambda k: k.path)
    return Group(audience_table(keys, instance), sync_table(keys, instance))
