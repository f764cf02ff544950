"""Unit tests of the shared HTTP layer: classification, wait parsing, redaction, retry loop.

The retry loop runs against a scripted requests transport adapter (no server, no real sleep).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
import requests
from requests.adapters import BaseAdapter

from destinations.base import CallStats
from destinations.errors import AuthError, PermanentError, ThrottledError, TransientError
from destinations.http import (
    HttpClient,
    RetryPolicy,
    Verdict,
    classify,
    parse_retry_after,
    parse_usage_wait,
    redact,
    safe_path,
)

NOW = datetime(2026, 11, 29, 12, 0, 0, tzinfo=UTC)
TOKEN = "EAAB-secret-token-123"
HTML_502 = b"<html><head><title>502 Bad Gateway</title></head><body>nginx</body></html>"


def meta_error(code: int, message: str = "boom", **extra) -> bytes:
    return json.dumps({"error": {"code": code, "message": message, **extra}}).encode()


# --- wait parsing ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("7", 7.0),
        ("0.5", 0.5),
        (" 3 ", 3.0),
        ("-4", 0.0),
        ("Sun, 29 Nov 2026 12:00:30 GMT", 30.0),
        ("Sun, 29 Nov 2026 11:59:00 GMT", 0.0),
        ("soon", None),
        ("", None),
        (None, None),
    ],
)
def test_retry_after_seconds_and_http_date(value, expected):
    assert parse_retry_after(value, now=NOW) == expected


def test_business_use_case_usage_minutes_become_seconds():
    header = json.dumps(
        {
            "1234": [
                {
                    "type": "custom_audience",
                    "call_count": 100,
                    "estimated_time_to_regain_access": 2,
                },
                {"type": "ads_management", "call_count": 5, "estimated_time_to_regain_access": 0},
            ]
        }
    )
    assert parse_usage_wait({"x-business-use-case-usage": header}) == 120.0


def test_app_usage_minutes_and_unreadable_headers():
    assert parse_usage_wait({"X-App-Usage": '{"estimated_time_to_regain_access": 1.5}'}) == 90.0
    assert parse_usage_wait({"X-App-Usage": '{"call_count": 99}'}) is None
    assert parse_usage_wait({"X-Business-Use-Case-Usage": "not json"}) is None
    assert parse_usage_wait({}) is None


# --- classification ----------------------------------------------------------------------------


def test_429_with_retry_after_is_a_throttle_with_that_wait():
    c = classify(429, {"Retry-After": "2"}, b"")
    assert (c.verdict, c.throttled, c.wait_hint) == (Verdict.RETRY, True, 2.0)


@pytest.mark.parametrize("code", [4, 17, 32, 613, 80003, 80004])
def test_meta_throttle_codes_on_400_are_retried_with_usage_hint(code):
    usage = json.dumps({"1": [{"type": "custom_audience", "estimated_time_to_regain_access": 1}]})
    c = classify(400, {"X-Business-Use-Case-Usage": usage}, meta_error(code, "Too many calls"))
    assert (c.verdict, c.throttled, c.wait_hint) == (Verdict.RETRY, True, 60.0)
    assert f"code {code}" in c.message and "Too many calls" in c.message


def test_html_502_is_retried_without_parsing_crash_or_echo():
    c = classify(502, {"Content-Type": "text/html; charset=utf-8"}, HTML_502)
    assert c.verdict is Verdict.RETRY and not c.throttled and c.wait_hint is None
    assert "text/html" in c.message and "nginx" not in c.message


def test_503_retry_after_is_honoured():
    c = classify(503, {"Retry-After": "1"}, b"Service Unavailable")
    assert (c.verdict, c.wait_hint) == (Verdict.RETRY, 1.0)


def test_other_400_is_permanent_with_platform_words():
    c = classify(400, {}, meta_error(100, "Invalid parameter", error_subcode=1713230))
    assert c.verdict is Verdict.PERMANENT
    assert c.message == "Invalid parameter (code 100, subcode 1713230)"


def test_mailchimp_problem_detail_is_used():
    body = json.dumps(
        {"title": "Resource Not Found", "detail": "The list does not exist", "status": 404}
    )
    c = classify(404, {"Content-Type": "application/problem+json"}, body.encode())
    assert c.verdict is Verdict.PERMANENT
    assert c.message == "Resource Not Found: The list does not exist"


@pytest.mark.parametrize(
    ("status", "body"),
    [
        (401, b""),
        (403, b"<html>Forbidden</html>"),
        (400, meta_error(190, "Invalid OAuth access token")),
    ],
)
def test_auth_failures(status, body):
    assert classify(status, {}, body).verdict is Verdict.AUTH


def test_meta_transient_flag_and_accepted_status():
    assert (
        classify(400, {}, meta_error(2, "Service temporarily unavailable")).verdict is Verdict.RETRY
    )
    assert classify(400, {}, meta_error(99, "x", is_transient=True)).verdict is Verdict.RETRY
    assert classify(404, {}, b"", accept=(404,)).verdict is Verdict.OK
    assert classify(404, {}, b"").verdict is Verdict.PERMANENT


def test_redaction_blanks_emails_and_token_and_shortens_hashes():
    text = redact(f"jane.doe+x@example.com is in a compliance state; token {TOKEN}", (TOKEN,))
    assert "@" not in text and TOKEN not in text and "<email>" in text
    h = "a" * 64
    assert safe_path(f"http://h/v19.0/1/users/{h}?q=1") == "/v19.0/1/users/aaaaaaaa…"


# --- the retry loop against a scripted transport -------------------------------------------------


Step = tuple[int, dict[str, str], bytes] | Exception


class ScriptedAdapter(BaseAdapter):
    """Answers each request with the next scripted step (a response tuple or an exception)."""

    def __init__(self, steps: list[Step]) -> None:
        super().__init__()
        self.steps = list(steps)
        self.requests: list[requests.PreparedRequest] = []

    def send(self, request, **kwargs):
        self.requests.append(request)
        step = self.steps.pop(0)
        if isinstance(step, Exception):
            raise step
        status, headers, body = step
        response = requests.Response()
        response.status_code = status
        response.headers.update(headers)
        response._content = body
        response.request = request
        response.url = request.url
        return response

    def close(self):
        pass


def make_client(steps: list[Step], **policy) -> tuple[HttpClient, ScriptedAdapter, list[float]]:
    slept: list[float] = []
    defaults = {
        "max_attempts": 4,
        "max_total_wait": 5.0,
        "backoff_multiplier": 0.01,
        "backoff_max": 0.05,
    }
    client = HttpClient(
        "meta_ads",
        secret=TOKEN,
        policy=RetryPolicy(**{**defaults, **policy}),
        stats=CallStats(),
        headers={"Authorization": f"Bearer {TOKEN}"},
        sleep=slept.append,
    )
    adapter = ScriptedAdapter(steps)
    client.session.mount("http://", adapter)
    return client, adapter, slept


OK: Step = (200, {"Content-Type": "application/json"}, b'{"num_received": 1}')


def test_throttle_then_success_counts_retry_and_throttled_seconds():
    client, _, slept = make_client([(429, {"Retry-After": "2"}, b""), OK])
    result = client.request("POST", "http://x/v19.0/1/users", json_body={"a": 1})
    assert result.body == {"num_received": 1}
    assert slept == [2.0]
    stats = client.stats
    assert (stats.calls, stats.retries, stats.throttled_seconds) == (2, 1, 2.0)
    assert stats.bytes_sent == 2 * len(b'{"a":1}')


def test_5xx_and_connection_errors_back_off_without_throttle_seconds():
    steps: list[Step] = [
        (502, {"Content-Type": "text/html"}, HTML_502),
        requests.ConnectionError("Connection aborted. RemoteDisconnected"),
        requests.ReadTimeout("read timed out"),
        OK,
    ]
    client, _, slept = make_client(steps)
    assert client.request("GET", "http://x/v19.0/1").status == 200
    assert len(slept) == 3 and all(0 <= s <= 0.05 for s in slept)
    assert (client.stats.calls, client.stats.retries, client.stats.throttled_seconds) == (4, 3, 0.0)


def test_attempts_run_out_raises_transient():
    client, _, _ = make_client([(503, {}, b"")] * 3, max_attempts=3)
    with pytest.raises(TransientError) as info:
        client.request("POST", "http://x/v19.0/1/users", json_body={})
    assert not isinstance(info.value, ThrottledError)
    assert info.value.status == 503 and "gave up after 3 attempt(s)" in str(info.value)


def test_hint_longer_than_total_budget_stops_at_once():
    usage = json.dumps({"1": [{"estimated_time_to_regain_access": 30}]})
    steps: list[Step] = [
        (400, {"X-Business-Use-Case-Usage": usage}, meta_error(80004, "Too many calls"))
    ]
    client, _, slept = make_client(steps, max_total_wait=5.0, max_hint_wait=3600)
    with pytest.raises(ThrottledError) as info:
        client.request("POST", "http://x/v19.0/1/users", json_body={})
    assert slept == [] and client.stats.calls == 1
    assert "code 80004" in str(info.value) and "max_total_wait" in str(info.value)


def test_other_4xx_is_not_retried():
    client, adapter, slept = make_client([(400, {}, meta_error(100, "Invalid parameter")), OK])
    with pytest.raises(PermanentError) as info:
        client.request("POST", "http://x/v19.0/1/users", json_body={})
    assert not isinstance(info.value, AuthError)
    assert len(adapter.requests) == 1 and slept == []
    assert "Invalid parameter (code 100)" in str(info.value)


def test_auth_error_text_never_holds_the_token_even_if_echoed():
    body = json.dumps({"error": {"code": 190, "message": f"Bad token {TOKEN} for a@example.com"}})
    client, _, _ = make_client([(401, {}, body.encode())])
    with pytest.raises(AuthError) as info:
        client.request("GET", "http://x/v19.0/1")
    text = str(info.value)
    assert TOKEN not in text and "@" not in text and "HTTP 401" in text


def test_one_session_reused_and_timeout_sent():
    seen: list[object] = []

    class Recording(ScriptedAdapter):
        def send(self, request, **kwargs):
            seen.append(kwargs.get("timeout"))
            return super().send(request, **kwargs)

    client, _, _ = make_client([])
    adapter = Recording([OK, OK])
    client.session.mount("http://", adapter)
    client.request("GET", "http://x/a")
    client.request("GET", "http://x/b")
    assert seen == [(10.0, 120.0), (10.0, 120.0)]
    assert all(r.headers["Authorization"] == f"Bearer {TOKEN}" for r in adapter.requests)
