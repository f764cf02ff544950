"""GoogleAudienceClient against the Google-shaped mock (real HTTP): members Google names in a
400 are refused and the rest sent, quota 429s wait the RetryInfo delay, raw identifiers never
leave, removals carry no consent, a request still processing gives no result."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator

import pytest

from destinations.base import RemoveReason, Row
from destinations.errors import EmptyIdentifierError
from destinations.google import GoogleAudienceClient
from destinations.http import RetryPolicy
from destinations.mock.testing import MockHandle, running_mock

AUDIENCE = "777"
FAST = RetryPolicy(max_attempts=3, backoff_multiplier=0.01, backoff_max=0.05, read_timeout=5)
GRANTED = {"ad_user_data": "CONSENT_GRANTED", "ad_personalization": "CONSENT_DENIED"}


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def row(name: str, fields: dict | None = None) -> Row:
    return Row(sha(f"subject-{name}"), sha(name), GRANTED if fields is None else fields)


@pytest.fixture(scope="module")
def mock(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MockHandle]:
    with running_mock(tmp_path_factory.mktemp("mock_google_client")) as handle:
        yield handle


@pytest.fixture(autouse=True)
def _clean(mock: MockHandle) -> None:
    mock.reset()


def client(mock: MockHandle, **kw) -> GoogleAudienceClient:
    kw.setdefault("policy", FAST)
    kw.setdefault("poll_interval_s", 0.02)
    return GoogleAudienceClient("google_ads", mock.google_url, mock.google_token,
                                account_id="123", **kw)  # fmt: skip


def test_add_sends_per_member_consent_and_remove_sends_none(mock: MockHandle) -> None:
    with client(mock) as c:
        results = c.add(AUDIENCE, [row("a"), row("b")])
        assert [r.ok for r in results] == [True, True]
        held = mock.google_members(AUDIENCE)
        assert held[0]["consent"] == {
            "adUserData": "CONSENT_GRANTED",
            "adPersonalization": "CONSENT_DENIED",
        }
        removed = c.remove(AUDIENCE, [row("a")], RemoveReason.ERASURE)
    assert [r.ok for r in removed] == [True]
    removal = [r for r in mock.requests_log("google") if r["path"].endswith(":remove")]
    assert len(removal) == 1
    assert [m["identifiers"] for m in mock.google_members(AUDIENCE)] == [[sha("b")]]


def test_eea_member_without_consent_is_refused_and_the_others_are_sent(mock: MockHandle) -> None:
    mock.google_eea_users([sha("eu")])
    with client(mock) as c:
        results = c.add(AUDIENCE, [row("a"), row("eu", {}), row("b")])
    by_key = {r.subject_key: r for r in results}
    refused = by_key[sha("subject-eu")]
    assert not refused.ok and refused.permanent and "REQUIRED_FIELD_MISSING" in refused.reason
    assert by_key[sha("subject-a")].ok and by_key[sha("subject-b")].ok
    assert [m["identifiers"] for m in mock.google_members(AUDIENCE)] == sorted(
        [[sha("a")], [sha("b")]]
    )


def test_quota_429_waits_the_retry_delay_then_succeeds(mock: MockHandle) -> None:
    mock.add_fault("google", {"path": "ingest"},
                   {"type": "status", "status": 429, "retry_delay_s": 0.3})  # fmt: skip
    slept: list[float] = []
    with client(mock) as c:
        c._http._sleep = slept.append  # record the waits instead of sleeping
        results = c.add(AUDIENCE, [row("a")])
    assert [r.ok for r in results] == [True]
    assert slept[0] == pytest.approx(0.3)
    assert c.stats.retries == 1 and c.stats.throttled_seconds == pytest.approx(0.3)


def test_raw_identifiers_are_refused_unsent(mock: MockHandle) -> None:
    with client(mock) as c:
        results = c.add(AUDIENCE, [Row(sha("k"), "someone@example.com", GRANTED)])
    assert not results[0].ok and results[0].permanent
    assert mock.requests_log("google") == []
    assert mock.violations("google")["raw_identifier"] == 0


def test_request_still_processing_gives_no_result_and_is_handed_over(mock: MockHandle) -> None:
    mock.google_settings(processing_delay_s=5)
    with client(mock, status_wait_s=0.1) as c:
        results = c.add(AUDIENCE, [row("a"), row("b")])
        submitted = c.take_submitted()
    assert results == []
    assert len(submitted) == 1 and [r.send_key for r in submitted[0].rows] == [sha("a"), sha("b")]
    assert c.take_submitted() == []


def test_size_and_targetable_as_google_reports_them(mock: MockHandle) -> None:
    with client(mock) as c:
        c.add(AUDIENCE, [row(str(i)) for i in range(99)])
        assert (c.member_count(AUDIENCE), c.targetable(AUDIENCE)) == (99, False)
        c.add(AUDIENCE, [row("hundredth")])
        assert (c.member_count(AUDIENCE), c.targetable(AUDIENCE)) == (100, True)


def test_a_row_naming_nobody_stops_the_call_before_anything_is_sent(mock: MockHandle) -> None:
    with client(mock) as google, pytest.raises(EmptyIdentifierError):
        google.remove("list1", [row("a"), Row("f" * 64, "")], RemoveReason.CONSENT_WITHDRAWN)
    assert mock.requests_log("google") == []
