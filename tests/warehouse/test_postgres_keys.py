"""The keys are identical on DuckDB, on PostgreSQL and in the Python reference, on a database
of the server's default locale and on one created with the ``C`` locale (where ``lower()``
leaves ``É`` upper case), for every tricky input of the pseudonymization tests."""

from __future__ import annotations

import pytest

from orchestrator.pseudonymize import (
    google_key,
    google_key_sql,
    normalize_email,
    normalized_email_sql,
    subject_key,
    subject_key_sql,
)
from orchestrator.warehouse.address_forms import prepare_address_forms
from tests.postgres import open_warehouse
from tests.test_customer_keys import TRICKY
from tests.test_pseudonymize import CASES

INPUTS = list(dict.fromkeys([raw for raw, _, _ in CASES] + TRICKY + ["ÉLODIE@EXAMPLE.COM"]))

KEYS = f"""
SELECT i, {normalized_email_sql("raw")}, {normalized_email_sql("raw", google=True)},
       {subject_key_sql("raw")}, {google_key_sql("raw")}
FROM key_inputs ORDER BY i
"""


def _reference() -> list[tuple]:
    return [
        (i, normalize_email(raw), normalize_email(raw, google=True), subject_key(raw),
         google_key(raw))
        for i, raw in enumerate(INPUTS)
    ]  # fmt: skip


def _postgres_rows(url: str) -> list[tuple]:
    con = open_warehouse(url)
    try:
        con.execute("CREATE TABLE key_inputs (i INTEGER, raw VARCHAR)")
        con.executemany("INSERT INTO key_inputs VALUES (?, ?)", list(enumerate(INPUTS)))
        prepare_address_forms(con, (("public.key_inputs", "raw"),))
        return con.execute(KEYS).fetchall()
    finally:
        con.close()


@pytest.mark.parametrize("locale", ["server default (C.UTF-8)", "C"])
def test_postgres_keys_equal_the_reference(
    locale: str, postgres_url: str, postgres_c_locale_url: str
) -> None:
    url = postgres_c_locale_url if locale == "C" else postgres_url
    assert _postgres_rows(url) == _reference()


def test_the_c_locale_is_the_hard_case(postgres_c_locale_url: str) -> None:
    """Without the address forms, PostgreSQL's own lower() under C would differ."""
    con = open_warehouse(postgres_c_locale_url)
    try:
        (lowered,) = con.execute("SELECT lower('ÉLODIE@EXAMPLE.COM')").fetchone()
    finally:
        con.close()
    assert lowered == "Élodie@example.com" != normalize_email("ÉLODIE@EXAMPLE.COM")


def test_a_missing_form_refuses_to_compute_a_key(postgres_url: str) -> None:
    con = open_warehouse(postgres_url)
    try:
        con.execute("CREATE TABLE key_inputs (i INTEGER, raw VARCHAR)")
        con.execute("INSERT INTO key_inputs VALUES (0, 'RENÉ@example.com')")
        with pytest.raises(Exception, match="no prepared form"):
            con.execute(KEYS).fetchall()
    finally:
        con.close()


def test_forms_of_addresses_no_source_holds_are_deleted(postgres_url: str) -> None:
    con = open_warehouse(postgres_url)
    try:
        con.execute("CREATE TABLE key_inputs (i INTEGER, raw VARCHAR)")
        con.execute("INSERT INTO key_inputs VALUES (0, 'RENÉ@example.com'), (1, 'a@b.com')")
        assert prepare_address_forms(con, (("public.key_inputs", "raw"),)) == 1
        con.execute("DELETE FROM key_inputs WHERE i = 0")  # erased
        prepare_address_forms(con, (("public.key_inputs", "raw"),))
        assert con.execute("SELECT count(*) FROM activation.address_forms").fetchone() == (0,)
    finally:
        con.close()
