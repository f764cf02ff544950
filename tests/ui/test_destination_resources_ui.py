"""What the Dagster UI shows of destination secrets, and what a missing one does, through the
webserver of a real ``dagster dev`` (its GraphQL API, the one the UI reads): each destination's
resource lists its base URL and token as environment variables (by name, never a value), and
with Meta's token unset the Mailchimp segment's job runs and syncs while launching a Meta
segment's job is refused naming ``META_ACCESS_TOKEN`` (the code server resolves the
variables when it plans the run)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from destinations.redaction import leaked_forms
from tests.conftest import AS_OF
from tests.ui.test_browser import (
    LIST_ID,
    LOCATION,
    _graphql,
    _wait_for_run,
    dagster_dev,
)

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]

SELECTOR = {"repositoryLocationName": LOCATION, "repositoryName": "__repository__"}
RESOURCES = """query($r: RepositorySelector!) { allTopLevelResourceDetailsOrError(
    repositorySelector: $r) { __typename ... on ResourceDetailsList { results {
    name resourceType configuredValues { key value type } } } } }"""
LAUNCH = """mutation($p: ExecutionParams!) { launchRun(executionParams: $p) {
    __typename ... on LaunchRunSuccess { run { runId } }
    ... on PythonError { message } ... on RunConfigValidationInvalid { errors { message } }
} }"""


@pytest.fixture
def webserver_without_meta_token(
    tmp_path: Path, project_env: dict[str, str], mock_destinations: Any
) -> Iterator[str]:
    """``dagster dev`` with Mailchimp's variables set and Meta's token unset."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("META_", "MAILCHIMP_"))}
    env |= {
        **project_env,
        "MAILCHIMP_BASE_URL": mock_destinations.mailchimp_url,
        "MAILCHIMP_API_KEY": mock_destinations.mailchimp_token,
        "META_BASE_URL": mock_destinations.meta_url,
    }
    with dagster_dev(env, tmp_path / "dagster-dev.log") as url:
        yield url


def _launch(url: str, segment: str, destination: str) -> dict[str, Any]:
    config = {"config": {"as_of": AS_OF.isoformat()}}
    ops = {f"segment__{segment}": config}  # builds segment/<sid> and audience/<sid>
    ops[f"sync__{segment}__{destination}"] = config
    run_config = {"ops": ops, "execution": {"config": {"in_process": {}}}}
    params = {"selector": {**SELECTOR, "jobName": f"{segment}_job"}, "runConfigData": run_config}
    # a launch refused by the code server answers HTTP 500 with the error as a PythonError
    body = {"query": LAUNCH, "variables": {"p": params}}
    return requests.post(f"{url}/graphql", json=body, timeout=60).json()["data"]["launchRun"]


def test_resources_show_environment_variables_and_a_missing_token_fails_its_job_only(
    webserver_without_meta_token: str, mock_destinations: Any
) -> None:
    url, mock = webserver_without_meta_token, mock_destinations
    details = _graphql(url, RESOURCES, {"r": SELECTOR})["allTopLevelResourceDetailsOrError"]
    resources = {r["name"]: r for r in details["results"]}
    for key, kind, variables in (
        ("destination_meta_ads", "MetaResource", ("META_BASE_URL", "META_ACCESS_TOKEN")),
        ("destination_mailchimp", "MailchimpResource", ("MAILCHIMP_BASE_URL", "MAILCHIMP_API_KEY")),
    ):
        assert resources[key]["resourceType"].endswith(kind)
        values = {v["key"]: (v["type"], v["value"]) for v in resources[key]["configuredValues"]}
        assert values["base_url"] == ("ENV_VAR", variables[0])
        assert values["token"] == ("ENV_VAR", variables[1])

    mail = _launch(url, "recent_buyers_eu", "mailchimp")
    assert mail["__typename"] == "LaunchRunSuccess", mail
    assert _wait_for_run(url, mail["run"]["runId"]) == "SUCCESS"
    assert mock.mailchimp_members(LIST_ID)

    refused = _launch(url, "cart_abandoners", "meta_ads")  # what the UI shows on Launch
    assert refused["__typename"] == "PythonError", refused
    failure = refused["message"]
    assert "META_ACCESS_TOKEN" in failure and "not set" in failure
    assert leaked_forms(failure, [mock.mailchimp_token, mock.meta_token]) == []
    assert mock.meta_members("120210000000000") == []
