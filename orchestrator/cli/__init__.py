"""The ``activation`` command: validate segments, preview runs, privacy requests and reports.

Installed as the console script ``activation`` (``orchestrator.cli:main``); also runs as
``python -m orchestrator.cli``. Paths come from the environment (``orchestrator.settings``).

Exit codes: 0 success; 1 an error the user can act on (invalid segment files, unknown segment
or request, missing warehouse, a command whose module has not landed), printed as one line on
standard error; 2 a usage error (unknown option, bad ``--as-of``). Output is a table by default
and JSON with ``--format json``. No command prints an email address: subjects are shown by the
first characters of their SHA-256 key.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType
from typing import Any

import click

from orchestrator.cli.output import FORMATS, echo_json, error_record, stderr
from orchestrator.config import ProjectConfig, ProjectConfigError, load_project_config
from orchestrator.segments.loader import (
    LoadedSegment,
    LoadResult,
    SegmentError,
    SegmentValidationError,
    check_segment_text,
    load_segments,
)
from orchestrator.settings import Settings
from orchestrator.warehouse.target import WarehouseTarget

#: Characters of the subject key shown for a person (enough to find them, not to guess them;
#: the same as ``orchestrator.privacy.receipts.PREFIX_LENGTH``).
HASH_PREFIX = 12

_format_option = click.option(
    "--format", "fmt", type=click.Choice(FORMATS), default="table", show_default=True
)


def _parse_as_of(_ctx: click.Context, _param: click.Parameter, value: str | None) -> datetime:
    """``--as-of``: ISO date or date-time; aware values converted to UTC; default now (UTC).
    Returned naive (the warehouse stores naive UTC)."""
    if value is None:
        return datetime.now(UTC).replace(tzinfo=None)
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise click.BadParameter(
            f"{value!r} is not an ISO date-time (e.g. 2026-11-29T06:00:00 or 2026-11-29)"
        ) from None
    return parsed.astimezone(UTC).replace(tzinfo=None) if parsed.tzinfo else parsed


_as_of_option = click.option(
    "--as-of",
    callback=_parse_as_of,
    metavar="ISO",
    help="Evaluate the segment at this time (UTC unless an offset is given). Default: now.",
)


def _project(settings: Settings) -> ProjectConfig:
    """``activation.yaml``, or a one-line error when it is missing or invalid."""
    try:
        return load_project_config(settings.config_path)
    except FileNotFoundError:
        raise click.ClickException(f"project config not found: {settings.config_path}") from None
    except ProjectConfigError as error:  # each problem as file:line field: message
        more = f" (and {len(error.errors) - 1} more)" if len(error.errors) > 1 else ""
        raise click.ClickException(f"invalid project config: {error.errors[0]}{more}") from None


def _segments(settings: Settings, project: ProjectConfig) -> LoadResult:
    return load_segments(settings.segments_dir, project)


def _choose(result: LoadResult, wanted: Sequence[str]) -> list[LoadedSegment]:
    """The loaded segments named in ``wanted``; an unknown name lists the valid ones."""
    unknown = [name for name in wanted if name not in result.specs]
    if unknown:
        valid = ", ".join(sorted(result.specs)) or "none"
        note = (
            f" ({len(result.errors)} error(s) in segment files: run `activation validate`)"
            if result.errors
            else ""
        )
        raise click.ClickException(f"unknown segment {unknown[0]!r}; valid segments: {valid}{note}")
    return [result.specs[name] for name in dict.fromkeys(wanted)]


def _privacy(module: str, command: str) -> ModuleType:
    """Import ``orchestrator.privacy.<module>`` when the command runs (another team's module)."""
    name = f"orchestrator.privacy.{module}"
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as error:
        if error.name != name:
            raise
        raise click.ClickException(
            f"`activation {command}` is not available yet: {name} is not installed"
        ) from None


def _require_warehouse(settings: Settings, project: ProjectConfig) -> WarehouseTarget:
    """The project's warehouse (``warehouse:`` of ``activation.yaml``); a DuckDB file must
    exist (a PostgreSQL server is reached, and its errors reported, when first opened)."""
    from orchestrator.warehouse.factory import target_for

    target = target_for(project.warehouse, settings.project_dir, settings.warehouse_path)
    if target.duckdb_path is not None and not target.duckdb_path.is_file():
        raise click.ClickException(
            f"warehouse not found: {target.duckdb_path} "
            "(build the demo with `make demo` or set ACTIVATION_WAREHOUSE)"
        )
    return target


@contextmanager
def _warehouse_errors() -> Iterator[None]:
    """Turn DuckDB's lock and missing-table errors, and a PostgreSQL warehouse's connection,
    grant and timeout errors, into one-line messages (exit 1)."""
    import duckdb

    from orchestrator.model.views import SourceModelError
    from orchestrator.warehouse.errors import WarehouseError

    try:
        yield
    except WarehouseError as error:
        raise click.ClickException(str(error)) from None
    except duckdb.IOException as error:
        first = str(error).splitlines()[0]
        raise click.ClickException(f"warehouse unavailable (locked by a run?): {first}") from None
    except SourceModelError as error:
        raise click.ClickException(
            f"the source model does not match the warehouse: {error}"
        ) from None
    except duckdb.CatalogException as error:
        first = str(error).splitlines()[0]
        raise click.ClickException(
            f"the warehouse lacks a table ({first}); run the segments first (`make demo`)"
        ) from None


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="activation-orchestrator")
def cli() -> None:
    """Consent-filtered audience activation: segments, previews and privacy requests."""


