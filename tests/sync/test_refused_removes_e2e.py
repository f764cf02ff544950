"""C3, end to end: a refused remove is recorded with the platform's words, the rest of the run
goes out, and the remove is retried on its back-off (or at once when the person acts), not on
every run. A privacy removal a platform refuses keeps its request open, with the reason."""

from __future__ import annotations

import json
import os
from datetime import datetime, timedelta
from pathlib import Path

import dagster as dg

from orchestrator.privacy.receipts import receipt_for
from orchestrator.privacy.requests import record_request
from orchestrator.pseudonymize import subject_key
from orchestrator.sync.engine import run_sync
from orchestrator.sync.rejections import REMOVE_RETRY_FIRST_S
from orchestrator.warehouse.target import Warehouse, WarehouseTarget
from tests.cli.conftest import run_activation
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

TOO_LOW = {
    "error": {
        "message": "Audience Size too low",
        "type": "OAuthException",
        "code": 2650,
        "error_subcode": 1870034,
        "fbtrace_id": "MockAudienceSizeTooLow",
    }
}


def refuse_meta_deletes(mock, times: int = 1) -> None:
    match = {"method": "DELETE", "path": f"{META_AUD}/users$"}
    mock.add_fault("meta", match, {"type": "status", "status": 400, "body": TOO_LOW}, times=times)


def deletes_since(mock, since: int) -> list[dict]:
    return [e for e in mock.requests_log("meta")[since:] if e["method"] == "DELETE"]


def move_out(wh, ids: list[int]) -> None:
    sql(wh, "UPDATE customers SET country = 'DE' WHERE list_contains(?, customer_id)", [ids])


def _dry_run(wh: Warehouse, as_of: datetime) -> dict:
    """What a dry run of the ads segment's Meta sync reports: ``activation preview`` on a
    DuckDB file; on PostgreSQL (where that command is not wired yet) the same dry run of the
    sync engine, which the command reports."""
    if not isinstance(wh, WarehouseTarget):
        preview = run_activation("preview", ADS, "--format", "json", "--as-of", as_of.isoformat())
        assert preview.returncode == 0, preview.stderr
        (dest,) = json.loads(preview.stdout)[0]["destinations"]
        return dest
    report = run_sync(
        wh, Path(os.environ["ACTIVATION_STATE_DIR"]), segment=ADS, destination="meta_ads",
        audience_id=META_AUD, mode="mirror", fields={}, kind="ad", dry_run=True, as_of=as_of,
        purpose="ad_targeting",
    )  # fmt: skip
    return {"removes_deferred": report.removes_deferred, "removes": report.removes,
            "stuck": report.stuck}  # fmt: skip


@both_backends
def test_audience_size_too_low_is_recorded_the_adds_go_out_and_the_delete_backs_off(
    answers_env, mock_destinations
) -> None:
    mock = mock_destinations
    emails = dict(enumerate(synthetic_emails(125), start=1))
    first = {cid: e for cid, e in emails.items() if cid <= 120}
    project = answers_env(mock, emails, ads_mode="mirror")
    wh = project.warehouse
    move_out(wh, list(range(121, 126)))  # the 5 who join later
    with dg.DagsterInstance.get() as instance:
        run_job(instance)
        assert len(mock.meta_members(META_AUD)) == 120
        leaving = list(range(1, 31))
        move_out(wh, leaving)
        sql(wh, "UPDATE customers SET country = 'FR' WHERE customer_id > 120")
        refuse_meta_deletes(mock)
        mark = len(mock.requests_log("meta"))
        result = run_job(instance, AS_OF + timedelta(hours=1))
        assert result.success
        held = set(mock.meta_members(META_AUD))
        assert {subject_key(emails[c]) for c in range(121, 126)} <= held  # adds went out
        assert len(held) == 125  # the 30 are still there: the platform refused
        rows = sql(
            wh,
            "SELECT reason, permanent, attempts, retry_at FROM activation.sync_rejections "
            "WHERE operation = 'remove' AND segment = ?",
            [ADS],
        )
        assert len(rows) == 30
        assert all("Audience Size too low" in r[0] and "2650" in r[0] for r in rows)
        assert {r[2] for r in rows} == {1}
        first_retry = AS_OF + timedelta(hours=1, seconds=REMOVE_RETRY_FIRST_S)
        assert {r[3] for r in rows} == {first_retry}
        meta = sync_metadata(result, ADS, "meta_ads")
        assert meta["stuck_rows"] == 30 and "Audience Size too low" in meta["stuck"]
        # the dry run says what is stuck and why, and that it would not resend it yet
        dest = _dry_run(wh, AS_OF + timedelta(hours=1, minutes=10))
        assert dest["removes_deferred"] == 30 and dest["removes"] == 0
        assert "Audience Size too low" in dest["stuck"][0]["reason"]

        # within the back-off: nothing resent, said so
        assert len(deletes_since(mock, mark)) == 1  # one refused DELETE, not a retry loop
        mark = len(mock.requests_log("meta"))
        soon = run_job(instance, AS_OF + timedelta(hours=1, minutes=20))
        assert deletes_since(mock, mark) == []
        assert sync_metadata(soon, ADS, "meta_ads")["removes_deferred"] == 30

        # after it: sent again (the platform takes it now), state and rejections clear
        run_job(instance, AS_OF + timedelta(hours=2, minutes=5))
    assert mock.meta_members(META_AUD) == sorted(
        subject_key(e) for c, e in emails.items() if c > 30
    )
    assert sql(wh, "SELECT count(*) FROM activation.sync_rejections") == [(0,)]
    assert len(first) == 120


