"""The privacy requests sensor launches every open request whatever its ``received_at``, never
twice while its run is pending, again when its run did not complete, and never a complete one.
Ticks are evaluated with ``build_sensor_context`` against a real DuckDB warehouse (some on a real
PostgreSQL database too); the clock of the sensor is moved with ``monkeypatch``."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path

import dagster as dg
import duckdb
import pytest
from dagster_duckdb import DuckDBResource

from destinations.errors import TransientError
from orchestrator.privacy import sensor as sensor_module
from orchestrator.privacy.receipts import mark_processed, open_requests, utc_now
from orchestrator.privacy.requests import PairTarget, process_requests
from orchestrator.privacy.sensor import (
    MAX_IN_FLIGHT,
    MAX_REQUESTS_PER_RUN,
    RELAUNCH_AFTER_S,
    SENSOR_NAME,
    receipts_run_config,
)
from orchestrator.pseudonymize import subject_key
from orchestrator.settings import Settings
from orchestrator.sync.diff import PENDING_HASH
from orchestrator.warehouse.connect import connect
from orchestrator.warehouse.schema import create_source_schema
from orchestrator.warehouse.target import Warehouse
from tests.privacy.conftest import BACKENDS
from tests.privacy.helpers import (
    ADS,
    ERIN,
    ERIN_ID,
    META_AUD,
    OTHERS,
    load_defs,
    opened,
    resource_of,
    warehouse_of,
)
from tests.sync.helpers import MemoryDestination

RELAUNCH = timedelta(seconds=RELAUNCH_AFTER_S)
T0 = datetime(2026, 12, 1, 9, 0, 0)


def insert_requests(wh: Warehouse, requests: list[tuple[str, int, datetime]]) -> None:
    """Erasure requests (request_id, customer_id, received_at) as an import would write them."""
    with opened(wh) as con:
        con.executemany(
            "INSERT INTO privacy_requests VALUES (?, ?, NULL, 'erasure', ?)",
            [list(r) for r in requests],
        )


def complete(settings: Settings, request_ids: list[str]) -> None:
    """Handle the requests; no destination holds these customers, so they become complete."""
    process_requests(
        warehouse_of(settings),
        settings.state_dir,
        targets={},
        client_for=lambda name: pytest.fail(f"no destination should be called ({name})"),
        request_ids=request_ids,
    )
    with connect(warehouse_of(settings), read_only=True) as con:
        still_open = {request_id for request_id, _, _ in open_requests(con)}
    assert not still_open & set(request_ids)


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Callable[[datetime], None]:
    """Set the sensor's clock (naive UTC); starts at :data:`T0`."""

    def set_to(moment: datetime) -> None:
        monkeypatch.setattr(sensor_module, "utc_now", lambda: moment)

    set_to(T0)
    return set_to


@pytest.fixture
def tick(privacy_env: Settings) -> Callable[..., tuple[object, str | None]]:
    """Evaluate one sensor tick on the test warehouse: (RunRequest or SkipReason, new cursor)."""
    sensor = load_defs().resolve_sensor_def(SENSOR_NAME)

    def evaluate(cursor: str | None, wh: Warehouse | None = None) -> tuple[object, str | None]:
        resource = resource_of(wh or warehouse_of(privacy_env))
        context = dg.build_sensor_context(cursor=cursor, resources={"warehouse": resource})
        return sensor(context), context.cursor

    return evaluate


def launched(result: object) -> list[str]:
    assert isinstance(result, dg.RunRequest), result
    (op,) = result.run_config["ops"].values()
    ids = op["config"]["request_ids"]
    assert result.run_config == receipts_run_config(ids)
    return ids


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_back_dated_request_is_launched_on_the_next_tick(privacy_env: Settings, tick, clock):
    wh = warehouse_of(privacy_env)
    insert_requests(wh, [("pr-today", ERIN_ID, T0 - timedelta(hours=1))])
    first, cursor = tick(None)
    assert launched(first) == ["pr-today"]

    # Keyed in a week late while the first run is still pending: older than anything launched.
    clock(T0 + timedelta(minutes=1))
    insert_requests(wh, [("pr-by-post", OTHERS[0], T0 - timedelta(days=7))])
    second, cursor = tick(cursor)
    assert launched(second) == ["pr-by-post"]
    assert second.run_key != first.run_key

    # Both handled; a late CRM sync then brings one older still: launched too.
    complete(privacy_env, ["pr-today", "pr-by-post"])
    clock(T0 + timedelta(minutes=2))
    insert_requests(wh, [("pr-crm-sync", OTHERS[1], T0 - timedelta(days=20))])
    third, cursor = tick(cursor)
    assert launched(third) == ["pr-crm-sync"]
    assert set(json.loads(cursor)["in_flight"].popitem()[1]) == {"pr-crm-sync"}


