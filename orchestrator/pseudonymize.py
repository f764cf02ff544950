"""Email normalization and SHA-256 pseudonymization, in Python (the reference) and as DuckDB SQL.

**One mailbox is one subject.** Every spelling of one address folds to one normalized form, so
that duplicates, suppression, privacy requests and consent (which is per address) all see one
data subject, and the key sent to a platform is the same whatever spelling the CRM holds. The
steps, in this order:

1. trim the characters of :data:`TRIM_CHARS` at both ends (Python ``str.strip(chars)``, DuckDB
   ``trim(x, chars)``);
2. Unicode compatibility normalization NFKC (Unicode Standard Annex #15): full-width and other
   compatibility forms become their plain letters (``ＵＳＥＲ＠ｅｘａｍｐｌｅ．ｃｏｍ`` is
   ``user@example.com``), composed characters are composed (``e`` + U+0301 is ``é``); trimmed
   again, as a compatibility space becomes a space;
3. lowercase, one code point at a time with the Unicode *simple* case mapping (see below);
4. the domain, when it holds a non-ASCII character, is converted label by label to its ASCII
   form (A-label, punycode) by UTS #46 "Unicode IDNA Compatibility Processing" (Unicode
   Technical Standard #46, section 4 Processing and 4.2 ToASCII, nontransitional, without the
   STD3 rules; the ``idna`` package's ``uts46_remap`` and ``alabel``): ``user@exämple.com`` and
   ``user@xn--exmple-cua.com`` are the same mailbox, as DNS only knows the second spelling.
   ASCII labels are kept as they are (lowercased); a domain UTS #46 / IDNA2008 refuses (an
   emoji, a label too long, a leading hyphen) makes the address invalid. The ASCII form is
   the one every mail system can deliver to without SMTPUTF8 (RFC 6531), so it is also what an
   email platform receives;
5. validate with :data:`EMAIL_PATTERN` (Python ``re.fullmatch``, DuckDB ``regexp_full_match``,
   which is RE2): exactly one ``@``, a non-empty local part, a domain holding a dot between
   non-empty labels, and no :data:`TRIM_CHARS` character anywhere. Invalid -> ``None``/``NULL``;
6. (Google keys only) for ``gmail.com`` and ``googlemail.com``: drop the ``+tag``, remove the
   dots of the local part, and use the domain ``gmail.com``; the result is validated again;
7. SHA-256 of the UTF-8 bytes, lowercase hex. An empty or invalid value is never hashed.

The local part keeps its non-ASCII letters (after NFKC and lowercase): it has no ASCII form.

**In the warehouse** an address that is pure ASCII (the overwhelming majority) goes through the
SQL expressions of this module, where steps 2 and 4 are the identity. Any other address is
normalized by this module's Python reference itself, registered in DuckDB as the scalar
functions of :data:`SQL_FUNCTIONS` (:func:`register_sql_functions`; the product's
connections register them when opened, :func:`orchestrator.warehouse.connect.connect`). So
the SQL path and the Python reference cannot disagree on a non-ASCII address, and the tests
feed one table of tricky inputs to both. The pseudonym cache (:mod:`orchestrator.customer_keys`)
normalizes only new or changed addresses, so the Python calls are paid once per address.

Sources:
- Meta Marketing API, Custom Audiences, "Hashing and Normalizing Data" (customer file custom
  audiences): email ``EMAIL_SHA256``: trim leading and trailing whitespace, convert to lowercase,
  then SHA-256. https://developers.facebook.com/docs/marketing-api/audiences/guides/custom-audiences
- Google Ads API, Customer Match, "Normalize and hash" (and the Display & Video 360 / CM360
  guides with the same rule): remove leading and trailing whitespace, convert to lowercase,
  remove all periods before the domain in ``gmail.com`` and ``googlemail.com`` addresses, then
  SHA-256 hex.
  https://developers.google.com/google-ads/api/docs/remarketing/audience-segments/customer-match/get-started
  Dropping the ``+tag`` and folding ``googlemail.com`` into ``gmail.com`` go one step further than
  Google's text: Gmail delivers all these forms to one mailbox, so they are one person.
- Unicode Technical Standard #46, Unicode IDNA Compatibility Processing,
  https://www.unicode.org/reports/tr46/ (the domain fold of step 4), and Unicode Standard
  Annex #15, Unicode Normalization Forms, https://www.unicode.org/reports/tr15/ (NFKC).
  Neither platform says how to treat an internationalized domain: both only ask for trimmed,
  lowercase text, which the folded form is, so the key sent is the folded one on every
  platform.

Choices of ours (documented because the platforms do not specify them):
- Whitespace is wider than ASCII: NBSP, BOM and zero-width space often come from spreadsheets.
- Lowercase is the Unicode *simple* case mapping applied per code point, which is what DuckDB's
  ``lower()`` does. Python's ``str.lower`` differs in two places, checked over every code point
  with duckdb 2.0.1 and Python 3.11 (Unicode 14): U+0130 LATIN CAPITAL LETTER I WITH DOT ABOVE
  (Python: ``i`` + U+0307, DuckDB: ``i``) and a final capital sigma (Python: final ``ς``, DuckDB
  ``σ``). The reference follows DuckDB (``İ`` -> ``i``, ``Σ`` -> ``σ`` everywhere), so a key
  computed before the fold existed keeps its value. ``ß`` stays ``ß`` in the local part (in a
  domain, UTS #46 nontransitional keeps it too, encoded in the A-label).

**Pre-hashed identifiers** (the one place this rule is written; README "Privacy you can
prove" points here). A value that, after trimming, is 64 hexadecimal characters (any case) is
taken as the SHA-256 subject key of an address someone else normalized and hashed:

- :func:`subject_key` and :func:`google_key` return it lowercased and never hash it again
  (so ``subject_key(subject_key(x)) == subject_key(x)``); :func:`normalize_email` returns
  ``None`` (it is not an address);
- a CRM row holding one is the same data subject as the address it is the hash of: it counts
  for duplicates, for consent per address (its consent records and withdrawals apply to that
  address), for privacy requests and for the suppression list;
- it never enters an audience (reason ``invalid_email``): an email platform cannot deliver to
  it, and an ad platform must not receive a key whose normalization we cannot vouch for
  (trimmed? lowercased? the Gmail form Google asks for?). So nothing is double-hashed, and no
  raw address ever reaches an ad platform whatever the CRM holds.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from collections.abc import Callable

import duckdb
import idna

from orchestrator.warehouse.product_schema import is_duckdb

#: Characters trimmed at both ends, and refused inside an address: the Unicode White_Space
#: characters, plus zero-width space (U+200B), word joiner (U+2060) and the byte order mark
#: (U+FEFF). One constant for both implementations, so Python and DuckDB trim identically.
TRIM_CHARS: str = (
    " \t\n\r\f\v"  # ASCII space, tab, line feed, carriage return, form feed, vertical tab
    "\u0085\u00a0\u1680"  # next line, no-break space, ogham space mark
    "\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009\u200a"  # en quad .. hair space
    "\u2028\u2029\u202f\u205f\u3000"  # line/paragraph separator, narrow NBSP, math space, ideo.
    "\u200b\u2060\ufeff"  # zero-width space, word joiner, byte order mark
)

#: Characters that may not appear in the local part or the domain.
_FORBIDDEN_CLASS = "[^@" + TRIM_CHARS + "]"

#: The validity rule, written so that Python ``re.fullmatch`` and RE2 (DuckDB
#: ``regexp_full_match``) read it identically: literal characters in a negated class (none of
#: them is special there) and ``\\.``; no ``\\s``, which differs (RE2's ``\\s`` lacks ``\\v``).
EMAIL_PATTERN: str = f"{_FORBIDDEN_CLASS}+@{_FORBIDDEN_CLASS}+\\.{_FORBIDDEN_CLASS}+"

#: A value that already is a SHA-256 hex digest (after trimming).
SHA256_HEX_PATTERN: str = "[0-9A-Fa-f]{64}"

#: Gmail domains whose local part gets dot and ``+tag`` removal for Google keys.
GMAIL_DOMAINS: tuple[str, ...] = ("gmail.com", "googlemail.com")

#: Where Python's full lowercase differs from the per-code-point simple mapping DuckDB uses.
_SIMPLE_LOWER_EXCEPTIONS = {"\u0130": "i"}


def _lower_simple(value: str) -> str:
    """Lowercase one code point at a time (Unicode simple case mapping), as DuckDB does."""
    if value.isascii():
        return value.lower()
    return "".join(_SIMPLE_LOWER_EXCEPTIONS.get(c) or c.lower() for c in value)


def _ascii_label(label: str) -> str:
    """One domain label after the UTS #46 mapping: kept when ASCII, else its A-label."""
    return label if label.isascii() else idna.alabel(label).decode("ascii")


