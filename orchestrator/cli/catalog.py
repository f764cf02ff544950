"""``activation catalog``: write the committed catalog file from the warehouse, or check it.

``activation catalog`` refreshes the source model's views, reads the traits, event types and
fields with their types, and writes ``catalog.json`` beside ``activation.yaml`` (commit it with
the segments, like a lock file). ``--check`` writes nothing: it compares the live warehouse
with the committed file and exits 1 when a column a segment uses is missing or retyped (each
such segment named with the column and its file); other drift is printed as a warning.
"""

from __future__ import annotations

import click

from orchestrator.cli import _require_warehouse
from orchestrator.cli.output import FORMATS, echo_json, stderr
from orchestrator.config import catalog_path_for, load_project_config
from orchestrator.model.catalog import build_catalog, compare, write_catalog
from orchestrator.model.views import SourceModelError
from orchestrator.segments.loader import display_path, load_segments
from orchestrator.settings import Settings
from orchestrator.warehouse.connect import connect
from orchestrator.warehouse.errors import WarehouseError


@click.command(name="catalog")
@click.option("--check", is_flag=True, help="Compare the warehouse with the committed file.")
@click.option("--format", "fmt", type=click.Choice(FORMATS), default="table", show_default=True)
def catalog_command(check: bool, fmt: str) -> None:
    """Write (or with --check, verify) the catalog file of the source model."""
    settings = Settings.from_env()
    project = load_project_config(settings.config_path)
    warehouse = _require_warehouse(settings, project)
    path = catalog_path_for(settings.config_path)
    try:
        with connect(warehouse) as con:
            built = build_catalog(con, project)
    except SourceModelError as error:
        for line in error.located(settings.config_path):
            click.echo(line, err=True)
        raise click.ClickException("the source model does not match the warehouse") from None
    except WarehouseError as error:
        raise click.ClickException(str(error)) from None
    if not check:
        write_catalog(path, built.catalog)
        _report_build(built, path, fmt)
        return
    if not path.is_file():
        raise click.ClickException(f"no catalog file at {path}: run `activation catalog`")
    loaded = load_segments(settings.segments_dir, project)
    segments = {sid: (s.spec, display_path(s.path)) for sid, s in loaded.specs.items()}
    drift = compare(built.catalog, project.catalog, segments)
    if fmt == "json":
        echo_json({"errors": drift.errors, "warnings": drift.warnings})
    else:
        for sid, messages in sorted(drift.errors.items()):
            for message in messages:
                click.echo(f"error: segment {sid}: {message}")
        for message in drift.warnings:
            click.echo(f"warning: {message}")
        stderr().print(
            f"{'ok' if drift.ok else 'FAILED'}: {len(drift.errors)} segment(s) broken, "
            f"{len(drift.warnings)} warning(s)"
        )
    if not drift.ok:
        click.get_current_context().exit(1)


def _report_build(built, path, fmt: str) -> None:
    catalog = built.catalog
    summary = {
        "file": str(path),
        "traits": len(catalog.traits),
        "event_types": len(catalog.event_types),
        "event_fields": len(catalog.event_fields),
        "capped_type_columns": built.capped,
        "skipped_columns": built.skipped,
        "unmapped_consents": built.unmapped_consents,
    }
    if fmt == "json":
        echo_json(summary)
        return
    click.echo(
        f"wrote {path}: {summary['traits']} traits, {summary['event_types']} event types, "
        f"{summary['event_fields']} event fields"
    )
    for source, count in built.capped.items():
        click.echo(
            f"warning: event source {source!r} has {count} distinct types; the catalog keeps "
            f"the first {len(catalog.event_types)} (declare a fixed type or a narrower SELECT)"
        )
    for value, count in built.unmapped_consents.items():
        click.echo(
            f"warning: {count} consent row(s) with {value} map to no status or purpose: never "
            "read as consent (map the word in source.consents in activation.yaml if it is one)"
        )
    for column, kind in built.skipped.items():
        click.echo(f"note: {column} ({kind}) is not offered to segments (no comparable type)")
