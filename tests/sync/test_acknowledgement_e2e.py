"""C2, end to end: a row counts as done only when the platform's answer says so.

Mailchimp answers each member's final status; Meta answers counts in a documented JSON body.
A 200 that says less (or something else) leaves the rows pending or refused with the
platform's words, and a contact the platform keeps unsubscribed or cleaned is reported so.
"""

from __future__ import annotations

from datetime import timedelta

import dagster as dg

from orchestrator.pseudonymize import subject_key
from tests.postgres import both_backends
from tests.sync.answers_project import (
    ADS,
    AS_OF,
    LIST,
    MAIL,
    META_AUD,
    md5,
    run_job,
    sql,
    sync_metadata,
    synthetic_emails,
    withdraw,
)

UNSUB, CLEANED = "unsub@example.com", "cleaned@example.com"


def people(n: int = 4) -> dict[int, str]:
    return dict(enumerate(synthetic_emails(n), start=1))


def statuses(mock) -> dict[str, str]:
    return {m["hash"]: m["status"] for m in mock.mailchimp_members(LIST)}


def state(wh, segment: str) -> dict[str, str]:
    rows = sql(
        wh,
        "SELECT subject_key, fields_hash FROM activation.sync_state WHERE segment = ?",
        [segment],
    )
    return dict(rows)


@both_backends
def test_contacts_the_list_keeps_unsubscribed_or_cleaned_are_not_counted_as_synced(
    answers_env, mock_destinations
) -> None:
    mock = mock_destinations
    emails = {**people(), 5: UNSUB, 6: CLEANED}
    project = answers_env(mock, emails, mail_mode="upsert")
    wh = project.warehouse
    mock.seed(
        "mailchimp",
        {
            "list_id": LIST,
            "members": [
                {"email_address": UNSUB, "status": "unsubscribed"},
                {"email_address": CLEANED, "status": "cleaned"},
            ],
        },
    )
    # The list answers 200 and reports both in updated_members with the status it keeps.
    mock.add_fault(
        "mailchimp",
        {"method": "POST", "path": f"lists/{LIST}$"},
        {"type": "answer", "keep": {UNSUB: "unsubscribed", CLEANED: "cleaned"}},
    )
    with dg.DagsterInstance.get() as instance:
        result = run_job(instance)
        meta = sync_metadata(result, MAIL, "mailchimp")
        held = state(wh, MAIL)
        assert subject_key(UNSUB) not in held and subject_key(CLEANED) not in held
        assert len(held) == 4
        assert (meta["kept_unsubscribed_by_platform"], meta["kept_cleaned_by_platform"]) == (1, 1)
        assert meta["rejected"] == 2 and meta["stuck_rows"] == 2
        kept = sql(
            wh,
            "SELECT subject_key, status FROM activation.destination_suppressions ORDER BY 2",
        )
        assert kept == [(subject_key(CLEANED), "cleaned"), (subject_key(UNSUB), "unsubscribed")]
        reasons = sql(
            wh, "SELECT platform_status, reason FROM activation.sync_rejections ORDER BY 1"
        )
        assert [r[0] for r in reasons] == ["cleaned", "unsubscribed"]
        assert all("kept" in r[1] for r in reasons)

        # reported as the platform keeps them, and never sent again
        before = len(mock.requests_log("mailchimp"))
        again = run_job(instance, AS_OF + timedelta(hours=1))
        sent = [e for e in mock.requests_log("mailchimp")[before:] if e["method"] == "POST"]
        assert sent == []
        assert sync_metadata(again, MAIL, "mailchimp")["suppressed"] == 2
    assert statuses(mock)[md5(UNSUB)] == "unsubscribed"
    assert statuses(mock)[md5(CLEANED)] == "cleaned"
    assert mock.violations("mailchimp")["resubscribe"] == 0


