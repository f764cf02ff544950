"""The shared SQL of every stage ported to PostgreSQL, recorded as the stages run it on a real
server over the demo warehouse, is portable (no DuckDB-only syntax: the lint), runs there (the
recording is of statements that ran), and renders for Snowflake and BigQuery; the rendered
text is kept in ``tests/warehouse/rendered/<stage>.<dialect>.sql`` (snapshots: set
``UPDATE_RENDERED_SQL=1`` to rewrite them after a deliberate change, and read the diff).

Snowflake and BigQuery are rendered, not connected: nothing here runs on them."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from orchestrator.audience import build_segment_audience
from orchestrator.config import load_project_config
from orchestrator.model.catalog import build_catalog
from orchestrator.model.views import refresh_source_views
from orchestrator.segments.loader import load_segments
from orchestrator.segments.materialize import write_segment_members
from orchestrator.sync.diff import DiffParams, compute_diff
from orchestrator.warehouse import postgres
from orchestrator.warehouse.dialect import DUCKDB_ONLY, duckdb_only_constructs, render
from tests.conftest import AS_OF, REPO
from tests.postgres import postgres_copy_of

SNAPSHOTS = Path(__file__).parent / "rendered"
STAGES = ("views", "catalog", "segments", "audience", "diff")
RENDERED = ("snowflake", "bigquery")


class _Recorder:
    """Records the shared SQL text each PostgresConnection.execute / executemany receives."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.statements: list[str] = []
        execute, executemany = (
            postgres.PostgresConnection.execute,
            postgres.PostgresConnection.executemany,
        )

        def recording(method: Callable) -> Callable:
            def wrapper(con, sql, *args, **kwargs):  # type: ignore[no-untyped-def]
                if sql not in self.statements:
                    self.statements.append(sql)
                return method(con, sql, *args, **kwargs)

            return wrapper

        monkeypatch.setattr(postgres.PostgresConnection, "execute", recording(execute))
        monkeypatch.setattr(postgres.PostgresConnection, "executemany", recording(executemany))

    def take(self) -> list[str]:
        taken, self.statements = self.statements, []
        return taken


@pytest.fixture(scope="module")
def recorded(
    postgres_module_url: str, demo_warehouse_template: Path, tmp_path_factory
) -> Iterator[dict[str, list[str]]]:
    """Stage -> the shared statements it ran on PostgreSQL, in first-run order."""
    project = load_project_config(REPO / "activation.yaml")
    loaded = load_segments(REPO / "segments", project)
    path = tmp_path_factory.mktemp("rendered") / "demo.duckdb"
    path.write_bytes(demo_warehouse_template.read_bytes())
    con = postgres_copy_of(path, postgres_module_url, project=project)
    out: dict[str, list[str]] = {}
    with pytest.MonkeyPatch.context() as monkeypatch:
        recorder = _Recorder(monkeypatch)
        try:
            refresh_source_views(con, project.source, project.purposes)
            out["views"] = recorder.take()
            build_catalog(con, project)
            out["catalog"] = recorder.take()
            specs = [seg.spec for _, seg in sorted(loaded.specs.items())]
            for spec in specs:
                write_segment_members(con, spec, AS_OF)
            out["segments"] = recorder.take()
            for spec in specs:
                build_segment_audience(con, spec, project, AS_OF)
            out["audience"] = recorder.take()
            for spec in specs:
                for entry in spec.destinations:
                    destination = project.destinations[entry.destination]
                    params = DiffParams(
                        segment=spec.id, destination=entry.destination, mode=entry.mode,
                        kind=destination.kind.value, normalization=destination.normalization,
                        purpose=spec.purpose, as_of=AS_OF,
                    )  # fmt: skip
                    scratch = path.parent / f"{spec.id}-{entry.destination}"
                    scratch.mkdir()
                    compute_diff(con, params, scratch)
            out["diff"] = recorder.take()
        finally:
            con.close()
    yield out


@pytest.mark.parametrize("stage", STAGES)
def test_the_shared_sql_uses_no_duckdb_only_syntax(recorded: dict, stage: str) -> None:
    assert recorded[stage], f"stage {stage} ran no statement"
    problems = {sql[:120]: duckdb_only_constructs(sql) for sql in recorded[stage]}
    assert {k: v for k, v in problems.items() if v} == {}


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT segment, count(*) FROM activation.audience_members GROUP BY ALL",
        "INSERT OR REPLACE INTO activation.source_views VALUES ('a', 'b')",
        "SELECT list_filter(own_action_times, t -> t IS NOT NULL) FROM activation.src_customers",
        "SELECT * EXCLUDE (email) FROM activation.src_customers",
        "SELECT c.* REPLACE ('x' AS email) FROM activation.src_customers AS c",
        "SELECT {'key': subject_key} FROM activation.audience_members",
        "SELECT arg_min(customer_id, computed_at) FROM activation.segment_members",
        "SELECT * FROM activation.src_customers USING SAMPLE 10",
    ],
)
def test_the_lint_catches_duckdb_only_syntax(sql: str) -> None:
    assert duckdb_only_constructs(sql)
    with pytest.raises(ValueError, match="DuckDB-only"):
        render(sql, "postgres")


def test_every_duckdb_only_construct_has_a_lint_case() -> None:
    assert len(DUCKDB_ONLY) == 8


def _rendered(statements: list[str], dialect: str) -> str:
    header = f"-- {len(statements)} statements of the shared SQL, rendered for {dialect}\n\n"
    parts = [part for sql in statements for part in render(sql, dialect)]  # raises if it can't
    return header + ";\n\n".join(parts) + ";\n"


@pytest.mark.parametrize("dialect", RENDERED)
@pytest.mark.parametrize("stage", STAGES)
def test_rendered_sql_matches_its_snapshot(recorded: dict, stage: str, dialect: str) -> None:
    text = _rendered(recorded[stage], dialect)
    path = SNAPSHOTS / f"{stage}.{dialect}.sql"
    if os.environ.get("UPDATE_RENDERED_SQL"):
        path.write_text(text, encoding="utf-8")
    assert path.exists(), f"no snapshot {path.name}: run with UPDATE_RENDERED_SQL=1"
    assert path.read_text(encoding="utf-8") == text
