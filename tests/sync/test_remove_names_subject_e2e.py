"""C1, end to end: every remove names its subject by what the destination holds.

After an email change the old contact is a subject of its own that no warehouse row spells any
more; a withdrawal or objection must still reach it, by its member id. A change of the
identifier form an ad destination receives re-keys its members. No request ever carries an
empty identifier.
"""

from __future__ import annotations

from datetime import timedelta

import dagster as dg
import pytest

from orchestrator.privacy.requests import record_request
from orchestrator.pseudonymize import google_key, subject_key
from tests.sync.answers_project import (
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
    write_config,
)

OLD, NEW = "old.withdraw@example.com", "new.withdraw@example.com"


def people() -> dict[int, str]:
    emails = dict(enumerate(synthetic_emails(4), start=1))
    emails[3] = OLD
    return emails


def member(mock, email: str) -> dict | None:
    return {m["hash"]: m for m in mock.mailchimp_members(LIST)}.get(md5(email))


def empty_identifiers_sent(mock) -> list:
    sent = []
    for entry in mock.requests_log("mailchimp"):
        for value in entry["values"]:
            if "email_address" in value and not value["email_address"]:
                sent.append(entry)
    for entry in mock.requests_log("meta"):
        sent += [entry for value in entry["values"] if not value]
    return sent


def move_and_run(instance, wh, mock) -> None:
    run_job(instance)
    assert member(mock, OLD)["status"] == "subscribed"
    sql(wh, "UPDATE customers SET email = ? WHERE customer_id = 3", [NEW])
    run_job(instance, AS_OF + timedelta(hours=1))


@pytest.mark.parametrize("mode", ["upsert", "add_only", "mirror"])
def test_a_withdrawal_after_an_email_change_unsubscribes_the_old_contact_by_its_id(
    answers_env, mock_destinations, mode
) -> None:
    mock = mock_destinations
    project = answers_env(mock, people(), mail_mode=mode)
    wh = project.warehouse
    with dg.DagsterInstance.get() as instance:
        move_and_run(instance, wh, mock)
        withdraw(wh, 3, "email_marketing", AS_OF + timedelta(hours=2))
        result = run_job(instance, AS_OF + timedelta(hours=3))

        # mirror archived the old contact when the address changed (it left the audience);
        # the other modes keep it until the person acts, then unsubscribe it by its id
        expected = "archived" if mode == "mirror" else "unsubscribed"
        assert member(mock, OLD)["status"] == expected
        assert member(mock, NEW) is None or member(mock, NEW)["status"] != "subscribed"
        assert empty_identifiers_sent(mock) == []
        old_key = subject_key(OLD)
        held = sql(wh, "SELECT subject_key FROM activation.sync_state WHERE segment = ?", [MAIL])
        assert (old_key,) not in held
        suppressed = sql(
            wh,
            "SELECT status FROM activation.destination_suppressions WHERE subject_key = ?",
            [old_key],
        )
        assert suppressed == ([] if mode == "mirror" else [("unsubscribed",)])
        assert sql(wh, "SELECT count(*) FROM activation.sync_rejections") == [(0,)]
        assert sync_metadata(result, MAIL, "mailchimp")["stuck_rows"] == 0

        # complete at once: the next run sends nothing
        before = len(mock.requests_log("mailchimp"))
        run_job(instance, AS_OF + timedelta(hours=4))
        after = mock.requests_log("mailchimp")[before:]
        assert [e for e in after if e["method"] != "GET"] == []


def test_an_objection_after_an_email_change_unsubscribes_the_old_contact_not_archives_it(
    answers_env, mock_destinations
) -> None:
    mock = mock_destinations
    project = answers_env(mock, people(), mail_mode="upsert")
    wh = project.warehouse
    with dg.DagsterInstance.get() as instance:
        move_and_run(instance, wh, mock)
        record_request(wh, NEW, "objection")
        run_job(instance, AS_OF + timedelta(hours=2))
    # an objection keeps the platform's suppression: unsubscribed, never merely archived
    assert member(mock, OLD)["status"] == "unsubscribed"
    assert empty_identifiers_sent(mock) == []


def test_a_new_identifier_form_re_keys_the_ad_audience(
    answers_env, mock_destinations, tmp_path
) -> None:
    mock = mock_destinations
    emails = people()
    emails[2] = "Jo.Ann+promo@gmail.com"  # Google keys differ for Gmail addresses
    project = answers_env(mock, emails, ads_mode="upsert")
    with dg.DagsterInstance.get() as instance:
        run_job(instance)
        base = sorted(subject_key(e) for e in emails.values())
        assert mock.meta_members(META_AUD) == base
        write_config(project.config, normalization="google")
        result = run_job(instance, AS_OF + timedelta(hours=1))
    google = sorted(google_key(e) for e in emails.values())
    assert google != base
    # the old forms were removed as they were added, the new ones added: nothing stranded
    assert mock.meta_members(META_AUD) == google
    meta = sync_metadata(result, "ads_fr", "meta_ads")
    assert meta["rekeys"] == sum(1 for e in emails.values() if google_key(e) != subject_key(e))
    assert empty_identifiers_sent(mock) == []
