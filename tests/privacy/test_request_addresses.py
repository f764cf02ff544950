"""Requests identify their subject or say they cannot (case P3): an address written with a
stray character reaches the person, end to end (CLI, sensor, job, mock destinations); a request
that matches nobody is ``no_match``, never complete; absurd input is refused."""

from __future__ import annotations

import json

import dagster as dg
import pytest
from click.testing import CliRunner

from orchestrator.cli import cli
from orchestrator.privacy.addresses import RequestAddressError, request_address
from orchestrator.privacy.receipts import receipt_for
from orchestrator.pseudonymize import subject_key
from orchestrator.settings import Settings
from tests.privacy.helpers import ERIN, META_AUD, load_defs, rows, run_segments
from tests.privacy.test_erasure import (
    evaluate_sensor,
    handle_request_through_dagster,
    mailchimp_member,
)


def _object(*args: str) -> dict:
    result = CliRunner().invoke(cli, ["object", "--format", "json", *args])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


@pytest.mark.parametrize(
    "typed",
    ["erin.tester@gmail.com.", "Erin Tester <mailto:Erin.Tester@gmail.com>"],
)
def test_an_objection_with_a_stray_character_reaches_the_person(
    privacy_project: Settings, mock_destinations, typed: str
) -> None:
    mock = mock_destinations
    defs = load_defs()
    with dg.DagsterInstance.get() as instance:
        run_segments(defs, instance)
        assert subject_key(ERIN) in mock.meta_members(META_AUD)
        assert mailchimp_member(mock, ERIN)["status"] == "subscribed"
        recorded = _object(typed)
        assert recorded["subject"] == subject_key(ERIN)[:12]
        assert recorded["matched"] is True and recorded["status"] == "open"
        handle_request_through_dagster(privacy_project, instance, defs, in_process=True)
    assert subject_key(ERIN) not in mock.meta_members(META_AUD)
    assert mailchimp_member(mock, ERIN)["status"] == "unsubscribed"
    receipt = receipt_for(privacy_project.warehouse_path, recorded["request_id"])
    assert receipt["status"] == "complete" and receipt["destinations"]


def test_a_request_that_matches_nobody_says_so_and_is_never_complete(
    privacy_project: Settings, mock_destinations
) -> None:
    defs = load_defs()
    runner = CliRunner()
    with dg.DagsterInstance.get() as instance:
        run_segments(defs, instance)
        # Not Erin: a +tag outside Gmail is another address (the documented rule).
        text = runner.invoke(cli, ["object", "erin.tester+news@example.com"])
        assert text.exit_code == 0, text.output
        assert "NO MATCH: no customer has this address" in text.stdout
        request_id = text.stdout.split("request ", 1)[1].split()[0]
        run_request, _ = evaluate_sensor(defs, instance, privacy_project.warehouse_path)
        assert isinstance(run_request, dg.RunRequest)
        result = defs.resolve_job_def("privacy_requests_job").execute_in_process(
            run_config=run_request.run_config, instance=instance, tags=run_request.tags
        )
        assert result.success
    receipt = runner.invoke(cli, ["receipt", request_id])
    assert receipt.exit_code == 0, receipt.output
    assert "status: NO_MATCH" in receipt.stdout and "COMPLETE" not in receipt.stdout
    assert "no customer has this address and no destination holds it" in receipt.stdout
    found = json.loads(runner.invoke(cli, ["receipt", request_id, "--format", "json"]).stdout)
    assert found["status"] == "no_match" and found["complete"] is False
    # Erin is untouched, and the request stays open for the next run.
    assert mailchimp_member(mock_destinations, ERIN)["status"] == "subscribed"
    (processed,) = rows(
        privacy_project.warehouse_path,
        "SELECT matched FROM activation.request_processing WHERE request_id = ?",
        [request_id],
    )
    assert processed == (False,)


@pytest.mark.parametrize(
    ("typed", "message"),
    [
        ("x" * 10_000_000 + "@example.com", "an address has at most 254"),
        ("erin.tester@gmail.com\x1b[2J", "control characters"),
        ("mailto:erin.tester%00@gmail.com", "control characters"),
        ("erin.tester@gmail..com", "not a valid email address"),
    ],
)
def test_absurd_input_is_refused_and_nothing_is_recorded(
    privacy_env: Settings, typed: str, message: str
) -> None:
    result = CliRunner().invoke(cli, ["forget", typed])
    assert result.exit_code == 1
    assert message in result.stderr and "Traceback" not in result.output
    assert "erin" not in result.output and len(result.output) < 300
    assert rows(privacy_env.warehouse_path, "SELECT count(*) FROM privacy_requests") == [(0,)]


@pytest.mark.parametrize(
    "typed",
    [
        "lee@example.com.",
        "mailto:lee@example.com",
        "<lee@example.com>",
        '"lee@example.com"',
        "“lee@example.com”",
        "Lee Smith <LEE@Example.com>",
        " lee @ example.com ",
        "mailto:lee%40example.com?subject=stop",
        "'<mailto:lee@example.com>'.",
    ],
)
def test_addresses_are_read_the_way_a_person_means_them(typed: str) -> None:
    assert request_address(typed) == "lee@example.com"


def test_plus_tags_are_kept_outside_gmail() -> None:
    assert request_address("lee+news@example.com") == "lee+news@example.com"
    with pytest.raises(RequestAddressError):
        request_address("lee@")
