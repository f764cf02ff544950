"""Run the real Dagster definitions end to end from a test, and read what happened.

:func:`e2e_project` copies the demo warehouse and the project's instance settings into a
temporary folder and points the environment at them and at the running mock destinations (child
processes of the multiprocess executor inherit it). :func:`run_assets` executes
``all_segments_job`` (or a subset of its assets) with ``as_of`` in every asset's config, on the
instance in ``DAGSTER_HOME``, and returns a :class:`RunOutcome` of plain values.
"""

from __future__ import annotations

import hashlib
import importlib
import re
import shutil
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import dagster as dg
import pytest
import yaml
from dagster._core.definitions.reconstruct import ReconstructableJob
from dagster._serdes import serialize_value

from destinations.mock.testing import MockHandle, running_mock
from orchestrator.config import CATALOG_FILE, ProjectConfig, load_project_config
from orchestrator.segments.loader import load_segments
from orchestrator.segments.spec import SegmentSpec
from orchestrator.warehouse.resources import PostgresResource
from orchestrator.warehouse.target import Warehouse, WarehouseTarget
from tests.conftest import REPO

#: The example segments shipped in ``segments/`` (a test checks the list is complete).
EXAMPLE_SEGMENTS = (
    "cart_abandoners",
    "gold_tier_newsletter",
    "lapsed_high_value",
    "loyal_no_refund_sql",
    "mug_buyers_60d",
    "one_time_buyers",
    "recent_buyers_eu",
)
#: Anything that looks like an email address (case-insensitive).
EMAIL_RE = re.compile(r"[A-Za-z0-9._%+\-]+@[A-Za-z0-9\-]+(?:\.[A-Za-z0-9\-]+)*\.[A-Za-z]{2,}")


@dataclass(frozen=True)
class E2EProject:
    """Paths of one end-to-end test project and the running mock. ``warehouse``: the DuckDB
    copy of the demo warehouse (what the oracle reads); ``target``: the warehouse the product
    runs on (that file, or a PostgreSQL database holding the same rows)."""

    root: Path
    warehouse: Path
    state_dir: Path
    dagster_home: Path
    mock: MockHandle
    target: Warehouse | None = None

    @property
    def product_warehouse(self) -> Warehouse:
        """Where the product's stages run: :attr:`target`, else :attr:`warehouse`."""
        return self.target if self.target is not None else self.warehouse


@dataclass(frozen=True)
class RunOutcome:
    """What one Dagster run did.

    ``metadata``: asset key (``sync/seg/dest``) -> materialization metadata values;
    ``steps``: step key -> {event type value: timestamp (s)} (first occurrence of each);
    ``failed``: step keys that failed; ``checks``: asset check (``audience/seg:name``) ->
    passed.
    """

    run_id: str
    success: bool
    metadata: dict[str, dict[str, Any]]
    steps: dict[str, dict[str, float]]
    failed: list[str]
    checks: dict[str, bool]


def project_specs() -> tuple[ProjectConfig, dict[str, SegmentSpec]]:
    """The repository's project config and its valid segments by id."""
    project = load_project_config(REPO / "activation.yaml")
    loaded = load_segments(REPO / "segments", project)
    assert loaded.ok, [str(error) for error in loaded.errors]
    return project, {sid: segment.spec for sid, segment in loaded.specs.items()}


def _postgres_config(root: Path, url: str) -> Path:
    """The repository's ``activation.yaml`` (and its catalog) in ``root``, its ``warehouse:``
    the PostgreSQL database at ``url`` (password from the tests' environment variable)."""
    from tests.postgres import PASSWORD_ENV

    data = yaml.safe_load((REPO / "activation.yaml").read_text())
    data["warehouse"] = {"kind": "postgres", "url": url, "password_env": PASSWORD_ENV}
    config = root / "activation.yaml"
    config.write_text(yaml.safe_dump(data, sort_keys=False))
    shutil.copyfile(REPO / CATALOG_FILE, root / CATALOG_FILE)
    return config


@contextmanager
def e2e_project(
    root: Path, template: Path, postgres_url: str | None = None
) -> Iterator[E2EProject]:
    """A private warehouse copy, state folder, Dagster home and mock, with the environment
    pointing at them for the duration of the block (restored afterwards). ``postgres_url``:
    the project's ``warehouse:`` is that PostgreSQL database, filled with the demo
    warehouse's rows (the DuckDB copy stays, for the oracle)."""
    warehouse, home = root / "warehouse.duckdb", root / "dagster_home"
    shutil.copyfile(template, warehouse)
    home.mkdir()
    shutil.copyfile(REPO / "orchestrator" / "dagster_home" / "dagster.yaml", home / "dagster.yaml")
    with running_mock(root / "mock") as mock, pytest.MonkeyPatch.context() as patch:
        env = {
            "ACTIVATION_WAREHOUSE": str(warehouse),
            "ACTIVATION_STATE_DIR": str(root / "state"),
            "ACTIVATION_PROJECT_DIR": str(REPO),
            "DAGSTER_HOME": str(home),
            "META_BASE_URL": mock.meta_url,
            "META_ACCESS_TOKEN": mock.meta_token,
            "MAILCHIMP_BASE_URL": mock.mailchimp_url,
            "MAILCHIMP_API_KEY": mock.mailchimp_token,
        }
        for name in ("ACTIVATION_SEGMENTS_DIR", "ACTIVATION_CONFIG"):
            patch.delenv(name, raising=False)
        target: Warehouse | None = None
        if postgres_url is not None:
            from tests.postgres import postgres_copy_of, warehouse_target

            env["ACTIVATION_CONFIG"] = str(_postgres_config(root, postgres_url))
            project = load_project_config(Path(env["ACTIVATION_CONFIG"]))
            postgres_copy_of(warehouse, postgres_url, project).close()
            target = warehouse_target(postgres_url)
        for name, value in env.items():
            patch.setenv(name, value)
        yield E2EProject(root, warehouse, root / "state", home, mock, target)


