"""The real ``Definitions``: the graph pinned, broken segment files contained, nothing opened at
import.

The pins are literal on purpose: an accidental change of the graph (an asset, a dependency, a
check, a schedule) fails here and has to be acknowledged by editing the lists.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pytest

from orchestrator.config import load_project_config
from orchestrator.definitions import build_definitions, load_definitions
from orchestrator.settings import Settings
from tests.conftest import REPO

SEGMENT_IDS = [
    "cart_abandoners",
    "gold_tier_newsletter",
    "lapsed_high_value",
    "loyal_no_refund_sql",
    "mug_buyers_60d",
    "one_time_buyers",
    "recent_buyers_eu",
]
SOURCES = ["warehouse/consents", "warehouse/customers", "warehouse/events"]
SOURCES += ["warehouse/privacy_requests"]
SYNCS = [
    "sync/cart_abandoners/meta_ads",
    "sync/gold_tier_newsletter/mailchimp",
    "sync/lapsed_high_value/meta_ads",
    "sync/loyal_no_refund_sql/mailchimp",
    "sync/mug_buyers_60d/meta_ads",
    "sync/one_time_buyers/mailchimp",
    "sync/recent_buyers_eu/mailchimp",
]
#: asset key -> sorted upstream asset keys.
ASSET_DEPS: dict[str, list[str]] = {
    **{f"audience/{sid}": sorted([f"segment/{sid}", *SOURCES]) for sid in SEGMENT_IDS},
    "privacy/erasure_receipts": ["warehouse/privacy_requests"],
    "privacy/processing_register": [],
    **{f"segment/{sid}": ["warehouse/customers", "warehouse/events"] for sid in SEGMENT_IDS},
    "segment_file_errors": [],
    **{sync: [f"audience/{sync.split('/')[1]}", "privacy/erasure_receipts"] for sync in SYNCS},
    **{source: [] for source in SOURCES},
}
CHECKS = [
    "audience/cart_abandoners:legal_basis_valid",
    "audience/cart_abandoners:no_raw_identifier",
    "audience/gold_tier_newsletter:legal_basis_valid",
    "audience/lapsed_high_value:legal_basis_valid",
    "audience/lapsed_high_value:no_raw_identifier",
    "audience/loyal_no_refund_sql:legal_basis_valid",
    "audience/mug_buyers_60d:legal_basis_valid",
    "audience/mug_buyers_60d:no_raw_identifier",
    "audience/one_time_buyers:legal_basis_valid",
    "audience/recent_buyers_eu:legal_basis_valid",
    "privacy/erasure_receipts:requests_deadline",
    "privacy/processing_register:no_unregistered_sync_state",
    "segment_file_errors:segment_files_valid",
    "sync/cart_abandoners/meta_ads:destination_retention",
    "sync/cart_abandoners/meta_ads:reconciliation",
    "sync/cart_abandoners/meta_ads:rejections",
    "sync/gold_tier_newsletter/mailchimp:destination_retention",
    "sync/gold_tier_newsletter/mailchimp:reconciliation",
    "sync/gold_tier_newsletter/mailchimp:rejections",
    "sync/lapsed_high_value/meta_ads:destination_retention",
    "sync/lapsed_high_value/meta_ads:reconciliation",
    "sync/lapsed_high_value/meta_ads:rejections",
    "sync/loyal_no_refund_sql/mailchimp:destination_retention",
    "sync/loyal_no_refund_sql/mailchimp:reconciliation",
    "sync/loyal_no_refund_sql/mailchimp:rejections",
    "sync/mug_buyers_60d/meta_ads:destination_retention",
    "sync/mug_buyers_60d/meta_ads:reconciliation",
    "sync/mug_buyers_60d/meta_ads:rejections",
    "sync/one_time_buyers/mailchimp:destination_retention",
    "sync/one_time_buyers/mailchimp:reconciliation",
    "sync/one_time_buyers/mailchimp:rejections",
    "sync/recent_buyers_eu/mailchimp:destination_retention",
    "sync/recent_buyers_eu/mailchimp:reconciliation",
    "sync/recent_buyers_eu/mailchimp:rejections",
    "warehouse/consents:consent_proof",
    "warehouse/consents:consent_purposes_declared",
    "warehouse/customers:source_retention",
]
#: (name, cron, time zone, default status, job)
SCHEDULES = [
    ("cart_abandoners_schedule", "0 * * * *", "Europe/Paris", "STOPPED"),
    ("gold_tier_newsletter_schedule", "0 7 * * TUE", "Europe/Paris", "STOPPED"),
    ("lapsed_high_value_schedule", "30 5 * * MON", "Europe/Paris", "STOPPED"),
    ("loyal_no_refund_sql_schedule", "0 8 * * MON", "Europe/Paris", "STOPPED"),
    ("mug_buyers_60d_schedule", "15 6 * * *", "Europe/Paris", "STOPPED"),
    ("one_time_buyers_schedule", "0 7 * * *", "Europe/Paris", "STOPPED"),
    ("recent_buyers_eu_schedule", "0 6 * * *", "Europe/Paris", "STOPPED"),
]
SCHEDULES = [(*row, f"{row[0].removesuffix('_schedule')}_job") for row in SCHEDULES]
#: The privacy checks run on their own, RUNNING by default, so their evidence always exists.
SCHEDULES = sorted(
    [
        *SCHEDULES,
        ("privacy_checks_schedule", "0 5 * * *", "Europe/Paris", "RUNNING", "privacy_checks_job"),
    ]
)
#: The alerts sensor launches nothing (it posts to a webhook).
SENSORS = [
    ("activation_alerts_sensor", "RUNNING", ()),
    (
        "privacy_changes_sensor",
        "RUNNING",
        (
            "cart_abandoners_job",
            "gold_tier_newsletter_job",
            "lapsed_high_value_job",
            "loyal_no_refund_sql_job",
            "mug_buyers_60d_job",
            "one_time_buyers_job",
            "recent_buyers_eu_job",
        ),
    ),
    ("privacy_requests_sensor", "RUNNING", ("privacy_requests_job",)),
]
JOBS = ["all_segments_job", "privacy_checks_job", "privacy_requests_job"]
JOBS += [f"{sid}_job" for sid in SEGMENT_IDS]
#: job -> sorted asset keys it materializes. Every segment run honours the open privacy
#: requests first (``privacy/erasure_receipts`` is upstream of every sync).
JOB_ASSETS: dict[str, list[str]] = {
    "all_segments_job": sorted(
        [
            *(f"{kind}/{sid}" for sid in SEGMENT_IDS for kind in ("audience", "segment")),
            *SYNCS,
            "privacy/erasure_receipts",
        ]
    ),
    "privacy_checks_job": ["privacy/processing_register"],
    "privacy_requests_job": ["privacy/erasure_receipts"],
    **{
        f"{sid}_job": sorted(
            [
                f"audience/{sid}",
                "privacy/erasure_receipts",
                f"segment/{sid}",
                *(s for s in SYNCS if s.split("/")[1] == sid),
            ]
        )
        for sid in SEGMENT_IDS
    },
}

#: Imports the definitions in a fresh interpreter, recording every DuckDB connect, and prints
#: what loaded as JSON.
IMPORT_PROBE = """
import json, sys
import duckdb
opened = []
real_connect = duckdb.connect
def recording_connect(database=":memory:", *args, **kwargs):
    opened.append(str(database))
    return real_connect(database, *args, **kwargs)
