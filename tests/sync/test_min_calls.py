"""min_api_calls counts what one call of the platform really carries: Mailchimp archives and
erases one member per request, Meta's update makes no call."""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from pathlib import Path

import pytest

from destinations.base import RemoveReason, min_calls
from destinations.registry import platform_rows_per_call
from orchestrator.sync.engine import preview_diff, run_sync
from orchestrator.warehouse.connect import connect
from tests.sync.helpers import MemoryDestination, fake_emails, new_warehouse, set_audience

SEG, DEST = "loyal", "news"


@dataclass
class OneRemovePerCall(MemoryDestination):
    """Like Mailchimp: a remove is one HTTP request per row, whatever the batch."""

    def rows_per_call(self, op: str, reason: RemoveReason | None) -> int:
        return 1 if op == "remove" else self.max_batch_size

    def remove(self, audience_id, rows, reason):
        results = super().remove(audience_id, rows, reason)
        self.stats.calls += len(rows) - 1  # one request per row, as the real client
        return results


@pytest.fixture
def wh(tmp_path: Path) -> Path:
    path = tmp_path / "wh.duckdb"
    new_warehouse(path, fake_emails(10))
    with connect(path) as con:
        set_audience(con, SEG, range(1, 8))
    return path


def _sync(wh: Path, tmp_path: Path, **kw):
    args = {"segment": SEG, "destination": DEST, "audience_id": "aud", "mode": "mirror"}
    return run_sync(wh, tmp_path / "state", **args, fields={}, kind="ad", **kw)


def test_platform_rows_per_call_follows_each_api() -> None:
    mailchimp = partial(platform_rows_per_call, "mailchimp")
    assert mailchimp("remove", RemoveReason.LEFT_SEGMENT) == 1
    assert mailchimp("remove", RemoveReason.ERASURE) == 1
    assert mailchimp("remove", RemoveReason.CONSENT_WITHDRAWN) == 500
    assert mailchimp("add", None) == mailchimp("update", None) == 500
    assert platform_rows_per_call("meta", "update") == 0
    assert platform_rows_per_call("meta", "remove", RemoveReason.ERASURE) == 10_000
    assert (min_calls(1001, 500), min_calls(7, 1, 500), min_calls(5, 0), min_calls(0, 10)) == (
        3,
        7,
        0,
        0,
    )
    assert min_calls(25, 500, batch_size=10) == 3  # the sync's own smaller batches


def test_per_row_removes_count_one_call_each_and_the_minimum_is_met(wh, tmp_path) -> None:
    client = OneRemovePerCall(max_batch_size=10)
    first = _sync(wh, tmp_path, client=client)
    assert first.api_calls == first.min_api_calls == 1  # 7 adds in one batch
    with connect(wh) as con:
        set_audience(con, SEG, [1, 2])  # 5 leave the segment
    second = _sync(wh, tmp_path, client=client)
    assert second.removes == 5
    assert second.api_calls == second.min_api_calls == 5  # not ceil(5 / 10) = 1


def test_a_dry_run_counts_with_the_platform_rule(wh, tmp_path) -> None:
    _sync(wh, tmp_path, client=OneRemovePerCall(max_batch_size=10))
    with connect(wh) as con:
        set_audience(con, SEG, [1, 2])
    args = {"segment": SEG, "destination": DEST, "mode": "mirror", "fields": {}, "kind": "ad"}
    plain = preview_diff(wh, tmp_path / "state", **args, max_batch_size=500)
    per_platform = preview_diff(
        wh,
        tmp_path / "state",
        **args,
        max_batch_size=500,
        rows_per_call=partial(platform_rows_per_call, "mailchimp"),
    )
    assert plain.removes == per_platform.removes == 5
    assert (plain.min_api_calls, per_platform.min_api_calls) == (1, 5)
