"""The demo's closing table: what Dagster recorded for each segment and sync."""

from __future__ import annotations

import dagster as dg
from rich.table import Table


def _latest_metadata(instance: dg.DagsterInstance, key: dg.AssetKey) -> dict[str, object]:
    event = instance.get_latest_materialization_event(key)
    if event is None or event.asset_materialization is None:
        return {}
    return {k: getattr(v, "value", v) for k, v in event.asset_materialization.metadata.items()}


def _exclusions(meta: dict[str, object]) -> str:
    parts = [
        f"{name.removeprefix('excluded_')} {count}"
        for name, count in sorted(meta.items())
        if name.startswith("excluded_") and name != "excluded_total" and count
    ]
    return ", ".join(parts) or "-"


def summarize(defs: dg.Definitions, instance: dg.DagsterInstance) -> Table:
    """A rich table: one row per segment (members, exclusions by reason) and one per sync
    (adds, removes, updates, rejected, API calls made / minimum), from the latest
    materializations in ``instance``. Counts only: never an identifier."""
    table = Table(title="Segments and syncs (latest materializations)")
    for column in ("segment", "members", "excluded by reason", "destination", "sent", "API calls"):
        table.add_column(column)
    keys = sorted(defs.resolve_asset_graph().get_all_asset_keys(), key=lambda k: k.path)
    for key in keys:
        if key.path[0] != "audience":
            continue
        sid = key.path[1]
        meta = _latest_metadata(instance, key)
        table.add_row(sid, str(meta.get("dagster/row_count", "?")), _exclusions(meta), "", "", "")
        for sync_key in keys:
            if sync_key.path[0] == "sync" and sync_key.path[1] == sid:
                sm = _latest_metadata(instance, sync_key)
                sent = (
                    f"+{sm.get('adds', 0)} -{sm.get('removes', 0)} ~{sm.get('updates', 0)}"
                    f" rejected {sm.get('rejected', 0)}"
                )
                calls = f"{sm.get('api_calls', 0)} / {sm.get('min_api_calls', 0)}"
                table.add_row("", "", "", sync_key.path[2], sent, calls)
    return table