# --- validate -----------------------------------------------------------------------------


def _validate_file(
    path: Path, project: ProjectConfig
) -> tuple[list[SegmentError], list[SegmentError]]:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        return [SegmentError(path, None, "", f"cannot read file: {error}")], []
    try:
        _, warnings = check_segment_text(text, path, project)
    except SegmentValidationError as error:
        return error.errors, []
    return [], warnings


def validate_paths(
    paths: Sequence[Path], project: ProjectConfig
) -> tuple[int, list[SegmentError], list[SegmentError]]:
    """Validate segment files and folders (a folder: every ``*.yaml``/``*.yml`` in it, with the
    cross-file checks). Returns (number of valid segments, errors, warnings about valid
    segments)."""
    valid, errors, warnings = 0, [], []
    for path in paths:
        if path.is_dir():
            result = load_segments(path, project)
            valid += len(result.specs)
            errors += result.errors
            warnings += result.warnings
        elif path.is_file():
            found, warned = _validate_file(path, project)
            valid += not found
            errors += found
            warnings += warned
        else:
            errors.append(SegmentError(path, None, "", "no such file or directory"))
    return valid, errors, warnings


@cli.command()
@click.argument("paths", nargs=-1, type=click.Path(path_type=Path))
@_format_option
def validate(paths: tuple[Path, ...], fmt: str) -> None:
    """Check segment files (default: the segments folder). Prints each problem as
    `file:line field: message`, then each warning as `warning: file:line field: message`
    (e.g. an ad segment reading data marked health or financial); exits 1 when there is any
    problem (warnings alone exit 0). JSON: the problems, then the warnings with
    `"severity": "warning"`."""
    settings = Settings.from_env()
    valid, errors, warnings = validate_paths(
        list(paths) or [settings.segments_dir], _project(settings)
    )
    if fmt == "json":
        echo_json(
            [error_record(error) for error in errors]
            + [{**error_record(w), "severity": "warning"} for w in warnings]
        )
    else:
        for error in errors:
            click.echo(str(error))
        for warning in warnings:
            click.echo(f"warning: {warning}")
        status = "ok" if not errors else "FAILED"
        stderr().print(
            f"{status}: {valid} valid segment(s), {len(errors)} error(s), "
            f"{len(warnings)} warning(s)"
        )
    if errors:
        click.get_current_context().exit(1)


# --- preview ------------------------------------------------------------------------------


@cli.command()
@click.argument("segments", nargs=-1, required=True)
@_as_of_option
@_format_option
def preview(segments: tuple[str, ...], as_of: datetime, fmt: str) -> None:
    """Dry run of SEGMENT...: members, audience, exclusions by reason and, per destination, the
    adds, updates, removes and API calls a run would make. Sends nothing, writes nothing."""
    from orchestrator.cli.output import preview_record, preview_tables, stdout
    from orchestrator.cli.preview import preview_segment

    settings = Settings.from_env()
    project = _project(settings)
    chosen = _choose(_segments(settings, project), segments)
    warehouse = _require_warehouse(settings, project)
    results = []
    with _progress() as progress:
        task = progress.add_task("previewing", total=len(chosen))
        for loaded in chosen:
            progress.update(task, description=f"previewing {loaded.spec.id}")
            with _warehouse_errors():
                results.append(
                    preview_segment(warehouse, settings.state_dir, loaded, project, as_of)
                )
            progress.advance(task)
    if fmt == "json":
        echo_json([preview_record(result) for result in results])
        return
    console = stdout()
    for result in results:
        for table in preview_tables(result):
            console.print(table)