def _fold_domain(value: str) -> str | None:
    """Step 4 of the module docstring on a trimmed, NFKC, lowercase value: the domain's
    non-ASCII labels become A-labels (UTS #46 nontransitional, no STD3 rules); ``None`` when
    UTS #46 / IDNA2008 refuses the domain. A value without exactly one ``@`` is returned as
    is (the validity rule refuses it)."""
    if value.isascii() or value.count("@") != 1:
        return value
    local, domain = value.split("@")
    if domain.isascii():
        return value
    try:
        mapped = idna.uts46_remap(domain, std3_rules=False, transitional=False)
        return local + "@" + ".".join(_ascii_label(label) for label in mapped.split("."))
    except (idna.IDNAError, UnicodeError, ValueError):
        return None


def _base_normalize(raw: str) -> str | None:
    """Steps 1-4: trim, NFKC, trim, lowercase, fold the domain (no validation)."""
    composed = unicodedata.normalize("NFKC", raw.strip(TRIM_CHARS)).strip(TRIM_CHARS)
    return _fold_domain(_lower_simple(composed))


def _is_valid(value: str) -> bool:
    return re.fullmatch(EMAIL_PATTERN, value) is not None


def _google_form(valid_email: str) -> str:
    local, domain = valid_email.split("@")
    if domain not in GMAIL_DOMAINS:
        return valid_email
    return local.split("+", 1)[0].replace(".", "") + "@gmail.com"


