"""MailchimpClient against the mock Mailchimp server: batching, member errors, removal reasons,
retries and auth."""

from __future__ import annotations

import hashlib
import json

import pytest
from faker import Faker

from destinations.base import RemoveReason, Row
from destinations.errors import AuthError
from destinations.http import RetryPolicy
from destinations.mailchimp import MailchimpClient, subscriber_hash
from destinations.mock.testing import running_mock

FAST = RetryPolicy(
    max_attempts=4,
    max_total_wait=5.0,
    backoff_multiplier=0.05,
    backoff_max=0.2,
    max_hint_wait=2.0,
    connect_timeout=2.0,
    read_timeout=2.0,
)


def emails(n: int, seed: int = 7) -> list[str]:
    fake = Faker()
    fake.seed_instance(seed)
    out: list[str] = []
    while len(out) < n:
        address = f"{fake.user_name()}.{len(out)}@example.org"
        out.append(address)
    return out


def row(email: str, **fields: str) -> Row:
    key = hashlib.sha256(email.encode()).hexdigest()
    return Row(subject_key=key, send_key=email, fields=fields or {"FNAME": "Ada"})


@pytest.fixture(scope="module")
def mock(tmp_path_factory):
    with running_mock(tmp_path_factory.mktemp("mailchimp_mock")) as handle:
        yield handle


@pytest.fixture
def client(mock):
    mock.reset("mailchimp")
    with MailchimpClient("mailchimp", mock.mailchimp_url, mock.mailchimp_token, policy=FAST) as c:
        yield c


def statuses(mock, list_id: str) -> dict[str, str]:
    return {m["hash"]: m["status"] for m in mock.mailchimp_members(list_id)}


def test_501_members_go_in_two_calls_with_member_ids(client, mock):
    batch = [row(e) for e in emails(501)]
    results = client.add("list1", batch)
    assert all(r.ok for r in results)
    assert [r.destination_ref for r in results] == [subscriber_hash(r.send_key) for r in batch]
    sizes = [len(r["values"]) for r in mock.requests_log("mailchimp") if r["method"] == "POST"]
    assert sizes == [500, 1]
    assert (client.stats.calls, client.stats.retries) == (2, 0)
    assert client.member_count("list1") == 501
    assert set(statuses(mock, "list1").values()) == {"subscribed"}


def test_member_errors_come_back_per_row(client, mock):
    good, flaky, other = emails(3)
    mock.add_fault(
        "mailchimp",
        {"method": "POST"},
        {"type": "reject_rows", "values": [flaky], "error": "Temporary member error"},
    )
    results = client.add("list2", [row(good), row(flaky), row("not-an-address"), row(other)])
    assert [r.ok for r in results] == [True, False, False, True]
    assert (results[1].reason, results[1].permanent) == (
        "Temporary member error (ERROR_GENERIC)",
        False,
    )
    assert results[2].permanent and "fake or invalid" in results[2].reason


def test_compliance_state_refusal_is_permanent_and_reason_has_no_address(client, mock):
    gone, fresh = emails(2)
    mock.seed(
        "mailchimp",
        {"list_id": "list3", "members": [{"email_address": gone, "status": "unsubscribed"}]},
    )
    results = client.add("list3", [row(gone), row(fresh)])
    assert not results[0].ok and results[0].permanent
    assert "compliance state" in results[0].reason and "@" not in results[0].reason
    assert results[1].ok
    assert statuses(mock, "list3")[subscriber_hash(gone)] == "unsubscribed"


def test_forgotten_contact_cannot_be_re_added(client, mock):
    (erased,) = emails(1, seed=11)
    seed = {"list_id": "list4", "members": [{"email_address": erased, "status": "forgotten"}]}
    mock.seed("mailchimp", seed)
    (result,) = client.add("list4", [row(erased)])
    assert not result.ok and result.permanent and "Forgotten" in result.reason


def test_update_changes_merge_fields(client, mock):
    (address,) = emails(1, seed=12)
    client.add("list5", [row(address, FNAME="Ada")])
    assert client.update("list5", [row(address, FNAME="Grace")])[0].ok
    (member,) = mock.mailchimp_members("list5")
    assert (member["merge_fields"]["FNAME"], member["status"]) == ("Grace", "subscribed")


