"""An erasure after the person changed their email address, end to end (found by a trial:
the request resolved the address it named and nothing the customer record linked to it)."""

from __future__ import annotations

import dagster as dg
import duckdb

from orchestrator.privacy.receipts import receipt_for
from orchestrator.privacy.requests import record_request
from orchestrator.pseudonymize import google_key, subject_key
from tests.privacy.helpers import (
    ADS,
    ERIN,
    ERIN_ID,
    MAIL,
    META_AUD,
    META_EU_AUD,
    load_defs,
    rows,
    run_segments,
)
from tests.privacy.test_erasure import handle_request_through_dagster, mailchimp_member

MOVED = "erin.moved@example.org"
OLD_KEY, NEW_KEY = subject_key(ERIN), subject_key(MOVED)
EVERY_PAIR = {(ADS, "meta_ads"), (ADS, "meta_ads_eu"), (MAIL, "mailchimp")}


def change_email(wh, cid: int, email: str) -> None:
    con = duckdb.connect(str(wh))
    try:
        con.execute("UPDATE customers SET email = ? WHERE customer_id = ?", [email, cid])
    finally:
        con.close()


def nowhere(mock, key: str, email: str) -> bool:
    member = mailchimp_member(mock, email)
    return (
        key not in mock.meta_members(META_AUD)
        and google_key(email) not in mock.meta_members(META_EU_AUD)
        and (member is None or member["status"] != "subscribed")
    )


def test_erasure_by_the_old_address_also_keeps_the_new_one_out(
    privacy_project, mock_destinations
) -> None:
    wh, mock = privacy_project.warehouse_path, mock_destinations
    defs = load_defs()
    with dg.DagsterInstance.get() as instance:
        run_segments(defs, instance)
        assert OLD_KEY in mock.meta_members(META_AUD)
        change_email(wh, ERIN_ID, MOVED)  # in the CRM; no sync has run since
        request_id = record_request(wh, ERIN, "erasure")  # the address they signed up with
        handle_request_through_dagster(privacy_project, instance, defs)
        run_segments(defs, instance)

    assert nowhere(mock, OLD_KEY, ERIN) and nowhere(mock, NEW_KEY, MOVED)
    assert mailchimp_member(mock, ERIN)["status"] == "forgotten"
    suppressed = {r[0] for r in rows(wh, "SELECT subject_key FROM activation.suppression_list")}
    assert {OLD_KEY, NEW_KEY} <= suppressed
    reasons = rows(
        wh,
        "SELECT DISTINCT reason FROM activation.audience_exclusions WHERE customer_id = ?",
        [ERIN_ID],
    )
    assert reasons == [("erasure_requested",)]
    receipt = receipt_for(wh, request_id)
    assert receipt["complete"]
    assert {(d["segment"], d["destination"]) for d in receipt["destinations"]} == EVERY_PAIR


def test_erasure_by_the_new_address_is_receipted_where_the_old_one_was_held(
    privacy_project, mock_destinations
) -> None:
    wh, mock = privacy_project.warehouse_path, mock_destinations
    defs = load_defs()
    with dg.DagsterInstance.get() as instance:
        run_segments(defs, instance)
        change_email(wh, ERIN_ID, MOVED)
        request_id = record_request(wh, MOVED, "erasure")  # before any sync saw the change
        handle_request_through_dagster(privacy_project, instance, defs)

    assert nowhere(mock, OLD_KEY, ERIN) and nowhere(mock, NEW_KEY, MOVED)
    receipt = receipt_for(wh, request_id)
    assert receipt["complete"]
    assert {(d["segment"], d["destination"], d["outcome"]) for d in receipt["destinations"]} == {
        (seg, dest, "ok") for seg, dest in EVERY_PAIR
    }
