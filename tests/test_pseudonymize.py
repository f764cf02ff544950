"""Email normalization and hashing: known vectors, and Python and DuckDB agreeing row by row."""

from __future__ import annotations

import hashlib
import re

import duckdb
import pytest

from orchestrator.pseudonymize import (
    TRIM_CHARS,
    google_key,
    google_key_sql,
    normalize_email,
    normalized_email_sql,
    register_sql_functions,
    sha256_hex,
    subject_key,
    subject_key_sql,
)

TEST_HASH = "973dfe463ec85785f5f95af5ba3906eedb2d931c24e69824a89ea65dba4e813b"
TEST1_HASH = "9b431636bd164765d63c573c346708846af4f68fe3701a77a3bdd7e7e5166254"
HEX64 = "0123456789abcdef" * 4
IDN = "user@xn--exmple-cua.com"

# (raw input, expected base normalization, expected Google normalization)
CASES: list[tuple[str | None, str | None, str | None]] = [
    ("test@example.com", "test@example.com", "test@example.com"),
    ("  Test@Example.COM ", "test@example.com", "test@example.com"),
    ("\tTest1@Example.com\n", "test1@example.com", "test1@example.com"),
    ("\r\ntest@example.com\r\n", "test@example.com", "test@example.com"),
    ("\u00a0test@example.com\u00a0", "test@example.com", "test@example.com"),
    ("\ufefftest@example.com", "test@example.com", "test@example.com"),
    ("test@example.com\u200b", "test@example.com", "test@example.com"),
    ("\f\vtest@example.com\u3000", "test@example.com", "test@example.com"),
    ("ALICE@EXAMPLE.ORG", "alice@example.org", "alice@example.org"),
    # NFC: a decomposed e + combining acute equals the precomposed é
    ("Rene\u0301@example.com", "ren\u00e9@example.com", "ren\u00e9@example.com"),
    ("REN\u00c9@example.com", "ren\u00e9@example.com", "ren\u00e9@example.com"),
    ("RENE\u0301@example.com", "ren\u00e9@example.com", "ren\u00e9@example.com"),
    # Gmail: dots and +tags go for Google only; googlemail.com folds into gmail.com
    ("John.Doe@gmail.com", "john.doe@gmail.com", "johndoe@gmail.com"),
    ("john.doe+news@GMAIL.com", "john.doe+news@gmail.com", "johndoe@gmail.com"),
    ("j.o.h.n+a+b@googlemail.com", "j.o.h.n+a+b@googlemail.com", "john@gmail.com"),
    ("+tag@gmail.com", "+tag@gmail.com", None),
    ("...@gmail.com", "...@gmail.com", None),
    (
        "john.doe@gmail.com.example.org",
        "john.doe@gmail.com.example.org",
        "john.doe@gmail.com.example.org",
    ),
    # '+' and dots elsewhere are kept
    ("first.last+tag@example.org", "first.last+tag@example.org", "first.last+tag@example.org"),
    ("a+b@sub.example.com", "a+b@sub.example.com", "a+b@sub.example.com"),
    # invalid shapes
    ("a@b@example.com", None, None),
    ("no-at-sign.example.com", None, None),
    ("@example.com", None, None),
    ("user@localhost", None, None),
    ("user@.com", None, None),
    ("user@example.", None, None),
    ("user name@example.com", None, None),
    ("user@exam\u00a0ple.com", None, None),
    ("user\t@example.com", None, None),
    ("", None, None),
    ("   ", None, None),
    ("\u00a0\ufeff\u200b\t\n", None, None),
    (None, None, None),
    # already hashed: not an address (the key functions pass it through)
    (HEX64.upper(), None, None),
    (" " + HEX64 + "\n", None, None),
    (HEX64[:63], None, None),
    ("\u00a0" + HEX64 + "\ufeff", None, None),
    # one mailbox, one subject: internationalized domains fold to their ASCII form (UTS #46)
    ("user@b\u00fccher.example", "user@xn--bcher-kva.example", "user@xn--bcher-kva.example"),
    ("USER@B\u00dcCHER.EXAMPLE", "user@xn--bcher-kva.example", "user@xn--bcher-kva.example"),
    ("user@ex\u00e4mple.com", IDN, IDN),
    ("user@xn--exmple-cua.com", IDN, IDN),
    ("USER@XN--EXMPLE-CUA.COM", IDN, IDN),
    ("User@EX\u00c4MPLE.com", IDN, IDN),
    ("user@exa\u0308mple.com", IDN, IDN),  # decomposed a + combining diaeresis
    ("user@ex\u00e4mple\u3002com", IDN, IDN),  # ideographic full stop separates labels
    ("\u00a0user@ex\u00e4mple.com\u200b", IDN, IDN),
    (
        "user@ex\u00e4mple.xn--bcher-kva.example",
        "user@xn--exmple-cua.xn--bcher-kva.example",
        "user@xn--exmple-cua.xn--bcher-kva.example",
    ),
    # ASCII labels of an internationalized domain are kept as ASCII domains are
    (
        "u@b\u00fccher.my_host.example",
        "u@xn--bcher-kva.my_host.example",
        "u@xn--bcher-kva.my_host.example",
    ),
    (
        "J\u00fcrgen@Ex\u00e4mple.com",
        "j\u00fcrgen@xn--exmple-cua.com",
        "j\u00fcrgen@xn--exmple-cua.com",
    ),
    ("stra\u00dfe@stra\u00dfe.de", "stra\u00dfe@xn--strae-oqa.de", "stra\u00dfe@xn--strae-oqa.de"),
    # compatibility forms (NFKC): full-width letters and signs, ligatures, roman numerals
    (
        "\uff35\uff33\uff25\uff32\uff20\uff45\uff58\uff41\uff4d\uff50\uff4c\uff45\uff0e\uff43\uff4f\uff4d",
        "user@example.com",
        "user@example.com",
    ),
    ("\ufb01le@example.com", "file@example.com", "file@example.com"),
    ("john.doe@\uff47\uff4d\uff41\uff49\uff4c.com", "john.doe@gmail.com", "johndoe@gmail.com"),
    ("v\u2167@example.com", "vviii@example.com", "vviii@example.com"),
    # domains UTS #46 / IDNA2008 refuse are invalid addresses
    ("user@\U0001f600.example", None, None),
    ("user@-\u00e4.example", None, None),
    ("user@" + "a" * 64 + "\u00e4.example", None, None),
    # case mapping the way DuckDB does it
    ("\u0130nci@example.com", "inci@example.com", "inci@example.com"),
    ("STRASSE\u00df@example.com", "strasse\u00df@example.com", "strasse\u00df@example.com"),
    # capital sigma at a word end: Python's str.lower would give a final sigma, DuckDB does not
    (
        "\u039f\u0394\u03a5\u03a3\u03a3\u0395\u03a5\u03a3@example.com",
        "\u03bf\u03b4\u03c5\u03c3\u03c3\u03b5\u03c5\u03c3@example.com",
        "\u03bf\u03b4\u03c5\u03c3\u03c3\u03b5\u03c5\u03c3@example.com",
    ),
    ("\u0391\u03a3@example.com", "\u03b1\u03c3@example.com", "\u03b1\u03c3@example.com"),
    ("K\u212a@example.com", "kk@example.com", "kk@example.com"),
]