def test_remove_reasons_archive_unsubscribe_or_erase(client, mock):
    left, withdrew, objected, erased, stranger = emails(5, seed=13)
    client.add("list6", [row(e) for e in (left, withdrew, objected, erased)])
    by_ref = Row(
        subject_key=row(left).subject_key, send_key=left, destination_ref=subscriber_hash(left)
    )
    assert client.remove("list6", [by_ref], RemoveReason.LEFT_SEGMENT)[0].ok
    assert client.remove("list6", [row(withdrew)], RemoveReason.CONSENT_WITHDRAWN)[0].ok
    assert client.remove("list6", [row(objected)], RemoveReason.OBJECTION)[0].ok
    assert client.remove("list6", [row(erased)], RemoveReason.ERASURE)[0].ok
    found = {m["hash"]: m for m in mock.mailchimp_members("list6")}
    assert found[subscriber_hash(left)]["status"] == "archived"
    assert found[subscriber_hash(withdrew)]["status"] == "unsubscribed"
    assert found[subscriber_hash(objected)]["status"] == "unsubscribed"
    assert found[subscriber_hash(erased)]["status"] == "forgotten"
    assert found[subscriber_hash(erased)]["email_address"] is None
    assert client.member_count("list6") == 0
    # absent members: archive and erase answer 404 = already gone; unsubscribe records it
    for reason in (RemoveReason.LEFT_SEGMENT, RemoveReason.ERASURE):
        assert client.remove("list6", [row(stranger)], reason)[0].ok
    assert client.remove("list6", [row(stranger)], RemoveReason.OBJECTION)[0].ok
    assert statuses(mock, "list6")[subscriber_hash(stranger)] == "unsubscribed"
    # unsubscribing again after erasure is refused by the platform but the person gets no email
    assert client.remove("list6", [row(erased)], RemoveReason.CONSENT_WITHDRAWN)[0].ok
    assert mock.violations("mailchimp")["resubscribe"] == 0
    assert mock.violations("mailchimp")["forgotten_resubscribe"] == 0


def test_429_without_retry_after_backs_off_with_jitter(client, mock):
    mock.add_fault("mailchimp", {"method": "POST"}, {"type": "status", "status": 429}, times=2)
    assert all(r.ok for r in client.add("list7", [row(e) for e in emails(3, seed=14)]))
    stats = client.stats
    assert (stats.calls, stats.retries) == (3, 2)
    assert 0 < stats.throttled_seconds <= 0.4


def test_timeout_after_apply_then_retry_applies_once(mock):
    mock.reset("mailchimp")
    policy = RetryPolicy(**{**FAST.__dict__, "read_timeout": 0.5})
    client = MailchimpClient("mailchimp", mock.mailchimp_url, mock.mailchimp_token, policy=policy)
    mock.add_fault("mailchimp", {"method": "POST"}, {"type": "timeout_after_apply", "seconds": 1.5})
    batch = [row(e) for e in emails(20, seed=15)]
    with client:
        assert all(r.ok for r in client.add("list8", batch))
    members = mock.mailchimp_members("list8")
    assert sorted(m["hash"] for m in members) == sorted(subscriber_hash(r.send_key) for r in batch)
    assert {m["status"] for m in members} == {"subscribed"}


def test_wrong_api_key_is_an_auth_error_without_the_key(mock):
    key = "0123456789abcdef0123456789abcdef-us21"
    client = MailchimpClient("mailchimp", mock.mailchimp_url, key, policy=FAST)
    with client, pytest.raises(AuthError) as info:
        client.add("list9", [row("someone@example.org")])
    text = str(info.value)
    assert key not in text and "@" not in text and "API Key Invalid" in text
    assert client.stats.calls == 1


def test_per_row_removals_propagate_auth_errors(mock):
    client = MailchimpClient("mailchimp", mock.mailchimp_url, "wrong", policy=FAST)
    with client, pytest.raises(AuthError):
        client.remove("list10", [row("someone@example.org")], RemoveReason.ERASURE)
    (logged,) = mock.requests_log("mailchimp")[-1:]
    assert logged["path"].endswith(
        f"{subscriber_hash('someone@example.org')}/actions/delete-permanent"
    )
    assert "@" not in json.dumps(logged)