def _definitions_module(warehouse: Warehouse) -> Any:
    """``orchestrator.definitions`` built from the current environment.

    The module builds its ``Definitions`` at import; another test in this process may have
    imported it with another environment, so it is reloaded (the in-process executor runs the
    steps here, the multiprocess one imports it afresh in each child).
    """
    module = importlib.reload(importlib.import_module("orchestrator.definitions"))
    resource = module.defs.resources["warehouse"]
    if isinstance(warehouse, WarehouseTarget) and warehouse.kind == "postgres":
        assert isinstance(resource, PostgresResource) and resource.url == warehouse.config.url
    else:
        assert resource.database == str(warehouse)
    # Dagster keeps the last job loaded through a pointer (lru_cache, keyed by the pointer):
    # forget it, or an in-process run would use the definitions of an earlier environment.
    ReconstructableJob.get_definition.cache_clear()
    ReconstructableJob.get_repository_definition.cache_clear()
    return module


def run_assets(
    warehouse: Warehouse,
    as_of: datetime,
    *,
    selection: Sequence[dg.AssetKey] | None = None,
    multiprocess: bool = False,
    checks: bool = True,
) -> RunOutcome:
    """Execute ``all_segments_job`` (every asset, or ``selection``) at ``as_of``.

    ``multiprocess``: the default executor's multiprocess mode (two steps at a time) instead of
    in-process execution. ``checks``: run the asset checks of the selected assets too.
    """
    module = _definitions_module(warehouse)
    names = set(module.all_segments_job_def().graph.node_names())
    graph = module.defs.get_repository_def().asset_graph
    keys = selection or [
        key for key in graph.get_all_asset_keys() if key.path[0] in ("segment", "audience", "sync")
    ]
    # the op of each asset (segment/<sid> and audience/<sid> share segment__<sid>)
    selected = {graph.assets_def_for_key(key).node_def.name for key in keys}
    assert selected <= names, sorted(selected - names)
    executor = {"multiprocess": {"max_concurrent": 2}} if multiprocess else {"in_process": {}}
    run_config = {
        "execution": {"config": executor},
        "ops": {name: {"config": {"as_of": as_of.isoformat()}} for name in sorted(selected)},
    }
    job = dg.reconstructable(module.all_segments_job_def)
    if selection is not None or not checks:
        job = job.get_subset(
            asset_selection=frozenset(keys), asset_check_selection=None if checks else frozenset()
        )
    with dg.DagsterInstance.get() as instance:
        result = dg.execute_job(job, instance=instance, run_config=run_config)
        return _outcome(result.run_id, result.success, instance.all_logs(result.run_id))


def _outcome(run_id: str, success: bool, records: Sequence[dg.EventLogEntry]) -> RunOutcome:
    metadata: dict[str, dict[str, Any]] = {}
    steps: dict[str, dict[str, float]] = {}
    failed: list[str] = []
    checks: dict[str, bool] = {}
    for record in records:
        event = record.dagster_event
        if event is None:
            continue
        if event.event_type == dg.DagsterEventType.ASSET_CHECK_EVALUATION:
            evaluation = event.event_specific_data
            key = evaluation.asset_check_key
            checks[f"{key.asset_key.to_user_string()}:{key.name}"] = evaluation.passed
        if event.event_type == dg.DagsterEventType.ASSET_MATERIALIZATION:
            materialization = event.step_materialization_data.materialization
            metadata[materialization.asset_key.to_user_string()] = {
                name: value.value for name, value in materialization.metadata.items()
            }
        if event.step_key:
            steps.setdefault(event.step_key, {}).setdefault(
                event.event_type_value, record.timestamp
            )
        if event.event_type == dg.DagsterEventType.STEP_FAILURE:
            failed.append(str(event.step_key))
    return RunOutcome(run_id, success, metadata, steps, failed, checks)


def event_log_text(dagster_home: Path) -> str:
    """Every event log record of every run of the instance, serialized, one per line."""
    with dg.DagsterInstance.from_config(str(dagster_home)) as instance:
        return "\n".join(
            serialize_value(record)
            for run in instance.get_runs()
            for record in instance.all_logs(run.run_id)
        )


def emails_in_files(folder: Path) -> set[str]:
    """Email-like strings found in the bytes of every file under ``folder`` (event log
    databases, compute logs, run storage)."""
    pattern = re.compile(EMAIL_RE.pattern.encode())
    found: set[str] = set()
    for path in folder.rglob("*"):
        if path.is_file():
            found |= {m.decode(errors="replace") for m in pattern.findall(path.read_bytes())}
    return found


def md5_hex(email: str) -> str:
    """Mailchimp's subscriber hash: md5 of the lowercase address."""
    return hashlib.md5(email.lower().encode()).hexdigest()


def sync_keys(specs: dict[str, SegmentSpec]) -> list[dg.AssetKey]:
    """Every ``sync/<segment>/<destination>`` asset key of the segments."""
    return [
        dg.AssetKey(["sync", sid, entry.destination])
        for sid, spec in sorted(specs.items())
        for entry in spec.destinations
    ]


def segment_keys(sid: str) -> list[dg.AssetKey]:
    """The segment and audience asset keys of one segment."""
    return [dg.AssetKey(["segment", sid]), dg.AssetKey(["audience", sid])]
