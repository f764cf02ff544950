"""Differential: the stages ported to PostgreSQL (source views, segment members, audience with
its pseudonym cache, the diff against each destination) give identical product tables and
send files, row for row, on DuckDB and on a real
PostgreSQL server holding the same company tables: random warehouses (Faker, fixed seeds, the
tricky addresses of the audience tests among them) and the demo warehouse with every shipped
segment."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from pathlib import Path

import duckdb
import pyarrow.parquet as pq
import pytest
import yaml

from orchestrator.audience import build_segment_audience
from orchestrator.config import ProjectConfig, load_project_config
from orchestrator.model.spec import DEFAULT_MODEL
from orchestrator.model.views import refresh_source_views
from orchestrator.segments.loader import load_segments
from orchestrator.segments.materialize import write_segment_members
from orchestrator.segments.spec import SegmentSpec
from orchestrator.sync.diff import DiffParams, compute_diff
from orchestrator.warehouse.schema import create_activation_schema
from tests.conftest import AS_OF, REPO
from tests.postgres import postgres_copy_of
from tests.segments.conftest import VALID_SEGMENT
from tests.test_audience import Warehouse, add_named_cases, add_random_customers

#: Product tables compared, with the columns compared (``customer_keys.email_fingerprint`` is
#: each backend's own 64-bit hash of the raw address: compared within a warehouse only).
PRODUCT_TABLES: dict[str, str] = {
    "segment_members": "segment, customer_id, computed_at",
    "audience_members": "segment, subject_key, google_key, customer_id, email, legal_basis, "
    "consent_ref, computed_at",
    "audience_exclusions": "segment, customer_id, reason, computed_at",
    "customer_keys": "customer_id, email, subject_key, google_key, address_id",
    "customer_keys_rules": "version",
    "customer_key_history": "customer_id, subject_key, google_key, superseded_at",
    "source_views": "view_name, definition",
    "suppression_list": "subject_key, google_key, request_type, suppressed_at",
}

SEGMENTS = {
    "fr_buyers": {"all": [{"trait": "country", "in": ["FR"]}, {"event": "purchase"}]},
    "recent": {"event": "purchase", "within_days": 400},
    "everyone_but_refunders": {"not": {"event": "refund"}},
}


def _specs(project: ProjectConfig) -> list[SegmentSpec]:
    specs = []
    for name, audience in SEGMENTS.items():
        for purpose, basis in [
            ("email_marketing", "legitimate_interest"),
            ("ad_targeting", "consent"),
        ]:
            data = {**yaml.safe_load(VALID_SEGMENT), "name": f"{name}_{purpose}",
                    "purpose": purpose, "legal_basis": basis, "audience": audience}  # fmt: skip
            if purpose == "ad_targeting":
                data["destinations"] = [
                    {"destination": "meta_ads", "audience_id": "1", "mode": "mirror"}
                ]
            specs.append(SegmentSpec.model_validate(data, context={"project": project}))
    return specs


def _run(
    con: object, project: ProjectConfig, specs: list[SegmentSpec], as_of: datetime, scratch: Path
) -> dict:
    """Every ported stage for every segment; returns each diff's plan and send files."""
    create_activation_schema(con)
    refresh_source_views(con, project.source, project.purposes)
    diffs: dict = {}
    for spec in specs:
        write_segment_members(con, spec, as_of)
        build_segment_audience(con, spec, project, as_of)
        for entry in spec.destinations:
            folder = scratch / f"{spec.id}-{entry.destination}"
            folder.mkdir(parents=True)
            destination = project.destinations[entry.destination]
            params = DiffParams(
                segment=spec.id, destination=entry.destination, mode=entry.mode,
                kind=destination.kind.value, normalization=destination.normalization,
                purpose=spec.purpose, as_of=as_of,
            )  # fmt: skip
            plan = compute_diff(con, params, folder)
            diffs[(spec.id, entry.destination)] = (
                plan.counts,
                plan.removes_by_reason,
                {(a, r): pq.read_table(f).to_pylist() for a, r, f in plan.files},
            )
    return diffs


def _tables(con: object) -> dict[str, list[tuple]]:
    return {
        table: sorted(
            con.execute(f"SELECT {columns} FROM activation.{table}").fetchall(),
            key=lambda row: tuple("" if v is None else str(v) for v in row),
        )
        for table, columns in PRODUCT_TABLES.items()
    }


def _both(
    path: Path, url: str, project: ProjectConfig, specs: list[SegmentSpec], as_of: datetime
) -> tuple[dict, dict]:
    pg = postgres_copy_of(path, url, project=project, activation=["suppression_list"])
    duck = duckdb.connect(str(path))
    try:
        duck_diffs = _run(duck, project, specs, as_of, path.parent / "duck")
        pg_diffs = _run(pg, project, specs, as_of, path.parent / "pg")
        assert pg_diffs == duck_diffs, "the diffs (counts and send files) differ"
        assert any(files for _, _, files in duck_diffs.values()), "no diff sent anything"
        return _tables(duck), _tables(pg)
    finally:
        duck.close()
        pg.close()


def _assert_identical(duck: dict, pg: dict, non_empty: Callable[[str], bool]) -> None:
    for table in PRODUCT_TABLES:
        assert pg[table] == duck[table], f"activation.{table} differs"
        if non_empty(table):
            assert duck[table], f"activation.{table} is empty: nothing was compared"


@pytest.mark.parametrize("seed", [11, 22, 33])
def test_random_warehouses_give_identical_product_tables(
    seed: int, tmp_path: Path, postgres_url: str
) -> None:
    project = load_project_config(REPO / "activation.yaml").model_copy(
        update={"source": DEFAULT_MODEL}
    )
    w = Warehouse()
    add_named_cases(w)
    add_random_customers(w, 300, seed=seed)
    path = tmp_path / "random.duckdb"
    w.write(path)
    duck, pg = _both(path, postgres_url, project, _specs(project), AS_OF)
    _assert_identical(duck, pg, lambda t: t in ("audience_members", "audience_exclusions"))


def test_the_demo_warehouse_gives_identical_product_tables(
    tmp_path: Path, demo_warehouse_template: Path, postgres_url: str
) -> None:
    project = load_project_config(REPO / "activation.yaml")
    loaded = load_segments(REPO / "segments", project)
    assert loaded.ok, loaded.errors
    specs = [seg.spec for _, seg in sorted(loaded.specs.items())]
    path = tmp_path / "demo.duckdb"
    path.write_bytes(demo_warehouse_template.read_bytes())
    duck, pg = _both(path, postgres_url, project, specs, AS_OF)
    _assert_identical(duck, pg, lambda t: t in ("segment_members", "audience_members"))
