"""MetaAudienceClient against the mock Meta server: batching, row refusals, retries, privacy."""

from __future__ import annotations

import hashlib
import json

import pytest

from destinations.base import RemoveReason, Row
from destinations.errors import AuthError, PermanentError, TransientError
from destinations.http import RetryPolicy
from destinations.meta import NOT_A_HASH, MetaAudienceClient
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
USERS = r"/users$"


def sha(i: int | str) -> str:
    return hashlib.sha256(f"person{i}@example.com".encode()).hexdigest()


def rows(n: int, start: int = 0) -> list[Row]:
    return [Row(subject_key=sha(i), send_key=sha(i)) for i in range(start, start + n)]


@pytest.fixture(scope="module")
def mock(tmp_path_factory):
    with running_mock(tmp_path_factory.mktemp("meta_mock")) as handle:
        yield handle


@pytest.fixture
def client(mock):
    mock.reset("meta")
    with MetaAudienceClient("meta_ads", mock.meta_url, mock.meta_token, policy=FAST) as c:
        yield c


def posts(mock) -> list[dict]:
    return [r for r in mock.requests_log("meta") if r["path"].endswith("/users")]


def test_11000_hashes_go_in_two_calls_and_all_land(client, mock):
    batch = rows(11_000)
    results = client.add("aud1", batch)
    assert [r.subject_key for r in results] == [r.subject_key for r in batch]
    assert all(r.ok and r.destination_ref is None for r in results)
    assert mock.meta_members("aud1") == sorted(r.send_key for r in batch)
    sizes = [len(r["values"]) for r in posts(mock)]
    assert sizes == [10_000, 1_000]
    assert (client.stats.calls, client.stats.retries) == (2, 0)
    assert client.stats.bytes_sent > 11_000 * 64
    assert client.member_count("aud1") == 11_000


def test_raw_identifiers_are_refused_and_never_sent(client, mock):
    good = rows(2)
    bad = [
        Row(subject_key=sha("a"), send_key="jane.doe@example.com"),
        Row(subject_key=sha("b"), send_key=sha("b").upper()),
        Row(subject_key=sha("c"), send_key="+44 20 7946 0958"),
    ]
    results = client.add("aud2", [bad[0], good[0], bad[1], good[1], bad[2]])
    assert [r.ok for r in results] == [False, True, False, True, False]
    for r in (results[0], results[2], results[4]):
        assert (r.reason, r.permanent) == (NOT_A_HASH, True)
    assert mock.meta_members("aud2") == sorted(r.send_key for r in good)
    assert mock.violations("meta")["raw_identifier"] == 0
    assert "@" not in json.dumps(mock.requests_log("meta"))
    assert client.add("aud2", bad) == [results[0], results[2], results[4]]
    assert len(posts(mock)) == 1  # an all-refused batch makes no request


def test_rows_meta_reports_invalid_are_refused_with_its_reason(client, mock):
    batch = rows(3)
    mock.add_fault(
        "meta",
        {"method": "POST", "path": USERS},
        {"type": "reject_rows", "values": [batch[1].send_key], "error": "Hash not usable"},
    )
    results = client.add("aud3", batch)
    assert [r.ok for r in results] == [True, False, True]
    assert (results[1].reason, results[1].permanent) == ("Hash not usable", True)
    assert mock.meta_members("aud3") == sorted([batch[0].send_key, batch[2].send_key])


def test_429_retry_after_is_honoured_and_counted(client, mock):
    mock.add_fault(
        "meta", {"path": USERS}, {"type": "status", "status": 429, "headers": {"Retry-After": "1"}}
    )
    assert all(r.ok for r in client.add("aud4", rows(5)))
    assert len(mock.meta_members("aud4")) == 5
    stats = client.stats
    assert (stats.calls, stats.retries, stats.throttled_seconds) == (2, 1, 1.0)