def test_a_request_is_not_launched_twice_while_its_run_is_pending(
    privacy_env: Settings, tick, clock
):
    insert_requests(privacy_env.warehouse_path, [("pr-1", ERIN_ID, T0 - timedelta(days=1))])
    first, cursor = tick(None)
    assert launched(first) == ["pr-1"]
    for later in (timedelta(seconds=30), RELAUNCH - timedelta(seconds=1)):
        clock(T0 + later)
        again, same = tick(cursor)
        assert isinstance(again, dg.SkipReason) and "1 in flight" in again.skip_message
        assert same == cursor


@pytest.mark.parametrize("backend", BACKENDS)
def test_an_open_request_whose_run_did_not_complete_is_relaunched(
    privacy_env: Settings, tick, clock
):
    wh, state = warehouse_of(privacy_env), privacy_env.state_dir
    key = subject_key(ERIN)
    with opened(wh) as con:  # a send to meta_ads of unknown outcome: the platform may hold Erin
        con.execute(
            "INSERT INTO activation.sync_state VALUES (?, 'meta_ads', ?, NULL, ?, ?)",
            [ADS, key, PENDING_HASH, T0 - timedelta(days=2)],
        )
    insert_requests(wh, [("pr-erin", ERIN_ID, T0 - timedelta(days=1))])
    first, cursor = tick(None)
    assert launched(first) == ["pr-erin"]

    # Its run reached Meta while Meta was down: the request stays open.
    targets = {(ADS, "meta_ads"): PairTarget(ADS, "meta_ads", META_AUD, "ad")}
    down = MemoryDestination(fail_on_call=1, error=TransientError("meta_ads", "HTTP 503"))
    (outcome,) = process_requests(wh, state, targets=targets, client_for=lambda _: down)
    assert not outcome.complete

    clock(T0 + RELAUNCH)
    retry, cursor = tick(cursor)
    assert launched(retry) == ["pr-erin"]
    assert retry.run_key != first.run_key  # a new run, not a duplicate Dagster would drop
    pending, cursor = tick(cursor)
    assert isinstance(pending, dg.SkipReason)  # the retry itself is in flight now

    up = MemoryDestination(members={key: {}})
    (done,) = process_requests(wh, state, targets=targets, client_for=lambda _: up)
    assert done.complete
    clock(T0 + 3 * RELAUNCH)
    after, cursor = tick(cursor)
    assert isinstance(after, dg.SkipReason)
    assert json.loads(cursor) == {"in_flight": {}}  # complete: forgotten


def test_completed_requests_are_never_launched(privacy_env: Settings, tick, clock):
    wh = privacy_env.warehouse_path
    insert_requests(
        wh,
        [
            ("pr-done", ERIN_ID, T0 - timedelta(days=3)),
            ("pr-open", OTHERS[0], T0 - timedelta(days=2)),
        ],
    )
    complete(privacy_env, ["pr-done"])
    legacy = json.dumps({"received_at": (T0 - timedelta(days=1)).isoformat(), "request_id": "x"})
    expired = json.dumps({"in_flight": {(T0 - 2 * RELAUNCH).isoformat(): ["pr-done"]}})
    for cursor in (None, legacy, expired, "not json"):
        result, _ = tick(cursor)
        assert launched(result) == ["pr-open"]  # the old cursor had passed it: launched now

    complete(privacy_env, ["pr-open"])
    nothing, cursor = tick(expired)
    assert isinstance(nothing, dg.SkipReason)
    assert json.loads(cursor) == {"in_flight": {}}


