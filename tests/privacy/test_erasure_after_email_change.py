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


def erase_after_move(project, mock, named: str, *, run_again: bool) -> str:
    """Sync Erin everywhere, change her address in the CRM, record an erasure naming
    ``named`` before any sync sees the change, handle it (and run the segments again when
    ``run_again``); return the request id."""
    wh = project.warehouse_path
    defs = load_defs()
    with dg.DagsterInstance.get() as instance:
        run_segments(defs, instance)
        assert OLD_KEY in mock.meta_members(META_AUD)
        change_email(wh, ERIN_ID, MOVED)
        request_id = record_request(wh, named, "erasure")
        handle_request_through_dagster(project, instance, defs)
        if run_again:
            run_segments(defs, instance)
    return request_id


def test_erasure_by_the_old_address_also_keeps_the_new_one_out(
    privacy_project, mock_destinations
) -> None:
    wh, mock = privacy_project.warehouse_path, mock_destinations
    # named by the address they signed up with
    request_id = erase_after_move(privacy_project, mock, ERIN, run_again=True)

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
    request_id = erase_after_move(privacy_project, mock, MOVED, run_again=False)

    assert nowhere(mock, OLD_KEY, ERIN) and nowhere(mock, NEW_KEY, MOVED)
    receipt = receipt_for(wh, request_id)
    assert receipt["complete"]
    assert {(d["segment"], d["destination"], d["outcome"]) for d in receipt["destinations"]} == {
        (seg, dest, "ok") for seg, dest in EVERY_PAIR
    }