duckdb.connect = recording_connect
import dagster as dg
from orchestrator.definitions import defs
graph = defs.get_repository_def().asset_graph
key = dg.AssetKey(["segment_file_errors"])
print(json.dumps({
    "assets": sorted(k.to_user_string() for k in graph.get_all_asset_keys()),
    "errors_description": defs.get_assets_def(key).descriptions_by_key[key],
    "opened": opened,
}))
"""


def repo_env(tmp_path: Path) -> dict[str, str]:
    """The environment of a fresh process: the repository's project, a warehouse and state
    folder that do not exist, a private Dagster home."""
    home = tmp_path / "dagster_home"
    home.mkdir(exist_ok=True)
    shutil.copyfile(REPO / "orchestrator" / "dagster_home" / "dagster.yaml", home / "dagster.yaml")
    env = {k: v for k, v in os.environ.items() if not k.startswith("ACTIVATION_")}
    env |= {
        "ACTIVATION_PROJECT_DIR": str(REPO),
        "ACTIVATION_WAREHOUSE": str(tmp_path / "absent" / "warehouse.duckdb"),
        "ACTIVATION_STATE_DIR": str(tmp_path / "absent" / "state"),
        "DAGSTER_HOME": str(home),
        "PYTHONPATH": os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH")) if p),
    }
    return env


@pytest.fixture(scope="module")
def real_defs() -> dg.Definitions:
    with pytest.MonkeyPatch.context() as patch:
        for name in ("ACTIVATION_SEGMENTS_DIR", "ACTIVATION_CONFIG"):
            patch.delenv(name, raising=False)
        patch.setenv("ACTIVATION_PROJECT_DIR", str(REPO))
        return load_definitions()


def test_asset_keys_and_dependencies_are_pinned(real_defs: dg.Definitions) -> None:
    graph = real_defs.get_repository_def().asset_graph
    deps = {
        key.to_user_string(): sorted(p.to_user_string() for p in graph.get(key).parent_keys)
        for key in graph.get_all_asset_keys()
    }
    assert sorted(deps) == sorted(ASSET_DEPS)
    assert deps == ASSET_DEPS


def test_checks_are_pinned(real_defs: dg.Definitions) -> None:
    graph = real_defs.get_repository_def().asset_graph
    checks = sorted(f"{c.asset_key.to_user_string()}:{c.name}" for c in graph.asset_check_keys)
    assert checks == CHECKS


def test_schedules_sensors_and_jobs_are_pinned(real_defs: dg.Definitions) -> None:
    repo = real_defs.get_repository_def()
    schedules = sorted(
        (s.name, s.cron_schedule, s.execution_timezone, s.default_status.value, s.job_name)
        for s in repo.schedule_defs
    )
    assert schedules == SCHEDULES
    sensors = sorted(
        (s.name, s.default_status.value, tuple(sorted(t.job_name for t in s.targets)))
        for s in repo.sensor_defs
    )
    assert sensors == SENSORS
    assert sorted(j.name for j in repo.get_all_jobs() if not j.name.startswith("__")) == sorted(
        JOBS
    )


def test_job_selections_are_pinned(real_defs: dg.Definitions) -> None:
    selections = {
        name: sorted(
            k.to_user_string()
            for k in real_defs.resolve_job_def(name).asset_layer.executable_asset_keys
        )
        for name in JOB_ASSETS
    }
    assert selections == JOB_ASSETS


def write_segments(folder: Path) -> dict[str, Path]:
    """Two good segments (copies of the examples), one broken file and two files whose names
    give the same id. Returns the paths by role."""
    folder.mkdir()
    for sid in ("lapsed_high_value", "recent_buyers_eu"):
        shutil.copyfile(REPO / "segments" / f"{sid}.yaml", folder / f"{sid}.yaml")
    broken = (REPO / "segments" / "mug_buyers_60d.yaml").read_text()
    broken = broken.replace("name: mug_buyers_60d", "name: broken_mugs")
    broken = broken.replace("within_days: 60", "within_days: -5")
    broken = broken.replace('"120210000000002"', '"120210000000077"')
    (folder / "broken_mugs.yaml").write_text(broken)
    base = (REPO / "segments" / "one_time_buyers.yaml").read_text()
    for suffix, name, audience in (
        ("a", "Spring Sale", "aaaa000001"),
        ("b", "spring-sale", "bb02"),
    ):
        text = base.replace("name: one_time_buyers", f"name: {name}")
        (folder / f"collide_{suffix}.yaml").write_text(text.replace("f6e5d4c3b2", audience))
    return {
        "broken": folder / "broken_mugs.yaml",
        "collide_a": folder / "collide_a.yaml",
        "collide_b": folder / "collide_b.yaml",
    }


@pytest.fixture(scope="module")
def broken_project(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, dict[str, Path]]:
    """A fresh interpreter importing the definitions over the mixed segments folder, with a
    warehouse path that does not exist."""
    tmp = tmp_path_factory.mktemp("definitions")
    files = write_segments(tmp / "segments")
    env = repo_env(tmp) | {"ACTIVATION_SEGMENTS_DIR": str(tmp / "segments")}
    done = subprocess.run(
        [sys.executable, "-c", IMPORT_PROBE],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    result["tmp"], result["env"] = tmp, env
    return result, files


def test_a_broken_file_does_not_stop_the_good_ones(broken_project) -> None:
    result, _ = broken_project
    segments = sorted(a for a in result["assets"] if a.startswith("segment/"))
    assert segments == ["segment/lapsed_high_value", "segment/recent_buyers_eu"]
    assert "sync/recent_buyers_eu/mailchimp" in result["assets"]
    assert not any("broken" in a or "spring" in a for a in result["assets"])


def test_segment_file_errors_shows_file_line_field_message(broken_project) -> None:
    result, files = broken_project
    description = result["errors_description"]
    lines = files["broken"].read_text().splitlines()
    line = next(i for i, text in enumerate(lines, 1) if "within_days" in text)
    assert f"`{files['broken']}:{line} audience.within_days: must be > 0`" in description
    assert description.startswith("3 segment file error(s)")


def test_colliding_names_get_the_friendly_error(broken_project) -> None:
    result, files = broken_project
    description = result["errors_description"]
    for mine, other in (("collide_a", "collide_b"), ("collide_b", "collide_a")):
        assert (
            f"`{files[mine]}:2 name: segment id 'spring_sale' is also the id of {files[other]};"
            " ids come from the name (lowercase, other characters -> _) and must be unique:"
            " rename one`"
        ) in description


def test_segment_file_errors_materialization_fails_with_the_list(broken_project) -> None:
    result, files = broken_project
    settings = Settings.from_env(result["env"])
    defs = build_definitions(settings, load_project_config(settings.config_path))
    errors = defs.get_assets_def(dg.AssetKey(["segment_file_errors"]))
    outcome = dg.materialize([errors], raise_on_error=False)
    assert not outcome.success
    (failure,) = [e for e in outcome.all_events if e.is_step_failure]
    text = failure.step_failure_data.user_failure_data.description
    assert str(files["broken"]) in text and "spring_sale" in text


def test_nothing_is_opened_or_created_at_import(broken_project) -> None:
    result, _ = broken_project
    assert set(result["opened"]) <= {":memory:"}  # only the SQL checker's in-memory database
    assert not (result["tmp"] / "absent").exists()


def test_dagster_validates_the_workspace_with_a_broken_file(broken_project) -> None:
    result, _ = broken_project
    dagster = Path(sys.executable).with_name("dagster")
    done = subprocess.run(
        [str(dagster), "definitions", "validate", "-w", "workspace.yaml"],
        cwd=REPO,
        env=result["env"],
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
    assert not (result["tmp"] / "absent").exists()


def test_every_job_runs_its_steps_in_one_process_by_default(real_defs: dg.Definitions) -> None:
    """A process per step cost ten times the work of a demo run (see orchestrator.executors);
    a run config may still ask for ``multiprocess``."""
    repo = real_defs.get_repository_def()
    for job in repo.get_all_jobs():
        field = job.executor_def.config_schema.as_field()
        assert field.default_value == {"in_process": {}}, job.name
        assert set(field.config_type.fields) == {"in_process", "multiprocess"}, job.name


def test_the_executor_is_chosen_by_activation_executor() -> None:
    """One module picks the executor: in process unless ``ACTIVATION_EXECUTOR`` says
    ``multiprocess`` (a process per step) or ``celery`` (``deploy/``); a typo fails naming the
    variable and the accepted values."""
    from orchestrator.executors import executor_from_env

    default = executor_from_env({}).config_schema.as_field().default_value
    assert default == {"in_process": {}}
    multi = executor_from_env({"ACTIVATION_EXECUTOR": "multiprocess"})
    assert "multiprocess" in multi.config_schema.as_field().default_value
    celery = executor_from_env({"ACTIVATION_EXECUTOR": "Celery"})
    assert celery.name == "celery"
    with pytest.raises(ValueError, match="ACTIVATION_EXECUTOR='celry' is not one of in_process"):
        executor_from_env({"ACTIVATION_EXECUTOR": "celry"})
