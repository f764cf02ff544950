"""``activation forget`` / ``object`` / ``receipt`` / ``register``: hashed on entry, never an
email in the output, one-line errors."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

from click.testing import CliRunner

from orchestrator.cli import cli
from orchestrator.pseudonymize import subject_key
from orchestrator.warehouse.target import Warehouse
from tests.conftest import REPO
from tests.privacy.helpers import rows as read

from .conftest import run_activation

EMAIL = "Jane.Roe.Cli@Example.com"  # synthetic, not in the demo warehouse


def test_forget_records_a_hashed_request_and_shows_no_email(
    runner: CliRunner, cli_warehouse: Warehouse
) -> None:
    result = runner.invoke(cli, ["forget", EMAIL])
    assert result.exit_code == 0, result.output
    key = subject_key(EMAIL)
    assert key[:12] in result.stdout
    assert EMAIL.lower() not in result.output.lower()
    request_id = result.stdout.split("request ", 1)[1].split()[0]
    rows = read(
        cli_warehouse,
        "SELECT subject_key, request_type FROM activation.request_intake WHERE request_id = ?",
        [request_id],
    )
    assert rows == [(key, "erasure")]
    source = read(  # the company's table untouched
        cli_warehouse, "SELECT count(*) FROM support.privacy_tickets WHERE ticket_id = ?",
        [request_id],
    )  # fmt: skip
    assert source == [(0,)]


def test_object_json_and_receipt(runner: CliRunner, cli_warehouse: Warehouse) -> None:
    recorded = runner.invoke(cli, ["object", "--format", "json", EMAIL])
    assert recorded.exit_code == 0, recorded.output
    body = json.loads(recorded.stdout)
    assert body["request_type"] == "objection"
    assert body["subject"] == subject_key(EMAIL)[:12]
    receipt = runner.invoke(cli, ["receipt", body["request_id"], "--format", "json"])
    assert receipt.exit_code == 0, receipt.output
    found = json.loads(receipt.stdout)
    assert found["request_id"] == body["request_id"]
    assert found["request_type"] == "objection" and found["status"] in ("open", "complete")
    text = runner.invoke(cli, ["receipt", body["request_id"]])
    assert text.exit_code == 0 and body["request_id"] in text.stdout
    assert EMAIL.lower() not in (receipt.output + text.output).lower()


def test_receipt_of_an_unknown_request(runner: CliRunner, project_env: dict[str, str]) -> None:
    result = runner.invoke(cli, ["receipt", "pr-does-not-exist"])
    assert result.exit_code == 1
    assert result.stderr.strip() == "Error: unknown request id 'pr-does-not-exist'"


def test_register_markdown_csv_and_file(
    runner: CliRunner, project_env: dict[str, str], tmp_path: Path
) -> None:
    markdown = runner.invoke(cli, ["register"])
    assert markdown.exit_code == 0, markdown.output
    assert markdown.stdout.startswith("# Record of processing activities")
    # Per purpose; each segment is a campaign row of its purpose.
    assert "## Processing activity: email_marketing" in markdown.stdout
    assert "| recent_buyers_eu |" in markdown.stdout
    out = tmp_path / "register.csv"
    written = runner.invoke(cli, ["register", "--format", "csv", "--output", str(out)])
    assert written.exit_code == 0 and written.stdout == ""
    rows = list(csv.DictReader(io.StringIO(out.read_text(encoding="utf-8"))))
    assert sorted(r["purpose"] for r in rows) == ["ad_targeting", "email_marketing"]
    campaigns = {c for r in rows for c in r["campaigns"].split("; ")}
    assert campaigns == {p.stem for p in (REPO / "segments").glob("*.yaml")}


def test_subprocess_forget_and_bad_email(project_env: dict[str, str]) -> None:
    done = run_activation("forget", EMAIL)
    assert done.returncode == 0, done.stderr
    assert subject_key(EMAIL)[:12] in done.stdout and "@" not in done.stdout
    bad = run_activation("forget", "nobody@@example")
    assert bad.returncode == 1
    assert "not a valid email address" in bad.stderr and "nobody" not in bad.stderr
    assert "Traceback" not in bad.stderr


def test_forget_twice_keeps_one_open_request(runner: CliRunner, cli_warehouse: Warehouse) -> None:
    first = runner.invoke(cli, ["forget", "--format", "json", EMAIL])
    again = runner.invoke(cli, ["forget", EMAIL.upper()])  # another spelling, same person
    assert first.exit_code == 0 and again.exit_code == 0, first.output + again.output
    request_id = json.loads(first.stdout)["request_id"]
    assert f"request {request_id} already exists" in again.stdout
    assert "nothing new recorded" in again.stdout
    assert EMAIL.lower() not in again.output.lower()
    objection = runner.invoke(cli, ["object", "--format", "json", EMAIL])
    assert json.loads(objection.stdout)["already_open"] is False
    rows = read(
        cli_warehouse,
        "SELECT request_type, count(*) FROM activation.request_intake WHERE subject_key = ? "
        "GROUP BY request_type ORDER BY request_type",
        [subject_key(EMAIL)],
    )
    assert rows == [("erasure", 1), ("objection", 1)]
