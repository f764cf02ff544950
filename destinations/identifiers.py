"""The identifiers one ad-platform member is sent with, packed in a row's ``send_key``.

An ad row's ``send_key`` is the email hash alone (``<64 hex>``) or the email hash and the phone
hash joined by :data:`SEPARATOR` (``<64 hex>|<64 hex>``), each hashed by the destination's own
rules. Keeping both in the one key that ``sync_state.destination_ref`` records means a remove
names the member with exactly the identifiers it was added with, whatever changed since.
"""

from __future__ import annotations

SEPARATOR = "|"


def join_send_key(email_hash: str, phone_hash: str | None) -> str:
    """``email_hash`` alone, or ``email_hash|phone_hash`` when a phone hash is given."""
    return email_hash if not phone_hash else f"{email_hash}{SEPARATOR}{phone_hash}"


def split_send_key(send_key: str) -> tuple[str, str | None]:
    """``(email_hash, phone_hash or None)`` from a send key (see the module docstring)."""
    email, sep, phone = send_key.partition(SEPARATOR)
    return email, (phone if sep else None)


__all__ = ["SEPARATOR", "join_send_key", "split_send_key"]
