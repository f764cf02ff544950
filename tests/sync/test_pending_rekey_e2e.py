"""A member whose identifier set changes while an earlier send of another set may have landed
(its outcome unknown: an unconfirmed answer, a Google request still processing) or while the
remove of an old set was refused: every set the platform may hold is removed as it was added,
and the state keeps an old set until its remove is acknowledged (:mod:`orchestrator.sync.diff`,
:mod:`orchestrator.sync.state`). Through the real job and the mock platforms.
"""

from __future__ import annotations

import time
from datetime import timedelta

import dagster as dg

from destinations.mock.testing import running_mock
from orchestrator.phone import google_phone_hash, meta_phone_hash
from orchestrator.pseudonymize import google_key, subject_key
from orchestrator.sync.diff import PENDING_HASH
from tests.postgres import both_backends
from tests.sync.answers_project import (
    AS_OF,
    GOOGLE_AUD,
    META_AUD,
    run_job,
    sql,
    synthetic_emails,
)

PHONE_A, PHONE_B, PHONE_C = "06 12 34 56 78", "+33 6 98 76 54 32", "07.81.22.33.44"


def _phones(wh, phones: dict[int, str | None]) -> None:
    for cid, phone in phones.items():
        sql(wh, "UPDATE customers SET phone = ? WHERE customer_id = ?", [phone, cid])


def _meta_values(mock, since: int, method: str) -> list[str]:
    """The identifier hashes (email, then phone when sent, per row) Meta was sent by ``method``
    since log id ``since`` and answered 200."""
    values: list[str] = []
    for entry in mock.requests_log("meta", since_id=since):
        if entry["method"] == method and entry["status"] == 200:
            values += entry["values"]
    return values


def _state(wh, destination: str) -> dict[str, tuple[str | None, str]]:
    rows = sql(
        wh,
        "SELECT subject_key, destination_ref, fields_hash FROM activation.sync_state "
        "WHERE destination = ?",
        [destination],
    )
    return {k: (ref, h) for k, ref, h in rows}


def _retired(wh, destination: str) -> list[tuple[str, str]]:
    return sorted(
        sql(
            wh,
            "SELECT subject_key, identifiers FROM activation.sync_retired_keys "
            "WHERE destination = ?",
            [destination],
        )
    )


@both_backends
def test_meta_unconfirmed_add_then_changed_phone_removes_the_set_that_may_have_landed(
    answers_env, tmp_path, dagster_home
) -> None:
    emails = dict(enumerate(synthetic_emails(3, seed=1611), start=1))
    meta = {cid: subject_key(e) for cid, e in emails.items()}
    phone = {p: meta_phone_hash(p, "FR") for p in (PHONE_A, PHONE_B, PHONE_C)}
    with running_mock(tmp_path / "mock") as mock:
        project = answers_env(mock, emails, google=True)
        wh = project.warehouse
        _phones(wh, {2: PHONE_A})  # 1: email only; 2: email + phone A; 3: email only
        # Meta applies the add but answers with a body that is not its JSON: outcome unknown
        mock.add_fault(
            "meta", {"method": "POST", "path": f"{META_AUD}/users$"},
            {"type": "answer", "body": "truncated"},
        )  # fmt: skip
        with dg.DagsterInstance.get() as instance:
            run_job(instance, raise_on_error=False)
            held = _state(wh, "meta_ads")
            assert {h for _, h in held.values()} == {PENDING_HASH}
            since = mock.requests_log("meta")[-1]["id"]
            _phones(wh, {1: PHONE_C, 2: PHONE_B})  # 1 gets a phone, 2's phone changes
            assert run_job(instance).success
        removed = _meta_values(mock, since, "DELETE")
        added = _meta_values(mock, since, "POST")
        # the sets sent before (which Meta did apply) were removed as they were sent...
        assert meta[1] in removed
        assert meta[2] in removed and phone[PHONE_A] in removed
        # ...and the new sets added; the unchanged member is just confirmed
        assert meta[1] in added and phone[PHONE_C] in added
        assert meta[2] in added and phone[PHONE_B] in added
        assert meta[3] not in removed
        state = _state(wh, "meta_ads")
        assert state[meta[1]] == (f"{meta[1]}|{phone[PHONE_C]}", state[meta[1]][1])
        assert state[meta[2]][0] == f"{meta[2]}|{phone[PHONE_B]}"
        assert PENDING_HASH not in {h for _, h in state.values()}
        assert _retired(wh, "meta_ads") == []
        assert mock.meta_members(META_AUD) == sorted(meta.values())
        assert mock.violations("meta")["raw_identifier"] == 0


