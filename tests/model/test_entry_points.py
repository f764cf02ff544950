"""Every entry point that reads the canonical views (``activation.src_*``) makes them current
for the model ``activation.yaml`` declares, before any segment run or ``activation catalog``:
on a warehouse laid out differently, privacy commands and the privacy sensor work at once."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import dagster as dg
import duckdb
import pytest
import yaml
from click.testing import CliRunner
from dagster_duckdb import DuckDBResource

from orchestrator.cli import cli
from orchestrator.config import load_project_config
from orchestrator.privacy.receipts import utc_now
from orchestrator.privacy.sensor import build_requests_deadline, privacy_request_definitions
from orchestrator.pseudonymize import google_key, normalize_email, subject_key
from orchestrator.sync.engine import run_sync
from orchestrator.warehouse.connect import connect
from orchestrator.warehouse.schema import create_activation_schema
from tests.conftest import REPO
from tests.model.test_views import RELAYOUT_MODEL, RELAYOUT_SQL

AS_OF_TEXT = "2026-11-29T06:00:00"


@pytest.fixture
def relaid(
    project_env: dict[str, str], warehouse: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> tuple[Path, str, int]:
    """The demo warehouse relaid out (other schemas, names and words), with an
    ``activation.yaml`` whose model maps it; (config path, a customer's email, their id)."""
    with duckdb.connect(str(warehouse)) as con:
        customer_id, email = con.execute(
            "SELECT contact_id, email_address FROM crm.contacts "
            "WHERE email_address LIKE '%@example.%' ORDER BY contact_id LIMIT 1"
        ).fetchone()
        con.execute(RELAYOUT_SQL)
    config = yaml.safe_load((REPO / "activation.yaml").read_text(encoding="utf-8"))
    config["source"] = RELAYOUT_MODEL
    path = tmp_path / "activation.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    monkeypatch.setenv("ACTIVATION_CONFIG", str(path))
    return path, email, customer_id


def test_privacy_commands_read_the_declared_model_before_any_run(
    relaid: tuple[Path, str, int], warehouse: Path
) -> None:
    _, email, customer_id = relaid
    runner = CliRunner()
    forgotten = runner.invoke(cli, ["forget", "--format", "json", email])
    assert forgotten.exit_code == 0, forgotten.output
    request_id = json.loads(forgotten.stdout)["request_id"]
    with duckdb.connect(str(warehouse), read_only=True) as con:
        (found,) = con.execute(
            "SELECT customer_id FROM activation.request_intake WHERE request_id = ?",
            [request_id],
        ).fetchone()
    assert found == customer_id  # resolved through the model's crm.people

    receipt = runner.invoke(cli, ["receipt", request_id, "--format", "json"])
    assert receipt.exit_code == 0, receipt.output
    objected = runner.invoke(cli, ["object", email])
    assert objected.exit_code == 0, objected.output
    withdrawn = runner.invoke(cli, ["withdraw", email, "--all", "--format", "json"])
    assert withdrawn.exit_code == 0, withdrawn.output
    assert json.loads(withdrawn.stdout)["customers"] == 1
    explained = runner.invoke(
        cli, ["explain", email, "recent_buyers_eu", "--as-of", AS_OF_TEXT, "--format", "json"]
    )
    assert explained.exit_code == 0, explained.output
    assert json.loads(explained.stdout)["customer_ids"] == [customer_id]
    assert email.lower() not in (forgotten.output + explained.output).lower()


def test_the_sensor_sees_a_request_in_the_models_own_table_before_any_run(
    relaid: tuple[Path, str, int], warehouse: Path
) -> None:
    config, _, customer_id = relaid
    with duckdb.connect(str(warehouse)) as con:
        con.execute(
            "INSERT INTO dpo.requests VALUES ('tk-1', ?, NULL, 'DELETE_ME', "
            "TIMESTAMP '2026-11-28 10:00:00')",
            [customer_id],
        )
    (sensor,) = privacy_request_definitions({}, load_project_config(config)).sensors
    context = dg.build_sensor_context(
        resources={"warehouse": DuckDBResource(database=str(warehouse))}
    )
    result = sensor(context)
    assert isinstance(result, dg.RunRequest), result
    (op,) = result.run_config["ops"].values()
    assert "tk-1" in op["config"]["request_ids"]


def test_unchanged_views_are_not_rewritten(relaid: tuple[Path, str, int], warehouse: Path) -> None:
    project = load_project_config(relaid[0])
    with connect(warehouse, project=project):
        pass
    with duckdb.connect(str(warehouse)) as con:
        before = con.execute("SELECT * FROM duckdb_views() WHERE schema_name = 'activation'")
        before = before.fetchall()
    with connect(warehouse, read_only=True, project=project) as con:
        key = subject_key("nobody@example.com")
        assert con.execute(
            "SELECT count(*) FROM activation.src_customers WHERE email = ?", [key]
        ).fetchone() == (0,)
    with duckdb.connect(str(warehouse), read_only=True) as con:
        after = con.execute("SELECT * FROM duckdb_views() WHERE schema_name = 'activation'")
        assert after.fetchall() == before


def test_the_deadline_check_reads_requests_through_the_declared_model(
    relaid: tuple[Path, str, int], warehouse: Path
) -> None:
    config, _, customer_id = relaid
    with duckdb.connect(str(warehouse)) as con:
        con.execute(
            "INSERT INTO dpo.requests VALUES ('tk-old', ?, NULL, 'DELETE_ME', ?)",
            [customer_id, utc_now() - timedelta(days=40)],
        )
    check = build_requests_deadline(load_project_config(config))
    result = check(warehouse=DuckDBResource(database=str(warehouse)))
    assert not result.passed
    assert result.metadata["count"].value == 1
    assert result.metadata["request_ids"].value == ["tk-old"]


def test_the_sync_diffs_through_the_declared_model_before_any_segment_run(
    relaid: tuple[Path, str, int], warehouse: Path, tmp_path: Path
) -> None:
    """A merge field from a trait of the model's own table, on a warehouse whose views were
    never made for this model: the sync makes them current before it diffs."""
    config, email, customer_id = relaid
    with duckdb.connect(str(warehouse)) as con:
        create_activation_schema(con)
        (tier,) = con.execute(
            "SELECT loyalty_tier FROM crm.people WHERE person_no = ?", [customer_id]
        ).fetchone()
        con.execute(
            "INSERT INTO activation.audience_members VALUES "
            "('gold', ?, ?, ?, ?, 'consent', 'c-1', ?)",
            [subject_key(email), google_key(email), customer_id, normalize_email(email), utc_now()],
        )
    report = run_sync(
        warehouse,
        tmp_path / "sync_state",
        segment="gold",
        destination="mailchimp",
        audience_id="list1",
        mode="mirror",
        fields={"TIER": "loyalty_tier"},
        kind="email",
        dry_run=True,
        project=load_project_config(config),
    )
    assert report.adds == 1
    with duckdb.connect(str(warehouse), read_only=True) as con:
        assert con.execute(
            "SELECT loyalty_tier FROM activation.src_customers WHERE customer_id = ?",
            [customer_id],
        ).fetchone() == (tier,)
