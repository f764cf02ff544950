"""The Meta-shaped mock, through raw HTTP: auth, batch limits, invalid rows, no-op semantics,
raw-identifier violations, request log and persistence across a restart."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from destinations.mock.testing import MockHandle, running_mock

AUDIENCE = "120210000000000"


def sha(i: int) -> str:
    return hashlib.sha256(f"user{i}@example.com".encode()).hexdigest()


@pytest.fixture(scope="module")
def mock(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MockHandle]:
    with running_mock(tmp_path_factory.mktemp("mock_meta")) as handle:
        yield handle


@pytest.fixture(autouse=True)
def _clean(mock: MockHandle) -> None:
    mock.reset()


def users_url(mock: MockHandle, audience: str = AUDIENCE) -> str:
    return f"{mock.meta_url}/v19.0/{audience}/users"


def send(mock: MockHandle, method: str, data: list, *, token: str | None = None, **kw):
    body = kw.pop("body", {"payload": {"schema": "EMAIL_SHA256", "data": data}})
    headers = {"Authorization": f"Bearer {token or mock.meta_token}"}
    return requests.request(method, users_url(mock), json=body, headers=headers, timeout=10)


def test_requests_without_the_right_token_get_401_code_190(mock: MockHandle) -> None:
    no_header = requests.post(users_url(mock), json={}, timeout=10)
    wrong = send(mock, "POST", [sha(1)], token="not-the-token")
    assert no_header.status_code == wrong.status_code == 401
    assert wrong.json()["error"]["code"] == 190
    assert wrong.json()["error"]["type"] == "OAuthException"
    assert mock.meta_members(AUDIENCE) == []


def test_add_stores_valid_hashes_and_reports_invalid_rows_with_200(mock: MockHandle) -> None:
    upper = sha(2).upper()
    response = send(mock, "POST", [sha(1), "not-a-hash", upper, sha(3)])
    body = response.json()
    assert response.status_code == 200
    assert body["audience_id"] == AUDIENCE
    assert body["num_received"] == 4
    assert body["num_invalid_entries"] == 2
    assert set(body["invalid_entry_samples"]) == {"not-a-hash", upper}
    assert mock.meta_members(AUDIENCE) == sorted([sha(1), sha(3)])


def test_adding_existing_and_removing_absent_members_are_no_ops(mock: MockHandle) -> None:
    send(mock, "POST", [sha(1), sha(2)])
    again = send(mock, "POST", [sha(2), sha(3)])
    removed = send(mock, "DELETE", [sha(1), sha(9)])
    assert again.status_code == removed.status_code == 200
    assert removed.json()["num_invalid_entries"] == 0
    assert mock.meta_members(AUDIENCE) == sorted([sha(2), sha(3)])


def test_batch_limit_is_10000_rows(mock: MockHandle) -> None:
    rows = [hashlib.sha256(str(i).encode()).hexdigest() for i in range(10_001)]
    too_many = send(mock, "POST", rows)
    assert too_many.status_code == 400
    assert too_many.json()["error"]["code"] == 100
    assert "Too many entries" in too_many.json()["error"]["message"]
    assert mock.meta_members(AUDIENCE) == []
    assert send(mock, "POST", rows[:10_000]).status_code == 200
    assert len(mock.meta_members(AUDIENCE)) == 10_000


@pytest.mark.parametrize(
    "body",
    [
        {"payload": {"schema": "EMAIL", "data": ["x"]}},
        {"payload": {"schema": "EMAIL_SHA256"}},
        {"data": ["x"]},
        {"payload": {"schema": "EMAIL_SHA256", "data": [123]}},
    ],
)
def test_bad_schema_or_body_is_400_code_100(mock: MockHandle, body: dict) -> None:
    response = send(mock, "POST", [], body=body)
    assert response.status_code == 400
    assert response.json()["error"]["code"] == 100


def test_approximate_count_follows_the_audience(mock: MockHandle) -> None:
    send(mock, "POST", [sha(i) for i in range(5)])
    send(mock, "DELETE", [sha(0)])
    response = requests.get(
        f"{mock.meta_url}/v19.0/{AUDIENCE}",
        params={"fields": "approximate_count"},
        headers={"Authorization": f"Bearer {mock.meta_token}"},
        timeout=10,
    )
    assert response.json()["id"] == AUDIENCE
    assert response.json()["approximate_count"] == 4


def test_raw_emails_and_phones_count_as_violations_and_are_redacted(mock: MockHandle) -> None:
    raw_email = "someone@example.com"
    response = send(mock, "POST", [sha(1), raw_email, "+33 6 12 34 56 78", "deadbeef"])
    assert response.json()["num_invalid_entries"] == 3
    violations = mock.violations("meta")
    assert violations["raw_identifier"] == 2
    logged = mock.requests_log("meta")[-1]["values"]
    assert raw_email not in str(violations) and raw_email not in logged
    assert logged[0] == sha(1) and logged[1].startswith("redacted:email:")
    assert mock.meta_members(AUDIENCE) == [sha(1)]


def test_hashes_alone_never_count_as_violations(mock: MockHandle) -> None:
    send(mock, "POST", [sha(i) for i in range(50)])
    assert mock.violations("meta")["raw_identifier"] == 0


def test_request_log_lists_method_path_status_and_hashes_in_order(mock: MockHandle) -> None:
    send(mock, "POST", [sha(2), sha(1)])
    send(mock, "DELETE", [sha(2)])
    send(mock, "POST", [sha(3)], token="wrong")
    log = mock.requests_log("meta")
    assert [(e["method"], e["status"], e["values"]) for e in log] == [
        ("POST", 200, [sha(2), sha(1)]),
        ("DELETE", 200, [sha(2)]),
        ("POST", 401, [sha(3)]),
    ]
    assert {e["path"] for e in log} == {f"/meta/v19.0/{AUDIENCE}/users"}
    assert [e["id"] for e in log] == sorted(e["id"] for e in log)


def test_state_survives_a_restart_on_the_same_state_dir(tmp_path: Path) -> None:
    state = tmp_path / "state"
    with running_mock(state) as first:
        send(first, "POST", [sha(1), sha(2), "raw@example.com"])
        first.seed(
            "mailchimp",
            {
                "list_id": "L1",
                "members": [
                    {"email_address": "kept@example.com", "status": "unsubscribed"},
                ],
            },
        )
    with running_mock(state) as second:
        assert second.meta_members(AUDIENCE) == sorted([sha(1), sha(2)])
        assert [m["status"] for m in second.mailchimp_members("L1")] == ["unsubscribed"]
        assert len(second.requests_log("meta")) == 1
        assert second.violations("meta")["raw_identifier"] == 1