def _progress() -> Any:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        console=stderr(),
        transient=True,
    )


# --- run --------------------------------------------------------------------------------


def _unset_destination_variables(project: ProjectConfig, loaded: LoadedSegment) -> str:
    """Why ``loaded``'s job cannot start (its run reads its destinations' base URL and token
    variables when it starts; names only, never a value), or '' when it can."""
    from destinations.resources import unset_variables

    names = [entry.destination for entry in loaded.spec.destinations]
    missing = unset_variables(project, names)
    if not missing:
        return ""
    return (
        f"{loaded.spec.id}: not started: environment variable(s) {', '.join(missing)} not set "
        f"(activation.yaml names them for destination(s) {', '.join(names)})"
    )


@cli.command(name="run")
@click.argument("segments", nargs=-1, required=True)
@click.option("--dry-run", is_flag=True, help="Compute and report; send nothing, write no state.")
@click.option(
    "--as-of",
    metavar="ISO",
    default=None,
    help="Evaluate the segments at this time (UTC unless an offset is given). Default: now.",
)
def run_(segments: tuple[str, ...], dry_run: bool, as_of: str | None) -> None:
    """Run SEGMENT...'s job on the Dagster instance (DAGSTER_HOME, default .dagster_home; the
    run shows in the UI's run history), one run per segment, with live progress. A segment
    whose destinations' variables are unset is not started (named; the others run). Ctrl-C
    cancels the run cleanly. Exits 1 when a run fails, a check fails or a segment could not
    start, 130 when interrupted."""
    from dagster import DagsterInstance

    from orchestrator.cli.output import stdout
    from orchestrator.launch import (
        ensure_dagster_home,
        launch_job,
        reconstructable_job,
        segment_run_config,
        summary_lines,
    )

    if as_of is not None:
        as_of = _parse_as_of(click.get_current_context(), None, as_of).isoformat()
    settings = Settings.from_env()
    project = _project(settings)
    chosen = _choose(_segments(settings, project), segments)
    _require_warehouse(settings, project)
    ensure_dagster_home(settings)
    console, failed = stdout(), False
    log = settings.state_dir.parent / "dagster-run.log"
    stderr().print(f"Dagster's step-by-step log: {log} (the same events are in the UI)")
    with DagsterInstance.get() as instance:
        for n, loaded in enumerate(chosen):
            if unset := _unset_destination_variables(project, loaded):
                console.print(unset, style="red")
                failed = True
                continue
            job = f"{loaded.spec.id}_job"
            definition = reconstructable_job(job, settings).get_definition()
            config = segment_run_config(definition, dry_run=dry_run, as_of=as_of)
            title = f"{loaded.spec.id}{' (dry run: nothing sent)' if dry_run else ''}"
            outcome = launch_job(
                instance,
                job,
                console=console,
                title=title,
                segment=loaded.spec.id,
                run_config=config,
                log_path=log,
            )
            for line in summary_lines(outcome):
                console.print(line, style="red" if "failed:" in line else None)
            if outcome.interrupted:
                if chosen[n + 1 :]:
                    console.print(f"not started: {', '.join(s.spec.id for s in chosen[n + 1 :])}")
                click.get_current_context().exit(130)
            failed = failed or not outcome.success or outcome.progress.error_checks > 0
    if failed:
        click.get_current_context().exit(1)


# --- privacy ------------------------------------------------------------------------------


