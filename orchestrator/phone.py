"""Phone numbers as a second identifier: E.164 normalization, then each platform's hash.

Normalization uses ``phonenumbers`` (the Python port of Google's libphonenumber), never our own
rules: a number written without a country code is read in the customer's country
(``default_region``, an ISO 3166-1 alpha-2 code such as ``FR``); spaces, dots, dashes and
brackets are accepted; a number that is not a valid number for its region gives None, and an
invalid phone never blocks the member's email (the member is sent with the email alone).

Hashing differs per platform, as each documents:

- Google (Data Manager API, "Format user data"): E.164 WITH the leading ``+`` (``+33612345678``),
  then SHA-256, hex
  (https://developers.google.com/data-manager/api/devguides/concepts/formatting).
- Meta (Custom Audiences, "Hashing and normalization", key ``PHONE``): digits only, country code
  included, no ``+``, symbols or leading zeros (``33612345678``), then SHA-256, hex
  (https://developers.facebook.com/docs/marketing-api/audiences/guides/custom-audiences#hash).

The same Python functions run inside DuckDB (:func:`register_phone_functions`), so the SQL path
and the Python reference cannot disagree.
"""

from __future__ import annotations

import contextlib
import hashlib

import duckdb
import phonenumbers


def to_e164(raw: str | None, default_region: str | None) -> str | None:
    """``raw`` as E.164 (``+<country code><national number>``), or None when empty, not a
    number, or not a valid number. ``default_region``: ISO 3166-1 alpha-2 country used when
    ``raw`` has no ``+``/``00`` country prefix (None or unknown: only international forms
    parse)."""
    if raw is None or not raw.strip():
        return None
    region = (default_region or "").strip().upper() or None
    try:
        number = phonenumbers.parse(raw, region)
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_valid_number(number):
        return None
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def google_phone_hash(raw: str | None, default_region: str | None) -> str | None:
    """SHA-256 hex of the E.164 number with its ``+`` (Google), or None (invalid phone)."""
    e164 = to_e164(raw, default_region)
    return None if e164 is None else hashlib.sha256(e164.encode()).hexdigest()


def meta_phone_hash(raw: str | None, default_region: str | None) -> str | None:
    """SHA-256 hex of the E.164 digits without ``+`` (Meta ``PHONE``), or None (invalid)."""
    e164 = to_e164(raw, default_region)
    return None if e164 is None else hashlib.sha256(e164[1:].encode()).hexdigest()


def phone_hash(platform: str, raw: str | None, default_region: str | None) -> str | None:
    """The phone hash ``platform`` (``google`` | ``meta``) expects, or None.

    Raises:
        ValueError: another platform (it takes no phone identifier).
    """
    if platform == "google":
        return google_phone_hash(raw, default_region)
    if platform == "meta":
        return meta_phone_hash(raw, default_region)
    raise ValueError(f"platform {platform!r} takes no phone identifier")


def phone_platform_for(platform: str, kind: str) -> str | None:
    """The platform whose phone hashing a destination uses: ``google`` or ``meta`` for their ad
    destinations, else None (no phone identifier is sent)."""
    return platform if kind == "ad" and platform in ("google", "meta") else None


def register_phone_functions(con: duckdb.DuckDBPyConnection) -> None:
    """Make ``phone_e164(raw, region)``, ``google_phone_hash(raw, region)`` and
    ``meta_phone_hash(raw, region)`` (VARCHAR, NULL for an invalid phone) callable in SQL on
    ``con`` (idempotent)."""
    # DuckDB refuses to register a function while the connection holds an unfinished result
    # (the last ``execute``): finish it first.
    con.execute("SELECT 1").fetchall()
    for name, fn in (
        ("phone_e164", to_e164),
        ("google_phone_hash", google_phone_hash),
        ("meta_phone_hash", meta_phone_hash),
    ):
        with contextlib.suppress(duckdb.CatalogException, duckdb.NotImplementedException):
            con.create_function(  # raises when already registered on this connection
                name,
                fn,
                ["VARCHAR", "VARCHAR"],
                "VARCHAR",
                null_handling="special",
                side_effects=False,
            )


__all__ = [
    "google_phone_hash",
    "meta_phone_hash",
    "phone_hash",
    "phone_platform_for",
    "register_phone_functions",
    "to_e164",
]
