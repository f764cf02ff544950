"""Erasure and objection carried to three destinations across two segments, end to end:
segment runs through the real Definitions, the sensor evaluated against a real instance, the
job it asks for executed for real, and the destinations read through the mock's control API."""

from __future__ import annotations

import json
from datetime import timedelta

import dagster as dg
import pytest
from dagster._core.definitions.reconstruct import ReconstructableJob

from destinations.base import Row
from destinations.registry import build_client
from orchestrator.config import load_project_config
from orchestrator.privacy.receipts import format_receipt, receipt_for
from orchestrator.privacy.requests import record_request
from orchestrator.privacy.sensor import PRIVACY_JOB, SENSOR_NAME
from orchestrator.pseudonymize import google_key, normalize_email, subject_key
from orchestrator.settings import Settings
from orchestrator.warehouse.target import Warehouse
from tests.privacy.conftest import BACKENDS
from tests.privacy.helpers import (
    ADS,
    AS_OF,
    ERIN,
    ERIN_ID,
    LIST,
    MAIL,
    META_AUD,
    META_EU_AUD,
    OTHERS,
    add_customer,
    load_defs,
    md5,
    opened,
    resource_of,
    rows,
    run_segments,
    warehouse_of,
)

ERIN_KEY, ERIN_GOOGLE = subject_key(ERIN), google_key(ERIN)
OWN_TABLES = ("sync_state", "sync_rejections", "destination_suppressions", "audience_members")


def privacy_job() -> dg.JobDefinition:
    """The privacy job of the Definitions for the current environment (reconstructable)."""
    return load_defs().resolve_job_def(PRIVACY_JOB)


def evaluate_sensor(defs: dg.Definitions, instance: dg.DagsterInstance, wh: Warehouse, cursor=None):
    sensor = defs.resolve_sensor_def(SENSOR_NAME)
    context = dg.build_sensor_context(
        instance=instance, cursor=cursor, resources={"warehouse": resource_of(wh)}
    )
    return sensor(context), context.cursor


def mailchimp_member(mock, email: str) -> dict | None:
    by_hash = {m["hash"]: m for m in mock.mailchimp_members(LIST)}
    return by_hash.get(md5(normalize_email(email)))


def assert_everywhere_before(mock) -> None:
    assert ERIN_KEY in mock.meta_members(META_AUD)
    assert ERIN_GOOGLE in mock.meta_members(META_EU_AUD) and ERIN_GOOGLE != ERIN_KEY
    assert mailchimp_member(mock, ERIN)["status"] == "subscribed"


def own_rows(wh: Warehouse, keys: list[str]) -> dict[str, int]:
    return {
        table: rows(
            wh,
            f"SELECT count(*) FROM activation.{table} WHERE list_contains(?, subject_key)",
            [keys],
        )[0][0]
        for table in OWN_TABLES
    }


def handle_request_through_dagster(
    project: Settings, instance, defs, *, in_process: bool = False
) -> dg.RunRequest:
    """Evaluate the sensor, execute its run request's job (reconstructed from its module, as
    Dagster runs it, unless ``in_process``); return the run request."""
    wh = warehouse_of(project)
    run_request, cursor = evaluate_sensor(defs, instance, wh)
    assert isinstance(run_request, dg.RunRequest)
    if in_process:
        result = defs.resolve_job_def(PRIVACY_JOB).execute_in_process(
            run_config=run_request.run_config, instance=instance, tags=run_request.tags
        )
    else:
        # The job's steps run in this process (orchestrator.executors): forget the definitions
        # Dagster cached for an earlier test's environment (its lru_cache keys on the pointer).
        ReconstructableJob.get_definition.cache_clear()
        ReconstructableJob.get_repository_definition.cache_clear()
        result = dg.execute_job(
            dg.reconstructable(privacy_job),
            instance=instance,
            run_config=run_request.run_config,
            tags=run_request.tags,
        )
    failures = [e.event_specific_data for e in result.all_events if e.is_step_failure]
    assert result.success, failures
    again, _ = evaluate_sensor(defs, instance, wh, cursor)
    assert isinstance(again, dg.SkipReason)  # complete: nothing left to launch
    return run_request


def reimport(wh: Warehouse, spellings: dict[int, str]) -> None:
    """New customer rows for the same person, consenting an hour before AS_OF."""
    with opened(wh) as con:
        for cid, email in spellings.items():
            add_customer(con, cid, email, AS_OF - timedelta(hours=1))


