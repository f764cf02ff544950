"""One redaction function for every text that leaves a process: exceptions, log lines, Dagster
metadata, receipts, CLI output.

A platform may echo a request back in its error body (a proxy's 403 page, a "your request was"
diagnostic), so a secret can come back in any form the client sent it in, or another one:

- literal (``Bearer <token>``, a password in a JSON body);
- base64 of ``user:token`` (HTTP Basic, RFC 7617 §2), with any user name, padded or not, in
  the standard or URL-safe alphabet, and base64 of the token alone;
- URL-encoded (percent-encoding, ``+`` for spaces, encoded twice), e.g. inside a URL or a
  query string (``?access_token=...``, Graph API);
- JSON-escaped (``\\/`` for ``/``, ``\\uXXXX``).

:func:`redact` blanks every one of them (``***``), plus the credential after an
``Authorization:``, ``Basic`` or ``Bearer`` word and the value of a credential-named query or
JSON parameter (``access_token``, ``api_key``, ``apikey``, ``token``, ``password``, ``key``)
whatever it holds, and every email address (``<email>``). The base64 rule works without
knowing the user name: base64 encodes 3 bytes as 4 characters, so a secret preceded by ``k``
bytes (``k`` = 0, 1, 2 modulo 3) always shows the same middle characters; any base64-looking
run holding one of those three cores, or decoding to text holding the secret, is blanked whole.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Collection, Iterable
from urllib.parse import quote, quote_plus

MASK = "***"
EMAIL_MASK = "<email>"

_EMAIL_RE = re.compile(r"[^\s\"'<>,;:()\[\]{}=&?/\\]+@[^\s\"'<>,;:()\[\]{}=&?/\\]+")
_B64_RUN = re.compile(r"[A-Za-z0-9+/_\-]{8,}={0,2}")
_AUTH_WORDS = re.compile(
    r"(?i)(\b(?:authorization|proxy-authorization)\b\"?\s*[:=]\s*\"?\s*"
    r"(?:(?:basic|bearer|token|apikey)\s+)?|\b(?:basic|bearer)\s+)"
    r"([^\s\"',;<>)}\]]+)"
)
_CREDENTIAL_PARAMS = re.compile(
    r"(?i)((?:^|[?&;\s\"'{,])\"?(?:access_token|api_key|apikey|token|password|key|secret)"
    r"\"?\s*[=:]\s*\"?)([^\s&\"',;<>)}\]]+)"
)
#: Secrets shorter than this are not searched inside base64 runs (too many false matches).
_MIN_B64_SECRET = 6


def _b64_forms(data: bytes) -> set[str]:
    forms = set()
    for encode in (base64.b64encode, base64.urlsafe_b64encode):
        text = encode(data).decode("ascii")
        forms |= {text, text.rstrip("=")}
    return forms


def _b64_cores(secret: bytes) -> set[str]:
    """For each alignment (0, 1, 2 bytes before the secret), the base64 characters that depend
    only on the secret's bytes: present in the encoding of any text containing the secret."""
    cores = set()
    for lead in range(3):
        encoded = base64.b64encode(b"\0" * lead + secret + b"\0\0").decode("ascii")
        # character i holds bits [6i, 6i + 6): keep those inside the secret's bits
        start = -(-(8 * lead) // 6)
        stop = (8 * (lead + len(secret)) - 6) // 6 + 1
        core = encoded[start:stop]
        if len(core) >= 4:
            cores |= {core, core.replace("+", "-").replace("/", "_")}
    return cores


def secret_forms(secret: str) -> set[str]:
    """Every literal string under which ``secret`` may appear in a text: itself, base64 of it
    and of ``<user>:<secret>`` for the user names our clients send, percent-encoded (once and
    twice, ``quote`` and ``quote_plus``) and JSON-escaped. Empty for an empty secret."""
    if not secret:
        return set()
    raw = secret.encode("utf-8")
    forms = {secret}
    forms |= _b64_forms(raw)
    for user in ("anystring", "user", "apikey", ""):
        forms |= _b64_forms(f"{user}:{secret}".encode())
    for encode in (quote, quote_plus):
        once = encode(secret, safe="")
        forms |= {once, encode(once, safe=""), once.lower()}
    forms.add(json.dumps(secret)[1:-1])
    forms.add(json.dumps(secret, ensure_ascii=True)[1:-1].replace("/", "\\/"))
    return {f for f in forms if f}


def _decodes_to_secret(run: str, secrets: Iterable[bytes]) -> bool:
    text = run.rstrip("=")
    for alphabet in (None, b"-_"):
        for cut in range(3):
            chunk = text[cut:]
            padded = chunk + "=" * (-len(chunk) % 4)
            try:
                decoded = base64.b64decode(padded, altchars=alphabet, validate=False)
            except (binascii.Error, ValueError):
                continue
            if any(s in decoded for s in secrets):
                return True
    return False


def redact(text: str, secrets: Collection[str] = ()) -> str:
    """``text`` with every form of every secret (see the module docstring) replaced by ``***``,
    credentials after ``Authorization``/``Basic``/``Bearer`` and in credential-named parameters
    blanked, and every email address replaced by ``<email>``. Never raises; ``None``-safe
    callers pass ``str(value)``."""
    if not text:
        return text
    live = [s for s in secrets if s]
    for secret in sorted(live, key=len, reverse=True):
        for form in sorted(secret_forms(secret), key=len, reverse=True):
            if form in text:
                text = text.replace(form, MASK)
    text = _redact_b64_runs(text, live)
    text = _AUTH_WORDS.sub(lambda m: m.group(1) + MASK, text)
    text = _CREDENTIAL_PARAMS.sub(lambda m: m.group(1) + MASK, text)
    return _EMAIL_RE.sub(EMAIL_MASK, text)


def _redact_b64_runs(text: str, secrets: Collection[str]) -> str:
    long_enough = [s.encode("utf-8") for s in secrets if len(s) >= _MIN_B64_SECRET]
    if not long_enough:
        return text
    cores = set().union(*(_b64_cores(s) for s in long_enough))

    def blank(match: re.Match[str]) -> str:
        run = match.group(0)
        if any(core in run for core in cores) or _decodes_to_secret(run, long_enough):
            return MASK
        return run

    return _B64_RUN.sub(blank, text)


def leaked_forms(text: str, secrets: Collection[str]) -> list[str]:
    """The forms of ``secrets`` (:func:`secret_forms`) still present in ``text`` (tests and
    self-checks use it: an empty list means nothing leaked)."""
    return sorted({f for s in secrets for f in secret_forms(s) if f in text})


__all__ = ["EMAIL_MASK", "MASK", "leaked_forms", "redact", "secret_forms"]
