"""The demo's website events end when the demo is built, so the example ``cart_abandoners``
(added to cart within the last day, no purchase since) has an audience whatever the time of day
the demo is built and run, and the product agrees with the plain-Python oracle on it."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from pathlib import Path

import duckdb
import pytest

from orchestrator.audience import build_segment_audience
from orchestrator.config import load_project_config
from orchestrator.model.views import refresh_source_views
from orchestrator.segments.loader import load_segments
from orchestrator.segments.materialize import write_segment_members
from orchestrator.warehouse.demo import build_demo_warehouse
from orchestrator.warehouse.schema import create_activation_schema
from tests.conftest import REPO
from tests.oracle import expected_audiences

DAY = date(2026, 3, 14)
SID = "cart_abandoners"


def _audience(path: Path, as_of: datetime) -> tuple[set[str], set[str]]:
    """The product's and the oracle's subject keys of ``cart_abandoners`` at ``as_of``."""
    project = load_project_config(REPO / "activation.yaml")
    spec = load_segments(REPO / "segments", project).specs[SID].spec
    con = duckdb.connect(str(path))
    try:
        create_activation_schema(con)
        refresh_source_views(con, project.source, project.purposes)
        write_segment_members(con, spec, as_of)
        build_segment_audience(con, spec, project, as_of)
        ours = {
            key
            for (key,) in con.execute(
                "SELECT subject_key FROM activation.audience_members WHERE segment = ?", [SID]
            ).fetchall()
        }
    finally:
        con.close()
    expected = expected_audiences(path, {SID: spec}, project, as_of)[SID]
    return ours, set(expected.members)


@pytest.mark.parametrize("clock", ["00:05", "23:55"])
def test_cart_abandoners_has_an_audience_at_any_time_of_day(tmp_path: Path, clock: str) -> None:
    hours, minutes = (int(part) for part in clock.split(":"))
    now = datetime(DAY.year, DAY.month, DAY.day, hours, minutes)
    path = tmp_path / "demo.duckdb"
    build_demo_warehouse(path, DAY, built_at=now)
    ours, oracle = _audience(path, now)
    assert ours, f"no cart abandoner in a demo built and run at {clock}"
    assert ours == oracle
    # a run later the same day still finds people (the events are a day's browsing back)
    later, _ = _audience(path, now + timedelta(minutes=30))
    assert later


def test_the_web_events_end_at_the_build_time(tmp_path: Path) -> None:
    now = datetime(DAY.year, DAY.month, DAY.day, 17, 42)
    path = tmp_path / "demo.duckdb"
    build_demo_warehouse(path, DAY, built_at=now)
    con = duckdb.connect(str(path), read_only=True)
    try:
        (newest,) = con.execute("SELECT max(happened_at) FROM web.events").fetchone()
        info = dict(con.execute("SELECT key, value FROM main.warehouse_build").fetchall())
    finally:
        con.close()
    assert now - timedelta(hours=2) < newest < now
    assert info["built_at"] == now.isoformat()


def test_a_build_time_off_the_demo_day_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="built_at"):
        build_demo_warehouse(tmp_path / "x.duckdb", DAY, built_at=datetime(2026, 3, 15, 0, 1))
