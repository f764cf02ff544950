"""Throttling obeyed exactly: the longest hint of an answer, a hint of 0 still backs off, a
hint past the cap gives up without sending early and says when to retry."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from destinations.errors import ThrottledError
from tests.destinations.test_client_http import OK, make_client, meta_error


def usage(minutes: float) -> str:
    return json.dumps(
        {
            "act_1": [
                {
                    "type": "custom_audience",
                    "call_count": 100,
                    "estimated_time_to_regain_access": minutes,
                }
            ]
        }
    )


@pytest.mark.parametrize(
    ("headers", "body", "least"),
    [
        # Retry-After seconds beside a longer Meta usage hint: the longer one wins
        ({"Retry-After": "2", "X-Business-Use-Case-Usage": usage(0.05)}, b"", 3.0),
        # X-App-Usage, longer than Retry-After
        (
            {
                "Retry-After": "1",
                "X-App-Usage": json.dumps({"estimated_time_to_regain_access": 0.1}),
            },
            b"",
            6.0,
        ),
        # an HTTP-date Retry-After (at least 9 s from now)
        (
            {
                "Retry-After": (datetime.now(UTC) + timedelta(seconds=600)).strftime(
                    "%a, %d %b %Y %H:%M:%S GMT"
                )
            },
            b"",
            9.0,
        ),
        # Mailchimp's 429 problem document naming a delay in its detail
        (
            {"Content-Type": "application/problem+json"},
            json.dumps(
                {
                    "title": "Too Many Requests",
                    "status": 429,
                    "detail": "Please retry in 4 seconds.",
                }
            ).encode(),
            4.0,
        ),
        # Google's 429 RESOURCE_EXHAUSTED with RetryInfo, longer than a Retry-After beside it
        (
            {"Retry-After": "1", "Content-Type": "application/json"},
            json.dumps(
                {
                    "error": {
                        "code": 429,
                        "status": "RESOURCE_EXHAUSTED",
                        "message": "Quota exceeded.",
                        "details": [
                            {
                                "@type": "type.googleapis.com/google.rpc.RetryInfo",
                                "retryDelay": "5s",
                            }
                        ],
                    }
                }
            ).encode(),
            5.0,
        ),
    ],
)
def test_the_wait_is_at_least_the_longest_hint(headers, body, least):
    client, _, slept = make_client(
        [(429, headers, body), OK], max_total_wait=3600, max_hint_wait=3600
    )
    client.request("POST", "http://x/v19.0/1/users", json_body={})
    assert len(slept) == 1 and slept[0] >= least


def test_a_meta_throttle_code_with_usage_hint_and_retry_after_waits_the_longer():
    headers = {"Retry-After": "1", "X-Business-Use-Case-Usage": usage(0.1)}
    client, _, slept = make_client(
        [(400, headers, meta_error(80003, "slow")), OK], max_total_wait=60
    )
    client.request("DELETE", "http://x/v19.0/1/users", json_body={})
    assert slept and slept[0] >= 6.0


def test_a_hint_of_zero_still_gets_jittered_backoff():
    steps = [(429, {"Retry-After": "0"}, b"")] * 6 + [OK]
    client, _, slept = make_client(
        steps, max_attempts=8, backoff_multiplier=1.0, backoff_max=64.0, max_total_wait=10_000
    )
    client.request("POST", "http://x/v19.0/1/users", json_body={})
    assert len(slept) == 6 and all(s >= 0 for s in slept)
    # exponential with full jitter: waits are random in [0, 2^n]; six draws all under the
    # smallest possible ceiling would be a burst
    assert max(slept) > 1.0 and len(set(slept)) > 1


def test_a_hint_longer_than_the_cap_gives_up_without_sending_early():
    client, adapter, slept = make_client(
        [(429, {"Retry-After": "7200"}, b""), OK], max_hint_wait=600, max_total_wait=10_000
    )
    before = datetime.now(UTC)
    with pytest.raises(ThrottledError) as info:
        client.request("POST", "http://x/v19.0/1/users", json_body={})
    assert slept == [] and len(adapter.requests) == 1  # nothing sent before the hint
    error = info.value
    assert error.retry_at is not None
    assert error.retry_at >= before + timedelta(seconds=7199)
    assert "retry after" in str(error) and "7200" in str(error)


def test_a_hint_past_the_total_budget_says_when_to_retry():
    headers = {"X-Business-Use-Case-Usage": usage(30)}
    client, _, slept = make_client(
        [(400, headers, meta_error(80004, "Too many")), OK], max_total_wait=5.0, max_hint_wait=3600
    )
    with pytest.raises(ThrottledError) as info:
        client.request("POST", "http://x/v19.0/1/users", json_body={})
    assert slept == []
    assert info.value.retry_at is not None and "retry after" in str(info.value)
