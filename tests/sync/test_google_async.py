"""run_sync against the Google-shaped mock: acknowledgement only from the request status.

A request still processing when the run ends leaves its rows pending (never counted as synced)
with the request recorded; the next run reads the status first and settles them. A partial
failure rejects exactly the failed members with Google's reason, found by splitting the request
(the status gives counts, not members).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from functools import partial
from pathlib import Path

import duckdb
import pytest

from destinations.google import GoogleAudienceClient
from destinations.http import RetryPolicy
from destinations.mock.testing import running_mock
from orchestrator.sync.async_requests import file_requests_path, fold_requests
from orchestrator.sync.diff import PENDING_HASH
from orchestrator.sync.engine import run_sync
from orchestrator.sync.state import fold_journal
from orchestrator.warehouse.connect import connect
from tests.conftest import REPO
from tests.sync.helpers import fake_emails, new_warehouse, set_audience, state_keys

SEG, GOOGLE, AUDIENCE = "loyal", "google_ads", "5551234"
FAST = RetryPolicy(max_attempts=3, backoff_multiplier=0.01, backoff_max=0.05, read_timeout=5)


@pytest.fixture(scope="module")
def mock(tmp_path_factory):
    with running_mock(tmp_path_factory.mktemp("mock")) as handle:
        yield handle


@pytest.fixture
def wh(tmp_path: Path, mock) -> Path:
    mock.reset()
    path = tmp_path / "wh.duckdb"
    new_warehouse(path, fake_emails(12, seed=5))
    con = duckdb.connect(str(path))
    set_audience(con, SEG, range(1, 9))
    con.close()
    return path


def google_sync(wh: Path, tmp_path: Path, mock, *, wait_s: float = 5.0, state: str = "state"):
    client = GoogleAudienceClient(
        GOOGLE, mock.google_url, mock.google_token, account_id="1234567890",
        policy=FAST, status_wait_s=wait_s, poll_interval_s=0.05,
    )  # fmt: skip
    with client:
        return run_sync(
            wh, tmp_path / state, segment=SEG, destination=GOOGLE, audience_id=AUDIENCE,
            mode="mirror", fields={}, kind="ad", normalization="google", client=client,
        )  # fmt: skip


def held(mock) -> list[str]:
    return sorted(m["identifiers"][0] for m in mock.google_members(AUDIENCE))


def google_keys(wh: Path) -> dict[str, str]:
    con = duckdb.connect(str(wh))
    try:
        rows = con.execute(
            "SELECT subject_key, google_key FROM activation.audience_members WHERE segment = ?",
            [SEG],
        ).fetchall()
    finally:
        con.close()
    return dict(rows)


def outstanding(wh: Path) -> int:
    con = duckdb.connect(str(wh))
    try:
        return con.execute("SELECT count(*) FROM activation.destination_requests").fetchone()[0]
    finally:
        con.close()


def rejections(wh: Path) -> dict[str, str]:
    con = duckdb.connect(str(wh))
    try:
        return dict(
            con.execute("SELECT subject_key, reason FROM activation.sync_rejections").fetchall()
        )
    finally:
        con.close()


def test_processing_at_end_of_run_stays_pending_and_next_run_confirms(
    wh: Path, tmp_path: Path, mock
) -> None:
    mock.google_settings(processing_delay_s=3.0)
    first = google_sync(wh, tmp_path, mock, wait_s=0.1)
    assert first.adds == 8 and first.requests_processing == 1
    state = state_keys(wh, SEG, GOOGLE)
    assert len(state) == 8 and set(state.values()) == {PENDING_HASH}  # nothing claimed
    assert outstanding(wh) == 8
    assert held(mock) == []
    since = mock.requests_log("google")[-1]["id"]
    meanwhile = google_sync(wh, tmp_path, mock, wait_s=0.1)  # still processing: not re-sent
    assert (meanwhile.adds, meanwhile.awaiting, meanwhile.requests_processing) == (0, 8, 1)
    sent = [r["path"] for r in mock.requests_log("google", since_id=since)]
    assert sent == ["/google/v1/requestStatus:retrieve"]
    time.sleep(3.1)
    since = mock.requests_log("google")[-1]["id"]
    second = google_sync(wh, tmp_path, mock, wait_s=0.1)
    assert second.adds == 0 and second.requests_processing == 0  # confirmed, not re-sent
    assert PENDING_HASH not in state_keys(wh, SEG, GOOGLE).values()
    assert outstanding(wh) == 0
    assert held(mock) == sorted(google_keys(wh).values())
    calls = [r["path"] for r in mock.requests_log("google", since_id=since)]
    assert calls == ["/google/v1/requestStatus:retrieve"]


def test_a_request_left_processing_is_confirmed_from_another_machine(
    wh: Path, tmp_path: Path, mock
) -> None:
    """The request journal lives in the warehouse: a run with an empty state folder (another
    machine, the first one's disk lost) confirms what the first run left processing, and no
    run leaves a file of its own behind but disposable scratch."""
    mock.google_settings(processing_delay_s=0.3)
    first = google_sync(wh, tmp_path, mock, wait_s=0.02, state="machine_a")
    assert first.requests_processing == 1 and outstanding(wh) == 8
    assert [p for p in (tmp_path / "machine_a").rglob("*") if p.is_file()] == []
    shutil.rmtree(tmp_path / "machine_a")  # the machine is gone
    time.sleep(0.4)
    since = mock.requests_log("google")[-1]["id"]
    second = google_sync(wh, tmp_path, mock, wait_s=0.1, state="machine_b")
    assert second.adds == 0 and second.requests_processing == 0  # confirmed, not re-sent
    assert PENDING_HASH not in state_keys(wh, SEG, GOOGLE).values()
    assert held(mock) == sorted(google_keys(wh).values())
    calls = [r["path"] for r in mock.requests_log("google", since_id=since)]
    assert calls == ["/google/v1/requestStatus:retrieve"]
    con = duckdb.connect(str(wh))
    left = con.execute("SELECT count(*) FROM activation.destination_request_journal").fetchone()
    con.close()
    assert left == (0,)  # folded with the sync journal


def test_a_request_journal_file_of_an_earlier_version_is_imported(
    wh: Path, tmp_path: Path, mock
) -> None:
    """A local request journal an earlier version left is moved into the warehouse and
    confirmed like any other outstanding request."""
    mock.google_settings(processing_delay_s=0.3)
    google_sync(wh, tmp_path, mock, wait_s=0.02)
    con = duckdb.connect(str(wh))
    rows = con.execute(
        "SELECT request_id, audience_id, op, remove_reason, submitted_at, subject_key, send_key,"
        " fields_hash, destination_ref, fields_json FROM activation.destination_requests"
        " ORDER BY subject_key"
    ).fetchall()
    con.execute("DELETE FROM activation.destination_requests")
    con.close()
    rid, audience, op, reason, at = rows[0][:5]
    line = {
        "kind": "submitted", "request_id": rid, "audience_id": audience, "op": op,
        "remove_reason": reason, "at": at.isoformat(),
        "subject_keys": [r[5] for r in rows], "send_keys": [r[6] for r in rows],
        "fields_hashs": [r[7] for r in rows], "destination_refs": [r[8] for r in rows],
        "fields": [json.loads(r[9]) for r in rows],
    }  # fmt: skip
    path = file_requests_path(tmp_path / "state", SEG, GOOGLE)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(line) + "\n" + '{"kind": "resol', encoding="utf-8")  # torn tail
    time.sleep(0.4)
    report = google_sync(wh, tmp_path, mock, wait_s=0.1)
    assert not path.exists()
    assert report.adds == 0 and report.requests_processing == 0  # confirmed from the file
    assert PENDING_HASH not in state_keys(wh, SEG, GOOGLE).values()
    assert outstanding(wh) == 0


def test_partial_failure_rejects_exactly_the_failed_members(wh: Path, tmp_path: Path, mock) -> None:
    keys = google_keys(wh)
    failing = sorted(keys)[2:4]
    mock.add_fault(
        "google", {"path": "ingest"},
        {"type": "reject_rows", "values": [keys[k] for k in failing], "error": "INVALID_FORMAT"},
        times=20,
    )  # fmt: skip
    report = google_sync(wh, tmp_path, mock)
    assert report.rejected == 2
    assert set(rejections(wh)) == set(failing)
    assert all("INVALID_FORMAT" in r for r in rejections(wh).values())
    state = state_keys(wh, SEG, GOOGLE)
    assert set(state) == set(keys) - set(failing)
    assert PENDING_HASH not in state.values()
    assert held(mock) == sorted(keys[k] for k in keys if k not in failing)


def test_partial_failure_found_by_the_next_run_is_settled_the_same_way(
    wh: Path, tmp_path: Path, mock
) -> None:
    keys = google_keys(wh)
    failing = sorted(keys)[5]
    mock.add_fault(
        "google", {"path": "ingest"},
        {"type": "reject_rows", "values": [keys[failing]], "error": "INVALID_FORMAT"}, times=20,
    )  # fmt: skip
    mock.google_settings(processing_delay_s=0.3)
    google_sync(wh, tmp_path, mock, wait_s=0.05)
    assert set(state_keys(wh, SEG, GOOGLE).values()) == {PENDING_HASH}
    time.sleep(0.4)
    google_sync(wh, tmp_path, mock, wait_s=2.0)
    assert set(rejections(wh)) == {failing}
    state = state_keys(wh, SEG, GOOGLE)
    acked = {k for k, h in state.items() if h != PENDING_HASH}
    assert acked == set(keys) - {failing}  # the failed member is never claimed as synced
    assert outstanding(wh) == 0
    assert held(mock) == sorted(keys[k] for k in keys if k != failing)


def test_a_lost_request_id_converges_by_sending_again(wh: Path, tmp_path: Path, mock) -> None:
    """A crash after the upload but before the request id was kept: the rows are pending
    with no request; the next run sends them again (ingest is idempotent)."""
    mock.google_settings(processing_delay_s=0.5)
    google_sync(wh, tmp_path, mock, wait_s=0.05)
    con = duckdb.connect(str(wh))
    con.execute("DELETE FROM activation.destination_requests")  # as if never journaled
    con.close()
    mock.google_settings(processing_delay_s=0)
    report = google_sync(wh, tmp_path, mock)
    assert report.adds == 8
    assert PENDING_HASH not in state_keys(wh, SEG, GOOGLE).values()
    assert held(mock) == sorted(google_keys(wh).values())


def _crash(wh: Path, tmp_path: Path, mock, point: str, wait_s: float) -> int:
    cmd = [sys.executable, "-m", "tests.sync.google_crash_runner", str(wh), str(tmp_path / "state")]
    cmd += [mock.google_url, mock.google_token, AUDIENCE, str(wait_s), point]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, timeout=60).returncode


def _fold_like_next_run(wh: Path) -> None:
    with connect(wh) as con:
        fold_journal(
            con, segment=SEG, destination=GOOGLE, kind="ad",
            before_fold=partial(fold_requests, segment=SEG, destination=GOOGLE),
        )  # fmt: skip


@pytest.mark.parametrize("point", ["after_submit", "after_journal", "in_confirm"])
def test_a_killed_google_sync_never_over_claims_and_converges(
    wh: Path, tmp_path: Path, mock, point: str
) -> None:
    mock.google_settings(processing_delay_s=0.3)
    if point == "in_confirm":  # an earlier run left a request processing
        google_sync(wh, tmp_path, mock, wait_s=0.02)
        assert outstanding(wh) == 8
    assert _crash(wh, tmp_path, mock, point, 0.02) == -signal.SIGKILL
    _fold_like_next_run(wh)
    time.sleep(0.4)  # whatever Google accepted is processed by now
    keys = google_keys(wh)
    state = state_keys(wh, SEG, GOOGLE)
    at_google = set(held(mock))
    claimed = {keys[k] for k, h in state.items() if h != PENDING_HASH}
    assert claimed <= at_google  # every row claimed is really there
    assert at_google <= {keys[k] for k in state}  # nothing there we could not remove later
    mock.google_settings(processing_delay_s=0)
    google_sync(wh, tmp_path, mock)
    assert held(mock) == sorted(keys.values())
    final = state_keys(wh, SEG, GOOGLE)
    assert set(final) == set(keys) and PENDING_HASH not in final.values()
    assert outstanding(wh) == 0
