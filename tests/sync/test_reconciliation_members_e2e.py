"""Reconciliation compares members (keys and statuses) where the platform lists them: a
contact subscribed again after we unsubscribed it for a withdrawal fails the check as an
ERROR; one the platform holds that we never sent fails it as a WARN."""

from __future__ import annotations

from datetime import timedelta

import dagster as dg

from tests.sync.answers_project import (
    AS_OF,
    LIST,
    MAIL,
    check_results,
    run_job,
    synthetic_emails,
    withdraw,
)

CHECK = f"sync/{MAIL}/mailchimp:reconciliation"


def metadata_of(result) -> dict:
    for event in result.all_events:
        if event.event_type == dg.DagsterEventType.ASSET_CHECK_EVALUATION:
            ev = event.event_specific_data
            if ev.asset_check_key.name == "reconciliation" and MAIL in str(ev.asset_key):
                return {k: v.value for k, v in ev.metadata.items()}
    raise AssertionError("no reconciliation evaluation")


def test_a_withdrawn_contact_subscribed_again_is_an_error(answers_env, mock_destinations) -> None:
    mock = mock_destinations
    emails = dict(enumerate(synthetic_emails(4), start=1))
    project = answers_env(mock, emails, mail_mode="upsert")
    with dg.DagsterInstance.get() as instance:
        run_job(instance)
        withdraw(project.warehouse, 2, "email_marketing", AS_OF + timedelta(minutes=5))
        done = run_job(instance, AS_OF + timedelta(hours=1))
        assert check_results(done)[CHECK][0]  # honoured, members match
        assert metadata_of(done)["compared"] == "members"
        # someone subscribes the person again by hand at the platform
        member = {"email_address": emails[2], "status": "subscribed"}
        mock.seed("mailchimp", {"list_id": LIST, "members": [member]})
        result = run_job(instance, AS_OF + timedelta(hours=2))
    passed, severity = check_results(result)[CHECK]
    assert not passed and "ERROR" in severity
    assert metadata_of(result)["privacy_removals_not_honoured"] == 1


def test_a_contact_the_pipeline_never_sent_is_a_warning(answers_env, mock_destinations) -> None:
    mock = mock_destinations
    emails = dict(enumerate(synthetic_emails(4), start=1))
    answers_env(mock, emails, mail_mode="mirror")
    with dg.DagsterInstance.get() as instance:
        run_job(instance)
        stranger = {"email_address": "walk.in@example.org", "status": "subscribed"}
        mock.seed("mailchimp", {"list_id": LIST, "members": [stranger]})
        result = run_job(instance, AS_OF + timedelta(hours=1))
    passed, severity = check_results(result)[CHECK]
    assert not passed and "WARN" in severity
    meta = metadata_of(result)
    assert (meta["unknown_at_destination"], meta["privacy_removals_not_honoured"]) == (1, 0)
