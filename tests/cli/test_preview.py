"""``activation preview``: a dry run that writes nothing, sends nothing and predicts exactly
what the next real run sends."""

from __future__ import annotations

import hashlib
import json
from datetime import datetime, timedelta
from pathlib import Path

import duckdb
from click.testing import CliRunner

from destinations.registry import build_client
from orchestrator.audience import build_audience
from orchestrator.cli import cli
from orchestrator.config import load_project_config
from orchestrator.segments.compiler import compile_segment
from orchestrator.segments.loader import load_segments
from orchestrator.sync.engine import SyncReport, run_sync
from orchestrator.warehouse.connect import connect
from orchestrator.warehouse.target import WarehouseTarget
from tests.conftest import AS_OF, REPO
from tests.postgres import postgres_copy_of, warehouse_config
from tests.privacy.helpers import opened

from .conftest import AS_OF_TEXT, postgres_project, run_activation

SEGMENT = "recent_buyers_eu"  # mailchimp, mirror


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _preview(runner: CliRunner, *segments: str) -> list[dict]:
    result = runner.invoke(cli, ["preview", *segments, "--as-of", AS_OF_TEXT, "--format", "json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def _real_run(warehouse: Path, state_dir: Path, mock: object, as_of: datetime) -> SyncReport:
    """What the segment, audience and sync assets do, for SEGMENT, sending to the mock."""
    project = load_project_config(REPO / "activation.yaml")
    spec = load_segments(REPO / "segments", project).specs[SEGMENT].spec
    query = compile_segment(spec, as_of)
    with connect(warehouse, project=project) as con:  # the model's views, as the steps make them
        con.execute("DELETE FROM activation.segment_members WHERE segment = ?", [SEGMENT])
        con.execute(
            f"INSERT INTO activation.segment_members SELECT ?, customer_id, ? FROM ({query.sql})",
            [SEGMENT, as_of, *query.params],
        )
        build_audience(
            con,
            segment=SEGMENT,
            purpose=spec.purpose,
            legal_basis=spec.legal_basis,
            purposes=project.purposes,
            as_of=as_of,
        )
    (entry,) = spec.destinations
    cfg = project.destinations[entry.destination]
    client = build_client(entry.destination, cfg, mock.mailchimp_url, mock.mailchimp_token)
    try:
        return run_sync(
            warehouse,
            state_dir,
            segment=SEGMENT,
            destination=entry.destination,
            audience_id=entry.audience_id,
            mode=str(entry.mode),
            fields=dict(entry.fields),
            kind=str(cfg.kind),
            client=client,
            as_of=as_of,
        )
    finally:
        client.close()


def test_preview_writes_nothing_and_needs_no_destination(
    runner: CliRunner, project_env: dict[str, str], warehouse: Path
) -> None:
    before = _digest(warehouse)
    (preview,) = _preview(runner, SEGMENT)
    assert _digest(warehouse) == before
    assert not Path(project_env["ACTIVATION_STATE_DIR"]).exists()
    assert preview["segment"] == SEGMENT and preview["as_of"] == AS_OF_TEXT
    assert preview["members"] == preview["audience"] + sum(preview["excluded"].values())
    assert preview["audience"] > 0
    (dest,) = preview["destinations"]
    assert dest["destination"] == "mailchimp" and dest["adds"] == preview["audience"]
    assert dest["api_calls"] == -(-dest["adds"] // 500)
    with duckdb.connect(str(warehouse), read_only=True) as con:
        tables = {
            name
            for (name,) in con.execute(
                "SELECT table_name FROM duckdb_tables() WHERE schema_name = 'activation'"
            ).fetchall()
        }
    # the demo warehouse holds the source model's views and empty intake tables, and no
    # state until a real run
    assert not tables & {"segment_members", "audience_members", "sync_state"}


def test_preview_predicts_the_real_run_then_an_erasure(
    runner: CliRunner, project_env: dict[str, str], warehouse: Path, mock_destinations
) -> None:
    state_dir = Path(project_env["ACTIVATION_STATE_DIR"])
    (first,) = _preview(runner, SEGMENT)
    sent = _real_run(warehouse, state_dir, mock_destinations, AS_OF)
    (dest,) = first["destinations"]
    assert (sent.adds, sent.removes, sent.updates) == (dest["adds"], 0, 0)
    assert sent.api_calls == dest["api_calls"]
    assert len(mock_destinations.mailchimp_members("a1b2c3d4e5")) == dest["adds"]

    (again,) = _preview(runner, SEGMENT)
    (dest,) = again["destinations"]
    assert (dest["adds"], dest["removes"], dest["unchanged"]) == (0, 0, first["audience"])

    with connect(warehouse) as con:
        (email,) = con.execute(
            "SELECT min(email) FROM activation.audience_members WHERE segment = ?", [SEGMENT]
        ).fetchone()
    forget = runner.invoke(cli, ["forget", "--format", "json", email])
    assert forget.exit_code == 0, forget.output
    with connect(warehouse) as con:  # received the day before AS_OF, whatever today's date
        con.execute(
            "UPDATE activation.request_intake SET received_at = ? WHERE request_id = ?",
            [AS_OF - timedelta(days=1), json.loads(forget.stdout)["request_id"]],
        )
    (erased,) = _preview(runner, SEGMENT)
    assert erased["excluded"]["erasure_requested"] == first["excluded"]["erasure_requested"] + 1
    (dest,) = erased["destinations"]
    assert dest["removes"] == 1 and dest["removes_by_reason"]["erasure"] == 1
    assert _real_run(warehouse, state_dir, mock_destinations, AS_OF).removes == 1


def test_table_output_and_several_segments(runner: CliRunner, project_env: dict[str, str]) -> None:
    result = runner.invoke(cli, ["preview", SEGMENT, "mug_buyers_60d", "--as-of", AS_OF_TEXT])
    assert result.exit_code == 0, result.output
    assert "recent_buyers_eu as of 2026-11-29T06:00:00 (dry run)" in result.stdout
    assert "mug_buyers_60d as of" in result.stdout
    assert "nothing sent" in result.stdout and "API calls" in result.stdout
    both = _preview(runner, SEGMENT, "mug_buyers_60d")
    assert [p["segment"] for p in both] == [SEGMENT, "mug_buyers_60d"]
    assert both[1]["destinations"][0]["platform"] == "meta"


def test_unknown_segment_lists_valid_ones(runner: CliRunner, project_env: dict[str, str]) -> None:
    result = runner.invoke(cli, ["preview", "no_such_segment"])
    assert result.exit_code == 1
    assert "unknown segment 'no_such_segment'; valid segments:" in result.stderr
    assert "recent_buyers_eu" in result.stderr and "Traceback" not in result.output


def test_bad_as_of_and_missing_warehouse(
    runner: CliRunner, project_env: dict[str, str], monkeypatch, tmp_path: Path
) -> None:
    bad = runner.invoke(cli, ["preview", SEGMENT, "--as-of", "yesterday"])
    assert bad.exit_code == 2 and "not an ISO date-time" in bad.stderr
    monkeypatch.setenv("ACTIVATION_WAREHOUSE", str(tmp_path / "missing.duckdb"))
    missing = runner.invoke(cli, ["preview", SEGMENT])
    assert missing.exit_code == 1
    assert missing.stderr.startswith("Error: warehouse not found:")


def test_subprocess_preview_and_unknown_segment(project_env: dict[str, str]) -> None:
    done = run_activation("preview", SEGMENT, "--as-of", AS_OF_TEXT, "--format", "json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)[0]["audience"] > 0
    unknown = run_activation("preview", "nope")
    assert unknown.returncode == 1
    assert unknown.stderr.strip().splitlines() == [unknown.stderr.strip()]
    assert "valid segments:" in unknown.stderr and "Traceback" not in unknown.stderr


def _server_state(warehouse: object) -> dict[str, object]:
    """Every relation of the PostgreSQL warehouse outside the server's own schemas: its kind,
    a view's definition, a table's rows (sorted), so any write shows up as a difference."""
    with opened(warehouse) as con:
        relations = con.raw.execute(
            "SELECT table_schema, table_name, table_type FROM information_schema.tables "
            "WHERE table_schema NOT IN ('pg_catalog', 'information_schema') "
            "ORDER BY table_schema, table_name"
        ).fetchall()
        state: dict[str, object] = {}
        for schema, name, kind in relations:
            relation = f'"{schema}"."{name}"'
            if kind == "VIEW":
                (state[relation],) = con.raw.execute(
                    "SELECT view_definition FROM information_schema.views "
                    "WHERE table_schema = %s AND table_name = %s",
                    [schema, name],
                ).fetchone()
            else:
                rows = con.raw.execute(f"SELECT * FROM {relation}").fetchall()
                state[relation] = sorted(map(repr, rows))
    return state


def test_preview_on_postgres_writes_nothing_and_agrees_with_duckdb(
    runner: CliRunner,
    project_env: dict[str, str],
    warehouse: Path,
    postgres_url: str,
    tmp_path: Path,
    monkeypatch,
) -> None:
    on_duckdb = _preview(runner, SEGMENT, "mug_buyers_60d")
    config = postgres_project(tmp_path / "pg_project", postgres_url)
    postgres_copy_of(warehouse, postgres_url, load_project_config(config)).close()
    monkeypatch.setenv("ACTIVATION_CONFIG", str(config))
    target = WarehouseTarget(warehouse_config(postgres_url))
    before = _server_state(target)
    assert before['"activation"."audience_members"'] == []  # no run yet
    on_postgres = _preview(runner, SEGMENT, "mug_buyers_60d")
    assert _server_state(target) == before
    assert on_postgres == on_duckdb
    assert on_postgres[0]["audience"] > 0 and on_postgres[1]["destinations"][0]["adds"] > 0
    assert not Path(project_env["ACTIVATION_STATE_DIR"]).exists()