@both_backends
def test_a_refused_archive_backs_off_doubling_and_the_other_removes_go_out(
    answers_env, mock_destinations
) -> None:
    mock = mock_destinations
    emails = dict(enumerate(synthetic_emails(6), start=1))
    project = answers_env(mock, emails, mail_mode="mirror")
    wh = project.warehouse
    stuck = emails[2]
    with dg.DagsterInstance.get() as instance:
        run_job(instance)
        move_out(wh, [2, 3])
        refusal = {"type": "status", "status": 400}
        match = {"method": "DELETE", "path": f"members/{md5(stuck)}$"}
        mock.add_fault("mailchimp", match, refusal, times=2)
        run_job(instance, AS_OF + timedelta(hours=1))
        members = {m["hash"]: m["status"] for m in mock.mailchimp_members(LIST)}
        assert members[md5(emails[3])] == "archived" and members[md5(stuck)] == "subscribed"
        (attempts, retry_at) = sql(wh, "SELECT attempts, retry_at FROM activation.sync_rejections")[
            0
        ]
        assert (attempts, retry_at) == (1, AS_OF + timedelta(hours=2))
        # retried after the first hour, refused again: the wait doubles
        run_job(instance, AS_OF + timedelta(hours=2, minutes=1))
        (attempts, retry_at) = sql(wh, "SELECT attempts, retry_at FROM activation.sync_rejections")[
            0
        ]
        assert (attempts, retry_at) == (2, AS_OF + timedelta(hours=4, minutes=1))
        mark = len(mock.requests_log("mailchimp"))
        run_job(instance, AS_OF + timedelta(hours=3))
        assert [e for e in mock.requests_log("mailchimp")[mark:] if e["method"] == "DELETE"] == []
        run_job(instance, AS_OF + timedelta(hours=4, minutes=2))
    members = {m["hash"]: m["status"] for m in mock.mailchimp_members(LIST)}
    assert members[md5(stuck)] == "archived"


@both_backends
def test_a_refused_remove_is_sent_at_once_when_the_person_withdraws(
    answers_env, mock_destinations
) -> None:
    mock = mock_destinations
    emails = dict(enumerate(synthetic_emails(6), start=1))
    project = answers_env(mock, emails, mail_mode="mirror")
    wh = project.warehouse
    person = emails[2]
    with dg.DagsterInstance.get() as instance:
        run_job(instance)
        move_out(wh, [2])
        match = {"method": "DELETE", "path": f"members/{md5(person)}$"}
        mock.add_fault("mailchimp", match, {"type": "status", "status": 400})
        run_job(instance, AS_OF + timedelta(hours=1))
        assert sql(wh, "SELECT remove_reason FROM activation.sync_rejections") == [
            ("left_segment",)
        ]
        # their situation changes within the back-off: the withdrawal goes out now
        withdraw(wh, 2, "email_marketing", AS_OF + timedelta(hours=1, minutes=5))
        run_job(instance, AS_OF + timedelta(hours=1, minutes=10))
    members = {m["hash"]: m["status"] for m in mock.mailchimp_members(LIST)}
    assert members[md5(person)] == "unsubscribed"
    assert sql(wh, "SELECT count(*) FROM activation.sync_rejections") == [(0,)]
    assert (subject_key(person),) not in sql(
        wh, "SELECT subject_key FROM activation.sync_state WHERE segment = ?", [MAIL]
    )


@both_backends
def test_a_privacy_removal_the_platform_refuses_keeps_the_request_open_with_its_words(
    answers_env, mock_destinations
) -> None:
    mock = mock_destinations
    emails = dict(enumerate(synthetic_emails(5), start=1))
    project = answers_env(mock, emails)
    wh = project.warehouse
    with dg.DagsterInstance.get() as instance:
        run_job(instance)
        request_id = record_request(wh, emails[1], "objection")
        refuse_meta_deletes(mock, times=5)
        run_job(instance, AS_OF + timedelta(hours=1), raise_on_error=False)
        receipt = receipt_for(wh, request_id)
        assert not receipt["complete"]
        meta_line = next(d for d in receipt["destinations"] if d["destination"] == "meta_ads")
        assert meta_line["outcome"] == "refused"
        assert "Audience Size too low" in meta_line["detail"]
        assert subject_key(emails[1]) in mock.meta_members(META_AUD)
        mock.clear_faults("meta")
        run_job(instance, AS_OF + timedelta(hours=2))
    assert receipt_for(wh, request_id)["complete"]
    assert subject_key(emails[1]) not in mock.meta_members(META_AUD)
