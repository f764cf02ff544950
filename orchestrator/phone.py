"""Phone numbers as a second identifier: E.164 normalization, then each platform's hash.

Normalization uses ``phonenumbers`` (the Python port of Google's libphonenumber), never our own
rules: a number written without a country code is read in the customer's country
(``default_region``, an ISO 3166-1 alpha-2 code such as ``FR``); spaces, dots, dashes and
brackets are accepted; a number that is not a valid number for its region gives None, and an
invalid phone never blocks the member's email (the member is sent with the email alone).

Hashing differs per platform, as each documents:

- Google (Data Manager API, "Format user data"): E.164 WITH the leading ``+`` (``+33612345678``),
  then SHA-256, hex
  (https://developers.google.com/data-manager/api/get-started/formatting).
- Meta (Custom Audiences, "Hashing and normalization", key ``PHONE``): digits only, country code
  included, no ``+``, symbols or leading zeros (``33612345678``), then SHA-256, hex
  (https://developers.facebook.com/docs/marketing-api/audiences/guides/custom-audiences#hash).

These functions are the only implementation: the sync computes each customer's phone hashes
once with them and keeps them in the warehouse (:mod:`orchestrator.phone_keys`), so what the
SQL diff sends and the Python reference cannot disagree.
"""

from __future__ import annotations

import hashlib

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


def google_e164_hash(e164: str | None) -> str | None:
    """SHA-256 hex of an E.164 number with its ``+`` (Google), None for None."""
    return None if e164 is None else hashlib.sha256(e164.encode()).hexdigest()


def meta_e164_hash(e164: str | None) -> str | None:
    """SHA-256 hex of an E.164 number's digits, without ``+`` (Meta ``PHONE``), None for None."""
    return None if e164 is None else hashlib.sha256(e164.lstrip("+").encode()).hexdigest()


def google_phone_hash(raw: str | None, default_region: str | None) -> str | None:
    """SHA-256 hex of the E.164 number with its ``+`` (Google), or None (invalid phone)."""
    return google_e164_hash(to_e164(raw, default_region))


def meta_phone_hash(raw: str | None, default_region: str | None) -> str | None:
    """SHA-256 hex of the E.164 digits without ``+`` (Meta ``PHONE``), or None (invalid)."""
    return meta_e164_hash(to_e164(raw, default_region))


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


__all__ = [
    "google_e164_hash",
    "google_phone_hash",
    "meta_e164_hash",
    "meta_phone_hash",
    "phone_hash",
    "phone_platform_for",
    "to_e164",
]
