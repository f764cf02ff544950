"""A deterministic synthetic warehouse at any scale, generated in DuckDB SQL.

Same tables as the demo (:func:`orchestrator.warehouse.schema.create_source_schema`); every
"random" choice is DuckDB's ``hash(customer_id, seed, tag)`` modulo some range, so the same
(customers, seed, as_of) gives the same warehouse, row for row, on any machine with the pinned
DuckDB. No Python loop touches a row.

Shapes, per customer (ids ``1..N``):

``customers``: email ``user<id>@example.com`` (81.5%), messy ``'  User<id>@Example.ORG '``
(10%, trimmed and lowercased by normalization), Gmail with dots ``first.last<id>@gmail.com``
(5%), the previous customer's address (0.5%, ``duplicate_address``), invalid ``user<id>example.com``
(1%), NULL (0.5%). Countries: 12 codes, evenly spread (half of them in :data:`SEGMENT_COUNTRIES`).
``events``: 0 to 20 per customer (mean 10), 90% purchases and 10% refunds, spread over the 730
days before ``as_of``.
``consents``: for each of ``email_marketing`` and ``ad_targeting``, independently: 70% granted
within the last 300 days, 8% granted more than 1,200 days ago (expired for both purposes), 10%
granted then withdrawn, 2% granted without source (``consent_unproven``), 10% no record.
``privacy_requests``: 0.2% of customers (half erasure, half objection).

:func:`apply_changes` then moves about 1% of segment members: 0.5% leave (country moved out of
the segment's countries), 0.5% join (moved in), 0.1% withdraw consent for both purposes.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import duckdb

from orchestrator.warehouse.schema import create_activation_schema, create_source_schema

#: Country codes of the synthetic customers; the first six are the segments' countries.
COUNTRIES: tuple[str, ...] = (
    "FR",
    "DE",
    "ES",
    "IT",
    "NL",
    "BE",
    "GB",
    "US",
    "CH",
    "PL",
    "SE",
    "IE",
)
SEGMENT_COUNTRIES: tuple[str, ...] = COUNTRIES[:6]
PURPOSES: tuple[str, ...] = ("email_marketing", "ad_targeting")
_DESCRIPTIONS = ["WHITE MUG", "RED LANTERN", "TEA SET", "CANDLE", "BAG", "POSTER", "CLOCK"]

_CUSTOMERS_SQL = """
INSERT INTO customers
SELECT customer_id,
       CASE WHEN r < 5 THEN NULL
            WHEN r < 15 THEN 'user' || customer_id || 'example.com'
            WHEN r < 20 AND customer_id > 1 THEN 'user' || (customer_id - 1) || '@example.com'
            WHEN r < 70 THEN 'first.last' || customer_id || '@gmail.com'
            WHEN r < 170 THEN '  User' || customer_id || '@Example.ORG '
            ELSE 'user' || customer_id || '@example.com' END AS email,
       country, country AS country_name,
       $as_of - to_days(CAST(hash(customer_id, $seed, 'created') % 2000 AS INTEGER) + 1),
       $as_of - to_days(CAST(hash(customer_id, $seed, 'contact') % 700 AS INTEGER))
