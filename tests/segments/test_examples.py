"""The example segments in ``segments/`` load cleanly and select people on the demo data."""

from __future__ import annotations

from datetime import date, datetime
from pathlib import Path

import duckdb
import pytest

from orchestrator.config import ProjectConfig
from orchestrator.model.views import refresh_source_views
from orchestrator.segments.compiler import compile_segment
from orchestrator.segments.loader import LoadResult, load_segments
from orchestrator.warehouse.demo import build_demo_warehouse

from .conftest import REPO

SCHEMA_LINE = "# yaml-language-server: $schema=../schemas/segment.schema.json"
DEMO_AS_OF = date(2026, 6, 1)


@pytest.fixture(scope="module")
def examples(project: ProjectConfig) -> LoadResult:
    return load_segments(REPO / "segments", project)


def test_every_example_loads_without_error(examples: LoadResult) -> None:
    assert [str(error) for error in examples.errors] == []
    files = sorted(path.name for path in (REPO / "segments").glob("*.y*ml"))
    assert sorted(segment.path.name for segment in examples.specs.values()) == files
    assert len(files) >= 4


def test_examples_cover_both_purposes_and_bases(examples: LoadResult) -> None:
    specs = [segment.spec for segment in examples.specs.values()]
    assert {spec.purpose for spec in specs} == {"email_marketing", "ad_targeting"}
    assert {spec.legal_basis.value for spec in specs} == {"consent", "legitimate_interest"}
    assert any(spec.sql for spec in specs) and any(spec.audience for spec in specs)


def test_examples_point_editors_at_the_schema() -> None:
    for path in sorted((REPO / "segments").glob("*.y*ml")):
        assert path.read_text(encoding="utf-8").splitlines()[0] == SCHEMA_LINE, path.name


def test_examples_select_customers_on_the_demo_warehouse(
    examples: LoadResult, project: ProjectConfig, tmp_path: Path
) -> None:
    warehouse = tmp_path / "demo.duckdb"
    build_demo_warehouse(warehouse, DEMO_AS_OF)
    as_of = datetime(DEMO_AS_OF.year, DEMO_AS_OF.month, DEMO_AS_OF.day)
    counts = {}
    con = duckdb.connect(str(warehouse))
    try:
        refresh_source_views(con, project.source, project.purposes)
        for segment_id, segment in examples.specs.items():
            query = compile_segment(segment.spec, as_of)
            counts[segment_id] = con.execute(
                f"SELECT count(*) FROM ({query.sql})", query.params
            ).fetchone()[0]
    finally:
        con.close()
    # Enough members that a consent filter (about half to 70% consent) still leaves people;
    # a day's cart abandoners are a handful in a shop of 3,000 customers.
    assert counts.pop("cart_abandoners") >= 5
    assert all(count >= 20 for count in counts.values()), counts
