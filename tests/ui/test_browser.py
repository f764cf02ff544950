"""The Dagster UI in a real browser: ``dagster dev`` on a free port against a temporary
instance and warehouse, driven by headless Chromium (the system's, never a downloaded one).

It checks what a marketer or data engineer sees: the segment's asset graph with its segment,
audience and sync assets and their checks, a run launched through the webserver's GraphQL API
finishing with success and reaching the (mock) destination, and the graph then showing the
assets materialized. A screenshot lands in ``test-artifacts/`` (git-ignored).
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.conftest import AS_OF, REPO

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-quic",
    "--no-first-run",
    "--disable-component-update",
    "--disable-sync",
]
SEGMENT = "recent_buyers_eu"  # segment -> audience -> sync/recent_buyers_eu/mailchimp
LIST_ID = "a1b2c3d4e5"
LOCATION = "orchestrator.definitions"
ARTIFACTS = REPO / "test-artifacts"
START_TIMEOUT_S = 60
RUN_TIMEOUT_S = 90

pytestmark = [
    pytest.mark.slow,
    pytest.mark.timeout(180),
    pytest.mark.skipif(
        not CHROMIUM.exists(),
        reason="/usr/bin/chromium is missing: `make browser-deps` installs it (as root)",
    ),
]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _stop(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM the whole process group, SIGKILL it after 5 s (``dagster dev`` ignores TERM
    for longer than a test should wait; see /work/shared/RECIPES.md)."""
    if proc.poll() is not None:
        return
    for sig, wait_s in ((signal.SIGTERM, 5), (signal.SIGKILL, 10)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=wait_s)
            return
        except subprocess.TimeoutExpired:
            continue


def _tail(path: Path, limit: int = 3000) -> str:
    return path.read_text(errors="replace")[-limit:] if path.exists() else ""


@pytest.fixture
def webserver(tmp_path: Path, project_env: dict[str, str], mock_destinations: Any) -> Iterator[str]:
    """``dagster dev`` in its own process group; yields its base URL."""
    env = {
        **os.environ,
        **project_env,
        "MAILCHIMP_BASE_URL": mock_destinations.mailchimp_url,
        "MAILCHIMP_API_KEY": mock_destinations.mailchimp_token,
        "META_BASE_URL": mock_destinations.meta_url,
        "META_ACCESS_TOKEN": mock_destinations.meta_token,
    }
    with dagster_dev(env, tmp_path / "dagster-dev.log") as url:
        yield url