@both_backends
def test_google_request_still_processing_then_changed_phone_ends_with_the_new_set_only(
    answers_env, tmp_path, dagster_home
) -> None:
    emails = dict(enumerate(synthetic_emails(3, seed=1612), start=1))
    google = {cid: google_key(e) for cid, e in emails.items()}
    g_phone = {p: google_phone_hash(p, "FR") for p in (PHONE_A, PHONE_B)}
    with running_mock(tmp_path / "mock") as mock:
        project = answers_env(mock, emails, google=True)
        wh = project.warehouse
        _phones(wh, {2: PHONE_A})
        mock.google_settings(processing_delay_s=4.0)
        with dg.DagsterInstance.get() as instance:
            assert run_job(instance).success  # the ingest is still processing at the end
            submitted = time.monotonic()
            _phones(wh, {2: PHONE_B})
            mock.google_settings(processing_delay_s=0.0)
            assert run_job(instance).success  # still processing: the re-key waits for it
            time.sleep(max(0.0, 4.5 - (time.monotonic() - submitted)))
            assert run_job(instance).success
            assert run_job(instance).success
        held = {
            next(i for i in m["identifiers"] if i in google.values()): sorted(m["identifiers"])
            for m in mock.google_members(GOOGLE_AUD)
        }
        assert held == {
            google[1]: [google[1]],
            google[2]: sorted([google[2], g_phone[PHONE_B]]),
            google[3]: [google[3]],
        }
        assert _retired(wh, "google_ads") == []
        assert mock.violations("google")["raw_identifier"] == 0


@both_backends
def test_a_refused_remove_of_an_old_set_is_kept_and_retried_after_its_back_off(
    answers_env, tmp_path, dagster_home
) -> None:
    emails = dict(enumerate(synthetic_emails(3, seed=1613), start=1))
    meta = {cid: subject_key(e) for cid, e in emails.items()}
    phone = {p: meta_phone_hash(p, "FR") for p in (PHONE_A, PHONE_B)}
    old_set = f"{meta[2]}|{phone[PHONE_A]}"
    with running_mock(tmp_path / "mock") as mock:
        project = answers_env(mock, emails, google=True)
        wh = project.warehouse
        _phones(wh, {2: PHONE_A})
        with dg.DagsterInstance.get() as instance:
            assert run_job(instance).success
            _phones(wh, {2: PHONE_B})
            mock.add_fault(
                "meta", {"method": "DELETE", "path": f"{META_AUD}/users$"},
                {"type": "reject_rows", "values": [meta[2]]},
            )  # fmt: skip
            assert run_job(instance).success
            # the new set is held, and the old one is remembered with the refusal
            assert _state(wh, "meta_ads")[meta[2]][0] == f"{meta[2]}|{phone[PHONE_B]}"
            assert _retired(wh, "meta_ads") == [(meta[2], old_set)]
            (retry_at,) = sql(
                wh,
                "SELECT retry_at FROM activation.sync_rejections WHERE destination = 'meta_ads' "
                "AND operation = 'remove' AND subject_key = ?",
                [meta[2]],
            )[0]
            assert retry_at is not None
            since = mock.requests_log("meta")[-1]["id"]
            assert run_job(instance).success  # within the back-off: not sent again
            assert _meta_values(mock, since, "DELETE") == []
            assert _retired(wh, "meta_ads") == [(meta[2], old_set)]
            assert run_job(instance, as_of=AS_OF + timedelta(days=2)).success
        removed = _meta_values(mock, since, "DELETE")
        added = _meta_values(mock, since, "POST")
        assert removed == [meta[2], phone[PHONE_A]]
        # the member's current set is sent again after the old one went (Meta matches a
        # member by any key of the row)
        assert added == [meta[2], phone[PHONE_B]]
        assert _retired(wh, "meta_ads") == []
        assert (
            sql(
                wh,
                "SELECT count(*) FROM activation.sync_rejections WHERE destination = 'meta_ads'",
            )[0][0]
            == 0
        )
        assert mock.meta_members(META_AUD) == sorted(meta.values())


@both_backends
def test_erasure_removes_an_old_set_whose_remove_is_waiting_for_its_back_off(
    answers_env, tmp_path, dagster_home
) -> None:
    emails = dict(enumerate(synthetic_emails(3, seed=1614), start=1))
    meta = {cid: subject_key(e) for cid, e in emails.items()}
    phone = {p: meta_phone_hash(p, "FR") for p in (PHONE_A, PHONE_B)}
    with running_mock(tmp_path / "mock") as mock:
        project = answers_env(mock, emails, google=True)
        wh = project.warehouse
        _phones(wh, {2: PHONE_A})
        with dg.DagsterInstance.get() as instance:
            assert run_job(instance).success
            _phones(wh, {2: PHONE_B})
            mock.add_fault(
                "meta", {"method": "DELETE", "path": f"{META_AUD}/users$"},
                {"type": "reject_rows", "values": [meta[2]]},
            )  # fmt: skip
            assert run_job(instance).success
            since = mock.requests_log("meta")[-1]["id"]
            sql(
                wh,
                "INSERT INTO privacy_requests (request_id, customer_id, request_type, "
                "received_at) VALUES ('req-16-erase', 2, 'erasure', ?)",
                [AS_OF],
            )
            run_job(instance, raise_on_error=False)
        removed = _meta_values(mock, since, "DELETE")
        # both sets the person may be held under are removed at once, back-off or not
        assert meta[2] in removed
        assert phone[PHONE_A] in removed and phone[PHONE_B] in removed
        assert meta[2] not in _state(wh, "meta_ads")
        assert _retired(wh, "meta_ads") == []