@cli.command()
@click.argument("email")
@click.argument("segment", required=False)
@_as_of_option
@_format_option
def explain(email: str, segment: str | None, as_of: datetime, fmt: str) -> None:
    """Why the person with EMAIL is or is not in SEGMENT (default: every segment), which
    destinations hold them and what a destination refused. The address is hashed on entry
    and never printed."""
    email = _check_email(email)
    module = _privacy("explain", "explain")
    settings = Settings.from_env()
    project = _project(settings)
    result = _segments(settings, project)
    if segment is not None:
        _choose(result, [segment])
    warehouse = _require_warehouse(settings, project)
    with _warehouse_errors():
        if segment is None:
            found = module.explain_everywhere(warehouse, email, project, result.specs, as_of)
            text = module.format_everywhere
        else:
            found = module.explain(warehouse, email, segment, project, result.specs, as_of)
            text = module.format_explanation
    if fmt == "json":
        echo_json(found)
    else:
        click.echo(text(found))


@cli.command()
@click.argument("segment")
@click.option("--destination", help="Also show what this destination of the segment holds.")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(("table", "csv", "json")),
    default="table",
    show_default=True,
)
def members(segment: str, destination: str | None, fmt: str) -> None:
    """The members of SEGMENT's last computed audience by hash prefix, with legal basis and
    consent reference; with --destination, what that destination holds of each (and who it
    still holds after they left). CSV and JSON for auditors; never an email address."""
    from orchestrator.privacy.members import (
        BASE_COLUMNS,
        DESTINATION_COLUMNS,
        list_members,
        members_csv,
    )
    from orchestrator.warehouse.connect import connect

    settings = Settings.from_env()
    project = _project(settings)
    (loaded,) = _choose(_segments(settings, project), [segment])
    names = [entry.destination for entry in loaded.spec.destinations]
    if destination is not None and destination not in names:
        raise click.ClickException(
            f"segment {segment!r} does not sync to {destination!r}; its destinations: "
            f"{', '.join(names)}"
        )
    warehouse = _require_warehouse(settings, project)
    with _warehouse_errors(), connect(warehouse, read_only=True, timeout_s=30) as con:
        rows = list_members(con, segment=segment, destination=destination)
    columns = [*BASE_COLUMNS, *(DESTINATION_COLUMNS if destination else ())]
    if fmt == "json":
        echo_json(rows)
    elif fmt == "csv":
        click.echo(members_csv(rows, columns), nl=False)
    else:
        _members_table(rows, columns, f"{segment}{f' at {destination}' if destination else ''}")


_SHORT = {"legal_basis": "basis", "consent_ref": "consent", "synced_at": "synced"}


def _members_table(rows: list[dict[str, Any]], columns: list[str], title: str) -> None:
    """A table for people (the audience's computation time once, in the title)."""
    from rich.table import Table

    from orchestrator.cli.output import stdout

    computed = next((r["computed_at"] for r in rows if r["computed_at"]), None)
    when = f", computed {_table_cell(computed)}" if computed else ""
    table = Table(title=f"{title}: {len(rows)} subject(s){when}", title_justify="left")
    columns = [name for name in columns if name != "computed_at"]
    for name in columns:
        table.add_column(_SHORT.get(name, name).replace("_", " "), no_wrap=name != "refused_reason")
    for row in rows:
        table.add_row(*(_table_cell(row[name]) for name in columns))
    stdout().print(table)


def _table_cell(value: object) -> str:
    if value is None:
        return ""
    return f"{value:%Y-%m-%d %H:%M}" if isinstance(value, datetime) else str(value)


@cli.command()
@click.option(
    "--format",
    "fmt",
    type=click.Choice(("markdown", "csv", "html")),
    default="markdown",
    show_default=True,
)
@click.option("--output", type=click.Path(dir_okay=False, path_type=Path), help="Write here.")
def register(fmt: str, output: Path | None) -> None:
    """The GDPR Article 30(1) record of processing activities a DPO files: per purpose, with
    campaigns as detail, recipients (legal entity, role, country, safeguard, agreement), the
    DPO and EU representative, version, date and history. HTML prints as an A4 page."""
    module = _privacy("record", "register")
    settings = Settings.from_env()
    project = _project(settings)
    specs = _segments(settings, project).specs
    inputs = [settings.segments_dir, settings.config_path]
    record = module.build_record(
        project, specs, history=module.git_history(settings.project_dir, inputs)
    )
    render = {
        "csv": module.render_record_csv,
        "html": module.render_record_html,
        "markdown": module.render_record_markdown,
    }[fmt]
    text = render(record)
    if output is None:
        click.echo(text, nl=not text.endswith("\n"))
        return
    output.write_text(text, encoding="utf-8")
    stderr().print(f"wrote {output} (record {record.version}, dated {record.date})")


