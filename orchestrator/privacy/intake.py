"""Intake the product owns: consent withdrawals recorded by ``activation withdraw``, and the
checks every address typed into the product passes before it is hashed.

The company's source tables are never written: a withdrawal goes to
``activation.consent_intake`` (one row per customer holding the address now or before, per
purpose; ``customer_id`` NULL when none does), which the consent view
``activation.src_consents`` merges with the company's consent log
(:mod:`orchestrator.model.views`), so every reader, the audience step and the privacy
requests sensor among them, sees it at once. The address is hashed on entry; only its subject
key is stored (GDPR Art. 5(1)(c)), and no message repeats it.

A withdrawal is as easy as the consent was (GDPR Art. 7(3)); it is recorded for the purposes
named (or every declared purpose with ``--all``) and wins over any earlier grant, since the
latest record per (customer, purpose) decides.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from orchestrator.privacy.addresses import MAX_ADDRESS_LENGTH, request_address
from orchestrator.pseudonymize import google_key, subject_key, subject_key_sql
from orchestrator.warehouse.connect import connect
from orchestrator.warehouse.target import Warehouse, as_target

if TYPE_CHECKING:
    from orchestrator.config import ProjectConfig

#: ``source`` of the consent records ``activation withdraw`` writes.
WITHDRAW_SOURCE = "activation withdraw"


def typed_address(email: str) -> str:
    """The address a person means by what they typed (``mailto:``, ``Name <addr>``, quotes,
    a trailing dot... read by :func:`orchestrator.privacy.addresses.request_address`), after
    the intake checks.

    Raises:
        ValueError: the input is empty, too long (input over
            :data:`~orchestrator.privacy.addresses.MAX_INPUT_CHARS` characters, or an address
            over :data:`MAX_ADDRESS_LENGTH`), holds control characters, or names no valid
            address. The message never repeats the input.
    """
    if not email or not email.strip():
        raise ValueError("the email address is empty")
    address = request_address(email)
    if len(address) > MAX_ADDRESS_LENGTH:
        raise ValueError(
            f"not an email address: {len(address)} characters, an address has at most "
            f"{MAX_ADDRESS_LENGTH} (RFC 5321); it is not stored"
        )
    return address


def address_keys(email: str) -> tuple[str, str | None]:
    """The (subject key, Google key) of a typed address, after :func:`typed_address`.

    Raises:
        ValueError: as :func:`typed_address`. The message never repeats the input.
    """
    address = typed_address(email)
    key = subject_key(address)
    if key is None:
        raise ValueError("not a valid email address (it is not stored)")
    return key, google_key(address)


@dataclass(frozen=True)
class Withdrawal:
    """What :func:`record_withdrawal` recorded: ``withdrawal_id`` (prefix of its consent ids),
    ``subject`` (the subject key), ``purposes``, ``customers`` (customer ids the withdrawal
    applies to; empty when no customer has or had the address: recorded, applied to none)."""

    withdrawal_id: str
    subject: str
    purposes: tuple[str, ...]
    customers: tuple[int, ...]


def record_withdrawal(
    warehouse_path: Warehouse,
    email: str,
    purposes: Sequence[str],
    *,
    recorded_at: datetime | None = None,
    lock_timeout_s: float = 30,
    project: ProjectConfig | None = None,
) -> Withdrawal:
    """Record a consent withdrawal for ``email`` for each of ``purposes`` (declared purposes:
    the caller checks them) in ``activation.consent_intake``, one row per customer whose
    current or earlier address has the subject key, in one transaction. ``recorded_at``:
    naive UTC, default now. ``project``: the canonical views of its source model are made
    current first (:func:`orchestrator.warehouse.connect.connect`).

    Raises:
        ValueError: the address fails :func:`address_keys`, or ``purposes`` is empty.
        duckdb.IOException: the warehouse stayed locked for ``lock_timeout_s`` seconds.
        orchestrator.warehouse.errors.WarehouseError: a PostgreSQL warehouse is
            unreachable, refuses the password or a grant, or timed out.
    """
    from orchestrator.privacy.receipts import utc_now

    key, _ = address_keys(email)
    if not purposes:
        raise ValueError("name at least one purpose")
    at = recorded_at or utc_now()
    withdrawal_id = f"cw-{secrets.token_hex(6)}"
    with connect(as_target(warehouse_path), timeout_s=lock_timeout_s, project=project) as con:
        con.begin()
        customers = tuple(
            cid
            for (cid,) in con.execute(
                "SELECT customer_id FROM activation.src_customers "
                f"WHERE {subject_key_sql('email')} = $key "
                "UNION SELECT customer_id FROM activation.customer_key_history "
                "WHERE subject_key = $key ORDER BY 1",
                {"key": key},
            ).fetchall()
        )
        rows = [
            (f"{withdrawal_id}-{n}", cid, key, purpose, "withdrawn", at, WITHDRAW_SOURCE, None)
            for n, (cid, purpose) in enumerate(
                (cid, purpose) for purpose in purposes for cid in (customers or (None,))
            )
        ]
        con.executemany(
            "INSERT INTO activation.consent_intake VALUES (?, ?, ?, ?, ?, ?, ?, ?)", rows
        )
        con.commit()
    return Withdrawal(withdrawal_id, key, tuple(purposes), customers)
