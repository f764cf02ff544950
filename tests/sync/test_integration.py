"""run_sync with the real clients against the running mock servers (real HTTP).

What the destination holds is read through the mock's control API, never from our own state.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest

from destinations.errors import TransientError
from destinations.http import RetryPolicy
from destinations.mailchimp import MailchimpClient
from destinations.meta import MetaAudienceClient
from destinations.mock.testing import running_mock
from orchestrator.pseudonymize import normalize_email
from orchestrator.sync.diff import PENDING_HASH
from orchestrator.sync.engine import run_sync
from orchestrator.sync.state import fold_journal
from orchestrator.warehouse.connect import connect
from tests.sync.helpers import T0, fake_emails, key_of, new_warehouse, set_audience, state_keys

SEG, META, MC = "loyal", "meta_ads", "mailchimp"
AUDIENCE, LIST = "120210000000000", "list01"
REPO = Path(__file__).resolve().parents[2]
FAST = RetryPolicy(max_attempts=2, backoff_multiplier=0.01, backoff_max=0.05, read_timeout=5)


@pytest.fixture(scope="module")
def mock(tmp_path_factory):
    with running_mock(tmp_path_factory.mktemp("mock")) as handle:
        yield handle


@pytest.fixture
def wh(tmp_path: Path, mock) -> Path:
    mock.reset()
    path = tmp_path / "wh.duckdb"
    new_warehouse(path, fake_emails(20, seed=11))
    return path


def meta_sync(wh: Path, tmp_path: Path, mock, *, batch_size: int = 4, policy=FAST):
    client = MetaAudienceClient(META, mock.meta_url, mock.meta_token, policy=policy)
    with client:
        return run_sync(
            wh, tmp_path / "state", segment=SEG, destination=META, audience_id=AUDIENCE,
            mode="mirror", fields={}, kind="ad", client=client, batch_size=batch_size,
        )  # fmt: skip


def mc_sync(wh: Path, tmp_path: Path, mock):
    client = MailchimpClient(MC, mock.mailchimp_url, mock.mailchimp_token, policy=FAST)
    with client:
        return run_sync(
            wh, tmp_path / "state", segment=SEG, destination=MC, audience_id=LIST,
            mode="mirror", fields={"COUNTRY": "country"}, kind="email", client=client,
        )  # fmt: skip


def keys(wh: Path, customer_ids) -> list[str]:
    con = duckdb.connect(str(wh), read_only=True)
    try:
        return sorted(key_of(con, c) for c in customer_ids)
    finally:
        con.close()


def audience(wh: Path, customer_ids) -> None:
    with connect(wh) as con:
        set_audience(con, SEG, customer_ids)


def test_meta_first_sync_then_nothing_then_one_removal(wh, tmp_path, mock):
    audience(wh, range(1, 11))
    first = meta_sync(wh, tmp_path, mock)
    assert mock.meta_members(AUDIENCE) == keys(wh, range(1, 11))
    assert first.adds == 10 and first.api_calls == first.min_api_calls == 3
    assert sorted(state_keys(wh, SEG, META)) == mock.meta_members(AUDIENCE)

    since = mock.requests_log("meta")[-1]["id"]
    second = meta_sync(wh, tmp_path, mock)
    assert second.api_calls == 0 and second.unchanged == 10
    assert mock.requests_log("meta", since_id=since) == []

    audience(wh, range(2, 11))
    third = meta_sync(wh, tmp_path, mock)
    sent = [(r["method"], len(r["values"])) for r in mock.requests_log("meta", since_id=since)]
    assert sent == [("DELETE", 1)]
    assert (third.removes, third.adds, third.removes_by_reason["left_segment"]) == (1, 0, 1)
    assert mock.meta_members(AUDIENCE) == keys(wh, range(2, 11))
    assert mock.violations("meta")["raw_identifier"] == 0


def test_meta_answer_lost_after_apply_then_member_leaves_is_still_removed(wh, tmp_path, mock):
    audience(wh, range(1, 9))
    mock.add_fault(
        "meta", {"method": "POST", "path": "users$", "nth": 2},
        {"type": "timeout_after_apply", "seconds": 1.5},
    )  # fmt: skip
    impatient = RetryPolicy(max_attempts=1, read_timeout=0.5)
    with pytest.raises(TransientError):
        meta_sync(wh, tmp_path, mock, policy=impatient)
    held = state_keys(wh, SEG, META)
    at_meta = set(mock.meta_members(AUDIENCE))
    assert {k for k, h in held.items() if h != PENDING_HASH} <= at_meta <= set(held)
    audience(wh, range(1, 5))  # the members of the lost batch (5..8) leave
    meta_sync(wh, tmp_path, mock)
    assert mock.meta_members(AUDIENCE) == keys(wh, range(1, 5))
    assert sorted(state_keys(wh, SEG, META)) == keys(wh, range(1, 5))


def _crash_run(wh: Path, state_dir: Path, mock, crash_after: int, point: str) -> int:
    cmd = [sys.executable, "-m", "tests.sync.crash_runner", str(wh), str(state_dir)]
    cmd += [mock.meta_url, mock.meta_token, AUDIENCE, "3", str(crash_after), point]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, timeout=60).returncode


@pytest.mark.parametrize(
    ("crash_after", "point"),
    [(1, "after_journal"), (1, "before_journal"), (2, "before_journal")],
)
def test_a_killed_sync_never_over_claims_and_the_next_run_converges(
    wh, tmp_path, mock, crash_after, point
):
    audience(wh, range(1, 9))
    meta_sync(wh, tmp_path, mock)
    audience(wh, range(4, 13))  # removes 1..3 (one batch of 3), adds 9..12 (two batches)

    assert _crash_run(wh, tmp_path / "state", mock, crash_after, point) == -signal.SIGKILL
    with connect(wh) as con:  # what the next run does first
        fold_journal(con, segment=SEG, destination=META, kind="ad")
    held = state_keys(wh, SEG, META)
    at_meta = set(mock.meta_members(AUDIENCE))
    synced = {k for k, h in held.items() if h != PENDING_HASH}
    assert synced <= at_meta  # every claimed row is really there
    assert at_meta <= set(held)  # and nothing is there that we could not remove later

    meta_sync(wh, tmp_path, mock, batch_size=3)
    expected = keys(wh, range(4, 13))
    assert mock.meta_members(AUDIENCE) == expected
    assert sorted(state_keys(wh, SEG, META)) == expected
    assert PENDING_HASH not in state_keys(wh, SEG, META).values()


def _subscribed(mock) -> dict[str, dict]:
    return {
        m["email_address"]: m["merge_fields"]
        for m in mock.mailchimp_members(LIST)
        if m["status"] == "subscribed"
    }


def _emails(wh: Path, customer_ids) -> set[str]:
    con = duckdb.connect(str(wh), read_only=True)
    try:
        rows = con.execute(
            "SELECT email FROM customers WHERE customer_id IN (SELECT unnest(?))",
            [list(customer_ids)],
        ).fetchall()
    finally:
        con.close()
    return {normalize_email(e) for (e,) in rows}


def test_mailchimp_fields_withdrawal_and_erasure(wh, tmp_path, mock):
    audience(wh, range(1, 7))
    mc_sync(wh, tmp_path, mock)
    assert set(_subscribed(mock)) == _emails(wh, range(1, 7))
    assert {f["COUNTRY"] for f in _subscribed(mock).values()} == {"GB"}

    with connect(wh) as con:
        con.execute("UPDATE customers SET country = 'FR' WHERE customer_id = 2")
        con.execute(
            "INSERT INTO activation.audience_exclusions VALUES (?, 3, 'withdrawn', ?)", [SEG, T0]
        )
        con.execute("INSERT INTO privacy_requests VALUES ('r1', 4, NULL, 'erasure', ?)", [T0])
    audience(wh, [1, 2, 5, 6])
    report = mc_sync(wh, tmp_path, mock)
    assert (report.updates, report.adds) == (1, 0)
    assert report.removes_by_reason == {
        "erasure": 1, "objection": 0, "consent_withdrawn": 1, "left_segment": 0,
    }  # fmt: skip
    by_email = {m["email_address"]: m for m in mock.mailchimp_members(LIST)}
    (email2,) = _emails(wh, [2])
    (email3,) = _emails(wh, [3])
    assert by_email[email2]["merge_fields"]["COUNTRY"] == "FR"
    assert by_email[email3]["status"] == "unsubscribed"
    assert next(iter(_emails(wh, [4]))) not in by_email  # forgotten: only a hash is kept
    assert set(_subscribed(mock)) == _emails(wh, [1, 2, 5, 6])

    audience(wh, [1, 2, 3, 5, 6])  # a stale audience brings the withdrawn person back
    again = mc_sync(wh, tmp_path, mock)
    assert (again.suppressed, again.adds, again.api_calls) == (1, 0, 0)
    assert mock.violations("mailchimp")["resubscribe"] == 0
    assert sorted(state_keys(wh, SEG, MC)) == keys(wh, [1, 2, 5, 6])
