"""``activation withdraw``: a consent withdrawal recorded in the product's own intake table,
hashed on entry, seen by every reader through the consent view; bad input is a clear error."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import duckdb
import pytest
from click.testing import CliRunner

from orchestrator.cli import cli
from orchestrator.pseudonymize import subject_key
from orchestrator.warehouse.target import Warehouse
from tests.privacy.helpers import opened, rows

from .conftest import run_activation


def _granted_customer(warehouse: Warehouse) -> tuple[int, str]:
    """A customer whose latest email_marketing record is a grant, and their raw address."""
    (found,) = rows(
        warehouse,
        """
        SELECT c.customer_id, c.email FROM activation.src_customers c
        JOIN (SELECT customer_id, arg_max(status, (recorded_at, consent_id)) AS status
              FROM activation.src_consents WHERE purpose = 'email_marketing'
              GROUP BY customer_id) l USING (customer_id)
        WHERE l.status = 'granted' AND c.email LIKE '%@example.com'
        ORDER BY c.customer_id LIMIT 1
        """,
    )
    return found


def test_withdraw_is_recorded_hashed_and_seen_through_the_consent_view(
    runner: CliRunner, cli_warehouse: Warehouse
) -> None:
    warehouse = cli_warehouse
    customer, email = _granted_customer(warehouse)
    (before,) = rows(warehouse, "SELECT count(*) FROM cmp.consent_events")
    result = runner.invoke(cli, ["withdraw", email, "--purpose", "email_marketing"])
    assert result.exit_code == 0, result.output
    assert subject_key(email)[:12] in result.stdout and email.lower() not in result.output.lower()
    with opened(warehouse) as con:
        assert con.execute("SELECT count(*) FROM cmp.consent_events").fetchone() == before
        stored = con.execute("SELECT * FROM activation.consent_intake").fetchall()
        latest = con.execute(
            "SELECT status, source FROM activation.src_consents "
            "WHERE customer_id = ? AND purpose = 'email_marketing' "
            "ORDER BY recorded_at DESC, consent_id DESC LIMIT 1",
            [customer],
        ).fetchone()
    assert "@" not in str(stored)
    assert [(row[1], row[2], row[3], row[4]) for row in stored] == [
        (customer, subject_key(email), "email_marketing", "withdrawn")
    ]
    assert latest == ("withdrawn", "activation withdraw")


def _build_all(warehouse: Path, at: datetime) -> None:
    from orchestrator.audience import build_segment_audience
    from orchestrator.config import load_project_config
    from orchestrator.segments.loader import load_segments
    from orchestrator.segments.materialize import write_segment_members
    from orchestrator.warehouse.schema import create_activation_schema
    from tests.conftest import REPO

    project = load_project_config(REPO / "activation.yaml")
    loaded = load_segments(REPO / "segments", project)
    with duckdb.connect(str(warehouse)) as con:
        create_activation_schema(con)
        for seg in loaded.specs.values():
            write_segment_members(con, seg.spec, at)
            build_segment_audience(con, seg.spec, project, at)


def test_withdraw_all_takes_the_person_out_of_every_audience(
    runner: CliRunner, project_env: dict[str, str], warehouse: Path
) -> None:
    now = datetime.now(UTC).replace(tzinfo=None)  # the withdrawal is recorded now
    _build_all(warehouse, now)
    with duckdb.connect(str(warehouse), read_only=True) as con:
        customer, email, segments = con.execute(
            "SELECT m.customer_id, c.email, count(*) FROM activation.audience_members m "
            "JOIN activation.src_customers c USING (customer_id) "
            "WHERE c.email LIKE '%@example.com' GROUP BY ALL ORDER BY 3 DESC, 1 LIMIT 1"
        ).fetchone()
    assert segments >= 1
    done = runner.invoke(cli, ["withdraw", "--all", "--format", "json", email])
    assert done.exit_code == 0, done.output
    body = json.loads(done.stdout)
    assert body["purposes"] == ["email_marketing", "ad_targeting"] and body["customers"] == 1
    _build_all(warehouse, datetime.now(UTC).replace(tzinfo=None))
    with duckdb.connect(str(warehouse), read_only=True) as con:
        held = con.execute(
            "SELECT count(*) FROM activation.audience_members WHERE customer_id = ?", [customer]
        ).fetchone()
        reasons = con.execute(
            "SELECT DISTINCT reason FROM activation.audience_exclusions WHERE customer_id = ?",
            [customer],
        ).fetchall()
    assert held == (0,) and reasons == [("withdrawn",)]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["", "--all"], "EMAIL: the email address is empty"),
        (["   ", "--all"], "EMAIL: the email address is empty"),
        (["nobody-at-example.com", "--all"], "EMAIL: not a valid email address"),
        (["a" * 10_000_000 + "@example.com", "--all"], "an address has at most 254"),
        (["jane@example.com"], "give --purpose PURPOSE (one or more) or --all"),
        (["jane@example.com", "--purpose", "spam"], "unknown purpose 'spam'; declared"),
    ],
)
def test_bad_input_is_a_clear_error_that_never_echoes_the_address(
    runner: CliRunner, project_env: dict[str, str], warehouse: Path, args: list[str], message: str
) -> None:
    result = runner.invoke(cli, ["withdraw", *args])
    assert result.exit_code in (1, 2)
    assert message in result.stderr
    assert len(result.stderr) < 500 and "nobody-at" not in result.stderr
    with duckdb.connect(str(warehouse), read_only=True) as con:
        assert con.execute("SELECT count(*) FROM activation.consent_intake").fetchone() == (0,)


def test_forget_refuses_an_oversized_address(
    runner: CliRunner, project_env: dict[str, str]
) -> None:
    result = runner.invoke(cli, ["forget", "x" * 10_000_000])
    assert result.exit_code == 1 and "an address has at most 254" in result.stderr
    assert len(result.stderr) < 500


def test_withdraw_in_a_subprocess(project_env: dict[str, str], warehouse: Path) -> None:
    _, email = _granted_customer(warehouse)
    done = run_activation("withdraw", email, "--purpose", "ad_targeting", "--format", "json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["purposes"] == ["ad_targeting"]
    assert email.lower() not in (done.stdout + done.stderr).lower()
