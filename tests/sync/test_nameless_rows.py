"""A held row that names nobody (no address left anywhere, no member id recorded: a state row
older than member ids, of a person who left the warehouse) is refused per row and never sent;
the rest of the batch goes out."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import duckdb

from destinations.http import RetryPolicy
from destinations.mailchimp import MailchimpClient
from orchestrator.sync.engine import NO_IDENTIFIER, run_sync
from orchestrator.warehouse.connect import connect
from tests.sync.helpers import T0, fake_emails, key_of, new_warehouse, set_audience

SEG, DEST, LIST = "news", "mailchimp", "namelesslist"
FAST = RetryPolicy(max_attempts=2, backoff_multiplier=0.01, backoff_max=0.02)
GHOST = "f" * 64  # a subject key no warehouse row spells any more


def sync(wh: Path, tmp_path: Path, mock) -> object:
    client = MailchimpClient(DEST, mock.mailchimp_url, mock.mailchimp_token, policy=FAST)
    with client:
        return run_sync(
            wh, tmp_path / "state", segment=SEG, destination=DEST, audience_id=LIST,
            mode="mirror", fields={}, kind="email", client=client,
            as_of=datetime(2025, 2, 1),
        )  # fmt: skip


def test_a_row_that_names_nobody_is_refused_and_the_others_go_out(
    tmp_path: Path, mock_destinations
) -> None:
    wh = tmp_path / "wh.duckdb"
    new_warehouse(wh, fake_emails(3, seed=5))
    with connect(wh) as con:
        set_audience(con, SEG, [1, 2, 3])
    sync(wh, tmp_path, mock_destinations)
    with connect(wh) as con:
        leaving = key_of(con, 3)
        set_audience(con, SEG, [1, 2])
        con.execute(
            "INSERT INTO activation.sync_state VALUES (?, ?, ?, NULL, 'h', ?)",
            [SEG, DEST, GHOST, T0],
        )
    report = sync(wh, tmp_path, mock_destinations)
    assert report.removes == 2 and report.rejected == 1
    con = duckdb.connect(str(wh), read_only=True)
    try:
        rejections = con.execute(
            "SELECT subject_key, reason, permanent FROM activation.sync_rejections"
        ).fetchall()
        held = {
            k for (k,) in con.execute("SELECT subject_key FROM activation.sync_state").fetchall()
        }
    finally:
        con.close()
    assert rejections == [(GHOST, NO_IDENTIFIER, True)]
    assert GHOST in held and leaving not in held  # the other remove went out
    sent = [v for e in mock_destinations.requests_log("mailchimp") for v in e["values"]]
    assert all(v.get("email_address", "x") for v in sent)