def test_throttle_code_80004_waits_the_usage_hint_in_minutes(client, mock):
    usage = {"act_1": [{"type": "custom_audience", "estimated_time_to_regain_access": 0.005}]}
    mock.add_fault(
        "meta",
        {"path": USERS},
        {
            "type": "status",
            "status": 400,
            "error_code": 80004,
            "headers": {"X-Business-Use-Case-Usage": json.dumps(usage)},
        },
    )
    assert all(r.ok for r in client.add("aud5", rows(3)))
    assert (client.stats.retries, client.stats.throttled_seconds) == (1, pytest.approx(0.3))
    assert [r["status"] for r in posts(mock)] == [400, 200]


@pytest.mark.parametrize(
    "action",
    [
        {"type": "status", "status": 503, "content_type": "html"},
        {
            "type": "status",
            "status": 502,
            "body": "<html>Bad Gateway</html>",
            "content_type": "html",
        },
        {"type": "drop_connection"},
    ],
    ids=["503-html", "502-proxy-page", "dropped-connection"],
)
def test_server_errors_and_dropped_connections_are_retried(client, mock, action):
    mock.add_fault("meta", {"path": USERS}, action)
    assert all(r.ok for r in client.add("aud6", rows(4)))
    assert len(mock.meta_members("aud6")) == 4
    assert (client.stats.calls, client.stats.retries, client.stats.throttled_seconds) == (2, 1, 0)


def test_timeout_after_apply_then_retry_does_not_double_apply(mock):
    mock.reset("meta")
    policy = RetryPolicy(**{**FAST.__dict__, "read_timeout": 0.5})
    with MetaAudienceClient("meta_ads", mock.meta_url, mock.meta_token, policy=policy) as client:
        mock.add_fault("meta", {"path": USERS}, {"type": "timeout_after_apply", "seconds": 1.5})
        batch = rows(50)
        assert all(r.ok for r in client.add("aud7", batch))
        assert client.stats.retries == 1
    members = mock.meta_members("aud7")
    assert members == sorted(r.send_key for r in batch)
    assert len(members) == len(set(members)) == 50
    assert len(posts(mock)) == 2


def test_other_400_is_permanent_and_not_retried(client, mock):
    error = {
        "error": {"code": 100, "message": "(#100) Invalid parameter", "type": "OAuthException"}
    }
    mock.add_fault("meta", {"path": USERS}, {"type": "status", "status": 400, "body": error})
    with pytest.raises(PermanentError) as info:
        client.add("aud8", rows(2))
    assert not isinstance(info.value, AuthError)
    assert "Invalid parameter (code 100)" in str(info.value) and info.value.status == 400
    assert len(posts(mock)) == 1 and client.stats.retries == 0


def test_persistent_5xx_ends_in_transient_error(client, mock):
    mock.add_fault("meta", {"path": USERS}, {"type": "status", "status": 500}, times=4)
    with pytest.raises(TransientError) as info:
        client.add("aud9", rows(1))
    assert info.value.status == 500 and "gave up after 4 attempt(s)" in str(info.value)
    assert len(posts(mock)) == 4 and mock.meta_members("aud9") == []


def test_wrong_token_is_an_auth_error_without_the_token(mock):
    mock.reset("meta")
    token = "EAAG-wrong-token-0123456789"
    client = MetaAudienceClient("meta_ads", mock.meta_url, token, policy=FAST)
    with client, pytest.raises(AuthError) as info:
        client.add("aud10", rows(1))
    assert token not in str(info.value) and "HTTP 401" in str(info.value)
    assert "code 190" in str(info.value)
    assert len(posts(mock)) == 1


def test_remove_deletes_for_every_reason_and_update_is_a_no_op(client, mock):
    batch = rows(8)
    client.add("aud11", batch)
    for reason, row in zip(RemoveReason, batch, strict=False):
        assert client.remove("aud11", [row], reason)[0].ok
    kept = batch[len(RemoveReason) :]
    assert client.update("aud11", kept)[0].ok
    assert mock.meta_members("aud11") == sorted(r.send_key for r in kept)
    assert [r["method"] for r in posts(mock)] == ["POST"] + ["DELETE"] * len(RemoveReason)
    assert client.remove("aud11", rows(1, start=100), RemoveReason.ERASURE)[0].ok  # absent: ok