def normalize_email(raw: str | None, *, google: bool = False) -> str | None:
    """Normalize an email address for matching; ``None`` when empty or not a valid address.

    Args:
        raw: the address as the CRM holds it (may be messy or ``None``).
        google: also apply Google Customer Match's Gmail rule (``gmail.com`` and
            ``googlemail.com``: no dots and no ``+tag`` in the local part, domain ``gmail.com``).

    Returns:
        The normalized address (steps 1-6 of the module docstring: trimmed, NFKC, lowercase,
        the domain in its ASCII form), or ``None``. Two spellings of one mailbox give the same
        value; this is the function to call for any address a person or a file gives us
        (a privacy request, a customer row), so that it names the same subject.
    """
    if raw is None:
        return None
    value = _base_normalize(raw)
    if value is None or not _is_valid(value):
        return None
    if google:
        value = _google_form(value)
        if not _is_valid(value):
            return None
    return value


def sha256_hex(value: str) -> str:
    """SHA-256 of the UTF-8 bytes of ``value``, as 64 lowercase hex characters.

    Raises:
        ValueError: ``value`` is empty (an empty identifier is never hashed: its hash would
            match every other empty identifier).
    """
    if not value:
        raise ValueError("refusing to hash an empty value")
    return hashlib.sha256(value.encode("utf-8")).hexdigest()


