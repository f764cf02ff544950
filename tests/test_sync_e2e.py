"""Diff syncs through the real Dagster definitions: exact audiences, zero-call reruns, one
removal for one withdrawal, parallel syncs, faults mid-sync.

One scenario per module, each stage a Dagster run on the same instance, warehouse and mock:

1. segments and audiences of every example segment (in process);
2. two syncs to different destinations in one run under the multiprocess executor (their
   checks run in stage 3), with faults queued at both mock platforms (a 429 with
   ``Retry-After``, then a 503 HTML page at Meta; a 429, then a dropped connection on the
   second batch at Mailchimp);
3. the whole graph: the other syncs send, the two synced ones send nothing;
4. the whole graph again: zero API calls;
5. one member of an email segment withdraws consent; that segment's assets run: exactly one
   removal (an unsubscribe), no add;
6. every sync again: zero API calls, nobody re-subscribed.

What a destination holds is read through the mock's control API, never from our own state, and
every value ever sent is checked against the oracle's allowed set.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import dagster as dg
import pytest

from orchestrator.config import ProjectConfig
from orchestrator.segments.spec import SegmentSpec
from orchestrator.warehouse.connect import connect
from tests.conftest import AS_OF
from tests.demo_layout import insert_consent
from tests.e2e_harness import (
    E2EProject,
    RunOutcome,
    e2e_project,
    md5_hex,
    project_specs,
    run_assets,
    segment_keys,
    sync_keys,
)
from tests.oracle import ExpectedAudience, ExpectedMember, expected_audiences

#: The two syncs run side by side: different segments, different destinations.
PARALLEL = (("mug_buyers_60d", "meta_ads"), ("one_time_buyers", "mailchimp"))
WITHDRAWING_SEGMENT = "recent_buyers_eu"
RETRY_AFTER_S = 2


@dataclass
class Scenario:
    """Runs, destination snapshots and request-log marks of the scenario."""

    project: E2EProject
    config: ProjectConfig
    specs: dict[str, SegmentSpec]
    runs: dict[str, RunOutcome] = field(default_factory=dict)
    expected: dict[str, dict[str, ExpectedAudience]] = field(default_factory=dict)
    held: dict[str, dict[str, Any]] = field(default_factory=dict)
    marks: dict[str, dict[str, int]] = field(default_factory=dict)
    withdrawn: ExpectedMember | None = None


def snapshot(s: Scenario) -> dict[str, Any]:
    """What every destination audience holds now: Meta hashes, Mailchimp contacts."""
    held: dict[str, Any] = {}
    for sid, spec in s.specs.items():
        for entry in spec.destinations:
            kind = s.config.destinations[entry.destination].kind.value
            mock = s.project.mock
            held[f"{sid}/{entry.destination}"] = (
                mock.meta_members(entry.audience_id)
                if kind == "ad"
                else {c["hash"]: c["status"] for c in mock.mailchimp_members(entry.audience_id)}
            )
    return held


def last_request_ids(s: Scenario) -> dict[str, int]:
    logs = {p: s.project.mock.requests_log(p) for p in ("meta", "mailchimp")}
    return {p: (log[-1]["id"] if log else 0) for p, log in logs.items()}


def queue_faults(s: Scenario) -> None:
    mock = s.project.mock
    (mug, _), (one_time, _) = PARALLEL
    meta_path = f"{s.specs[mug].destinations[0].audience_id}/users$"
    list_path = f"lists/{s.specs[one_time].destinations[0].audience_id}$"
    throttle = {"type": "status", "status": 429, "headers": {"Retry-After": str(RETRY_AFTER_S)}}
    mock.add_fault("meta", {"method": "POST", "path": meta_path}, throttle)
    html_503 = {"type": "status", "status": 503, "content_type": "html"}
    mock.add_fault("meta", {"method": "POST", "path": meta_path}, html_503)
    mock.add_fault("mailchimp", {"method": "POST", "path": list_path}, throttle)
    # Second matching request after the 429: the first attempt of the second batch.
    mock.add_fault(
        "mailchimp", {"method": "POST", "path": list_path, "nth": 2}, {"type": "drop_connection"}
    )


def choose_withdrawing_member(s: Scenario) -> ExpectedMember:
    """A consent-based member of the withdrawing segment in no other email segment."""
    expected = s.expected["before"]
    others = set()
    for sid, spec in s.specs.items():
        if sid != WITHDRAWING_SEGMENT and spec.purpose == s.specs[WITHDRAWING_SEGMENT].purpose:
            others |= expected[sid].segment_members
    candidates = [
        m
        for m in expected[WITHDRAWING_SEGMENT].members.values()
        if m.legal_basis == "consent" and m.customer_id not in others
    ]
    return min(candidates, key=lambda m: m.customer_id)


def withdraw(project: E2EProject, member: ExpectedMember, purpose: str) -> None:
    """The member withdraws: in the product's warehouse, and in the oracle's copy."""
    places = {project.warehouse, project.product_warehouse}
    for where in places:
        with connect(where) as con:
            insert_consent(
                con,
                "e2e-withdrawal",
                member.customer_id,
                purpose,
                "withdrawn",
                AS_OF - timedelta(hours=1),
                "preference_center",
                "v3",
            )


@pytest.fixture(scope="module", params=["duckdb", "postgres"])
def scenario(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    demo_warehouse_template: Path,
) -> Iterator[Scenario]:
    """The scenario on a DuckDB warehouse, then on a PostgreSQL one (``warehouse:`` of the
    project's config), the same steps and expectations."""
    config, specs = project_specs()
    url = request.getfixturevalue("postgres_module_url") if request.param == "postgres" else None
    root = tmp_path_factory.mktemp("sync_e2e")
    with e2e_project(root, demo_warehouse_template, url) as project:
        s = Scenario(project, config, specs)
        oracle, wh = project.warehouse, project.product_warehouse
        s.expected["before"] = expected_audiences(oracle, specs, config, AS_OF)
        audiences = [key for sid in sorted(specs) for key in segment_keys(sid)]
        s.runs["audiences"] = run_assets(wh, AS_OF, selection=audiences)
        queue_faults(s)
        parallel = [dg.AssetKey(["sync", sid, dest]) for sid, dest in PARALLEL]
        s.runs["parallel"] = run_assets(
            wh, AS_OF, selection=parallel, multiprocess=True, checks=False
        )
        s.held["parallel"] = snapshot(s)
        s.runs["first"] = run_assets(wh, AS_OF)
        s.held["first"], s.marks["first"] = snapshot(s), last_request_ids(s)
        s.runs["second"] = run_assets(wh, AS_OF)
        s.held["second"], s.marks["second"] = snapshot(s), last_request_ids(s)
        s.withdrawn = choose_withdrawing_member(s)
        withdraw(project, s.withdrawn, specs[WITHDRAWING_SEGMENT].purpose)
        s.expected["after"] = expected_audiences(oracle, specs, config, AS_OF)
        withdrawing = segment_keys(WITHDRAWING_SEGMENT)
        withdrawing += [k for k in sync_keys(specs) if k.path[1] == WITHDRAWING_SEGMENT]
        s.runs["withdrawal"] = run_assets(wh, AS_OF, selection=withdrawing)
        s.held["withdrawal"], s.marks["withdrawal"] = snapshot(s), last_request_ids(s)
        s.runs["last"] = run_assets(wh, AS_OF, selection=sync_keys(specs))
        s.held["last"], s.marks["last"] = snapshot(s), last_request_ids(s)
        yield s


def expected_holding(s: Scenario, when: str) -> dict[str, Any]:
    """What each destination must hold: Meta hashes sorted; Mailchimp hash -> subscribed."""
    held: dict[str, Any] = {}
    for sid, spec in s.specs.items():
        expected = s.expected[when][sid]
        for entry in spec.destinations:
            kind = s.config.destinations[entry.destination].kind.value
            held[f"{sid}/{entry.destination}"] = (
                sorted(expected.members)
                if kind == "ad"
                else {md5_hex(email): "subscribed" for email in expected.emails}
            )
    return held


def sync_metadata(run: RunOutcome) -> dict[str, dict[str, Any]]:
    return {key: meta for key, meta in run.metadata.items() if key.startswith("sync/")}


def test_every_run_succeeds(scenario: Scenario) -> None:
    assert {name: (run.success, run.failed) for name, run in scenario.runs.items()} == {
        name: (True, []) for name in scenario.runs
    }
    failed_checks = {
        name: [key for key, passed in run.checks.items() if not passed]
        for name, run in scenario.runs.items()
    }
    assert failed_checks == {name: [] for name in scenario.runs}
    assert scenario.runs["first"].checks  # the checks ran with the assets


def test_after_the_first_run_each_destination_holds_exactly_the_audience(
    scenario: Scenario,
) -> None:
    assert scenario.held["first"] == expected_holding(scenario, "before")
    assert all(scenario.held["first"].values())  # no destination audience is empty


def stage_requests(s: Scenario, after: str, until: str, *, reads: bool) -> list[dict]:
    """Requests logged between the marks of two stages, both platforms: the GETs (the
    reconciliation check reads each destination's member count, and Mailchimp's members) or
    everything else (what a sync sends)."""
    return [
        r
        for platform in ("meta", "mailchimp")
        for r in s.project.mock.requests_log(platform, since_id=s.marks[after][platform])
        if r["id"] <= s.marks[until][platform] and (r["method"] == "GET") is reads
    ]


def test_a_second_run_makes_zero_api_calls(scenario: Scenario) -> None:
    assert stage_requests(scenario, "first", "second", reads=False) == []
    reads = stage_requests(scenario, "first", "second", reads=True)
    counts = [r for r in reads if not r["path"].endswith("/members")]
    listings = [r for r in reads if r["path"].endswith("/members")]
    assert len(counts) == len(sync_keys(scenario.specs))  # one member count per sync, no more
    # and the pages of members Mailchimp lists for the reconciliation (Meta lists none)
    assert listings and all(r["path"].startswith("/mailchimp/") for r in listings)
    syncs = sync_metadata(scenario.runs["second"])
    assert len(syncs) == len(sync_keys(scenario.specs))
    for key, meta in syncs.items():
        assert (meta["api_calls"], meta["adds"], meta["removes"], meta["updates"]) == (
            0,
            0,
            0,
            0,
        ), key
    assert scenario.held["second"] == scenario.held["first"]


def test_one_withdrawal_sends_exactly_one_removal(scenario: Scenario) -> None:
    member = scenario.withdrawn
    assert member is not None
    after = scenario.expected["after"][WITHDRAWING_SEGMENT]
    assert after.exclusions[member.customer_id] == "withdrawn"
    assert set(scenario.expected["before"][WITHDRAWING_SEGMENT].members) - set(after.members) == {
        member.subject_key
    }
    (key,) = [k for k in sync_metadata(scenario.runs["withdrawal"])]
    meta = scenario.runs["withdrawal"].metadata[key]
    counts = ("removes", "removes_consent_withdrawn", "adds", "updates", "api_calls")
    assert {name: meta[name] for name in counts} == {
        "removes": 1,
        "removes_consent_withdrawn": 1,
        "adds": 0,
        "updates": 0,
        "api_calls": 1,
    }
    (request,) = stage_requests(scenario, "second", "withdrawal", reads=False)
    list_id = scenario.specs[WITHDRAWING_SEGMENT].destinations[0].audience_id
    assert (request["method"], request["path"], request["status"]) == (
        "POST",
        f"/mailchimp/3.0/lists/{list_id}",
        200,
    )
    assert request["values"] == [{"email_address": member.email, "status": "unsubscribed"}]


def test_the_withdrawn_member_is_unsubscribed_and_stays_so(scenario: Scenario) -> None:
    member = scenario.withdrawn
    assert member is not None
    held = scenario.held["withdrawal"][f"{WITHDRAWING_SEGMENT}/mailchimp"]
    expected = expected_holding(scenario, "after")[f"{WITHDRAWING_SEGMENT}/mailchimp"]
    assert held == {**expected, md5_hex(member.email): "unsubscribed"}
    assert scenario.held["last"] == scenario.held["withdrawal"]
    assert stage_requests(scenario, "withdrawal", "last", reads=False) == []
    for key, meta in sync_metadata(scenario.runs["last"]).items():
        assert (meta["api_calls"], meta["adds"], meta["removes"]) == (0, 0, 0), key


def allowed_sends(s: Scenario, when: str) -> dict[tuple[str, str], set[str]]:
    """(platform, audience id) -> what may be added there: Meta subject keys, Mailchimp
    normalized addresses of the oracle's members."""
    allowed: dict[tuple[str, str], set[str]] = {}
    for sid, spec in s.specs.items():
        expected = s.expected[when][sid]
        for entry in spec.destinations:
            platform = s.config.destinations[entry.destination].platform
            values = set(expected.members) if platform == "meta" else expected.emails
            allowed[(platform, entry.audience_id)] = values
    return allowed


def added_values(request: dict[str, Any]) -> tuple[str, list[str]]:
    """(audience id, values added) of one logged request ("", [] when it adds nothing):
    Meta ``POST /meta/<version>/<audience>/users``, Mailchimp members sent as ``subscribed``
    to ``/mailchimp/3.0/lists/<list>[/members/<hash>]``."""
    parts = request["path"].strip("/").split("/")
    if parts[0] == "meta":
        adding = request["method"] == "POST" and parts[-1] == "users"
        return (parts[-2], list(request["values"])) if adding else ("", [])
    subscribed = [
        v["email_address"].lower()
        for v in request["values"] or []
        if v.get("status") == "subscribed" and v.get("email_address")
    ]
    return (parts[3], subscribed) if subscribed else ("", [])


def test_no_add_was_ever_sent_without_a_valid_legal_basis(scenario: Scenario) -> None:
    before, after = allowed_sends(scenario, "before"), allowed_sends(scenario, "after")
    sent = 0
    for platform in ("meta", "mailchimp"):
        for request in scenario.project.mock.requests_log(platform):
            audience_id, values = added_values(request)
            if not values:
                continue
            late = request["id"] > scenario.marks["second"][platform]
            allowed = (after if late else before)[(platform, audience_id)]
            assert set(values) <= allowed, (platform, audience_id, len(set(values) - allowed))
            sent += len(values)
    assert sent >= sum(len(values) for values in before.values())


def test_no_violation_at_either_destination(scenario: Scenario) -> None:
    mock = scenario.project.mock
    assert mock.violations("meta")["raw_identifier"] == 0
    mailchimp = mock.violations("mailchimp")
    assert (mailchimp["resubscribe"], mailchimp["forgotten_resubscribe"]) == (0, 0)


def test_parallel_syncs_to_different_destinations_both_succeed(scenario: Scenario) -> None:
    run = scenario.runs["parallel"]
    keys = [f"sync/{sid}/{dest}" for sid, dest in PARALLEL]
    assert run.success and set(sync_metadata(run)) == set(keys)
    for sid, dest in PARALLEL:
        key = f"{sid}/{dest}"
        assert scenario.held["parallel"][key] == expected_holding(scenario, "before")[key]
    steps = [run.steps[f"sync__{sid}__{dest}"] for sid, dest in PARALLEL]
    launched = max(step["STEP_WORKER_STARTING"] for step in steps)
    first_done = min(step["STEP_SUCCESS"] for step in steps)
    assert launched < first_done  # both worker processes launched before either finished
    assert max(step["STEP_START"] for step in steps) < first_done  # executions overlapped


def test_faults_mid_sync_are_retried_to_the_exact_audience(scenario: Scenario) -> None:
    run = scenario.runs["parallel"]
    (mug, meta_dest), (one_time, mc_dest) = PARALLEL
    meta = run.metadata[f"sync/{mug}/{meta_dest}"]
    mailchimp = run.metadata[f"sync/{one_time}/{mc_dest}"]
    expected = scenario.expected["before"]
    assert (meta["adds"], meta["retries"], meta["api_calls"]) == (
        len(expected[mug].members),
        2,
        meta["min_api_calls"] + 2,
    )
    assert (mailchimp["adds"], mailchimp["retries"], mailchimp["api_calls"]) == (
        len(expected[one_time].members),
        2,
        mailchimp["min_api_calls"] + 2,
    )
    assert mailchimp["min_api_calls"] >= 3  # the dropped connection hit a middle batch
    assert meta["throttled_seconds"] >= RETRY_AFTER_S
    faults = {
        platform: [
            (r["status"], r["fault"] is not None)
            for r in scenario.project.mock.requests_log(platform)
            if r["fault"] is not None
        ]
        for platform in ("meta", "mailchimp")
    }
    assert faults == {"meta": [(429, True), (503, True)], "mailchimp": [(429, True), (None, True)]}
    first = sync_metadata(scenario.runs["first"])
    for sid, dest in PARALLEL:
        assert first[f"sync/{sid}/{dest}"]["api_calls"] == 0  # nothing left to resend
