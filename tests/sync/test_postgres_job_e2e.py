"""A segment's own Dagster job on a PostgreSQL warehouse named in ``activation.yaml``
(``warehouse: {kind: postgres, url, password_env}``): the real Definitions bind a
``PostgresResource`` whose password is an ``EnvVar``, and the job's segment, audience and sync
steps run on the server and send to the mock platforms; no DuckDB file is made, and the
password reaches neither the config file nor Dagster's event log."""

from __future__ import annotations

import os
from pathlib import Path

import dagster as dg
import pytest
import yaml

from orchestrator.launch import segment_run_config
from orchestrator.pseudonymize import subject_key
from orchestrator.warehouse.resources import PostgresResource
from tests.e2e_harness import event_log_text
from tests.postgres import PASSWORD_ENV
from tests.sync.answers_project import (
    ADS,
    AS_OF,
    META_AUD,
    load_defs,
    sql,
    synthetic_emails,
)


@pytest.mark.parametrize("backend", ["postgres"], indirect=True)
def test_a_segment_job_runs_on_the_postgres_warehouse_of_activation_yaml(
    answers_env, mock_destinations, dagster_home: Path
) -> None:
    mock = mock_destinations
    emails = dict(enumerate(synthetic_emails(6, seed=2207), start=1))
    project = answers_env(mock, emails)
    configured = yaml.safe_load(project.config.read_text())["warehouse"]
    assert configured == {
        "kind": "postgres",
        "url": project.warehouse.config.url,
        "password_env": PASSWORD_ENV,
    }  # the file names the variable, never the password

    defs = load_defs()
    resource = defs.resources["warehouse"]
    assert isinstance(resource, PostgresResource)
    assert isinstance(resource.password, dg.EnvVar) and resource.password == PASSWORD_ENV

    job = defs.resolve_job_def(f"{ADS}_job")
    with dg.DagsterInstance.get() as instance:
        result = job.execute_in_process(
            run_config=segment_run_config(job, as_of=AS_OF.isoformat()), instance=instance
        )
    assert result.success
    expected = sorted(subject_key(e) for e in emails.values())
    assert mock.meta_members(META_AUD) == expected
    held = sql(
        project.warehouse,
        "SELECT subject_key, fields_hash FROM activation.sync_state WHERE segment = ? "
        "ORDER BY subject_key",
        [ADS],
    )
    assert [k for k, _ in held] == expected and "pending" not in {h for _, h in held}
    checks = {
        e.event_specific_data.asset_check_key.name: e.event_specific_data.passed
        for e in result.all_events
        if e.event_type == dg.DagsterEventType.ASSET_CHECK_EVALUATION
    }
    assert checks and all(checks.values()), checks
    assert not Path(os.environ["ACTIVATION_WAREHOUSE"]).exists()  # no DuckDB file anywhere
    assert os.environ[PASSWORD_ENV] not in event_log_text(dagster_home)