@cli.command()
@click.argument("request_id")
@_format_option
def receipt(request_id: str, fmt: str) -> None:
    """The receipt of an erasure or objection request: what was removed where, and when."""
    module = _privacy("receipts", "receipt")
    settings = Settings.from_env()
    project = _project(settings)
    warehouse = _require_warehouse(settings, project)
    try:
        with _warehouse_errors():
            found = module.receipt_for(warehouse, request_id, project=project)
    except LookupError:
        raise click.ClickException(f"unknown request id {request_id!r}") from None
    if fmt == "json":
        echo_json(found)
    else:
        click.echo(module.format_receipt(found))


def _check_email(email: str) -> str:
    """The address a person means by EMAIL (``mailto:``, ``Name <addr>``, quotes, a trailing
    dot...), or a one-line error saying why not (the input is never echoed): the intake checks
    of :func:`orchestrator.privacy.intake.typed_address`."""
    from orchestrator.privacy.intake import typed_address

    try:
        return typed_address(email)
    except ValueError as error:
        raise click.ClickException(f"EMAIL: {error}") from None


def _record(email: str, request_type: str, fmt: str) -> None:
    """Record a privacy request for ``email`` (hashed on entry); print its id and hash prefix,
    and say so plainly when nobody we hold has the address (``no_match``)."""
    from orchestrator.privacy.receipts import NO_MATCH_TEXT
    from orchestrator.pseudonymize import subject_key

    address = _check_email(email)
    module = _privacy("requests", "forget" if request_type == "erasure" else "object")
    settings = Settings.from_env()
    project = _project(settings)
    warehouse = _require_warehouse(settings, project)
    prefix = (subject_key(address) or "")[:HASH_PREFIX]
    with _warehouse_errors():
        existing = module.open_request_for(warehouse, address, request_type, project=project)
        request_id = existing or module.record_request(
            warehouse, address, request_type, project=project
        )
        matched = module.subject_known(warehouse, address)
    if fmt == "json":
        echo_json(
            {
                "request_id": request_id,
                "request_type": request_type,
                "subject": prefix,
                "already_open": existing is not None,
                "matched": matched,
                "status": "open" if matched else "no_match",
            }
        )
        return
    if existing:
        click.echo(
            f"an open {request_type} request {request_id} already exists for subject "
            f"{prefix}…: nothing new recorded."
        )
    else:
        click.echo(f"recorded {request_type} request {request_id} for subject {prefix}…")
    if not matched:
        click.echo(f"NO MATCH: {NO_MATCH_TEXT}.")
    click.echo(f"`activation receipt {request_id}` shows its progress after the next syncs.")


@cli.command()
@click.argument("email")
@_format_option
def forget(email: str, fmt: str) -> None:
    """Record an erasure request for EMAIL: removed from every destination (GDPR Article 17)."""
    _record(email, "erasure", fmt)


@cli.command(name="object")
@click.argument("email")
@_format_option
def object_(email: str, fmt: str) -> None:
    """Record an objection for EMAIL: no more marketing to them (GDPR Article 21)."""
    _record(email, "objection", fmt)


# --- mock destinations --------------------------------------------------------------------


@cli.command(name="mock-destinations")
@click.option("--port", type=int, default=8765, show_default=True, help="0 picks a free port.")
@click.option(
    "--state-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Where the mock keeps its audiences. Default: <project>/.data/mock.",
)
def mock_destinations(port: int, state_dir: Path | None) -> None:
    """Run the mock ad and email platforms in the foreground until Ctrl-C."""
    from destinations.mock.__main__ import main as mock_main

    folder = state_dir or Settings.from_env().project_dir / ".data" / "mock"
    code = mock_main(["--port", str(port), "--state-dir", str(folder)])
    click.get_current_context().exit(code)


def _register_commands() -> None:
    from orchestrator.cli.catalog import catalog_command
    from orchestrator.cli.withdraw import withdraw_command

    cli.add_command(catalog_command)
    cli.add_command(withdraw_command)


_register_commands()


def main() -> None:
    """Console-script entry point."""
    cli(prog_name="activation")


__all__ = ["cli", "main", "validate_paths"]
