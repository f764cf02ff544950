"""Writing to the demo warehouse in its own layout and words, for tests that add a consent,
a request or an order to it (``orchestrator.warehouse.demo``: ``cmp.consent_events`` with the
consent platform's words, ``support.privacy_tickets`` with the support desk's,
``shop.order_lines``, ``crm.contacts``). Tests pass our words (``email_marketing``,
``granted``, ``erasure``); these functions write the retailer's, as the demo's model maps them.
"""

from __future__ import annotations

from datetime import datetime

import duckdb

from orchestrator.warehouse.demo import CMP_PURPOSES, CMP_STATUSES, TICKET_TYPES


def insert_consent(
    con: duckdb.DuckDBPyConnection,
    consent_id: str,
    customer_id: int,
    purpose: str,
    status: str,
    recorded_at: datetime,
    source: str | None = "preference_center",
    notice_version: str | None = "2026-07",
) -> None:
    """One consent record (our purpose and status words) as the consent platform exports it.
    A purpose we do not declare is written as is (its row then maps to nothing)."""
    con.execute(
        "INSERT INTO cmp.consent_events VALUES (?, ?, ?, ?, ?, ?, ?)",
        [
            consent_id,
            customer_id,
            CMP_PURPOSES.get(purpose, purpose),
            CMP_STATUSES[status],
            recorded_at,
            source,
            notice_version,
        ],
    )


def insert_request(
    con: duckdb.DuckDBPyConnection,
    request_id: str,
    customer_id: int | None,
    request_type: str,
    received_at: datetime,
    subject_key: str | None = None,
) -> None:
    """One privacy request (``erasure`` | ``objection``) as the support desk files it."""
    con.execute(
        "INSERT INTO support.privacy_tickets VALUES (?, ?, ?, ?, ?)",
        [request_id, customer_id, subject_key, TICKET_TYPES[request_type], received_at],
    )


def emails(con: duckdb.DuckDBPyConnection) -> list[tuple[int, str | None]]:
    """(customer id, raw email) of every contact, by id."""
    return con.execute(
        "SELECT contact_id, email_address FROM crm.contacts ORDER BY contact_id"
    ).fetchall()
