"""A failure in the middle of a stage on PostgreSQL rolls the stage back (the product tables
are as before it began) and the next run converges to what a clean run gives."""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestrator import audience
from orchestrator.audience import build_segment_audience
from orchestrator.config import load_project_config
from orchestrator.segments.loader import load_segments
from orchestrator.segments.materialize import write_segment_members
from orchestrator.warehouse.errors import WarehouseTimeout
from tests.conftest import AS_OF, REPO
from tests.postgres import postgres_copy_of

TABLES = ("audience_members", "audience_exclusions", "customer_keys")


def _snapshot(con: object) -> dict[str, list[tuple]]:
    return {
        t: sorted(map(repr, con.execute(f"SELECT * FROM activation.{t}").fetchall()))
        for t in TABLES
    }


def test_an_audience_failing_midway_keeps_nothing_and_the_rerun_converges(
    tmp_path: Path,
    demo_warehouse_template: Path,
    postgres_url: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    project = load_project_config(REPO / "activation.yaml")
    spec = load_segments(REPO / "segments", project).specs["recent_buyers_eu"].spec
    path = tmp_path / "demo.duckdb"
    path.write_bytes(demo_warehouse_template.read_bytes())
    con = postgres_copy_of(path, postgres_url, project=project)
    try:
        write_segment_members(con, spec, AS_OF)
        before = _snapshot(con)
        real = audience._replace_segment_rows

        def fails_after_deleting(con, segment, as_of):  # type: ignore[no-untyped-def]
            con.execute("DELETE FROM activation.audience_members")
            con.execute("SELECT pg_sleep(5)")  # past the statement timeout: cancelled

        monkeypatch.setattr(audience, "_replace_segment_rows", fails_after_deleting)
        con.execute("SET statement_timeout = '1s'")
        with pytest.raises(WarehouseTimeout):
            build_segment_audience(con, spec, project, AS_OF)
        assert _snapshot(con) == before  # keys refreshed and rows deleted: all rolled back
        con.execute("SET statement_timeout = 0")
        monkeypatch.setattr(audience, "_replace_segment_rows", real)
        stats = build_segment_audience(con, spec, project, AS_OF)
        after = _snapshot(con)
        assert stats.members > 0 and after["audience_members"]
        build_segment_audience(con, spec, project, AS_OF)  # a clean rerun changes nothing
        assert _snapshot(con) == after
    finally:
        con.close()
