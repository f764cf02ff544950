"""The pseudonym cache: each customer's normalized email and keys, recomputed only when the
email changes.

Normalizing and hashing an address (NFC, lower case, validation, SHA-256, the Google form) is
the most expensive per-row work of an audience: about 1 CPU s per 400,000 members, repeated for
every segment on every run although few addresses change between runs (bench/README.md). The
table ``activation.customer_keys`` keeps the result per customer, with a fingerprint of the raw
``customers.email`` it came from:

``customer_id`` BIGINT, ``email_fingerprint`` UBIGINT (DuckDB ``hash(email)``, 64 bits),
``email`` VARCHAR (:func:`orchestrator.pseudonymize.normalize_email`, NULL when invalid),
``subject_key`` VARCHAR and ``google_key`` VARCHAR (64 lowercase hex, or NULL: see
:func:`orchestrator.pseudonymize.subject_key` and :func:`~orchestrator.pseudonymize.google_key`),
``address_id`` BIGINT: the lowest ``customer_id`` among the cached rows with the same subject
key (the customer's own id when it has none). One address, one person: consent and requests
are read per address (:mod:`orchestrator.audience`), and an integer identifies it for half
the CPU of the 64-character key (joins and window partitions, bench/README.md). Kept
exact by each refresh for the subject keys it added or removed.

:func:`refresh_customer_keys` makes the table match ``customers``: rows whose customer is gone
or whose fingerprint no longer matches the current email are deleted (an erased or changed
address leaves the cache at the next refresh), and customers without a row get one. A stale
row would need a changed email with the same 64-bit fingerprint as the old one (probability
2^-64 per change). At most one row per customer: only the refresh writes the table, in the
caller's transaction, and DuckDB lets one process write the file at a time.

A dropped row whose subject key a destination still holds (``sync_state``) is remembered in
``activation.customer_key_history`` (customer_id, subject_key, google_key, superseded_at)
until no destination holds it: an objection, erasure or withdrawal by that customer must also
reach the address they had when we sent it (:mod:`orchestrator.sync.diff`,
:mod:`orchestrator.privacy.requests`).

The rules of :mod:`orchestrator.pseudonymize` are versioned (:data:`KEY_RULES_VERSION`,
recorded in ``activation.customer_keys_rules``): a refresh under newer rules first marks the
rows they may change as changed (version 2, NFKC and the UTS #46 domain fold: the rows whose
raw address is not pure ASCII, as both are the identity on ASCII), so they are archived and
recomputed like a changed address, without re-hashing everyone.

Only customers some step needed are kept (data minimization, GDPR Art. 5(1)(c)): an audience
refreshes its segment's members, a diff the customers whose requests or consent decide a
removal; a customer no segment ever selected has no row.
"""

from __future__ import annotations

from dataclasses import dataclass

import duckdb

from orchestrator.pseudonymize import (
    google_key_sql,
    normalized_email_sql,
    register_sql_functions,
    subject_key_sql,
)
from orchestrator.warehouse.schema import create_activation_schema

_SCRATCH = "_customer_key_changes"

#: Version of the normalization rules the cached keys follow. 1: trim, NFC, lowercase;
#: 2: trim, NFKC, lowercase, UTS #46 domain fold (changes non-ASCII addresses only).
KEY_RULES_VERSION = 2

#: Cache rows computed under older rules whose value may differ now (version 1 -> 2: the
#: raw address is not pure ASCII), marked as changes to recompute.
_MARK_OLD_RULES = f"""
INSERT INTO {_SCRATCH}
SELECT k.customer_id, true
FROM activation.customer_keys AS k JOIN activation.src_customers AS c USING (customer_id)
WHERE strlen(c.email) <> length(c.email)
  AND k.customer_id NOT IN (SELECT customer_id FROM {_SCRATCH})
"""


def _changes_sql(within: str | None) -> str:
    """Temp table of customers in scope without a matching cache row (``present``: hash them)
    and cache rows matching no customer's current address (``NOT present``: delete them),
    from one full join (one pass over ``customers``; an anti-join each way cost twice as
    much at 1M customers)."""
    scope = "" if within is None else f" AND c.customer_id IN (SELECT customer_id FROM {within})"
    return f"""
CREATE OR REPLACE TEMP TABLE {_SCRATCH} AS
SELECT coalesce(c.customer_id, k.customer_id) AS customer_id,
       c.customer_id IS NOT NULL AS present
FROM (SELECT customer_id, hash(email) AS fingerprint FROM activation.src_customers) AS c
FULL JOIN activation.customer_keys AS k
  ON k.customer_id = c.customer_id AND k.email_fingerprint = c.fingerprint
WHERE (k.customer_id IS NULL{scope}) OR c.customer_id IS NULL
"""


#: Keys about to be dropped for a customer, remembered while a destination holds them
#: (a correlated EXISTS for the same reason as the prune below).
_ARCHIVE_STALE = f"""
INSERT INTO activation.customer_key_history
    (customer_id, subject_key, google_key, superseded_at)
SELECT customer_id, subject_key, google_key, now()::TIMESTAMP
FROM activation.customer_keys AS k
WHERE customer_id IN (SELECT customer_id FROM {_SCRATCH}) AND subject_key IS NOT NULL
  AND EXISTS (SELECT 1 FROM activation.sync_state AS s WHERE s.subject_key = k.subject_key)
"""

