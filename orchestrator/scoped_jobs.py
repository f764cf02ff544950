"""Asset jobs resolved against the part of the asset graph they touch, not the whole graph.

Dagster resolves an asset job (``define_asset_job``) by walking every assets definition and
every check of the code location to split them into selected and unselected parts. With one
job per segment that is jobs x definitions: at 500 segment files most of ``dagster definitions
validate`` went there. :func:`scoped_asset_job` builds the same job, but its resolution first
cuts the graph down to :func:`job_scope` (the definitions holding the keys the caller names,
the checks on them and their direct upstream assets), so resolving one job costs what the job
holds. Same steps, same assets and checks, same run config: ``tests/test_scoped_jobs.py``
compares every such job of the real definitions with Dagster's own resolution.

A resolved job lives as long as its repository (Dagster caches it): it is resolved under
:func:`orchestrator.long_lived.built_to_live`, so the garbage collector does not walk it again
while Dagster resolves and snapshots the other 500.

Relies on Dagster's ``UnresolvedAssetJobDefinition.resolve`` and ``AssetGraph`` (internal,
hence the pinned ``dagster`` version in ``pyproject.toml``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import dagster as dg
from dagster._core.definitions.assets.graph.asset_graph import AssetGraph
from dagster._core.definitions.unresolved_asset_job_definition import (
    UnresolvedAssetJobDefinition,
)

from orchestrator.long_lived import built_to_live


class ScopedAssetJob(UnresolvedAssetJobDefinition):
    """An :class:`UnresolvedAssetJobDefinition` resolved in :func:`job_scope` of its
    ``scope_keys`` (set by :func:`scoped_asset_job`; without them, in the whole graph)."""

    def resolve(
        self,
        asset_graph: AssetGraph,
        default_executor_def: dg.ExecutorDefinition | None = None,
        resource_defs: Mapping[str, dg.ResourceDefinition] | None = None,
    ) -> dg.JobDefinition:
        keys = getattr(self, "scope_keys", None)
        with built_to_live():
            graph = asset_graph if keys is None else job_scope(asset_graph, keys)
            return super().resolve(graph, default_executor_def, resource_defs)


def job_scope(asset_graph: AssetGraph, keys: Iterable[dg.AssetKey]) -> AssetGraph:
    """The graph of the definitions in ``asset_graph`` holding ``keys``, of every check on an
    asset they hold, and of the direct upstream assets of those (further upstream keys become
    Dagster's unexecutable stubs, as in any job). Costs what the scope holds."""
    held = asset_graph.assets_defs_for_keys(keys)
    nodes = [asset_graph.get(key) for assets_def in held for key in assets_def.keys]
    around = {check for node in nodes for check in node.check_keys}
    around |= {parent for node in nodes for parent in node.parent_keys}
    return AssetGraph.from_assets({*held, *asset_graph.assets_defs_for_keys(around)})


def scoped_asset_job(
    name: str,
    selection: dg.AssetSelection,
    scope: Iterable[dg.AssetKey],
    tags: Mapping[str, str] | None = None,
) -> ScopedAssetJob:
    """``dagster.define_asset_job(name, selection, tags=tags)`` resolved in
    :func:`job_scope` of ``scope``: ``scope`` must name every asset the selection picks and
    the asset of every check it names; the selection must not reach outside it (no
    ``upstream()`` past it)."""
    job = dg.define_asset_job(name=name, selection=selection, tags=tags)
    fields = {field: getattr(job, field) for field in UnresolvedAssetJobDefinition.__annotations__}
    scoped = ScopedAssetJob(**fields)
    scoped.scope_keys = frozenset(scope)
    return scoped
