"""Fault injection in the mock destinations: each action, matching on method, path and nth,
one-shot consumption, and clearing the queue."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator

import pytest
import requests

from destinations.mock.testing import MockHandle, running_mock

AUDIENCE = "987654321"
LIST = "faultlist"


def sha(i: int) -> str:
    return hashlib.sha256(f"fault{i}@example.com".encode()).hexdigest()


@pytest.fixture(scope="module")
def mock(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MockHandle]:
    with running_mock(tmp_path_factory.mktemp("mock_faults")) as handle:
        yield handle


@pytest.fixture(autouse=True)
def _clean(mock: MockHandle) -> None:
    mock.reset()


def meta(mock: MockHandle, rows: list[str], method: str = "POST", timeout: float = 10):
    return requests.request(
        method,
        f"{mock.meta_url}/v19.0/{AUDIENCE}/users",
        json={"payload": {"schema": "EMAIL_SHA256", "data": rows}},
        headers={"Authorization": f"Bearer {mock.meta_token}"},
        timeout=timeout,
    )


def mailchimp_batch(mock: MockHandle, emails: list[str]):
    members = [{"email_address": e, "status": "subscribed"} for e in emails]
    return requests.post(
        f"{mock.mailchimp_url}/lists/{LIST}",
        json={"members": members, "update_existing": True},
        auth=("any", mock.mailchimp_token),
        timeout=10,
    )


def test_status_fault_answers_once_and_applies_nothing(mock: MockHandle) -> None:
    mock.add_fault(
        "meta", {"path": "/users$"}, {"type": "status", "status": 503, "content_type": "html"}
    )
    failed = meta(mock, [sha(1)])
    assert failed.status_code == 503
    assert failed.headers["Content-Type"].startswith("text/html")
    assert mock.meta_members(AUDIENCE) == []
    assert meta(mock, [sha(1)]).status_code == 200
    assert mock.meta_members(AUDIENCE) == [sha(1)]
    assert [e["fault"] for e in mock.requests_log("meta")] == ["status", None]


def test_429_fault_carries_retry_after(mock: MockHandle) -> None:
    mock.add_fault("meta", {}, {"type": "status", "status": 429, "headers": {"Retry-After": "1"}})
    response = meta(mock, [sha(1)])
    assert response.status_code == 429
    assert response.headers["Retry-After"] == "1"


@pytest.mark.parametrize("code", [80004, 17, 4, 613])
def test_meta_throttle_fault_has_code_and_business_usage_header(
    mock: MockHandle, code: int
) -> None:
    mock.add_fault("meta", {}, {"type": "status", "status": 400, "error_code": code})
    response = meta(mock, [sha(1)])
    assert response.status_code == 400
    assert response.json()["error"]["code"] == code
    usage = json.loads(response.headers["X-Business-Use-Case-Usage"])
    assert usage[AUDIENCE][0]["estimated_time_to_regain_access"] == 0
    assert usage[AUDIENCE][0]["type"] == "ads_management"


def test_fault_matches_method_and_fires_on_the_nth_request(mock: MockHandle) -> None:
    mock.add_fault("meta", {"method": "DELETE", "nth": 2}, {"type": "status", "status": 500})
    codes = [
        meta(mock, [sha(1)], "DELETE").status_code,
        meta(mock, [sha(2)], "POST").status_code,
        meta(mock, [sha(3)], "DELETE").status_code,
        meta(mock, [sha(4)], "DELETE").status_code,
    ]
    assert codes == [200, 200, 500, 200]


def test_two_queued_faults_hit_consecutive_requests(mock: MockHandle) -> None:
    mock.add_fault("mailchimp", {}, {"type": "status", "status": 503}, times=2)
    codes = [mailchimp_batch(mock, ["a@example.com"]).status_code for _ in range(3)]
    assert codes == [503, 503, 200]


def test_timeout_after_apply_applies_although_the_client_timed_out(mock: MockHandle) -> None:
    mock.add_fault("meta", {}, {"type": "timeout_after_apply", "seconds": 1})
    with pytest.raises(requests.Timeout):
        meta(mock, [sha(1)], timeout=0.3)
    assert mock.meta_members(AUDIENCE) == [sha(1)]


def test_drop_connection_closes_without_answer_and_applies_nothing(mock: MockHandle) -> None:
    mock.add_fault("meta", {"method": "POST"}, {"type": "drop_connection"})
    with pytest.raises(requests.ConnectionError):
        meta(mock, [sha(1)])
    assert mock.meta_members(AUDIENCE) == []
    assert mock.requests_log("meta")[-1]["status"] is None
    assert meta(mock, [sha(1)]).status_code == 200


def test_meta_reject_rows_counts_listed_hashes_invalid(mock: MockHandle) -> None:
    action = {"type": "reject_rows", "values": [sha(2)], "error": "Customer file issue"}
    mock.add_fault("meta", {}, action)
    body = meta(mock, [sha(1), sha(2)]).json()
    assert body["num_invalid_entries"] == 1
    assert body["invalid_entry_samples"] == {sha(2): "Customer file issue"}
    assert mock.meta_members(AUDIENCE) == [sha(1)]


def test_mailchimp_reject_rows_returns_errors_entries(mock: MockHandle) -> None:
    action = {"type": "reject_rows", "values": ["B@example.com"], "error": "High bounce risk"}
    mock.add_fault("mailchimp", {"path": f"/lists/{LIST}$"}, action)
    body = mailchimp_batch(mock, ["a@example.com", "b@example.com"]).json()
    assert body["total_created"] == 1
    assert body["errors"] == [
        {
            "email_address": "b@example.com",
            "error": "High bounce risk",
            "error_code": "ERROR_GENERIC",
        }
    ]
    assert [m["email_address"] for m in mock.mailchimp_members(LIST)] == ["a@example.com"]


def test_mailchimp_status_fault_is_a_problem_document(mock: MockHandle) -> None:
    mock.add_fault("mailchimp", {}, {"type": "status", "status": 500})
    response = mailchimp_batch(mock, ["a@example.com"])
    assert response.status_code == 500
    assert response.json()["status"] == 500


def test_clearing_faults_empties_the_queue(mock: MockHandle) -> None:
    mock.add_fault("meta", {}, {"type": "status", "status": 500}, times=3)
    mock.clear_faults("meta")
    assert meta(mock, [sha(1)]).status_code == 200


def test_malformed_fault_is_refused(mock: MockHandle) -> None:
    response = requests.post(
        f"{mock.base_url}/meta/_control/faults",
        json={"match": {"path": "("}, "action": {"type": "status", "status": 500}},
        timeout=10,
    )
    assert response.status_code == 400
    unknown = requests.post(
        f"{mock.base_url}/meta/_control/faults", json={"action": {"type": "explode"}}, timeout=10
    )
    assert unknown.status_code == 400