@pytest.mark.parametrize("backend", BACKENDS)
def test_erasure_reaches_three_destinations_and_the_person_never_returns(
    privacy_project, mock_destinations
) -> None:
    project = privacy_project
    wh = warehouse_of(project)
    mock = mock_destinations
    defs = load_defs()
    with dg.DagsterInstance.get() as instance:
        run_segments(defs, instance)
        assert_everywhere_before(mock)
        others_before = len(mock.meta_members(META_AUD))
        request_id = record_request(wh, "  ERIN.Tester@GMAIL.com ", "erasure")
        run_request = handle_request_through_dagster(project, instance, defs)
        assert request_id in str(run_request.run_config)

        # No trace at any destination.
        assert ERIN_KEY not in mock.meta_members(META_AUD)
        assert ERIN_GOOGLE not in mock.meta_members(META_EU_AUD)
        assert len(mock.meta_members(META_AUD)) == others_before - 1 == len(OTHERS)
        member = mailchimp_member(mock, ERIN)
        assert member["status"] == "forgotten" and member["email_address"] is None

        # Three acknowledgements on the receipt, no address in it.
        receipt = receipt_for(wh, request_id)
        assert receipt["complete"] and receipt["status"] == "complete"
        assert {
            (d["segment"], d["destination"], d["action"], d["outcome"])
            for d in receipt["destinations"]
        } == {
            (ADS, "meta_ads", "remove", "ok"),
            (ADS, "meta_ads_eu", "remove", "ok"),
            (MAIL, "mailchimp", "delete_permanent", "ok"),
        }
        text = format_receipt(receipt)
        assert "COMPLETE" in text and "@" not in text and ERIN_KEY not in text

        # Our own state holds no row about them; the suppression list holds hashes only.
        assert own_rows(wh, [ERIN_KEY]) == dict.fromkeys(OWN_TABLES, 0)
        suppressed = rows(wh, "SELECT subject_key, google_key, request_type, suppressed_at "
                          "FROM activation.suppression_list")  # fmt: skip
        assert [r[:3] for r in suppressed] == [(ERIN_KEY, ERIN_GOOGLE, "erasure")]
        stored = rows(
            wh, "SELECT * FROM activation.request_intake WHERE request_id = ?", [request_id]
        )
        assert "@" not in str(stored) and ERIN_KEY in str(stored)

        # The same person imported again, in two other spellings, with a fresh consent.
        variants = {101: "  ERIN.TESTER@GMAIL.COM  ", 102: "e.r.i.n.tester+promo@googlemail.com"}
        reimport(wh, variants)
        run_segments(defs, instance)

    excluded = rows(
        wh,
        "SELECT segment, customer_id, reason FROM activation.audience_exclusions "
        "WHERE customer_id IN (1, 101, 102) ORDER BY segment, customer_id, reason",
    )
    assert excluded == [
        (seg, cid, "erasure_requested") for seg in (ADS, MAIL) for cid in (ERIN_ID, 101, 102)
    ]
    variant_keys = [subject_key(e) for e in variants.values()]
    assert ERIN_KEY not in mock.meta_members(META_AUD)
    assert not set(variant_keys) & set(mock.meta_members(META_AUD))
    assert ERIN_GOOGLE not in mock.meta_members(META_EU_AUD)
    assert all(mailchimp_member(mock, e) is None for e in variants.values() if "googlemail" in e)
    assert mailchimp_member(mock, ERIN)["status"] == "forgotten"
    assert sum(v for k, v in mock.violations("mailchimp").items() if k != "samples") == 0
    assert own_rows(wh, [ERIN_KEY, *variant_keys]) == dict.fromkeys(OWN_TABLES, 0)


