"""The Google Data Manager API-shaped mock, through raw HTTP: fail-fast validation naming
members, asynchronous processing with a configurable delay, error counts per reason, quota 429
with a retry delay, EEA consent, raw identifiers, the targetable threshold, persistence."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterator

import pytest
import requests

from destinations.mock.testing import MockHandle, running_mock

AUDIENCE = "9876543210"


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def member(*ids: str, consent: dict | None = None) -> dict:
    out: dict = {"userData": {"userIdentifiers": [{"emailAddress": i} for i in ids]}}
    if consent:
        out["consent"] = consent
    return out


GRANTED = {"adUserData": "CONSENT_GRANTED", "adPersonalization": "CONSENT_GRANTED"}


@pytest.fixture(scope="module")
def mock(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MockHandle]:
    with running_mock(tmp_path_factory.mktemp("mock_google")) as handle:
        yield handle


@pytest.fixture(autouse=True)
def _clean(mock: MockHandle) -> None:
    mock.reset()


def submit(
    mock: MockHandle, members: list, *, op: str = "ingest", token: str | None = None, **extra
) -> requests.Response:
    body = {
        "destinations": [
            {
                "operatingAccount": {"accountType": "GOOGLE_ADS", "accountId": "123"},
                "productDestinationId": AUDIENCE,
            }
        ],
        "audienceMembers": members,
        "encoding": "HEX",
        "termsOfService": {"customerMatchTermsOfServiceStatus": "ACCEPTED"},
        **extra,
    }
    headers = {"Authorization": f"Bearer {token or mock.google_token}"}
    url = f"{mock.google_url}/v1/audienceMembers:{op}"
    return requests.post(url, json=body, headers=headers, timeout=10)


def status(mock: MockHandle, request_id: str) -> dict:
    response = requests.get(
        f"{mock.google_url}/v1/requestStatus:retrieve",
        params={"requestId": request_id},
        headers={"Authorization": f"Bearer {mock.google_token}"},
        timeout=10,
    )
    response.raise_for_status()
    return response.json()["requestStatusPerDestination"][0]


def test_wrong_token_is_401_unauthenticated(mock: MockHandle) -> None:
    response = submit(mock, [member(sha("a"))], token="nope")
    assert response.status_code == 401
    assert response.json()["error"]["status"] == "UNAUTHENTICATED"


def test_ingest_is_processed_after_the_delay_then_reports_success(mock: MockHandle) -> None:
    mock.google_settings(processing_delay_s=0.6)
    request_id = submit(mock, [member(sha("a")), member(sha("b"))]).json()["requestId"]
    assert status(mock, request_id)["requestStatus"] == "PROCESSING"
    assert mock.google_members(AUDIENCE) == []  # nothing changes before processing
    time.sleep(0.7)
    done = status(mock, request_id)
    assert done["requestStatus"] == "SUCCESS"
    assert done["audienceMembersIngestionStatus"]["userDataIngestionStatus"]["recordCount"] == "2"
    assert [m["identifiers"] for m in mock.google_members(AUDIENCE)] == sorted(
        [[sha("a")], [sha("b")]]
    )


def test_one_bad_member_fails_the_whole_request_naming_it(mock: MockHandle) -> None:
    members = [
        member(sha("a")),
        member("not-hex"),
        {"userData": {"userIdentifiers": []}},
        member(*[sha(str(i)) for i in range(11)]),
    ]
    response = submit(mock, members)
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["status"] == "INVALID_ARGUMENT"
    violations = next(d for d in error["details"] if "fieldViolations" in d)["fieldViolations"]
    by_field = {v["field"].split(".")[1]: v["reason"] for v in violations}
    assert by_field == {
        "audience_members[1]": "INVALID_SHA256_FORMAT",
        "audience_members[2]": "REQUIRED_FIELD_MISSING",
        "audience_members[3]": "TOO_MANY_USER_IDENTIFIERS",
    }
    assert mock.google_members(AUDIENCE) == []


def test_more_than_10000_members_is_refused(mock: MockHandle) -> None:
    response = submit(mock, [member(sha("x"))] * 10_001)
    assert response.status_code == 400
    assert response.json()["error"]["details"][0]["reason"] == "TOO_MANY_AUDIENCE_MEMBERS"


def test_injected_processing_failures_give_partial_success_with_counts(mock: MockHandle) -> None:
    mock.add_fault(
        "google",
        {"path": "ingest"},
        {"type": "reject_rows", "values": [sha("b")], "error": "INVALID_FORMAT"},
    )
    request_id = submit(mock, [member(sha("a")), member(sha("b"))]).json()["requestId"]
    answer = status(mock, request_id)
    assert answer["requestStatus"] == "PARTIAL_SUCCESS"
    assert answer["errorInfo"]["errorCounts"] == [{"reason": "INVALID_FORMAT", "recordCount": "1"}]
    assert sha("b") not in str(answer)  # counts per reason only, as the real status
    assert [m["identifiers"] for m in mock.google_members(AUDIENCE)] == [[sha("a")]]


def test_quota_fault_is_429_resource_exhausted_with_retry_delay(mock: MockHandle) -> None:
    mock.add_fault(
        "google", {"path": "ingest"}, {"type": "status", "status": 429, "retry_delay_s": 2}
    )
    response = submit(mock, [member(sha("a"))])
    assert response.status_code == 429
    error = response.json()["error"]
    assert error["status"] == "RESOURCE_EXHAUSTED"
    assert {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "2s"} in error[
        "details"
    ]


def test_eea_user_without_both_consents_is_refused_removal_needs_none(mock: MockHandle) -> None:
    mock.google_eea_users([sha("eu")])
    refused = submit(mock, [member(sha("eu"), consent={"adUserData": "CONSENT_GRANTED"})])
    assert refused.status_code == 400
    assert "consent" in refused.text
    request_level = submit(mock, [member(sha("eu"))], consent=GRANTED)
    assert request_level.status_code == 200
    denied = {"adUserData": "CONSENT_GRANTED", "adPersonalization": "CONSENT_DENIED"}
    assert submit(mock, [member(sha("eu"), consent=denied)], consent=GRANTED).status_code == 200
    held = mock.google_members(AUDIENCE)
    assert held[0]["consent"] == denied  # the member's consent overrides the request's
    removal = {"audienceMembers": [member(sha("eu"))]}
    assert submit(mock, removal["audienceMembers"], op="remove").status_code == 200
    assert mock.google_members(AUDIENCE) == []


def test_raw_identifiers_are_refused_and_counted_as_violations(mock: MockHandle) -> None:
    response = submit(mock, [member("someone@example.com")])
    assert response.status_code == 400
    violations = mock.violations("google")
    assert violations["raw_identifier"] == 1
    assert "someone@example.com" not in str(violations)
    assert "someone@example.com" not in str(mock.requests_log("google"))


def test_audience_below_100_members_is_not_targetable(mock: MockHandle) -> None:
    submit(mock, [member(sha(str(i))) for i in range(99)])
    view = requests.get(f"{mock.base_url}/google/_control/audiences/{AUDIENCE}", timeout=10).json()
    assert view["targetable"] is False
    submit(mock, [member(sha("one more"))])
    user_list = requests.get(
        f"{mock.google_url}/v1/accountTypes/GOOGLE_ADS/accounts/123/userLists/{AUDIENCE}",
        headers={"Authorization": f"Bearer {mock.google_token}"},
        timeout=10,
    ).json()
    assert user_list["sizeInfo"]["displayNetworkMembersCount"] == "100"
    assert user_list["targetNetworkInfo"]["eligibleForDisplay"] is True


def test_audiences_and_pending_requests_survive_a_restart(tmp_path) -> None:
    with running_mock(tmp_path) as first:
        first.google_settings(processing_delay_s=0.5)
        request_id = submit(first, [member(sha("kept"))]).json()["requestId"]
    time.sleep(0.6)
    with running_mock(tmp_path) as second:
        assert status(second, request_id)["requestStatus"] == "SUCCESS"
        assert second.google_members(AUDIENCE)[0]["identifiers"] == [sha("kept")]
