"""How the ``activation`` commands print: rich tables for people, JSON for machines.

Nothing here prints an email address: the objects shown carry counts, ids and hash prefixes.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from datetime import date, datetime
from typing import Any

import click
from rich.console import Console
from rich.table import Table

from destinations.redaction import redact
from orchestrator.cli.preview import SegmentPreview
from orchestrator.segments.loader import SegmentError, display_path

FORMATS = ("table", "json")


def stdout() -> Console:
    """A console on standard output (no colours when it is not a terminal)."""
    return Console(highlight=False, soft_wrap=True)


def stderr() -> Console:
    """A console on standard error (progress bars, notes that must not spoil JSON output)."""
    return Console(stderr=True, highlight=False)


def _default(value: Any) -> Any:
    if isinstance(value, datetime | date):
        return value.isoformat()
    return str(value)


def echo_json(data: Any) -> None:
    """Print ``data`` as indented JSON (datetimes in ISO form)."""
    click.echo(json.dumps(data, indent=2, default=_default, ensure_ascii=False))


def error_record(error: SegmentError) -> dict[str, Any]:
    """One validation error as JSON: ``{path, line, field, message}`` (line may be null)."""
    return {
        "path": display_path(error.path),
        "line": error.line,
        "field": error.field,
        "message": error.message,
    }


def preview_record(preview: SegmentPreview) -> dict[str, Any]:
    """A preview as JSON: segment, as_of, members, audience, excluded, destinations[]."""
    return asdict(preview)


def preview_tables(preview: SegmentPreview) -> list[Table]:
    """Two tables: the audience (members, exclusions by reason) and the sends per destination."""
    audience = Table(title=f"{preview.segment} as of {preview.as_of.isoformat()} (dry run)")
    audience.add_column("")
    audience.add_column("subjects", justify="right")
    audience.add_row("segment members", str(preview.members))
    audience.add_row("audience (legal basis holds)", str(preview.audience))
    for reason, count in preview.excluded.items():
        audience.add_row(f"  excluded: {reason}", str(count))
    sends = Table(title="would send per destination (nothing sent)")
    sends.add_column("")
    for d in preview.destinations:
        sends.add_column(f"{d.destination} ({d.platform})", justify="right")
    rows: list[tuple[str, list[object]]] = [
        ("mode", [d.mode for d in preview.destinations]),
        ("adds", [d.adds for d in preview.destinations]),
        ("updates", [d.updates for d in preview.destinations]),
        ("removes", [d.removes for d in preview.destinations]),
    ]
    reasons = dict.fromkeys(r for d in preview.destinations for r in d.removes_by_reason)
    rows += [
        (f"  removes: {r}", [d.removes_by_reason.get(r, 0) for d in preview.destinations])
        for r in reasons
    ]
    rows += [
        ("unchanged", [d.unchanged for d in preview.destinations]),
        ("kept (mode keeps leavers)", [d.kept for d in preview.destinations]),
        ("suppressed at destination", [d.suppressed for d in preview.destinations]),
        ("refused before, unchanged", [d.skipped_rejected for d in preview.destinations]),
        ("removes refused, backing off", [d.removes_deferred for d in preview.destinations]),
        ("re-keyed", [d.rekeys for d in preview.destinations]),
        ("pending (not confirmed)", [d.pending for d in preview.destinations]),
        ("API calls", [f"{d.api_calls} (≤{d.max_batch_size}/call)" for d in preview.destinations]),
    ]
    for label, values in rows:
        sends.add_row(label, *(str(v) for v in values))
    tables = [audience, sends]
    stuck = Table(title="stuck at the destination (what it does not take, and why)")
    for name in ("destination", "operation", "platform says", "kept as", "rows", "next retry"):
        stuck.add_column(name)
    for d in preview.destinations:
        for g in d.stuck:
            op = (
                f"{g['operation']} ({g['remove_reason']})" if g["remove_reason"] else g["operation"]
            )
            stuck.add_row(
                d.destination,
                str(op),
                redact(str(g["reason"])),
                str(g["platform_status"] or ""),
                str(g["rows"]),
                str(g["next_retry_at"] or "next run"),
            )
    if stuck.row_count:
        tables.append(stuck)
    return tables
