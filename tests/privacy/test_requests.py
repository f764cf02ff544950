"""Recording requests by hash, the one-month deadline check, the sensor's cursor and lock
handling, and what happens when a destination fails (no mock server needed here)."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from datetime import datetime, timedelta
from pathlib import Path

import dagster as dg
import pytest
from dagster_duckdb import DuckDBResource

from destinations.errors import TransientError
from orchestrator.privacy.receipts import one_month_after, receipt_for, utc_now
from orchestrator.privacy.requests import PairTarget, process_requests, record_request
from orchestrator.privacy.sensor import (
    RECEIPTS_KEY,
    SENSOR_NAME,
    receipts_run_config,
    requests_deadline,
)
from orchestrator.pseudonymize import subject_key
from orchestrator.settings import Settings
from orchestrator.sync.diff import PENDING_HASH
from orchestrator.warehouse.target import Warehouse
from tests.privacy.conftest import BACKENDS
from tests.privacy.helpers import (
    ADS,
    ERIN,
    ERIN_ID,
    META_AUD,
    load_defs,
    opened,
    rows,
    warehouse_of,
)
from tests.sync.helpers import MemoryDestination


def insert_request(wh: Warehouse, request_id: str, customer_id: int, received_at: datetime) -> None:
    with opened(wh) as con:
        con.execute(
            "INSERT INTO privacy_requests VALUES (?, ?, NULL, 'erasure', ?)",
            [request_id, customer_id, received_at],
        )


@pytest.mark.parametrize("backend", BACKENDS)
def test_record_request_keeps_only_the_hash(privacy_env: Settings) -> None:
    wh = warehouse_of(privacy_env)
    request_id = record_request(wh, "\u00a0erin.tester@GMAIL.com ", "objection")
    stored = rows(wh, "SELECT * FROM activation.request_intake WHERE request_id = ?", [request_id])
    assert stored[0][1:4] == (ERIN_ID, subject_key(ERIN), "objection")
    suppressed = rows(wh, "SELECT * FROM activation.suppression_list")
    assert "@" not in str(stored) + str(suppressed) and len(suppressed) == 1
    with pytest.raises(ValueError) as bad:
        record_request(wh, "not-an-address", "erasure")
    assert "not-an-address" not in str(bad.value)
    with pytest.raises(ValueError, match="request_type"):
        record_request(wh, ERIN, "access")


@pytest.mark.parametrize(
    ("received", "deadline"),
    [
        (datetime(2026, 1, 31, 9, 30), datetime(2026, 2, 28, 9, 30)),
        (datetime(2028, 1, 31), datetime(2028, 2, 29)),
        (datetime(2026, 3, 15, 23, 59), datetime(2026, 4, 15, 23, 59)),
        (datetime(2026, 12, 31), datetime(2027, 1, 31)),
    ],
)
def test_one_month_follows_regulation_1182_71(received: datetime, deadline: datetime) -> None:
    assert one_month_after(received) == deadline


def deadline_result(result: dg.ExecuteInProcessResult) -> dg.AssetCheckEvaluation:
    (evaluation,) = result.get_asset_check_evaluations()
    assert evaluation.check_name == "requests_deadline"
    return evaluation


@pytest.mark.parametrize("backend", BACKENDS)
def test_deadline_check_fails_for_an_old_request_without_receipt(privacy_env: Settings) -> None:
    wh = warehouse_of(privacy_env)
    old_at = utc_now() - timedelta(days=40)
    insert_request(wh, "pr-old", 3, old_at)
    insert_request(wh, "pr-new", 4, utc_now() - timedelta(days=1))
    defs = load_defs()
    job = defs.resolve_job_def("privacy_requests_job")
    with dg.DagsterInstance.get() as instance:
        only_new = job.execute_in_process(
            run_config=receipts_run_config(["pr-new"]), instance=instance
        )
        evaluation = deadline_result(only_new)
        assert not evaluation.passed
        assert evaluation.severity == dg.AssetCheckSeverity.ERROR
        assert evaluation.metadata["count"].value == 1
        assert evaluation.metadata["oldest_received_at"].value == old_at.isoformat()
        assert receipt_for(wh, "pr-old")["status"] == "overdue"
        assert receipt_for(wh, "pr-new")["status"] == "complete"  # no destination held them

        every_open = job.execute_in_process(run_config=receipts_run_config(None), instance=instance)
        assert deadline_result(every_open).passed
    assert requests_deadline.check_keys == {dg.AssetCheckKey(RECEIPTS_KEY, "requests_deadline")}


def evaluate(defs: dg.Definitions, wh: Path, cursor: str | None):
    context = dg.build_sensor_context(
        cursor=cursor, resources={"warehouse": DuckDBResource(database=str(wh))}
    )
    return defs.resolve_sensor_def(SENSOR_NAME)(context), context.cursor


HOLD_LOCK = """
import sys, time, duckdb
con = duckdb.connect(sys.argv[1])
print("locked", flush=True)
time.sleep(30)
"""


def test_sensor_skips_while_the_warehouse_is_locked_and_keeps_its_cursor(
    privacy_env: Settings,
) -> None:
    wh = privacy_env.warehouse_path
    defs = load_defs()
    assert defs.resolve_sensor_def(SENSOR_NAME).default_status == dg.DefaultSensorStatus.RUNNING
    first = record_request(wh, ERIN, "erasure")
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_LOCK, str(wh)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        started = time.monotonic()
        skipped, cursor = evaluate(defs, wh, None)
        assert isinstance(skipped, dg.SkipReason) and cursor is None
        assert time.monotonic() - started < 10  # gave up quickly, did not wait for the writer
    finally:
        holder.kill()
        holder.wait()
    launched, cursor = evaluate(defs, wh, None)
    assert isinstance(launched, dg.RunRequest)
    assert launched.run_config == receipts_run_config([first])
    second = record_request(wh, "someone.else@example.com", "objection")
    again, _ = evaluate(defs, wh, cursor)
    assert again.run_config == receipts_run_config([second])  # only the new one


def seed_state(wh: Warehouse, rows_: list[tuple[str, str, str, str | None, str]]) -> None:
    with opened(wh) as con:
        con.executemany(
            "INSERT INTO activation.sync_state VALUES (?, ?, ?, ?, ?, ?)",
            [[*r, datetime(2026, 11, 1)] for r in rows_],
        )


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_failing_destination_leaves_the_request_open_and_a_retry_completes_it(
    privacy_env: Settings,
) -> None:
    wh, state = warehouse_of(privacy_env), privacy_env.state_dir
    key = subject_key(ERIN)
    seed_state(wh, [(ADS, "meta_ads", key, None, PENDING_HASH)])  # unknown outcome: may hold
    request_id = record_request(wh, ERIN, "erasure")
    targets = {(ADS, "meta_ads"): PairTarget(ADS, "meta_ads", META_AUD, "ad")}
    failing = MemoryDestination(fail_on_call=1, error=TransientError("meta_ads", "HTTP 503"))

    (outcome,) = process_requests(wh, state, targets=targets, client_for=lambda _: failing)
    assert not outcome.complete
    receipt = receipt_for(wh, request_id)
    assert receipt["status"] == "open"
    assert [(d["outcome"], d["action"]) for d in receipt["destinations"]] == [("error", "remove")]
    assert "HTTP 503" in receipt["destinations"][0]["detail"]
    assert rows(wh, "SELECT count(*) FROM activation.sync_state")[0][0] == 1  # kept for retry

    working = MemoryDestination(members={key: {}})
    (retry,) = process_requests(wh, state, targets=targets, client_for=lambda _: working)
    assert retry.complete and working.members == {}
    assert working.calls == [("remove", 1, "erasure")]
    assert receipt_for(wh, request_id)["destinations"][0]["outcome"] == "ok"
    assert rows(wh, "SELECT count(*) FROM activation.sync_state")[0][0] == 0


@pytest.mark.parametrize("backend", BACKENDS)
def test_the_alerts_sensor_reads_late_requests_from_the_warehouse(privacy_env: Settings) -> None:
    """A request open past half its one-month deadline fires one alert, read from either
    backend; once it is complete the alert recovers."""
    from orchestrator.alerts import evaluate

    wh = warehouse_of(privacy_env)
    insert_request(wh, "pr-late", 3, utc_now() - timedelta(days=20))
    with dg.DagsterInstance.get() as instance:
        state, fired = evaluate(None, instance, wh, utc_now(), frozenset())
        assert [(c.key, c.firing) for c in fired] == [("request:pr-late", True)]
        state["notified"] = dict(state["failing"])  # posted, as the sensor records it
        process_requests(wh, privacy_env.state_dir, targets={}, client_for=pytest.fail)
        _, recovered = evaluate(json.dumps(state), instance, wh, utc_now(), frozenset())
    assert [(c.key, c.firing) for c in recovered] == [("request:pr-late", False)]
