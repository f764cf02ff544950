"""The Mailchimp-shaped mock, through raw HTTP: auth, batch limits and per-member errors,
compliance refusals with violation counts, archive and permanent delete, list stats, the
10-connection limit and the request log."""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Iterator

import pytest
import requests

from destinations.mock.testing import MockHandle, running_mock

LIST = "a1b2c3d4e5"


def email(i: int) -> str:
    return f"member{i}@example.com"


def md5(address: str) -> str:
    return hashlib.md5(address.lower().encode()).hexdigest()


@pytest.fixture(scope="module")
def mock(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MockHandle]:
    with running_mock(tmp_path_factory.mktemp("mock_mailchimp")) as handle:
        yield handle


@pytest.fixture(autouse=True)
def _clean(mock: MockHandle) -> None:
    mock.reset()


def call(mock: MockHandle, method: str, path: str, body: dict | None = None, **kw):
    auth = kw.pop("auth", ("anyuser", mock.mailchimp_token))
    url = f"{mock.mailchimp_url}{path}"
    return requests.request(method, url, json=body, auth=auth, timeout=10, **kw)


def batch(mock: MockHandle, members: list[dict], update_existing: bool = True):
    body = {"members": members, "update_existing": update_existing}
    return call(mock, "POST", f"/lists/{LIST}", body)


def statuses(mock: MockHandle) -> dict[str, str]:
    return {m["hash"]: m["status"] for m in mock.mailchimp_members(LIST)}


def test_requests_without_the_api_key_get_401_problem_document(mock: MockHandle) -> None:
    for auth in (None, ("anyuser", "wrong-key")):
        response = call(mock, "GET", f"/lists/{LIST}", auth=auth)
        assert response.status_code == 401
        assert response.json()["title"] == "API Key Invalid"
        assert response.json()["status"] == 401
    assert call(mock, "GET", f"/lists/{LIST}").status_code == 200


def test_batch_creates_members_and_reports_invalid_emails(mock: MockHandle) -> None:
    members = [
        {"email_address": email(1), "status": "subscribed", "merge_fields": {"FNAME": "Ann"}},
        {"email_address": "not-an-email", "status": "subscribed"},
        {"email_address": email(2), "status": "unsubscribed"},
    ]
    body = batch(mock, members).json()
    assert [m["id"] for m in body["new_members"]] == [md5(email(1)), md5(email(2))]
    assert body["total_created"] == 2 and body["error_count"] == 1
    assert body["errors"][0]["email_address"] == "not-an-email"
    assert "looks fake or invalid" in body["errors"][0]["error"]
    assert body["errors"][0]["error_code"] == "ERROR_GENERIC"
    stored = {m["hash"]: m for m in mock.mailchimp_members(LIST)}
    assert stored[md5(email(1))]["merge_fields"] == {"FNAME": "Ann"}
    assert stored[md5(email(2))]["status"] == "unsubscribed"


def test_existing_member_needs_update_existing(mock: MockHandle) -> None:
    batch(mock, [{"email_address": email(1), "status": "subscribed"}])
    change = [{"email_address": email(1), "status": "subscribed", "merge_fields": {"A": "1"}}]
    refused = batch(mock, change, update_existing=False).json()
    assert refused["errors"][0]["error_code"] == "ERROR_CONTACT_EXISTS"
    updated = batch(mock, change, update_existing=True).json()
    assert updated["total_updated"] == 1 and updated["total_created"] == 0
    assert mock.mailchimp_members(LIST)[0]["merge_fields"] == {"A": "1"}


def test_batch_limit_is_500_members(mock: MockHandle) -> None:
    members = [{"email_address": email(i), "status": "subscribed"} for i in range(501)]
    response = batch(mock, members)
    assert response.status_code == 400
    assert response.headers["Content-Type"] == "application/problem+json"
    assert response.json()["status"] == 400
    assert mock.mailchimp_members(LIST) == []
    assert batch(mock, members[:500]).json()["total_created"] == 500


def test_resubscribing_unsubscribed_or_cleaned_is_refused_and_counted(mock: MockHandle) -> None:
    mock.seed(
        "mailchimp",
        {
            "list_id": LIST,
            "members": [
                {"email_address": email(1), "status": "unsubscribed"},
                {"email_address": email(2), "status": "cleaned"},
            ],
        },
    )
    body = batch(mock, [{"email_address": email(i), "status": "subscribed"} for i in (1, 2)])
    errors = body.json()["errors"]
    assert len(errors) == 2
    assert all("compliance state" in e["error"] for e in errors)
    assert all(e["error_code"] == "ERROR_GENERIC" for e in errors)
    assert all(email(1) not in e["error"] for e in errors)
    assert mock.violations("mailchimp")["resubscribe"] == 2
    assert sorted(statuses(mock).values()) == ["cleaned", "unsubscribed"]


def test_unsubscribe_is_allowed_and_status_if_new_keeps_an_unsubscribe(mock: MockHandle) -> None:
    mock.seed(
        "mailchimp",
        {
            "list_id": LIST,
            "members": [
                {"email_address": email(1), "status": "subscribed"},
                {"email_address": email(2), "status": "unsubscribed"},
            ],
        },
    )
    members = [
        {"email_address": email(1), "status": "unsubscribed"},
        {"email_address": email(3), "status": "unsubscribed"},
        {"email_address": email(2), "status_if_new": "subscribed", "merge_fields": {"A": "x"}},
    ]
    body = batch(mock, members).json()
    assert body["error_count"] == 0
    assert set(statuses(mock).values()) == {"unsubscribed"}
    assert mock.violations("mailchimp")["resubscribe"] == 0


