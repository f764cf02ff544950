"""``activation explain EMAIL SEGMENT``: why a person is in or out, by hash prefix only."""

from __future__ import annotations

import json

from click.testing import CliRunner

from orchestrator.cli import cli
from orchestrator.pseudonymize import subject_key
from orchestrator.warehouse.target import Warehouse
from tests.privacy.helpers import rows

from .conftest import AS_OF_TEXT

EMAIL = "Jane.Roe.Cli@Example.com"  # synthetic, not in the demo warehouse


def _customer_email(warehouse: Warehouse) -> str:
    ((email,),) = rows(
        warehouse,
        "SELECT email_address FROM crm.contacts WHERE email_address LIKE '%@example.%' "
        "ORDER BY contact_id LIMIT 1",
    )
    return email


def test_explain_a_customer_without_showing_the_address(
    runner: CliRunner, cli_warehouse: Warehouse
) -> None:
    email = _customer_email(cli_warehouse)
    args = ["explain", email, "recent_buyers_eu", "--as-of", AS_OF_TEXT, "--format", "json"]
    # No segment ever ran: explain makes the model's views current and answers at once.
    result = runner.invoke(cli, args)
    assert result.exit_code == 0, result.output
    found = json.loads(result.stdout)
    assert found["segment"] == "recent_buyers_eu" and found["customer_ids"]
    assert found["subject"].startswith(subject_key(email)[:12])
    assert email.lower() not in result.output.lower()
    text = runner.invoke(cli, ["explain", email, "recent_buyers_eu", "--as-of", AS_OF_TEXT])
    assert text.exit_code == 0 and "in the segment now:" in text.stdout
    assert email.lower() not in text.output.lower()


def test_explain_errors(runner: CliRunner, project_env: dict[str, str]) -> None:
    unknown = runner.invoke(cli, ["explain", EMAIL, "nope"])
    assert unknown.exit_code == 1 and "valid segments:" in unknown.stderr
    bad = runner.invoke(cli, ["explain", "no-at-sign", "recent_buyers_eu"])
    assert bad.exit_code == 1 and "no-at-sign" not in bad.output
