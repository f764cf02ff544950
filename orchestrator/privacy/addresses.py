"""The address a person means when they make a request: ``activation forget`` / ``object`` /
``explain`` take what was typed or pasted (from an email, a ticket, a web form) and either find
the address in it or refuse it with a clear message that never repeats the input.

Reading, in this order:

1. Refuse input longer than :data:`MAX_INPUT_CHARS` (a pasted file, not an address) and input
   holding control characters (Unicode category Cc, other than the white space trimmed at the
   ends: NUL, escape sequences, a line break inside).
2. Trim white space (:data:`orchestrator.pseudonymize.TRIM_CHARS`).
3. ``Display Name <addr>`` (RFC 5322 name-addr): keep what is inside the last ``<...>``.
4. Peel, repeatedly, matching surrounding quotes (``"``, ``'``, `````, typographic quotes),
   angle brackets and parentheses, a ``mailto:`` prefix (RFC 6068; its ``?query`` dropped and
   percent-escapes decoded) and trailing sentence punctuation (``.``, ``,``, ``;``, ``:``).
5. Remove white space left inside (``lee @ example.com``): an address with spaces is only
   legal quoted, which people never mean.
6. The domain loses a trailing dot (the DNS root, ``example.com.``) and must be dot-separated
   non-empty labels; then :func:`orchestrator.pseudonymize.normalize_email` (trim, NFC,
   lowercase, validity) decides, so a request and the warehouse hash the same text.

Plus-addresses (``lee+news@example.com``): a request names the address as written, with the
tag, except at Gmail (``gmail.com``, ``googlemail.com``), where dots and the ``+tag`` are
ignored because Gmail delivers every such spelling to one mailbox (the Google key, see
:mod:`orchestrator.pseudonymize`). Other providers differ (Outlook, iCloud and Fastmail deliver
``+tags`` to the base mailbox, Yahoo uses ``-`` for disposable addresses, a company domain may
route anything anywhere): matching more than what was written could remove or erase another
person, so a tagged address that matches nobody is reported as ``no_match`` and the person is
asked which address they used.
"""

from __future__ import annotations

import re
import unicodedata
from urllib.parse import unquote

from orchestrator.pseudonymize import TRIM_CHARS, normalize_email

#: Longest input read as an address (RFC 5321 4.5.3.1: 64 + 1 + 255 octets; a display name
#: and ``mailto:`` around it fit in this too).
MAX_INPUT_CHARS = 1024
#: The longest address accepted: RFC 5321 section 4.5.3.1.3 limits a path to 256 octets,
#: brackets included, so an address is at most 254 characters.
MAX_ADDRESS_LENGTH = 254
_PAIRS = {'"': '"', "'": "'", "`": "`", "<": ">", "(": ")", "[": "]", "“": "”", "‘": "’", "«": "»"}
_TRAILING = ".,;:"
_NAME_ADDR = re.compile(r"^[^<>]*<([^<>]*)>$")


class RequestAddressError(ValueError):
    """The input does not name one email address; the message says why and never repeats
    the input."""


def request_address(raw: str) -> str:
    """The normalized address a person means by ``raw`` (see the module docstring).

    Returns:
        The address as :func:`orchestrator.pseudonymize.normalize_email` returns it.

    Raises:
        RequestAddressError: too long, control characters, or no valid address.
    """
    if len(raw) > MAX_INPUT_CHARS:
        raise RequestAddressError(
            f"input is {len(raw):,} characters; an address has at most {MAX_ADDRESS_LENGTH}"
            f" (RFC 5321), what is typed at most {MAX_INPUT_CHARS}; it is not stored"
        )
    text = raw.strip(TRIM_CHARS)
    if any(unicodedata.category(c) == "Cc" for c in text):
        raise RequestAddressError("input holds control characters; type the address alone")
    match = _NAME_ADDR.match(text)
    text = _peel(match.group(1) if match else text)
    text = "".join(c for c in text if c not in TRIM_CHARS)
    if any(unicodedata.category(c) == "Cc" for c in text):  # e.g. %00 in a mailto: link
        raise RequestAddressError("input holds control characters; type the address alone")
    local, at, domain = text.rpartition("@")
    domain = domain.removesuffix(".")
    if not at or not local or any(not label for label in domain.split(".")):
        raise RequestAddressError("not a valid email address (it is not shown here)")
    address = normalize_email(f"{local}@{domain}")
    if address is None:
        raise RequestAddressError("not a valid email address (it is not shown here)")
    return address


def _peel(text: str) -> str:
    """Strip surrounding pairs, ``mailto:`` and trailing punctuation until nothing changes."""
    while True:
        before = text
        text = text.strip(TRIM_CHARS).rstrip(_TRAILING)
        if len(text) >= 2 and _PAIRS.get(text[0]) == text[-1]:
            text = text[1:-1]
        if text[:7].lower() == "mailto:":
            text = unquote(text[7:].split("?", 1)[0])
        if text == before:
            return text
