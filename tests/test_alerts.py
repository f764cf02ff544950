"""The alerts sensor against a real local HTTP receiver: one notification per failure, one
recovery, nothing twice, nothing lost while the receiver is down, no address in any message."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from datetime import datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import dagster as dg
import pytest

from orchestrator.alerts import build_alerts_sensor, late_requests
from orchestrator.config import AlertsConfig
from tests.conftest import AS_OF
from tests.e2e_harness import EMAIL_RE, e2e_project, run_assets, segment_keys

SEGMENT, DESTINATION = "recent_buyers_eu", "mailchimp"
URL_ENV = "ACTIVATION_ALERT_WEBHOOK_URL"


class Receiver:
    """A webhook receiver on a free loopback port keeping every JSON body it was posted;
    ``down`` makes it answer 503."""

    def __init__(self) -> None:
        self.bodies: list[dict] = []
        self.down = False
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                status = 503 if receiver.down else 200
                if not receiver.down:
                    receiver.bodies.append(json.loads(body))
                self.send_response(status)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *_args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks/alerts"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def texts(self, about: str = "") -> list[str]:
        """The texts received, or those mentioning ``about``."""
        return [body["text"] for body in self.bodies if about in body["text"]]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    running = Receiver()
    yield running
    running.close()


def _tick(warehouse: Path, cursor: str | None) -> str | None:
    config = AlertsConfig(webhook_url_env=URL_ENV)
    sensor = build_alerts_sensor(config, warehouse, [dg.AssetKey(["sync", SEGMENT, DESTINATION])])
    with dg.DagsterInstance.get() as instance:
        context = dg.build_sensor_context(instance=instance, cursor=cursor)
        sensor(context)
        return context.cursor


@pytest.mark.slow
def test_one_alert_per_failed_sync_then_one_recovery(
    tmp_path: Path,
    demo_warehouse_template: Path,
    receiver: Receiver,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with e2e_project(tmp_path, demo_warehouse_template) as project:
        monkeypatch.setenv(URL_ENV, receiver.url)
        sync = dg.AssetKey(["sync", SEGMENT, DESTINATION])
        assets = [*segment_keys(SEGMENT), sync]
        cursor = _tick(project.warehouse, None)
        assert receiver.texts() == []  # nothing failed yet

        project.mock.add_fault(
            "mailchimp", {"method": "POST"}, {"type": "status", "status": 403}, times=5
        )
        failed = run_assets(project.warehouse, AS_OF, selection=assets)
        assert not failed.success
        receiver.down = True  # the first notification cannot be delivered...
        cursor = _tick(project.warehouse, cursor)
        assert receiver.texts() == []
        receiver.down = False  # ...and comes on the next tick, once
        cursor = _tick(project.warehouse, cursor)
        cursor = _tick(project.warehouse, cursor)
        (alert,) = receiver.texts("sync ")
        assert "sync recent_buyers_eu/mailchimp failed" in alert and failed.run_id in alert
        # The demo warehouse's old requests were never handled: past half their deadline.
        late = receiver.texts("past half its deadline")
        assert late and len(late) == len(set(late))

        project.mock.clear_faults()
        again = run_assets(project.warehouse, AS_OF, selection=assets)
        assert again.success
        cursor = _tick(project.warehouse, cursor)
        cursor = _tick(project.warehouse, cursor)

    texts = receiver.texts("sync ")
    assert len(texts) == 2
    assert texts[1].startswith(":large_green_circle: recovered: sync recent_buyers_eu/mailchimp")
    assert not any(EMAIL_RE.search(text) for text in receiver.texts())
    # Still open (these runs did not handle requests): announced once, never repeated.
    assert receiver.texts("past half its deadline") == late
    assert sorted(json.loads(cursor)["notified"]) == sorted(
        key for key in json.loads(cursor)["failing"] if key.startswith("request:")
    )


def test_without_the_variable_the_sensor_skips_and_posts_nothing(
    tmp_path: Path, receiver: Receiver, dagster_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DAGSTER_HOME", str(dagster_home))
    monkeypatch.delenv(URL_ENV, raising=False)
    config = AlertsConfig(webhook_url_env=URL_ENV)
    sensor = build_alerts_sensor(config, tmp_path / "none.duckdb", [])
    with dg.DagsterInstance.get() as instance:
        result = sensor(dg.build_sensor_context(instance=instance))
    assert "not set" in result.skip_message
    assert receiver.texts() == []


def test_a_request_is_late_past_half_its_one_month_deadline() -> None:
    received = datetime(2026, 1, 31, 12, 0)  # deadline 28 February 12:00 (one calendar month)
    open_now = [("pr-000000000001", "erasure", received)]
    halfway = received + (datetime(2026, 2, 28, 12, 0) - received) / 2

    assert late_requests(open_now, halfway - timedelta(minutes=1)) == {}
    late = late_requests(open_now, halfway + timedelta(minutes=1))
    assert list(late) == ["request:pr-000000000001"]
    assert "2026-02-28 12:00" in late["request:pr-000000000001"]


def test_blocking_check_and_refused_privacy_removal_fire_and_recover() -> None:
    from orchestrator.alerts import apply_event, changes

    def check_event(name: str, passed: bool, severity: dg.AssetCheckSeverity) -> dg.DagsterEvent:
        evaluation = dg.AssetCheckEvaluation(
            asset_key=dg.AssetKey(["audience" if name != "rejections" else "sync", SEGMENT]),
            check_name=name,
            passed=passed,
            severity=severity,
        )
        return dg.DagsterEvent(
            event_type_value=dg.DagsterEventType.ASSET_CHECK_EVALUATION.value,
            job_name="recent_buyers_eu_job",
            event_specific_data=evaluation,
        )

    failing: dict[str, str] = {}
    apply_event(failing, check_event("legal_basis_valid", False, dg.AssetCheckSeverity.ERROR))
    apply_event(failing, check_event("rejections", False, dg.AssetCheckSeverity.WARN))
    assert list(failing) == ["check:audience/recent_buyers_eu:legal_basis_valid"]
    apply_event(failing, check_event("rejections", False, dg.AssetCheckSeverity.ERROR))
    fired = changes({}, failing)
    assert [c.firing for c in fired] == [True, True]
    before = dict(failing)
    apply_event(failing, check_event("legal_basis_valid", True, dg.AssetCheckSeverity.ERROR))
    apply_event(failing, check_event("rejections", True, dg.AssetCheckSeverity.ERROR))
    assert failing == {}
    assert [c.firing for c in changes(before, failing)] == [False, False]
