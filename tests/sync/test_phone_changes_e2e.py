"""A member's identifier set changes after they were sent (a phone added, changed or removed):
the next run of the real job sends the new set to Meta and Google, and takes the old set out
with the very identifiers (and payload schema) it was added with.

Meta matches a member by any key of a multi-key row and has no "update" of a member's keys;
Google keys a member by its identifiers. So a changed set is a re-key: remove what the platform
holds, add the new set (:mod:`orchestrator.sync.diff`, action ``rekey``).
"""

from __future__ import annotations

import dagster as dg

from destinations.mock.testing import running_mock
from orchestrator.phone import google_phone_hash, meta_phone_hash
from orchestrator.pseudonymize import google_key, subject_key
from tests.sync.answers_project import GOOGLE_AUD, META_AUD, run_job, sql, synthetic_emails

PHONE_A, PHONE_B, PHONE_C = "06 12 34 56 78", "+33 6 98 76 54 32", "07.81.22.33.44"


def _phones(wh, phones: dict[int, str | None]) -> None:
    for cid, phone in phones.items():
        sql(wh, "UPDATE customers SET phone = ? WHERE customer_id = ?", [phone, cid])


def _meta_sends(mock, since: int, method: str) -> list[list[str]]:
    """The [email, phone] rows (or [email]) Meta was sent by ``method`` since log id ``since``."""
    rows = []
    for entry in mock.requests_log("meta", since_id=since):
        if entry["method"] == method and entry["status"] == 200:
            rows.append(entry["values"])
    return rows


def test_a_changed_identifier_set_reaches_meta_and_google(
    answers_env, tmp_path, dagster_home
) -> None:
    emails = dict(enumerate(synthetic_emails(4, seed=1604), start=1))
    with running_mock(tmp_path / "mock") as mock:
        project = answers_env(mock, emails, google=True)
        wh = project.warehouse
        # 1 has no phone yet, 2 and 3 have one, 4 never has one
        _phones(wh, {2: PHONE_A, 3: PHONE_B})
        with dg.DagsterInstance.get() as instance:
            assert run_job(instance).success
            first = mock.requests_log("meta")[-1]["id"]
            held_before = {m["identifiers"][0]: m for m in mock.google_members(GOOGLE_AUD)}
            # 1 gets a phone, 2's phone changes, 3's phone is removed
            _phones(wh, {1: PHONE_C, 2: PHONE_B, 3: None})
            assert run_job(instance).success
        meta = {cid: subject_key(e) for cid, e in emails.items()}
        meta_phone = {p: meta_phone_hash(p, "FR") for p in (PHONE_A, PHONE_B, PHONE_C)}
        adds = [v for values in _meta_sends(mock, first, "POST") for v in values]
        removes = [v for values in _meta_sends(mock, first, "DELETE") for v in values]
        # Meta: the new phones were sent with their member's email hash
        assert meta_phone[PHONE_C] in adds and meta[1] in adds
        assert meta_phone[PHONE_B] in adds and meta[2] in adds
        # ...and the old identifier sets were removed with the phone they were added with
        assert meta_phone[PHONE_A] in removes and meta[2] in removes
        assert meta_phone[PHONE_B] in removes and meta[3] in removes
        assert meta[4] not in adds + removes  # unchanged members are not sent again
        assert mock.meta_members(META_AUD) == sorted(meta.values())
        # Google: each member held with exactly its current identifiers, nothing left over
        google = {cid: google_key(e) for cid, e in emails.items()}
        expected = {
            google[1]: sorted([google[1], google_phone_hash(PHONE_C, "FR")]),
            google[2]: sorted([google[2], google_phone_hash(PHONE_B, "FR")]),
            google[3]: [google[3]],
            google[4]: [google[4]],
        }
        held = {
            next(i for i in m["identifiers"] if i in expected): m["identifiers"]
            for m in mock.google_members(GOOGLE_AUD)
        }
        assert held == expected
        assert any(
            google_phone_hash(PHONE_A, "FR") in m["identifiers"] for m in held_before.values()
        )
        assert mock.violations("meta")["raw_identifier"] == 0
        assert mock.violations("google")["raw_identifier"] == 0
        # the state names each member by the set the platforms now hold
        refs = dict(
            sql(
                wh,
                "SELECT subject_key, destination_ref FROM activation.sync_state "
                "WHERE destination = 'meta_ads'",
            )
        )
        assert refs[meta[1]] == f"{meta[1]}|{meta_phone[PHONE_C]}"
        assert refs[meta[3]] in (None, meta[3])