#: History rows no destination holds any more (the remove was acknowledged). A correlated
#: NOT EXISTS, so DuckDB builds its hash table on the (usually empty) history: ``NOT IN
#: (SELECT ... sync_state)`` hashed every held key, 0.05-0.1 s per call at 1M customers.
_PRUNE_HISTORY = """
DELETE FROM activation.customer_key_history AS h
WHERE NOT EXISTS (SELECT 1 FROM activation.sync_state AS s WHERE s.subject_key = h.subject_key)
"""

_ADDRESSES = "_customer_key_addresses"

#: Subject keys whose rows the refresh is about to delete (their address may change).
_OLD_ADDRESSES = f"""
CREATE OR REPLACE TEMP TABLE {_ADDRESSES} AS
SELECT subject_key FROM activation.customer_keys
WHERE customer_id IN (SELECT customer_id FROM {_SCRATCH}) AND subject_key IS NOT NULL
"""

#: Subject keys of the rows just inserted, and of rows without an address yet (a cache
#: written before the column existed).
_NEW_ADDRESSES = f"""
INSERT INTO {_ADDRESSES}
SELECT subject_key FROM activation.customer_keys
WHERE subject_key IS NOT NULL AND (address_id IS NULL
    OR customer_id IN (SELECT customer_id FROM {_SCRATCH} WHERE present))
"""

_SET_ADDRESSES = f"""
UPDATE activation.customer_keys AS k SET address_id = a.address_id
FROM (
    SELECT subject_key, min(customer_id) AS address_id FROM activation.customer_keys
    WHERE subject_key IN (SELECT subject_key FROM {_ADDRESSES})
    GROUP BY subject_key
) AS a
WHERE k.subject_key = a.subject_key AND k.address_id IS DISTINCT FROM a.address_id
"""

_OWN_ADDRESS = """
UPDATE activation.customer_keys SET address_id = customer_id
WHERE address_id IS NULL AND subject_key IS NULL
"""

_DELETE_STALE = f"""
DELETE FROM activation.customer_keys
WHERE customer_id IN (SELECT customer_id FROM {_SCRATCH})
"""


def _insert_missing_sql() -> str:
    return f"""
INSERT INTO activation.customer_keys
    (customer_id, email_fingerprint, email, subject_key, google_key, address_id)
SELECT customer_id, hash(email),
       {normalized_email_sql("email")},
       {subject_key_sql("email")},
       {google_key_sql("email")},
       customer_id
FROM activation.src_customers
WHERE customer_id IN (SELECT customer_id FROM {_SCRATCH} WHERE present)
"""


def _mark_old_rules(con: duckdb.DuckDBPyConnection) -> None:
    """Mark the rows older rules computed differently (:data:`KEY_RULES_VERSION`) as changed,
    and record the current version; nothing once the version is current."""
    versions = [
        v for (v,) in con.execute("SELECT version FROM activation.customer_keys_rules").fetchall()
    ]
    if versions == [KEY_RULES_VERSION]:
        return
    con.execute(_MARK_OLD_RULES)
    con.execute("DELETE FROM activation.customer_keys_rules")
    con.execute("INSERT INTO activation.customer_keys_rules VALUES (?)", [KEY_RULES_VERSION])


@dataclass(frozen=True)
class KeyRefresh:
    """What :func:`refresh_customer_keys` changed: rows ``deleted`` (customer gone or email
    changed) and ``computed`` (customers normalized and hashed now)."""

    deleted: int
    computed: int


def refresh_customer_keys(con: duckdb.DuckDBPyConnection, within: str | None = None) -> KeyRefresh:
    """Bring ``activation.customer_keys`` in line with ``activation.src_customers`` (module
    docstring).

    ``within``: the name of a relation with a ``customer_id`` column (written by our code,
    never user input): only those customers get a row when they lack one; None: every
    customer. Stale rows (customer gone, address changed) are deleted whatever the scope.
    Runs in the caller's transaction when one is open (so an audience built in the same
    transaction sees the refreshed keys), and creates the activation tables if missing. Costs
    one 64-bit hash per customer plus the normalization and SHA-256 of new or changed
    addresses in scope only.

    Raises:
        duckdb.Error: ``activation.src_customers`` is missing or lacks ``customer_id`` / ``email``.
    """
    create_activation_schema(con)
    # a cache created before addresses were kept (2026-12-03): the column, filled below
    con.execute("ALTER TABLE activation.customer_keys ADD COLUMN IF NOT EXISTS address_id BIGINT")
    register_sql_functions(con)
    con.execute(_changes_sql(within))
    _mark_old_rules(con)
    (changes,) = con.execute(f"SELECT count(*) FROM {_SCRATCH}").fetchone()
    deleted = computed = 0
    con.execute(_PRUNE_HISTORY)
    con.execute(_OLD_ADDRESSES)
    if changes:
        con.execute(_ARCHIVE_STALE)
        (deleted,) = con.execute(_DELETE_STALE).fetchone()
        (computed,) = con.execute(_insert_missing_sql()).fetchone()
    con.execute(_NEW_ADDRESSES)
    con.execute(_SET_ADDRESSES)
    con.execute(_OWN_ADDRESS)
    con.execute(f"DROP TABLE {_ADDRESSES}")
    con.execute(f"DROP TABLE {_SCRATCH}")
    return KeyRefresh(deleted=int(deleted), computed=int(computed))


__all__ = ["KEY_RULES_VERSION", "KeyRefresh", "refresh_customer_keys"]
