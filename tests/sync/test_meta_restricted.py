"""Meta's restricted audiences: an audience flagged for suggesting health or financial status
refuses every edit ("Audience Upload Blocked", code 100, subcode 1713230). The sync records the
refusal per row with Meta's words, does not resend it, and other audiences are unaffected.
The warning before any sync about a segment reading data marked health or financial:
tests/segments/test_restricted_warnings.py."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pytest

from destinations.http import RetryPolicy
from destinations.meta import MetaAudienceClient
from destinations.mock.testing import running_mock
from orchestrator.sync.engine import run_sync
from tests.sync.helpers import fake_emails, new_warehouse, set_audience

BLOCKED, FREE = "120210000000471", "120210000000200"
FAST = RetryPolicy(max_attempts=2, backoff_multiplier=0.01, backoff_max=0.05, read_timeout=5)


@pytest.fixture(scope="module")
def mock(tmp_path_factory):
    with running_mock(tmp_path_factory.mktemp("mock")) as handle:
        yield handle


def sync(wh: Path, state: Path, mock, segment: str, audience: str):
    with MetaAudienceClient("meta_ads", mock.meta_url, mock.meta_token, policy=FAST) as client:
        return run_sync(
            wh, state, segment=segment, destination="meta_ads", audience_id=audience,
            mode="mirror", fields={}, kind="ad", client=client,
        )  # fmt: skip


def test_blocked_audience_is_reported_not_retried_and_others_sync(tmp_path: Path, mock) -> None:
    mock.reset()
    mock.meta_restrict(BLOCKED)
    wh = tmp_path / "wh.duckdb"
    new_warehouse(wh, fake_emails(6, seed=3))
    con = duckdb.connect(str(wh))
    set_audience(con, "vitamins", range(1, 4))
    set_audience(con, "mugs", range(4, 7))
    con.close()
    blocked = sync(wh, tmp_path / "state", mock, "vitamins", BLOCKED)
    free = sync(wh, tmp_path / "state", mock, "mugs", FREE)
    assert blocked.rejected == 3
    assert free.rejected == 0 and len(mock.meta_members(FREE)) == 3
    assert mock.meta_members(BLOCKED) == []
    con = duckdb.connect(str(wh))
    reasons = con.execute(
        "SELECT DISTINCT reason, permanent FROM activation.sync_rejections WHERE segment = ?",
        ["vitamins"],
    ).fetchall()
    con.close()
    ((reason, permanent),) = reasons
    assert permanent and "subcode 1713230" in reason and "blocked" in reason.lower()
    since = mock.requests_log("meta")[-1]["id"]
    again = sync(wh, tmp_path / "state", mock, "vitamins", BLOCKED)
    assert again.skipped_rejected == 3 and again.api_calls == 0
    assert mock.requests_log("meta", since_id=since) == []