def _already_hashed(raw: str) -> str | None:
    trimmed = raw.strip(TRIM_CHARS)
    if re.fullmatch(SHA256_HEX_PATTERN, trimmed):
        return trimmed.lower()
    return None


def subject_key(raw: str | None) -> str | None:
    """Our key for the data subject: sha256 hex of the base-normalized email.

    A value that already is 64 hex characters (any case, after trimming) is returned lowercased
    and not hashed again. Returns ``None`` for ``None``, empty or invalid addresses.
    """
    if raw is None:
        return None
    hashed = _already_hashed(raw)
    if hashed is not None:
        return hashed
    normalized = normalize_email(raw)
    return None if normalized is None else sha256_hex(normalized)


def google_key(raw: str | None) -> str | None:
    """Google Customer Match key: sha256 hex of the Google-normalized email.

    A value that already is 64 hex characters is returned lowercased (we cannot re-normalize a
    hash). Returns ``None`` for ``None``, empty or invalid addresses.
    """
    if raw is None:
        return None
    hashed = _already_hashed(raw)
    if hashed is not None:
        return hashed
    normalized = normalize_email(raw, google=True)
    return None if normalized is None else sha256_hex(normalized)


# --- DuckDB SQL expressions ------------------------------------------------------------------
# The functions below return SQL expression text over a column expression written by our own
# code (never user input). The only literals pasted in are this module's constants.


def _sql_literal(text: str) -> str:
    """A DuckDB string literal for one of our constants (single quotes doubled)."""
    return "'" + text.replace("'", "''") + "'"


_TRIM_SQL = _sql_literal(TRIM_CHARS)
_EMAIL_RE_SQL = _sql_literal(EMAIL_PATTERN)
_HEX_RE_SQL = _sql_literal(SHA256_HEX_PATTERN)
# A value needs trimming only when its first or last character is one of TRIM_CHARS. DuckDB
# 2.0.1's trim(x, chars) with our 30 characters costs about 2.4 us per row, these two RE2 tests
# about 0.25 us (1 million emails: 2.4 s against 0.24 s, bench/README.md), and the result is
# the same: trim is the identity on the values the tests skip.
_EDGE_START_SQL = _sql_literal(f"^[{TRIM_CHARS}]")
_EDGE_END_SQL = _sql_literal(f"[{TRIM_CHARS}]$")
_GMAIL_DOMAINS_SQL = ", ".join(_sql_literal(d) for d in GMAIL_DOMAINS)


def _valid_or_null_sql(expr: str) -> str:
    return f"CASE WHEN regexp_full_match({expr}, {_EMAIL_RE_SQL}) THEN {expr} END"


def _trimmed_sql(col: str) -> str:
    text = f"CAST({col} AS VARCHAR)"
    needs_trim = (
        f"regexp_matches({text}, {_EDGE_START_SQL}) OR regexp_matches({text}, {_EDGE_END_SQL})"
    )
    return f"CASE WHEN {needs_trim} THEN trim({text}, {_TRIM_SQL}) ELSE {text} END"


#: The DuckDB scalar functions that normalize a non-ASCII address with the Python reference
#: (:func:`normalize_email`, base and Google forms): name -> function, VARCHAR -> VARCHAR.
SQL_FUNCTIONS: dict[str, Callable[[str], str | None]] = {
    "activation_normalize_email": lambda raw: normalize_email(raw),
    "activation_normalize_email_google": lambda raw: normalize_email(raw, google=True),
}
_NORMALIZE_FN, _NORMALIZE_GOOGLE_FN = SQL_FUNCTIONS