def _expected_keys(raw: str | None, base: str | None, google: str | None) -> tuple:
    if raw is not None and re.fullmatch("[0-9A-Fa-f]{64}", raw.strip(TRIM_CHARS)):
        hashed = raw.strip(TRIM_CHARS).lower()
        return hashed, hashed
    sk = None if base is None else hashlib.sha256(base.encode()).hexdigest()
    gk = None if google is None else hashlib.sha256(google.encode()).hexdigest()
    return sk, gk


@pytest.fixture(scope="module")
def duck_rows() -> list[tuple]:
    """Each case computed by the SQL expressions in DuckDB, in case order."""
    con = duckdb.connect()
    register_sql_functions(con)
    try:
        con.execute("CREATE TABLE inputs (i INTEGER, raw VARCHAR)")
        con.executemany(
            "INSERT INTO inputs VALUES (?, ?)", [(i, raw) for i, (raw, _, _) in enumerate(CASES)]
        )
        return con.execute(
            f"""
            SELECT {normalized_email_sql("raw")}, {normalized_email_sql("raw", google=True)},
                   {subject_key_sql("raw")}, {google_key_sql("raw")}
            FROM inputs ORDER BY i
            """
        ).fetchall()
    finally:
        con.close()


def test_known_vectors() -> None:
    assert sha256_hex("test@example.com") == TEST_HASH
    assert subject_key("test@example.com") == TEST_HASH
    assert subject_key("  Test@Example.COM ") == TEST_HASH
    assert subject_key(" Test1@example.com") == TEST1_HASH
    assert google_key("\tTEST@example.com") == TEST_HASH


