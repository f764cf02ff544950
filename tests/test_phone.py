"""E.164 and per-platform phone hashing: a table of tricky numbers; what the SQL diff sends
equals the Python reference."""

from __future__ import annotations

import hashlib
from pathlib import Path

import duckdb
import pytest

from orchestrator.model.spec import DEFAULT_MODEL
from orchestrator.model.views import refresh_source_views
from orchestrator.phone import google_phone_hash, meta_phone_hash, to_e164
from orchestrator.phone_keys import refresh_phone_keys
from orchestrator.pseudonymize import subject_key
from orchestrator.sync.diff import DiffParams, compute_diff
from tests.sync.helpers import new_warehouse, set_audience

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


def test_the_diff_sends_what_the_python_reference_computes(tmp_path: Path) -> None:
    """Each vector as a customer's phone and country; the send keys the diff exports (from the
    phone cache) carry exactly the reference hashes, or the email key alone."""
    emails = [f"person{i}@example.com" for i in range(len(VECTORS))]
    wh = tmp_path / "wh.duckdb"
    new_warehouse(wh, emails)
    con = duckdb.connect(str(wh))
    con.execute("ALTER TABLE customers ADD COLUMN phone VARCHAR")
    for i, (raw, region, _expected) in enumerate(VECTORS):
        con.execute(
            "UPDATE customers SET phone = ?, country = ? WHERE customer_id = ?",
            [raw, region, i + 1],
        )
    refresh_source_views(con, DEFAULT_MODEL, ())  # the model's views now carry the phone trait
    set_audience(con, "seg", range(1, len(VECTORS) + 1))
    for platform, reference in (("google", google_phone_hash), ("meta", meta_phone_hash)):
        params = DiffParams("seg", f"{platform}_ads", "mirror", "ad", phone_platform=platform)
        scratch = tmp_path / platform
        scratch.mkdir()
        plan = compute_diff(con, params, scratch)
        (path,) = [p for op, _r, p in plan.files if op == "add"]
        sent = dict(
            con.execute("SELECT subject_key, send_key FROM read_parquet(?)", [str(path)]).fetchall()
        )
        for i, (raw, region, _expected) in enumerate(VECTORS):
            key = subject_key(emails[i])
            phone = reference(raw, region)
            assert sent[key] == (key if phone is None else f"{key}|{phone}"), (raw, region)
    (cached,) = con.execute("SELECT count(*) FROM activation.customer_phone_keys").fetchone()
    assert cached == len(VECTORS)
    con.execute("UPDATE customers SET phone = '+33 6 99 99 99 99' WHERE customer_id = 1")
    assert (
        refresh_phone_keys(con, segment="seg", phone_column="phone", region_column="country") == 1
    )
    con.close()