def register_sql_functions(con: duckdb.DuckDBPyConnection) -> None:
    """Register :data:`SQL_FUNCTIONS` on ``con`` (idempotent: a function already registered on
    this connection is left alone). Every SQL expression of this module needs them; without
    them DuckDB refuses the query (``Catalog Error: Scalar Function ... does not exist``),
    never computes a wrong key. NULL in gives NULL out, and so does an invalid address.

    Call it outside a transaction (as :func:`orchestrator.warehouse.connect.connect` and
    :func:`orchestrator.audience.build_audience` do): DuckDB 2.0.1 forgets a function
    registered in a transaction that is rolled back, while the connection still refuses to
    register the name again.

    On a PostgreSQL warehouse (any connection that is not DuckDB's) the same names are SQL
    functions reading the reference's results, prepared here for the values the key SQL
    reads (:func:`orchestrator.warehouse.address_forms.prepare_address_forms`).

    Raises:
        RuntimeError: the functions were registered in a transaction that was rolled back.
        duckdb.Error: the connection is closed.
    """
    if not is_duckdb(con):
        from orchestrator.warehouse.address_forms import prepare_address_forms

        prepare_address_forms(con)
        return
    for name, function in SQL_FUNCTIONS.items():
        try:
            con.create_function(
                name,
                function,
                [duckdb.sqltype("VARCHAR")],
                duckdb.sqltype("VARCHAR"),
                null_handling="special",  # an invalid address gives NULL
            )
            continue
        except duckdb.NotImplementedException as error:  # known to this connection
            if "already created" not in str(error):
                raise
        except duckdb.CatalogException as error:
            # another connection of the same database instance in this process (two runs of
            # one process sharing the file) registered the same function: use it
            if "already exists" not in str(error):
                raise
        try:  # (asking duckdb_functions() instead cost 15 ms of CPU per call)
            con.execute(f"SELECT {name}(NULL)").fetchall()
        except duckdb.CatalogException as error:
            raise RuntimeError(
                f"{name} was registered in a transaction that was rolled back; register the "
                "address functions before opening a transaction"
            ) from error


def _ascii_sql(text: str) -> str:
    """True when ``text`` is pure ASCII (bytes = characters: about 7 ns per value, 8x cheaper
    than a regular expression)."""
    return f"strlen({text}) = length({text})"


def normalized_email_sql(col: str, *, google: bool = False) -> str:
    """SQL (DuckDB) for :func:`normalize_email` over the column expression ``col``.

    The expression yields VARCHAR, NULL when the input is NULL, empty or invalid. An ASCII
    value is normalized in SQL (NFKC and the domain fold are the identity on it); any other
    value by :func:`normalize_email` itself through :data:`SQL_FUNCTIONS`, which the
    connection must have registered (:func:`register_sql_functions`).
    """
    text = f"CAST({col} AS VARCHAR)"
    base = _valid_or_null_sql(f"lower({_trimmed_sql(col)})")
    if google:
        local = f"split_part({base}, '@', 1)"
        gmail = f"regexp_replace(split_part({local}, '+', 1), '\\.', '', 'g') || '@gmail.com'"
        google_form = (
            f"CASE WHEN split_part({base}, '@', 2) IN ({_GMAIL_DOMAINS_SQL}) THEN {gmail} "
            f"ELSE {base} END"
        )
        ascii_form, function = _valid_or_null_sql(f"({google_form})"), _NORMALIZE_GOOGLE_FN
    else:
        ascii_form, function = base, _NORMALIZE_FN
    return f"(CASE WHEN {_ascii_sql(text)} THEN {ascii_form} ELSE {function}({text}) END)"


def _key_sql(col: str, normalized: str) -> str:
    trimmed = _trimmed_sql(col)
    return (
        f"CASE WHEN regexp_full_match({trimmed}, {_HEX_RE_SQL}) THEN lower({trimmed}) "
        f"ELSE sha256({normalized}) END"
    )


def subject_key_sql(col: str) -> str:
    """SQL (DuckDB) for :func:`subject_key` over ``col``: 64 lowercase hex, or NULL."""
    return _key_sql(col, normalized_email_sql(col))


def google_key_sql(col: str) -> str:
    """SQL (DuckDB) for :func:`google_key` over ``col``: 64 lowercase hex, or NULL."""
    return _key_sql(col, normalized_email_sql(col, google=True))