def test_table_is_big_enough() -> None:
    assert len(CASES) >= 30


@pytest.mark.parametrize(("raw", "base", "google"), CASES)
def test_python_normalization(raw: str | None, base: str | None, google: str | None) -> None:
    assert normalize_email(raw) == base
    assert normalize_email(raw, google=True) == google


@pytest.mark.parametrize("index", range(len(CASES)))
def test_duckdb_agrees_with_python(duck_rows: list[tuple], index: int) -> None:
    raw, base, google = CASES[index]
    sk, gk = _expected_keys(raw, base, google)
    python = (
        normalize_email(raw),
        normalize_email(raw, google=True),
        subject_key(raw),
        google_key(raw),
    )
    assert python == (base, google, sk, gk)
    assert duck_rows[index] == python


def test_empty_is_never_hashed() -> None:
    empty_hash = hashlib.sha256(b"").hexdigest()
    for raw in ("", "  ", "\u00a0", None, "@"):
        assert subject_key(raw) is None
        assert google_key(raw) is None
    assert google_key("+@gmail.com") is None  # Gmail rule leaves an empty local part
    with pytest.raises(ValueError):
        sha256_hex("")
    con = duckdb.connect()
    register_sql_functions(con)
    try:
        rows = con.execute(
            f"SELECT {subject_key_sql('x')}, {google_key_sql('x')} "
            "FROM (VALUES (''), ('  '), (NULL), ('@')) t(x)"
        ).fetchall()
    finally:
        con.close()
    assert all(value is None for row in rows for value in row)
    assert empty_hash not in {subject_key("+@gmail.com"), google_key("+@gmail.com")}
    assert empty_hash not in {value for row in rows for value in row}


def test_already_hashed_is_not_hashed_again() -> None:
    assert subject_key(HEX64.upper()) == HEX64
    assert subject_key(f"  {HEX64}\n") == HEX64
    assert google_key(HEX64.upper()) == HEX64
    assert subject_key(HEX64[:63]) is None  # 63 hex characters: neither a hash nor an address
    assert subject_key(subject_key("test@example.com")) == TEST_HASH


def test_lowercase_follows_duckdb_everywhere() -> None:
    """Python's str.lower gives 'i' + U+0307 for U+0130 and a final sigma; we follow DuckDB."""
    con = duckdb.connect()
    register_sql_functions(con)
    try:
        samples = ["\u0130", "\u03a3\u03a3", "\u1e9e", "\u00c9", "\u2126", "\u01c5", "\uff21"]
        for sample in samples:
            raw = f"{sample}x@example.com"
            (duck,) = con.execute(f"SELECT {normalized_email_sql('$1')}", [raw]).fetchone()
            assert normalize_email(raw) == duck
    finally:
        con.close()


def test_the_sql_refuses_to_run_without_the_address_functions() -> None:
    """Never a wrong key: without the functions the query fails; after a rollback that made
    DuckDB forget them, registering again says why instead of leaving them missing."""
    con = duckdb.connect()
    try:
        with pytest.raises(duckdb.CatalogException):
            con.execute(f"SELECT {subject_key_sql('$1')}", ["user@ex\u00e4mple.com"]).fetchall()
        con.begin()
        register_sql_functions(con)
        con.rollback()
        with pytest.raises(RuntimeError, match="rolled back"):
            register_sql_functions(con)
    finally:
        con.close()
    con = duckdb.connect()
    try:
        register_sql_functions(con)
        register_sql_functions(con)  # idempotent
        (key,) = con.execute(
            f"SELECT {subject_key_sql('$1')}", ["user@ex\u00e4mple.com"]
        ).fetchone()
        assert key == subject_key("user@xn--exmple-cua.com")
    finally:
        con.close()