@pytest.mark.parametrize("backend", BACKENDS)
def test_objection_unsubscribes_suppresses_and_never_resubscribes(
    privacy_project, mock_destinations
) -> None:
    project = privacy_project
    wh = warehouse_of(project)
    mock = mock_destinations
    defs = load_defs()
    objector_id = OTHERS[0]
    (email,) = rows(wh, "SELECT email FROM customers WHERE customer_id = ?", [objector_id])[0]
    key = subject_key(email)
    with dg.DagsterInstance.get() as instance:
        run_segments(defs, instance)
        assert mailchimp_member(mock, email)["status"] == "subscribed"
        request_id = record_request(wh, email, "objection")
        handle_request_through_dagster(project, instance, defs, in_process=True)
        receipt = receipt_for(wh, request_id)
        assert receipt["complete"]
        assert sorted((d["destination"], d["action"]) for d in receipt["destinations"]) == [
            ("mailchimp", "unsubscribe"),
            ("meta_ads", "remove"),
            ("meta_ads_eu", "remove"),
        ]
        assert key not in mock.meta_members(META_AUD) + mock.meta_members(META_EU_AUD)
        assert mailchimp_member(mock, email)["status"] == "unsubscribed"
        assert rows(
            wh, "SELECT destination, status FROM activation.destination_suppressions "
            "WHERE subject_key = ?", [key],
        ) == [("mailchimp", "unsubscribed")]  # fmt: skip
        assert rows(
            wh, "SELECT request_type FROM activation.suppression_list WHERE subject_key = ?", [key]
        ) == [("objection",)]

        # A fresh consent later does not bring them back anywhere.
        reimport(wh, {103: email.upper()})
        _fresh_consent(wh, objector_id)
        run_segments(defs, instance)

    reasons = rows(
        wh,
        "SELECT DISTINCT reason FROM activation.audience_exclusions WHERE customer_id IN (?, 103)",
        [objector_id],
    )
    assert reasons == [("objection",)]
    assert mailchimp_member(mock, email)["status"] == "unsubscribed"
    assert key not in mock.meta_members(META_AUD)
    assert sum(v for k, v in mock.violations("mailchimp").items() if k != "samples") == 0
    assert own_rows(wh, [key])["sync_state"] == 0


def _fresh_consent(wh: Warehouse, customer_id: int) -> None:
    with opened(wh) as con:
        for purpose in ("email_marketing", "ad_targeting"):
            con.execute(
                "INSERT INTO consents VALUES (?, ?, ?, 'granted', ?, 'signup_form', 'v4')",
                [
                    f"fresh-{customer_id}-{purpose}",
                    customer_id,
                    purpose,
                    AS_OF - timedelta(minutes=5),
                ],
            )


def _held_before_any_request(project: Settings, mock) -> None:
    """Erin at meta_ads (by subject key) and at mailchimp (subscribed), and the warehouse's
    sync state saying so: what acknowledged syncs leave behind."""
    config = load_project_config(project.config_path)
    meta = build_client("meta_ads", config.destinations["meta_ads"], mock.meta_url, mock.meta_token)
    try:
        (added,) = meta.add(META_AUD, [Row(ERIN_KEY, ERIN_KEY)])
        assert added.ok
    finally:
        meta.close()
    mock.seed(
        "mailchimp",
        {
            "list_id": LIST,
            "members": [{"email_address": normalize_email(ERIN), "status": "subscribed"}],
        },
    )
    with opened(warehouse_of(project)) as con:
        con.executemany(
            "INSERT INTO activation.sync_state VALUES (?, ?, ?, ?, 'h1', ?)",
            [
                [ADS, "meta_ads", ERIN_KEY, None, AS_OF],
                [MAIL, "mailchimp", ERIN_KEY, md5(normalize_email(ERIN)), AS_OF],
            ],
        )
    assert ERIN_KEY in mock.meta_members(META_AUD)
    assert mailchimp_member(mock, ERIN)["status"] == "subscribed"


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_request_recorded_with_the_command_is_carried_out_and_receipted(
    privacy_project, mock_destinations
) -> None:
    """``activation forget``, the sensor, the privacy job through the real Definitions (the
    warehouse resource of the backend), the platforms over HTTP, ``activation receipt``: the
    whole path of a request, from the state acknowledged syncs leave."""
    from click.testing import CliRunner

    from orchestrator.cli import cli

    project, mock = privacy_project, mock_destinations
    _held_before_any_request(project, mock)
    recorded = CliRunner().invoke(cli, ["forget", "--format", "json", f"mailto:{ERIN.upper()}"])
    assert recorded.exit_code == 0, recorded.output
    request_id = json.loads(recorded.stdout)["request_id"]
    defs = load_defs()
    with dg.DagsterInstance.get() as instance:
        run_request = handle_request_through_dagster(project, instance, defs, in_process=True)
    assert request_id in str(run_request.run_config)

    assert ERIN_KEY not in mock.meta_members(META_AUD)
    member = mailchimp_member(mock, ERIN)
    assert member["status"] == "forgotten" and member["email_address"] is None
    shown = CliRunner().invoke(cli, ["receipt", request_id, "--format", "json"])
    assert shown.exit_code == 0, shown.output
    receipt = json.loads(shown.stdout)
    assert receipt["status"] == "complete"
    assert sorted(
        (d["destination"], d["action"], d["outcome"]) for d in receipt["destinations"]
    ) == [
        ("mailchimp", "delete_permanent", "ok"),
        ("meta_ads", "remove", "ok"),
    ]
    assert "@" not in shown.output
    assert own_rows(warehouse_of(project), [ERIN_KEY]) == dict.fromkeys(OWN_TABLES, 0)