def test_a_backlog_is_split_into_runs_and_the_cursor_stays_small(
    privacy_env: Settings, tick, clock
):
    total = MAX_IN_FLIGHT + 20
    requests = [(f"pr-{n:012x}", 1000 + n, T0 - timedelta(minutes=total - n)) for n in range(total)]
    insert_requests(privacy_env.warehouse_path, requests)
    ids = [r[0] for r in requests]
    cursor, keys, seen = None, set(), []
    for n in range(MAX_IN_FLIGHT // MAX_REQUESTS_PER_RUN):
        clock(T0 + timedelta(seconds=30 * n))
        result, cursor = tick(cursor)
        batch = launched(result)
        assert batch == ids[len(seen) : len(seen) + MAX_REQUESTS_PER_RUN]  # oldest first
        seen += batch
        keys.add(result.run_key)
    assert len(keys) == len(seen) // MAX_REQUESTS_PER_RUN  # one unique key per run
    full, cursor = tick(cursor)
    assert isinstance(full, dg.SkipReason) and f"{MAX_IN_FLIGHT} in flight" in full.skip_message
    assert len(cursor) < 12_000

    with connect(privacy_env.warehouse_path) as con:  # the first run handled its requests
        for request_id in ids[:MAX_REQUESTS_PER_RUN]:
            mark_processed(con, request_id, 0, 0, T0)
    rest, cursor = tick(cursor)
    assert launched(rest) == ids[MAX_IN_FLIGHT:]


def test_requests_are_launched_before_the_activation_tables_exist(
    tmp_path: Path, privacy_env: Settings, tick
) -> None:
    fresh = tmp_path / "fresh.duckdb"
    con = duckdb.connect(str(fresh))
    try:
        create_source_schema(con)
    finally:
        con.close()
    insert_requests(fresh, [("pr-2", 2, utc_now()), ("pr-1", 1, utc_now() - timedelta(days=1))])
    result, _ = tick(None, fresh)
    assert launched(result) == ["pr-1", "pr-2"]


def test_a_request_left_open_is_relaunched_within_minutes_once_no_privacy_run_is_active(
    privacy_env: Settings, clock
):
    """A request its run could not finish (a sync held the pair's lock longer than the job
    waits) is relaunched five minutes later when no run of the privacy job is in flight, not
    half an hour later; while one is queued or running, the longer delay holds."""
    sensor = load_defs().resolve_sensor_def(SENSOR_NAME)
    resources = {"warehouse": DuckDBResource(database=str(privacy_env.warehouse_path))}
    insert_requests(privacy_env.warehouse_path, [("pr-late", ERIN_ID, T0 - timedelta(hours=1))])
    with dg.DagsterInstance.get() as instance:

        def tick(cursor: str | None) -> tuple[object, str | None]:
            context = dg.build_sensor_context(instance=instance, cursor=cursor, resources=resources)
            return sensor(context), context.cursor

        first, cursor = tick(None)
        assert launched(first) == ["pr-late"]
        # A run of the privacy job not started yet: one is in flight.
        run = instance.create_run_for_job(
            load_defs().resolve_job_def("privacy_requests_job"), run_config={}
        )
        clock(T0 + timedelta(minutes=6))
        waiting, cursor = tick(cursor)
        assert isinstance(waiting, dg.SkipReason)
        instance.delete_run(run.run_id)  # no privacy run in flight any more
        retry, cursor = tick(cursor)
        assert launched(retry) == ["pr-late"]


def test_an_unreachable_postgres_warehouse_skips_the_tick_and_keeps_the_cursor(
    privacy_env: Settings, monkeypatch: pytest.MonkeyPatch, tick, clock
) -> None:
    """The server's equivalent of a locked file: the tick is skipped with one line naming the
    warehouse (never the password), the cursor kept, and the next tick launches."""
    import socket

    from orchestrator.warehouse.resources import PostgresResource

    insert_requests(privacy_env.warehouse_path, [("pr-1", ERIN_ID, T0 - timedelta(days=1))])
    first, cursor = tick(None)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # nothing listens there once closed
    down = PostgresResource(
        url=f"postgresql://activation@127.0.0.1:{port}/warehouse",
        password="Sentinel-Pa55word",  # pragma: allowlist secret
        connect_timeout_s=2,
    )
    sensor = load_defs().resolve_sensor_def(SENSOR_NAME)
    context = dg.build_sensor_context(cursor=cursor, resources={"warehouse": down})
    skipped = sensor(context)
    assert isinstance(skipped, dg.SkipReason) and context.cursor == cursor
    message = skipped.skip_message
    assert f"postgres://activation@127.0.0.1:{port}/warehouse" in message
    assert "no server answered" in message and "Sentinel" not in message
    assert launched(first) == ["pr-1"]