def test_put_upserts_and_checks_the_hash(mock: MockHandle) -> None:
    path = f"/lists/{LIST}/members/{md5(email(1))}"
    body = {"email_address": email(1), "status_if_new": "subscribed", "merge_fields": {"A": "1"}}
    created = call(mock, "PUT", path, body)
    assert created.status_code == 200 and created.json()["status"] == "subscribed"
    assert created.json()["id"] == md5(email(1))
    again = call(mock, "PUT", path, {**body, "status_if_new": "unsubscribed"})
    assert again.json()["status"] == "subscribed"
    mismatch = call(mock, "PUT", f"/lists/{LIST}/members/{md5(email(2))}", body)
    assert mismatch.status_code == 400
    assert call(mock, "GET", path).json()["merge_fields"] == {"A": "1"}


def test_put_refuses_compliance_state_with_problem_document(mock: MockHandle) -> None:
    mock.seed(
        "mailchimp",
        {
            "list_id": LIST,
            "members": [
                {"email_address": email(1), "status": "unsubscribed"},
            ],
        },
    )
    body = {"email_address": email(1), "status_if_new": "subscribed", "status": "subscribed"}
    response = call(mock, "PUT", f"/lists/{LIST}/members/{md5(email(1))}", body)
    assert response.status_code == 400
    assert response.json()["title"] == "Member In Compliance State"
    assert mock.violations("mailchimp")["resubscribe"] == 1
    assert statuses(mock) == {md5(email(1)): "unsubscribed"}


def test_delete_archives_and_unknown_member_is_404(mock: MockHandle) -> None:
    batch(mock, [{"email_address": email(1), "status": "subscribed"}])
    path = f"/lists/{LIST}/members/{md5(email(1))}"
    assert call(mock, "DELETE", path).status_code == 204
    assert call(mock, "GET", path).json()["status"] == "archived"
    unknown = call(mock, "DELETE", f"/lists/{LIST}/members/{md5(email(9))}")
    assert unknown.status_code == 404 and unknown.json()["title"] == "Resource Not Found"
    readded = batch(mock, [{"email_address": email(1), "status": "subscribed"}]).json()
    assert readded["error_count"] == 0 and statuses(mock) == {md5(email(1)): "subscribed"}


def test_delete_permanent_forgets_the_address_and_blocks_reimport(mock: MockHandle) -> None:
    batch(mock, [{"email_address": email(1), "status": "subscribed", "merge_fields": {"A": "1"}}])
    path = f"/lists/{LIST}/members/{md5(email(1))}"
    assert call(mock, "POST", f"{path}/actions/delete-permanent").status_code == 204
    [forgotten] = mock.mailchimp_members(LIST)
    assert forgotten["hash"] == md5(email(1))
    assert forgotten["status"] == "forgotten"
    assert forgotten["email_address"] is None and forgotten["merge_fields"] == {}
    assert call(mock, "GET", path).status_code == 404
    refused = batch(mock, [{"email_address": email(1), "status": "subscribed"}]).json()
    assert "Forgotten Email Not Subscribed" in refused["errors"][0]["error"]
    put = call(mock, "PUT", path, {"email_address": email(1), "status_if_new": "subscribed"})
    assert put.status_code == 400 and put.json()["title"] == "Forgotten Email Not Subscribed"
    unsubscribe = batch(mock, [{"email_address": email(1), "status": "unsubscribed"}]).json()
    assert "Forgotten Email Not Subscribed" in unsubscribe["errors"][0]["error"]
    assert mock.violations("mailchimp")["forgotten_resubscribe"] == 2  # unsubscribe is no harm
    assert mock.mailchimp_members(LIST)[0]["email_address"] is None


def test_list_stats_count_subscribed_members(mock: MockHandle) -> None:
    mock.seed(
        "mailchimp",
        {
            "list_id": LIST,
            "members": [
                {"email_address": email(1), "status": "subscribed"},
                {"email_address": email(2), "status": "subscribed"},
                {"email_address": email(3), "status": "unsubscribed"},
                {"email_address": email(4), "status": "archived"},
            ],
        },
    )
    stats = call(mock, "GET", f"/lists/{LIST}").json()["stats"]
    assert stats["member_count"] == 2
    assert stats["unsubscribe_count"] == 1


def test_more_than_10_simultaneous_requests_get_429_without_retry_after(
    mock: MockHandle,
) -> None:
    # Twelve requests that each stay 4 s in the server: whatever order they arrive in, ten are
    # admitted and the two that find ten in flight get the 429 (no timing assumption).
    mock.add_fault(
        "mailchimp", {"method": "GET"}, {"type": "timeout_after_apply", "seconds": 4}, times=12
    )
    responses: list[requests.Response] = []
    threads = [
        threading.Thread(target=lambda: responses.append(call(mock, "GET", "/ping")))
        for _ in range(12)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    mock.clear_faults("mailchimp")
    assert sorted(r.status_code for r in responses) == [200] * 10 + [429] * 2
    for refused in (r for r in responses if r.status_code == 429):
        assert "Retry-After" not in refused.headers
        assert not any("ratelimit" in h.lower() for h in refused.headers)
    assert call(mock, "GET", "/ping").status_code == 200


def test_request_log_has_email_and_status_per_member(mock: MockHandle) -> None:
    batch(
        mock,
        [
            {"email_address": email(2), "status": "subscribed"},
            {"email_address": email(1), "status": "unsubscribed"},
        ],
    )
    call(mock, "DELETE", f"/lists/{LIST}/members/{md5(email(2))}")
    log = mock.requests_log("mailchimp")
    assert [(e["method"], e["status"]) for e in log] == [("POST", 200), ("DELETE", 204)]
    assert log[0]["values"] == [
        {"email_address": email(2), "status": "subscribed"},
        {"email_address": email(1), "status": "unsubscribed"},
    ]
    assert log[1]["values"] == [{"hash": md5(email(2))}]
