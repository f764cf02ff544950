"""The shape that lets 500 segment files load quickly: what each segment adds to the Dagster
definitions is fixed, each segment job is resolved in its own part of the asset graph, and each
file is read and parsed once.

Not timed (``python -m bench.definitions_load`` measures, see ``bench/README.md``): these tests
build the definitions over 4 and 8 generated segment files and compare.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import dagster as dg
import pytest
import yaml

from bench.definitions_load import write_segments
from orchestrator.config import load_project_config
from orchestrator.definitions import build_definitions
from orchestrator.scoped_jobs import ScopedAssetJob
from orchestrator.settings import Settings
from tests.conftest import REPO

COUNTS = (4, 8)


def settings_for(tmp: Path, count: int) -> Settings:
    """Settings of the repository's project over ``count`` generated segment files (copies of
    the examples, one destination each), with a warehouse that does not exist."""
    folder = tmp / f"segments_{count}"
    write_segments(folder, count)
    return Settings.from_env(
        {
            "ACTIVATION_PROJECT_DIR": str(REPO),
            "ACTIVATION_SEGMENTS_DIR": str(folder),
            "ACTIVATION_WAREHOUSE": str(tmp / "absent" / "warehouse.duckdb"),
            "ACTIVATION_STATE_DIR": str(tmp / "absent" / "state"),
        }
    )


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> dict[int, dg.Definitions]:
    tmp = tmp_path_factory.mktemp("scale")
    project = load_project_config(REPO / "activation.yaml")
    return {count: build_definitions(settings_for(tmp, count), project) for count in COUNTS}


def shape(defs: dg.Definitions) -> dict[str, int]:
    repo = defs.get_repository_def()
    graph = repo.asset_graph
    jobs = [job for job in repo.get_all_jobs() if not job.name.startswith("__")]
    return {
        "assets_definitions": len(graph.assets_defs),
        "asset_keys": len(graph.get_all_asset_keys()),
        "check_keys": len(graph.asset_check_keys),
        "jobs": len(jobs),
        "schedules": len(repo.schedule_defs),
    }


def test_each_segment_adds_a_fixed_number_of_definitions(built) -> None:
    """A segment with one destination adds three assets (segment, audience, sync) in two
    assets definitions, one step each (segment and audience together, then the sync), each
    holding its own checks, one job and one schedule; nothing else grows."""
    small, large = (shape(built[count]) for count in COUNTS)
    added = COUNTS[1] - COUNTS[0]
    per_segment = {name: (large[name] - small[name]) / added for name in small}
    assert per_segment["assets_definitions"] == 2
    assert per_segment["asset_keys"] == 3
    assert per_segment["jobs"] == per_segment["schedules"] == 1
    # legal_basis_valid (and no_raw_identifier when the destination is an ad platform) on the
    # audience; destination_retention, reconciliation and rejections on the sync
    assert 4 <= per_segment["check_keys"] <= 5


def test_segment_and_audience_are_one_subsettable_step_in_pool_duckdb(built) -> None:
    """``segment__<sid>`` builds both assets (a run may still select either, or the audience's
    checks alone); the syncs stay steps of their own, outside pool ``duckdb``."""
    graph = built[COUNTS[0]].get_repository_def().asset_graph
    segments = [key for key in graph.get_all_asset_keys() if key.path[0] == "segment"]
    assert len(segments) == COUNTS[0]
    for key in segments:
        sid = key.path[1]
        step = graph.assets_def_for_key(key)
        assert step.node_def.name == f"segment__{sid}"
        assert step.keys == {key, dg.AssetKey(["audience", sid])}
        assert step.can_subset and step.node_def.pool == "duckdb"
        assert {check.asset_key for check in step.check_keys} == {dg.AssetKey(["audience", sid])}
        syncs = [k for k in graph.get_all_asset_keys() if k.path[:2] == ["sync", sid]]
        assert syncs and all(graph.assets_def_for_key(k) is not step for k in syncs)
        assert all(graph.assets_def_for_key(k).node_def.pool != "duckdb" for k in syncs)


def test_segment_checks_are_held_by_the_asset_they_guard(built) -> None:
    """No check of a segment is a definition of its own: the asset's step evaluates it."""
    graph = built[COUNTS[1]].get_repository_def().asset_graph
    segment_checks = [
        key for key in graph.asset_check_keys if key.asset_key.path[0] in ("audience", "sync")
    ]
    assert len(segment_checks) >= 4 * COUNTS[1]
    for key in segment_checks:
        assert graph.assets_def_for_key(key) is graph.assets_def_for_key(key.asset_key), key


def _job_scope_sizes(defs: dg.Definitions) -> set[int]:
    repo = defs.get_repository_def()
    sizes = set()
    for job in repo.get_all_jobs():
        if job.tags.get("segment"):
            scope = job.asset_layer.asset_graph.source_asset_graph
            sizes.add(len(scope.assets_defs))
    return sizes


def test_each_segment_job_is_resolved_in_a_graph_that_does_not_grow(built) -> None:
    """What a segment job's resolution walks is its own segment and what it depends on, not
    every definition of the code location (which made 500 jobs cost 500 x 3,700 steps)."""
    small, large = (_job_scope_sizes(built[count]) for count in COUNTS)
    assert small == large
    everything = len(built[COUNTS[1]].get_repository_def().asset_graph.assets_defs)
    assert max(large) < everything / 2


def test_segment_jobs_are_the_jobs_dagster_would_resolve(built) -> None:
    """Same steps, assets, checks, tags and run config schema as Dagster's own resolution
    against the whole graph."""
    defs = built[COUNTS[0]]
    repo = defs.get_repository_def()
    scoped = [job for job in defs.jobs if isinstance(job, ScopedAssetJob)]
    assert len(scoped) == COUNTS[0]
    for job in scoped:
        mine = repo.get_job(job.name)
        plain = dg.define_asset_job(job.name, selection=job.selection, tags=job.tags).resolve(
            asset_graph=repo.asset_graph,
            default_executor_def=mine.executor_def,
            resource_defs=mine.resource_defs,
        )
        assert mine.asset_layer.executable_asset_keys == plain.asset_layer.executable_asset_keys
        assert mine.asset_layer.asset_graph.asset_check_keys == (
            plain.asset_layer.asset_graph.asset_check_keys
        )
        assert sorted(mine.graph.node_names()) == sorted(plain.graph.node_names())
        assert mine.tags == plain.tags
        assert mine.get_job_snapshot().config_schema_snapshot == (
            plain.get_job_snapshot().config_schema_snapshot
        )


def test_each_segment_file_is_read_and_composed_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = settings_for(tmp_path, COUNTS[1])
    project = load_project_config(REPO / "activation.yaml")
    reads: Counter[Path] = Counter()
    composed: Counter[str] = Counter()
    real_read, real_compose = Path.read_text, yaml.compose

    def counting_read(path: Path, *args: object, **kwargs: object) -> str:
        reads[path] += 1
        return real_read(path, *args, **kwargs)

    def counting_compose(text: str, *args: object, **kwargs: object) -> object:
        composed[text] += 1
        return real_compose(text, *args, **kwargs)

    monkeypatch.setattr(Path, "read_text", counting_read)
    monkeypatch.setattr(yaml, "compose", counting_compose)
    defs = build_definitions(settings, project)
    assert len(defs.get_repository_def().asset_graph.get_all_asset_keys()) > 3 * COUNTS[1]
    files = sorted(settings.segments_dir.iterdir())
    assert {path: reads[path] for path in files} == {path: 1 for path in files}
    texts = [real_read(path) for path in files]
    assert [composed[text] for text in texts] == [1] * len(files)
