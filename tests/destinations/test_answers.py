"""Clients against the mock platforms: what a row's result says comes from the answer, removes
name the contact by what the platform holds, and nothing names nobody."""

from __future__ import annotations

import hashlib

import pytest

from destinations.base import RemoveReason, Row
from destinations.errors import EmptyIdentifierError
from destinations.http import RetryPolicy
from destinations.mailchimp import MailchimpClient
from destinations.meta import MetaAudienceClient

FAST = RetryPolicy(max_attempts=2, backoff_multiplier=0.01, backoff_max=0.02)


def key(i: int) -> str:
    return hashlib.sha256(f"person{i}".encode()).hexdigest()


def md5(email: str) -> str:
    return hashlib.md5(email.encode(), usedforsecurity=False).hexdigest()


@pytest.fixture
def meta(mock_destinations):
    with MetaAudienceClient(
        "meta_ads", mock_destinations.meta_url, mock_destinations.meta_token, policy=FAST
    ) as client:
        yield client


@pytest.fixture
def chimp(mock_destinations):
    with MailchimpClient(
        "mailchimp", mock_destinations.mailchimp_url, mock_destinations.mailchimp_token, policy=FAST
    ) as client:
        yield client


def test_no_client_sends_an_empty_identifier(meta, chimp, mock_destinations) -> None:
    with pytest.raises(EmptyIdentifierError):
        meta.remove("a1", [Row(key(1), "")], RemoveReason.CONSENT_WITHDRAWN)
    with pytest.raises(EmptyIdentifierError):
        chimp.remove("l1", [Row(key(1), "", {}, None)], RemoveReason.CONSENT_WITHDRAWN)
    with pytest.raises(EmptyIdentifierError):
        chimp.add("l1", [Row(key(1), "")])
    assert mock_destinations.requests_log("meta") == []
    assert mock_destinations.requests_log("mailchimp") == []


def test_an_unsubscribe_without_an_address_goes_by_member_id(chimp, mock_destinations) -> None:
    email = "moved.away@example.com"
    chimp.add("l1", [Row(key(1), email)])
    (result,) = chimp.remove("l1", [Row(key(1), "", {}, md5(email))], RemoveReason.OBJECTION)
    assert result.ok and result.status == "unsubscribed"
    (member,) = mock_destinations.mailchimp_members("l1")
    assert member["status"] == "unsubscribed"
    (patch,) = [e for e in mock_destinations.requests_log("mailchimp") if e["method"] == "PATCH"]
    assert patch["path"].endswith(md5(email))


def test_mailchimp_results_follow_each_members_final_status(chimp, mock_destinations) -> None:
    emails = [f"p{i}@example.com" for i in range(5)]
    rows = [Row(key(i), e) for i, e in enumerate(emails)]
    keep = {emails[0]: "unsubscribed", emails[1]: "cleaned"}
    action = {"type": "answer", "keep": keep, "omit": [emails[2]]}
    mock_destinations.add_fault("mailchimp", {"method": "POST"}, action)
    results = chimp.add("l2", rows)
    kept_unsub, kept_cleaned, ignored, ok3, ok4 = results
    assert not kept_unsub.ok and kept_unsub.permanent and kept_unsub.status == "unsubscribed"
    assert not kept_cleaned.ok and kept_cleaned.status == "cleaned"
    assert not ignored.ok and ignored.unknown
    assert ok3.ok and ok4.ok


def test_meta_refusing_a_delete_for_the_audience_refuses_each_row(meta, mock_destinations) -> None:
    rows = [Row(key(i), key(i)) for i in range(3)]
    meta.add("a2", rows)
    body = {"error": {"message": "Audience Size too low", "code": 2650, "type": "OAuthException"}}
    fault = {"type": "status", "status": 400, "body": body}
    mock_destinations.add_fault("meta", {"method": "DELETE"}, fault)
    results = meta.remove("a2", rows, RemoveReason.LEFT_SEGMENT)
    assert all(not r.ok and r.permanent and "Audience Size too low" in r.reason for r in results)
    assert len(mock_destinations.meta_members("a2")) == 3
