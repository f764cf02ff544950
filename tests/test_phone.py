"""E.164 and per-platform phone hashing: a table of tricky numbers, Python = SQL."""

from __future__ import annotations

import hashlib

import duckdb
import pytest

from orchestrator.phone import (
    google_phone_hash,
    meta_phone_hash,
    register_phone_functions,
    to_e164,
)

# (raw, customer's country, expected E.164 or None)
VECTORS = [
    ("+33 6 12 34 56 78", "FR", "+33612345678"),
    ("06 12 34 56 78", "FR", "+33612345678"),  # no country code: read in the customer's country
    ("06.12.34.56.78", "FR", "+33612345678"),
    ("(0)6-12-34-56-78", "FR", "+33612345678"),
    ("0033612345678", "FR", "+33612345678"),  # international prefix from France
    ("+33612345678", None, "+33612345678"),  # international form needs no country
    ("06 12 34 56 78", None, None),  # national form without a country: cannot be read
    ("020 7946 0958", "GB", "+442079460958"),
    ("+1 (123) 456-7890", "US", None),  # no US area code starts with 1: not a valid number
    ("+1 650-253-0000", "US", "+16502530000"),
    ("0612", "FR", None),  # too short
    ("not a phone", "FR", None),
    ("", "FR", None),
    (None, "FR", None),
    ("0151 23456789", "de", "+4915123456789"),  # country code in lower case
]


@pytest.mark.parametrize(("raw", "region", "expected"), VECTORS)
def test_e164_vectors(raw, region, expected) -> None:
    assert to_e164(raw, region) == expected


def test_google_hashes_with_the_plus_and_meta_without() -> None:
    plus = hashlib.sha256(b"+33612345678").hexdigest()
    digits = hashlib.sha256(b"33612345678").hexdigest()
    assert google_phone_hash("06 12 34 56 78", "FR") == plus
    assert meta_phone_hash("06 12 34 56 78", "FR") == digits
    assert google_phone_hash("0612", "FR") is None
    assert meta_phone_hash(None, "FR") is None


def test_sql_agrees_with_the_python_reference() -> None:
    con = duckdb.connect()
    register_phone_functions(con)
    register_phone_functions(con)  # idempotent
    con.execute("CREATE TABLE t (raw VARCHAR, region VARCHAR)")
    con.executemany("INSERT INTO t VALUES (?, ?)", [(r, c) for r, c, _ in VECTORS])
    rows = con.execute(
        "SELECT raw, region, phone_e164(raw, region), google_phone_hash(raw, region),"
        " meta_phone_hash(raw, region) FROM t"
    ).fetchall()
    for raw, region, e164, google, meta in rows:
        assert e164 == to_e164(raw, region)
        assert google == google_phone_hash(raw, region)
        assert meta == meta_phone_hash(raw, region)