FROM (
    SELECT range + 1 AS customer_id,
           hash(range + 1, $seed, 'email') % 1000 AS r,
           $countries[CAST(hash(range + 1, $seed, 'country') % len($countries) AS INTEGER) + 1]
               AS country
    FROM range($n)
)
"""

_EVENTS_SQL = """
INSERT INTO events
SELECT 'e' || customer_id || '-' || j, customer_id,
       CASE WHEN hash(customer_id, j, $seed, 'type') % 10 = 0 THEN 'refund' ELSE 'purchase' END,
       $as_of - to_seconds(CAST(hash(customer_id, j, $seed, 'at') % (730 * 86400) AS BIGINT) + 60),
       'INV' || customer_id || '-' || (j // 2),
       'SKU' || (hash(customer_id, j, $seed, 'sku') % 500),
       $descriptions[CAST(hash(customer_id, j, $seed, 'd') % len($descriptions) AS INTEGER) + 1],
       quantity, unit_price, quantity * unit_price
FROM (
    SELECT customer_id, j,
           CAST(hash(customer_id, j, $seed, 'q') % 12 + 1 AS INTEGER)
               * CASE WHEN hash(customer_id, j, $seed, 'type') % 10 = 0 THEN -1 ELSE 1 END
               AS quantity,
           (hash(customer_id, j, $seed, 'p') % 5000) / 100.0 + 0.5 AS unit_price
    FROM (SELECT range + 1 AS customer_id FROM range($n)) AS c,
         range(20) AS t(j)
    WHERE j < hash(customer_id, $seed, 'events') % 21
)
"""

# r < 70 granted recently, < 78 granted long ago (expired), < 88 granted then withdrawn,
# < 90 granted without source (unproven), else no record.
_CONSENTS_SQL = """
INSERT INTO consents
SELECT 'c-' || $purpose || '-' || customer_id || '-1', customer_id, $purpose, 'granted',
       $as_of - to_days(CAST(hash(customer_id, $seed, $purpose, 'at') % 300 AS INTEGER) + 1
                        + CASE WHEN r < 70 OR r >= 88 THEN 0 ELSE 1200 END),
       CASE WHEN r >= 88 THEN NULL ELSE 'signup_form' END, 'notice-v3'
FROM (SELECT range + 1 AS customer_id, hash(range + 1, $seed, $purpose) % 100 AS r
      FROM range($n))
WHERE r < 90;
INSERT INTO consents
SELECT 'c-' || $purpose || '-' || customer_id || '-2', customer_id, $purpose, 'withdrawn',
       $as_of - to_days(CAST(hash(customer_id, $seed, $purpose, 'w') % 30 AS INTEGER) + 1),
       'preference_center', 'notice-v3'
FROM (SELECT range + 1 AS customer_id, hash(range + 1, $seed, $purpose) % 100 AS r
      FROM range($n))
WHERE r >= 78 AND r < 88;
"""

_REQUESTS_SQL = """
INSERT INTO privacy_requests
SELECT 'pr-' || customer_id, customer_id, NULL,
       CASE WHEN customer_id % 2 = 0 THEN 'erasure' ELSE 'objection' END,
       $as_of - to_days(CAST(hash(customer_id, $seed, 'pr-at') % 100 AS INTEGER) + 1)
FROM range(1, $n + 1) AS t(customer_id)
WHERE hash(customer_id, $seed, 'pr') % 1000 < 2
"""

_LEAVE_SQL = """
UPDATE customers SET country = 'GB', country_name = 'GB'
WHERE list_contains($segment_countries, country)
  AND hash(customer_id, $seed, 'leave') % 1000 < 5
"""

_JOIN_SQL = """
UPDATE customers SET country = 'FR', country_name = 'FR'
WHERE NOT list_contains($segment_countries, country)
  AND hash(customer_id, $seed, 'join') % 1000 < 5
"""

_WITHDRAW_SQL = """
INSERT INTO consents
SELECT 'c-' || p.purpose || '-' || c.customer_id || '-bench-w', c.customer_id, p.purpose,
       'withdrawn', $at, 'preference_center', 'notice-v3'
FROM customers AS c, (SELECT unnest($purposes) AS purpose) AS p
WHERE list_contains($segment_countries, c.country)
  AND hash(c.customer_id, $seed, 'withdraw') % 1000 < 1
"""


@dataclass(frozen=True)
class WarehouseStats:
    """Row counts of a generated warehouse and the seconds it took to build."""

    customers: int
    events: int
    consents: int
    privacy_requests: int
    seconds: float


@dataclass(frozen=True)
class ChangeStats:
    """Customers changed by :func:`apply_changes`: moved out of / into the segment countries,
    and who withdrew consent (for both purposes)."""

    left: int
    joined: int
    withdrew: int


def _count(con: duckdb.DuckDBPyConnection, table: str) -> int:
    # table is one of our own literal names, never user input
    return con.execute(f"SELECT count(*) FROM {table}").fetchone()[0]


def generate_warehouse(path: Path, *, customers: int, seed: int, as_of: datetime) -> WarehouseStats:
    """Create the DuckDB file at ``path`` (which must not exist) with ``customers`` customers.

    ``as_of`` is the naive-UTC instant the data is generated for: every timestamp is before it.

    Raises:
        FileExistsError: ``path`` exists (a benchmark never reuses a warehouse).
        ValueError: ``customers`` < 2.
    """
    import time

    if Path(path).exists():
        raise FileExistsError(path)
    if customers < 2:
        raise ValueError("customers must be at least 2")
    started = time.perf_counter()
    base = {"n": customers, "seed": seed, "as_of": as_of}
    con = duckdb.connect(str(path))
    try:
        con.execute("SET enable_progress_bar = false")
        create_source_schema(con)
        create_activation_schema(con)
        con.execute(_CUSTOMERS_SQL, {**base, "countries": list(COUNTRIES)})
        con.execute(_EVENTS_SQL, {**base, "descriptions": _DESCRIPTIONS})
        for purpose in PURPOSES:
            for statement in _CONSENTS_SQL.split(";")[:2]:
                con.execute(statement, {**base, "purpose": purpose})
        con.execute(_REQUESTS_SQL, base)
        build = [("generator", "bench"), ("seed", str(seed)), ("as_of", as_of.isoformat())]
        con.executemany("INSERT INTO warehouse_build VALUES (?, ?)", build)
        con.execute("CHECKPOINT")
        counts = [_count(con, t) for t in ("customers", "events", "consents", "privacy_requests")]
    finally:
        con.close()
    return WarehouseStats(*counts, seconds=time.perf_counter() - started)


def apply_changes(path: Path, *, seed: int, as_of: datetime) -> ChangeStats:
    """Move about 1% of segment members: 0.5% leave, 0.5% join, 0.1% withdraw consent.

    Withdrawals are recorded one minute before ``as_of`` (later than any generated record, so
    they are the latest record per customer and purpose). Deterministic for a given seed.
    """
    segment = {"seed": seed, "segment_countries": list(SEGMENT_COUNTRIES)}
    con = duckdb.connect(str(path))
    try:
        con.execute("SET enable_progress_bar = false")
        con.begin()
        left = con.execute(_LEAVE_SQL, segment).fetchone()[0]
        joined = con.execute(_JOIN_SQL, segment).fetchone()[0]
        at = as_of - timedelta(minutes=1)
        con.execute(_WITHDRAW_SQL, {**segment, "at": at, "purposes": list(PURPOSES)})
        withdrew = con.execute(
            "SELECT count(DISTINCT customer_id) FROM consents WHERE consent_id LIKE ?",
            ["%-bench-w"],
        ).fetchone()[0]
        con.commit()
    finally:
        con.close()
    return ChangeStats(left=left, joined=joined, withdrew=withdrew)


__all__ = [
    "COUNTRIES",
    "PURPOSES",
    "SEGMENT_COUNTRIES",
    "ChangeStats",
    "WarehouseStats",
    "apply_changes",
    "generate_warehouse",
]