@both_backends
def test_an_unsubscribe_answered_subscribed_is_not_a_removal(
    answers_env, mock_destinations
) -> None:
    mock = mock_destinations
    emails = people()
    project = answers_env(mock, emails, mail_mode="mirror")
    wh = project.warehouse
    leaving = emails[2]
    with dg.DagsterInstance.get() as instance:
        run_job(instance)
        withdraw(wh, 2, "email_marketing", AS_OF + timedelta(minutes=30))
        mock.add_fault(
            "mailchimp",
            {"method": "POST", "path": f"lists/{LIST}$"},
            {"type": "answer", "keep": {leaving: "subscribed"}},
        )
        result = run_job(instance, AS_OF + timedelta(hours=1))
        meta = sync_metadata(result, MAIL, "mailchimp")
        assert statuses(mock)[md5(leaving)] == "subscribed"
        # still held (the platform did not remove it), no suppression, the platform's words
        assert subject_key(leaving) in state(wh, MAIL)
        assert sql(wh, "SELECT count(*) FROM activation.destination_suppressions") == [(0,)]
        (reason,) = sql(wh, "SELECT reason FROM activation.sync_rejections")[0]
        assert "subscribed" in reason and meta["stuck_rows"] == 1

        # after its back-off the unsubscribe goes out again and is confirmed
        run_job(instance, AS_OF + timedelta(hours=3))
    assert statuses(mock)[md5(leaving)] == "unsubscribed"
    assert subject_key(leaving) not in state(wh, MAIL)
    assert sql(wh, "SELECT status FROM activation.destination_suppressions") == [("unsubscribed",)]
    assert sql(wh, "SELECT count(*) FROM activation.sync_rejections") == [(0,)]


@both_backends
def test_a_meta_answer_that_is_not_the_documented_json_acknowledges_nothing(
    answers_env, mock_destinations
) -> None:
    mock = mock_destinations
    emails = people(6)
    project = answers_env(mock, emails, ads_mode="mirror")
    wh = project.warehouse
    mock.add_fault(
        "meta", {"method": "POST", "path": f"{META_AUD}/users$"}, {"type": "answer", "body": "html"}
    )
    with dg.DagsterInstance.get() as instance:
        result = run_job(instance)
        held = state(wh, ADS)
        # applied by the platform, but the answer confirmed nothing: pending, not synced
        assert set(held.values()) == {"pending"} and len(held) == 6
        meta = sync_metadata(result, ADS, "meta_ads")
        assert meta["pending"] == 6 and meta["rejected"] == 0
        again = run_job(instance, AS_OF + timedelta(hours=1))
    held = state(wh, ADS)
    assert "pending" not in held.values() and len(held) == 6
    assert mock.meta_members(META_AUD) == sorted(held)
    assert sync_metadata(again, ADS, "meta_ads")["pending"] == 0


@both_backends
def test_a_meta_count_short_of_the_rows_sent_leaves_them_pending(
    answers_env, mock_destinations
) -> None:
    mock = mock_destinations
    emails = people(6)
    project = answers_env(mock, emails, ads_mode="upsert")
    wh = project.warehouse
    ignored = subject_key(emails[4])
    mock.add_fault(
        "meta",
        {"method": "POST", "path": f"{META_AUD}/users$"},
        {"type": "answer", "omit": [ignored]},
    )
    with dg.DagsterInstance.get() as instance:
        run_job(instance)
        assert ignored not in mock.meta_members(META_AUD)
        held = state(wh, ADS)
        # num_received 5 of 6: no row can be told acknowledged
        assert set(held.values()) == {"pending"}
        (reason,) = sql(wh, "SELECT DISTINCT reason FROM activation.sync_rejections")[0]
        assert "received 5 of 6" in reason
        run_job(instance, AS_OF + timedelta(hours=1))
    held = state(wh, ADS)
    assert "pending" not in held.values()
    assert mock.meta_members(META_AUD) == sorted(held) and ignored in held
    assert sql(wh, "SELECT count(*) FROM activation.sync_rejections") == [(0,)]