@contextlib.contextmanager
def dagster_dev(env: dict[str, str], log: Path) -> Iterator[str]:
    """``dagster dev`` on the repository's workspace with ``env``, on a free port, in its own
    process group (output to ``log``); yields its base URL once the code location has loaded,
    and stops the whole group at the end."""
    port = _free_port()
    dagster = Path(sys.executable).with_name("dagster")
    command = [str(dagster), "dev", "-w", "workspace.yaml", "-h", "127.0.0.1", "-p", str(port)]
    with log.open("wb") as out:
        proc = subprocess.Popen(
            command, cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_for_location(url, proc, log)
        yield url
    finally:
        _stop(proc)


def _graphql(url: str, query: str, variables: dict[str, Any] | None = None) -> dict[str, Any]:
    response = requests.post(
        f"{url}/graphql", json={"query": query, "variables": variables or {}}, timeout=30
    )
    response.raise_for_status()
    body = response.json()
    assert "errors" not in body, body["errors"]
    return body["data"]


def _wait_for_location(url: str, proc: subprocess.Popen[bytes], log: Path) -> None:
    """Wait until the webserver answers and the code location has loaded."""
    query = """{ workspaceOrError { ... on Workspace { locationEntries {
        name loadStatus locationOrLoadError { __typename } } } } }"""
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"dagster dev exited:\n{_tail(log)}"
        try:
            entries = _graphql(url, query)["workspaceOrError"]["locationEntries"]
        except (requests.RequestException, ValueError, KeyError):
            entries = []
        loaded = [e for e in entries if e["loadStatus"] == "LOADED"]
        if loaded:
            kind = loaded[0]["locationOrLoadError"]["__typename"]
            assert kind == "RepositoryLocation", f"code location failed to load:\n{_tail(log)}"
            return
        time.sleep(0.5)
    pytest.fail(f"dagster dev not ready after {START_TIMEOUT_S} s:\n{_tail(log)}")


def _checks_by_asset(url: str) -> dict[tuple[str, ...], list[str]]:
    query = """{ assetNodes { assetKey { path }
        assetChecksOrError { ... on AssetChecks { checks { name } } } } }"""
    found = {}
    for node in _graphql(url, query)["assetNodes"]:
        checks = (node["assetChecksOrError"] or {}).get("checks") or []
        found[tuple(node["assetKey"]["path"])] = sorted(c["name"] for c in checks)
    return found


def _launch(url: str, job: str) -> str:
    mutation = """mutation($p: ExecutionParams!) { launchRun(executionParams: $p) {
        __typename ... on LaunchRunSuccess { run { runId } }
        ... on PythonError { message } ... on RunConfigValidationInvalid { errors { message } }
    } }"""
    selector = {"repositoryLocationName": LOCATION, "repositoryName": "__repository__"}
    config = {"config": {"as_of": AS_OF.isoformat()}}
    ops = {f"segment__{SEGMENT}": config}  # builds segment/<sid> and audience/<sid>
    ops[f"sync__{SEGMENT}__mailchimp"] = config
    # One process for every step: the default executor starts a Python process per step,
    # which on two busy cores takes longer than the run itself.
    run_config = {"ops": ops, "execution": {"config": {"in_process": {}}}}
    params = {"selector": {**selector, "jobName": job}, "runConfigData": run_config}
    launched = _graphql(url, mutation, {"p": params})["launchRun"]
    assert launched["__typename"] == "LaunchRunSuccess", launched
    return launched["run"]["runId"]


def _wait_for_run(url: str, run_id: str) -> str:
    query = "query($id: ID!) { runOrError(runId: $id) { ... on Run { status } } }"
    deadline = time.monotonic() + RUN_TIMEOUT_S
    status = "UNKNOWN"
    while time.monotonic() < deadline:
        status = _graphql(url, query, {"id": run_id})["runOrError"]["status"]
        if status in ("SUCCESS", "FAILURE", "CANCELED"):
            return status
        time.sleep(1)
    return status


def _dismiss_community_dialog(page: Any) -> None:
    """A fresh instance greets with "Join the Dagster community" over the page: Skip it."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    with contextlib.suppress(PlaywrightTimeout):  # already dismissed for this instance
        page.get_by_role("button", name="Skip").click(timeout=15_000)


def test_asset_graph_checks_and_a_run_in_the_browser(webserver: str, mock_destinations) -> None:
    from playwright.sync_api import expect, sync_playwright

    expect.set_options(timeout=20_000)

    checks = _checks_by_asset(webserver)
    keys = [("segment", SEGMENT), ("audience", SEGMENT), ("sync", SEGMENT, "mailchimp")]
    assert all(key in checks for key in keys), sorted(checks)
    assert checks[("audience", SEGMENT)], "the audience has at least its legal-basis check"
    group = f"{webserver}/locations/__repository__@{LOCATION}/asset-groups/{SEGMENT}"

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1600, "height": 1000})
        page.set_default_timeout(20_000)
        page.goto(f"{group}/list")
        _dismiss_community_dialog(page)
        for key in keys:  # each asset's row links to its page (long names are truncated)
            expect(page.locator(f'a[href="/assets/{"/".join(key)}"]').first).to_be_visible()
        for key in keys:
            if not checks[key]:
                continue
            page.goto(f"{webserver}/assets/{'/'.join(key)}?view=checks")
            expect(page.get_by_text(f"Checks ({len(checks[key])})")).to_be_visible()
            for name in checks[key]:
                expect(page.get_by_text(name, exact=True).first).to_be_visible()

        run_id = _launch(webserver, f"{SEGMENT}_job")
        assert _wait_for_run(webserver, run_id) == "SUCCESS"
        assert mock_destinations.mailchimp_members(LIST_ID), "the run reached the destination"

        page.goto(f"{webserver}/runs/{run_id}")
        expect(page.get_by_text("Success", exact=True).first).to_be_visible()
        page.goto(group)
        expect(page.get_by_text("mailchimp", exact=True).first).to_be_visible()
        for key in keys:  # every check of the graph ran in the job and passed
            if checks[key]:
                n = len(checks[key])
                expect(page.get_by_text(f"{n} / {n} Passed").first).to_be_visible()
        expect(page.get_by_text("Loading...")).to_have_count(0)
        expect(page.get_by_text("Never materialized")).to_have_count(0)
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / f"dagster-{SEGMENT}-graph.png"), full_page=True)
        browser.close()
