"""The pseudonym cache: same keys as the reference pseudonymizer, recomputed exactly when an
address changes, and never stale in an audience."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

import duckdb
import pytest
from faker import Faker

from orchestrator.audience import build_audience
from orchestrator.config import LegalBasis, Purpose
from orchestrator.customer_keys import refresh_customer_keys
from orchestrator.pseudonymize import google_key, normalize_email, subject_key
from orchestrator.warehouse.schema import create_activation_schema, create_source_schema

AS_OF = datetime(2026, 6, 1, 12, 0)
PURPOSES = {
    "email_marketing": Purpose(
        description="marketing emails",
        consent_validity_days=1095,
        legal_bases=(LegalBasis.CONSENT, LegalBasis.LEGITIMATE_INTEREST),
    )
}

#: Addresses every normalization rule touches (made-up local parts).
TRICKY = [
    "  Mixed.Case@Example.COM ",
    "first.last+promo@gmail.com",
    "F.I.R.S.T.last@googlemail.com",
    "\u00a0nbsp@example.org\u200b",
    "not-an-address",
    "",
    None,
    "a" * 64,  # a hash held instead of an address
    "ren\u0065\u0301@example.com",  # decomposed accent: NFC
    "user@ex\u00e4mple.com",  # internationalized domain: folded to its ASCII form
    "USER@XN--EXMPLE-CUA.COM",  # the same mailbox in punycode
    "\uff55\uff53\uff45\uff52@example.net",  # full-width letters: NFKC
    "user@\U0001f600.example",  # a domain UTS #46 refuses
]


@pytest.fixture()
def con(tmp_path: Path) -> duckdb.DuckDBPyConnection:
    connection = duckdb.connect(str(tmp_path / "w.duckdb"))
    create_source_schema(connection)
    create_activation_schema(connection)
    fake = Faker()
    fake.seed_instance(20261130)
    emails = TRICKY + [fake.unique.email(domain="example.com") for _ in range(200)]
    connection.executemany(
        "INSERT INTO customers (customer_id, email, country, created_at) VALUES (?, ?, 'FR', ?)",
        [(i + 1, email, AS_OF - timedelta(days=30)) for i, email in enumerate(emails)],
    )
    yield connection
    connection.close()


def _cache(con: duckdb.DuckDBPyConnection) -> dict[int, tuple]:
    rows = con.execute(
        "SELECT customer_id, email, subject_key, google_key FROM activation.customer_keys"
    ).fetchall()
    assert len(rows) == len({r[0] for r in rows}), "one row per customer"
    return {r[0]: r[1:] for r in rows}


def _expected(con: duckdb.DuckDBPyConnection) -> dict[int, tuple]:
    rows = con.execute("SELECT customer_id, email FROM customers").fetchall()
    return {cid: (normalize_email(e), subject_key(e), google_key(e)) for cid, e in rows}


def test_refresh_matches_the_reference_pseudonymizer(con: duckdb.DuckDBPyConnection) -> None:
    stats = refresh_customer_keys(con)
    assert stats.computed == len(TRICKY) + 200
    assert _cache(con) == _expected(con)


def test_only_changed_or_new_addresses_are_recomputed(con: duckdb.DuckDBPyConnection) -> None:
    refresh_customer_keys(con)
    con.execute("UPDATE customers SET email = 'moved@example.org' WHERE customer_id = 10")
    con.execute("UPDATE customers SET email = NULL WHERE customer_id = 11")
    con.execute("DELETE FROM customers WHERE customer_id = 12")
    con.execute(
        "INSERT INTO customers (customer_id, email, country, created_at) "
        "VALUES (5000, 'new.person@example.com', 'DE', ?)",
        [AS_OF],
    )
    stats = refresh_customer_keys(con)
    assert (stats.deleted, stats.computed) == (3, 3)
    assert _cache(con) == _expected(con)
    assert 12 not in _cache(con)
    assert refresh_customer_keys(con) == type(stats)(deleted=0, computed=0)


def test_an_audience_never_uses_the_key_of_an_old_address(con: duckdb.DuckDBPyConnection) -> None:
    con.execute(
        "INSERT INTO activation.segment_members SELECT 'seg', customer_id, ? FROM customers",
        [AS_OF],
    )
    con.execute(
        "INSERT INTO consents SELECT 'c' || customer_id, customer_id, 'email_marketing', "
        "'granted', ?, 'web', 'v1' FROM customers",
        [AS_OF - timedelta(days=1)],
    )

    def audience_key(cid: int) -> str | None:
        build_audience(
            con,
            segment="seg",
            purpose="email_marketing",
            legal_basis=LegalBasis.CONSENT,
            purposes=PURPOSES,
            as_of=AS_OF,
        )
        row = con.execute(
            "SELECT subject_key FROM activation.audience_members WHERE customer_id = ?", [cid]
        ).fetchone()
        return row[0] if row else None

    first = con.execute("SELECT email FROM customers WHERE customer_id = 20").fetchone()[0]
    assert audience_key(20) == subject_key(first)
    con.execute("UPDATE customers SET email = 'changed.address@example.org' WHERE customer_id = 20")
    assert audience_key(20) == subject_key("changed.address@example.org")
    con.execute("UPDATE customers SET email = 'not an address' WHERE customer_id = 20")
    assert audience_key(20) is None
    (reason,) = con.execute(
        "SELECT reason FROM activation.audience_exclusions WHERE customer_id = 20"
    ).fetchone()
    assert reason == "invalid_email"


def test_only_customers_a_step_needed_are_kept(con: duckdb.DuckDBPyConnection) -> None:
    """Data minimization: an audience caches its members' keys, not every customer's."""
    members = [20, 21, 22]
    con.executemany(
        "INSERT INTO activation.segment_members VALUES ('seg', ?, ?)",
        [(cid, AS_OF) for cid in members],
    )
    build_audience(
        con,
        segment="seg",
        purpose="email_marketing",
        legal_basis=LegalBasis.CONSENT,
        purposes=PURPOSES,
        as_of=AS_OF,
    )
    assert sorted(_cache(con)) == members
    con.execute("DELETE FROM customers WHERE customer_id = 21")
    stats = refresh_customer_keys(con, within="(SELECT 22 AS customer_id)")
    assert (stats.deleted, stats.computed) == (1, 0), "the gone customer leaves, whatever the scope"
    assert sorted(_cache(con)) == [20, 22]


@pytest.mark.parametrize("mode", ["add_only", "upsert", "mirror"])
def test_an_objection_reaches_the_address_a_customer_had_when_we_sent_it(
    con: duckdb.DuckDBPyConnection, tmp_path: Path, mode: str
) -> None:
    """A customer changes address after we sent the old one; they then object (request by
    customer id). The old key, still held at the destination, leaves in every mode, and the
    request resolves to both keys (so its receipt covers both)."""
    from orchestrator.privacy.requests import _hash_customers, _Request, _resolve
    from orchestrator.sync.diff import DiffParams, compute_diff

    cid, old = 20, con.execute("SELECT email FROM customers WHERE customer_id = 20").fetchone()[0]
    con.execute("INSERT INTO activation.segment_members VALUES ('seg', ?, ?)", [cid, AS_OF])
    con.execute(
        "INSERT INTO consents VALUES ('c20', 20, 'email_marketing', 'granted', ?, 'web', 'v1')",
        [AS_OF - timedelta(days=1)],
    )
    audience = {
        "segment": "seg",
        "purpose": "email_marketing",
        "legal_basis": LegalBasis.CONSENT,
        "purposes": PURPOSES,
        "as_of": AS_OF,
    }
    build_audience(con, **audience)
    con.execute(
        "INSERT INTO activation.sync_state VALUES ('seg', 'mailchimp', ?, NULL, 'h', ?)",
        [subject_key(old), AS_OF],
    )
    con.execute("UPDATE customers SET email = 'renamed.person@example.org' WHERE customer_id = 20")
    build_audience(con, **audience)
    new = subject_key("renamed.person@example.org")
    history = con.execute("SELECT subject_key FROM activation.customer_key_history").fetchall()
    assert history == [(subject_key(old),)]
    con.execute(
        "INSERT INTO privacy_requests VALUES ('pr-1', 20, NULL, 'objection', ?)",
        [AS_OF],
    )
    params = DiffParams(
        "seg", "mailchimp", mode, "email", "base", {}, "email_marketing", 365, AS_OF
    )
    plan = compute_diff(con, params, tmp_path)
    assert plan.removes_by_reason["objection"] == 1
    removed = con.execute(
        "SELECT subject_key FROM sync_remove_reasons WHERE reason = 'objection'"
    ).fetchall()
    assert removed == [(subject_key(old),)]
    request = _Request("pr-1", "objection", 20, None, AS_OF)
    _hash_customers(con)
    assert {s.subject_key for s in _resolve(con, request)} == {subject_key(old), new}


def test_keys_of_older_rules_are_recomputed_for_non_ascii_addresses_only(
    con: duckdb.DuckDBPyConnection,
) -> None:
    """A cache written under the rules before the UTS #46 fold (version 1, no version row)
    holds other keys for non-ASCII addresses: the next refresh recomputes those rows, and
    only those, archiving a held old key so that its removal can still name it."""
    refresh_customer_keys(con)
    con.execute("DELETE FROM activation.customer_keys_rules")
    idn = TRICKY.index("user@ex\u00e4mple.com") + 1
    old_key = "f" * 64  # what version 1 computed (Unicode domain kept as written)
    con.execute(
        "UPDATE activation.customer_keys SET subject_key = ? WHERE customer_id = ?", [old_key, idn]
    )
    con.execute(
        "INSERT INTO activation.sync_state VALUES ('s', 'meta_ads', ?, NULL, 'h', ?)",
        [old_key, AS_OF],
    )
    rows = con.execute("SELECT email FROM customers").fetchall()
    non_ascii = sum(1 for (email,) in rows if email is not None and not email.isascii())
    stats = refresh_customer_keys(con)
    assert stats.computed == stats.deleted == non_ascii
    assert _cache(con) == _expected(con)
    history = con.execute(
        "SELECT customer_id, subject_key FROM activation.customer_key_history"
    ).fetchall()
    assert history == [(idn, old_key)]
    assert refresh_customer_keys(con).computed == 0  # the version is recorded: once only


def test_every_spelling_of_one_mailbox_has_one_subject_key(
    con: duckdb.DuckDBPyConnection,
) -> None:
    refresh_customer_keys(con)
    unicode_id = TRICKY.index("user@ex\u00e4mple.com") + 1
    puny_id = TRICKY.index("USER@XN--EXMPLE-CUA.COM") + 1
    keys = dict(
        con.execute("SELECT customer_id, subject_key FROM activation.customer_keys").fetchall()
    )
    assert keys[unicode_id] == keys[puny_id] == subject_key("user@xn--exmple-cua.com")


def _addresses(con: duckdb.DuckDBPyConnection) -> dict[int, int]:
    return dict(
        con.execute("SELECT customer_id, address_id FROM activation.customer_keys").fetchall()
    )


def _expected_addresses(con: duckdb.DuckDBPyConnection) -> dict[int, int]:
    keys = dict(
        con.execute("SELECT customer_id, subject_key FROM activation.customer_keys").fetchall()
    )
    lowest: dict[str, int] = {}
    for cid, key in sorted(keys.items()):
        if key is not None:
            lowest.setdefault(key, cid)
    return {cid: lowest[key] if key is not None else cid for cid, key in keys.items()}


def test_address_ids_follow_shared_addresses_through_changes(
    con: duckdb.DuckDBPyConnection,
) -> None:
    """address_id: the lowest cached customer id of each subject key, kept exact when a row
    joins, leaves or changes its address, and filled in for a cache that predates it."""
    refresh_customer_keys(con)
    assert _addresses(con) == _expected_addresses(con)
    unicode_id = TRICKY.index("user@ex\u00e4mple.com") + 1
    puny_id = TRICKY.index("USER@XN--EXMPLE-CUA.COM") + 1
    assert _addresses(con)[puny_id] == _addresses(con)[unicode_id] == min(unicode_id, puny_id)
    con.execute("UPDATE customers SET email = 'elsewhere@example.org' WHERE customer_id = ?",
                [min(unicode_id, puny_id)])  # fmt: skip
    con.execute("UPDATE customers SET email = 'User@Ex\u00e4mple.com' WHERE customer_id = 100")
    refresh_customer_keys(con)
    assert _addresses(con) == _expected_addresses(con)
    assert _addresses(con)[max(unicode_id, puny_id)] == max(unicode_id, puny_id)
    assert _addresses(con)[100] == max(unicode_id, puny_id)
    con.execute("ALTER TABLE activation.customer_keys DROP COLUMN address_id")
    refresh_customer_keys(con)
    assert _addresses(con) == _expected_addresses(con)
