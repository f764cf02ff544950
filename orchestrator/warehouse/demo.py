"""Build the demo warehouse: a retailer's own warehouse, from real UCI Online Retail
transactions plus synthetic CRM, web and consent data.

The tables are laid out and named the way a retailer's warehouse is, not the way the product
reads them: only the source model declared in the demo's ``activation.yaml`` maps them
(:mod:`orchestrator.model`). ``build_demo_warehouse`` writes a fresh DuckDB file holding
(:data:`DEMO_DDL`):

- ``shop.order_lines``, one row per real invoice line of a known customer, and the contacts'
  facts (country, first and last order) from the sample in
  ``data/uci_online_retail_sample_20k.csv`` (see ``data/ATTRIBUTION.md``), shifted in time so
  the newest line falls on the day before ``as_of``;
- ``crm.contacts`` (email, phone, loyalty tier, lifetime value, preferred store),
  ``web.events`` (page views, cart adds, checkouts started), ``cmp.consent_events`` (the
  consent platform's export, in its own words) and ``support.privacy_tickets`` (privacy
  requests as the support desk files them) are synthetic, made from ``seed`` and the customer
  ids only, and deliberately messy the way real CRM exports are.

The build is deterministic: the same source, ``as_of``, ``seed`` and ``built_at`` give identical
tables. It never reads the clock; only the command line (``python -m orchestrator.warehouse.demo``)
and ``make demo`` default ``as_of`` to today and ``built_at`` to now (UTC). The website's events
end at ``built_at`` (default ``as_of`` 00:00), so a segment on the last hours of browsing (the
example ``cart_abandoners``: added to cart within the last day) finds the same people whatever
the time of day the demo is built and run.
"""

from __future__ import annotations

import hashlib
import os
import random
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import NamedTuple

import click
import duckdb
import pyarrow as pa

from orchestrator.warehouse.countries import DATASET_COUNTRY_CODES, unmapped_country_names

DEFAULT_SEED = 20261129
SOURCE_FILE_NAME = "uci_online_retail_sample_20k.csv"
#: The retailer's tables the demo builds, in build order.
DEMO_TABLES = (
    "crm.contacts",
    "shop.order_lines",
    "web.events",
    "cmp.consent_events",
    "support.privacy_tickets",
)

#: The retailer's warehouse. ``crm.contacts``: contact_id BIGINT, email_address (raw, messy or
#: NULL), phone_number (national format, NULL when unknown), country (ISO 3166-1 alpha-2, NULL
#: when unknown), country_name (as recorded), signed_up_at (collection of the record),
#: last_interaction_at (last order), loyalty_tier (``gold``/``silver``/``bronze``: lifetime
#: value from 1,000 / 300 GBP), lifetime_value DECIMAL GBP (purchases less refunds, never
#: negative), preferred_store. ``shop.order_lines``: line_id (``<order_no>-<row in the CSV>``),
#: order_no (the invoice, ``C...`` for a cancellation), contact_id, ordered_at, line_type
#: (``SALE`` | ``RETURN``), stock_code, description, quantity (negative on returns),
#: unit_price_gbp, line_total_gbp (quantity * unit price). ``web.events``: event_uuid,
#: visitor_customer_id, action (``page_view`` | ``add_to_cart`` | ``checkout_started``),
#: happened_at, sku, page_path. ``cmp.consent_events`` (append-only): record_id, contact_id,
#: purpose_name (``newsletter`` | ``personalised_ads``), consent_status (``OPT_IN`` |
#: ``OPT_OUT``), captured_at, collection_point (the form or channel; ``partner_coregistration``
#: for consents a partner collected under its own notice), policy_version. ``support.
#: privacy_tickets``: ticket_id, contact_id, requester_email (NULL: filed by contact id),
#: ticket_type (``DELETE_MY_DATA``: erasure, GDPR Art. 17; ``STOP_MARKETING``: objection, Art.
#: 21), opened_at. ``main.warehouse_build``: how the file was built (key, value).
DEMO_DDL = """
CREATE SCHEMA crm;
CREATE TABLE crm.contacts (
    contact_id          BIGINT PRIMARY KEY,
    email_address       VARCHAR,
    phone_number        VARCHAR,
    country             VARCHAR,
    country_name        VARCHAR,
    signed_up_at        TIMESTAMP NOT NULL,
    last_interaction_at TIMESTAMP,
    loyalty_tier        VARCHAR NOT NULL,
    lifetime_value      DECIMAL(12, 2) NOT NULL,
    preferred_store     VARCHAR
);
CREATE SCHEMA shop;
CREATE TABLE shop.order_lines (
    line_id        VARCHAR PRIMARY KEY,
    order_no       VARCHAR NOT NULL,
    contact_id     BIGINT NOT NULL,
    ordered_at     TIMESTAMP NOT NULL,
    line_type      VARCHAR NOT NULL,
    stock_code     VARCHAR,
    description    VARCHAR,
    quantity       INTEGER,
    unit_price_gbp DOUBLE,
    line_total_gbp DOUBLE
);
CREATE SCHEMA web;
CREATE TABLE web.events (
    event_uuid          VARCHAR PRIMARY KEY,
    visitor_customer_id BIGINT NOT NULL,
    action              VARCHAR NOT NULL,
    happened_at         TIMESTAMP NOT NULL,
    sku                 VARCHAR,
    page_path           VARCHAR
);
CREATE SCHEMA cmp;
CREATE TABLE cmp.consent_events (
    record_id        VARCHAR PRIMARY KEY,
    contact_id       BIGINT NOT NULL,
    purpose_name     VARCHAR NOT NULL,
    consent_status   VARCHAR NOT NULL,
    captured_at      TIMESTAMP NOT NULL,
    collection_point VARCHAR,
    policy_version   VARCHAR
);
CREATE SCHEMA support;
CREATE TABLE support.privacy_tickets (
    ticket_id       VARCHAR PRIMARY KEY,
    contact_id      BIGINT,
    requester_email VARCHAR,
    ticket_type     VARCHAR NOT NULL,
    opened_at       TIMESTAMP NOT NULL
);
CREATE TABLE main.warehouse_build (
    key   VARCHAR PRIMARY KEY,
    value VARCHAR
);
"""

#: Column types of the UCI Online Retail CSV. InvoiceNo stays text: ``C`` marks a cancellation.
_CSV_TYPES = {
    "InvoiceNo": "VARCHAR",
    "StockCode": "VARCHAR",
    "Description": "VARCHAR",
    "Quantity": "BIGINT",
    "InvoiceDate": "TIMESTAMP",
    "UnitPrice": "DOUBLE",
    "CustomerID": "BIGINT",
    "Country": "VARCHAR",
}


@dataclass(frozen=True)
class BuildReport:
    """What :func:`build_demo_warehouse` wrote.

    ``counts``: row count per table of :data:`DEMO_TABLES` (schema-qualified name -> rows).
    ``shift_days``: whole days added to every source timestamp (newest event -> as_of - 1 day).
    ``dropped_rows``: source lines left out because they have no CustomerID.
    ``source_sha256``: lowercase hex SHA-256 of the source CSV bytes.
    """

    path: Path
    as_of: date
    seed: int
    shift_days: int
    counts: Mapping[str, int]
    dropped_rows: int
    source_sha256: str

    def table_counts(self) -> dict[str, int]:
        """Row count per table, in :data:`DEMO_TABLES` order."""
        return {table: self.counts[table] for table in DEMO_TABLES}


def default_source_csv() -> Path:
    """The sample in the project folder: ``<project>/data/uci_online_retail_sample_20k.csv``
    (``ACTIVATION_PROJECT_DIR``, see :mod:`orchestrator.settings`).

    Raises:
        FileNotFoundError: the file is not there.
    """
    from orchestrator.settings import Settings

    path = Settings.from_env().project_dir / "data" / SOURCE_FILE_NAME
    if not path.is_file():
        raise FileNotFoundError(
            f"demo source data not found at {path}; pass source_csv= (or --source) pointing at "
            f"a copy of {SOURCE_FILE_NAME} (see data/ATTRIBUTION.md)"
        )
    return path


def has_demo_layout(path: Path) -> bool:
    """True when the DuckDB file at ``path`` holds every table of :data:`DEMO_TABLES` (it is
    opened read-only; a file another process holds open raises ``duckdb.Error``)."""
    con = duckdb.connect(str(path), read_only=True)
    try:
        found = {
            f"{schema}.{table}"
            for schema, table in con.execute(
                "SELECT schema_name, table_name FROM duckdb_tables() "
                "WHERE database_name = current_database()"
            ).fetchall()
        }
    finally:
        con.close()
    return set(DEMO_TABLES) <= found


def build_demo_warehouse(
    path: Path,
    as_of: date,
    source_csv: Path | None = None,
    seed: int = DEFAULT_SEED,
    built_at: datetime | None = None,
) -> BuildReport:
    """Build a fresh demo warehouse at ``path`` (replacing any file there) and report counts.

    The file is written under a temporary name in the same folder and moved into place with
    ``os.replace``, so readers never see a half-built warehouse. Do not build over a warehouse
    another process has open.

    Args:
        path: the DuckDB file to write; its folder is created if missing.
        as_of: the demo's "today": the newest order line lands on ``as_of - 1 day`` and every
            synthetic consent and request is dated at or before ``as_of`` 00:00.
        source_csv: a CSV shaped like UCI Online Retail; default :func:`default_source_csv`.
        seed: seed of the synthetic emails, consents and privacy requests.
        built_at: when the demo is built (naive UTC, on ``as_of``): the website's events
            (30 days of sessions) end just before it, so the last day of browsing is the day
            before the build, at any time of day. Default: ``as_of`` 00:00.

    Raises:
        FileNotFoundError: the source CSV is missing.
        ValueError: ``built_at`` is not on ``as_of``; the source has no row with a
            CustomerID, or a country name that
            :data:`~orchestrator.warehouse.countries.DATASET_COUNTRY_CODES` does not map.
        duckdb.Error: the CSV cannot be parsed with the expected columns.
    """
    end = datetime.combine(as_of, time()) if built_at is None else built_at
    if end.date() != as_of or end.tzinfo is not None:
        raise ValueError(f"built_at {end} must be a naive UTC time on as_of {as_of}")
    source = Path(source_csv) if source_csv is not None else default_source_csv()
    if not source.is_file():
        raise FileNotFoundError(f"demo source CSV not found: {source}")
    digest = hashlib.sha256(source.read_bytes()).hexdigest()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.building")
    _remove_db_files(tmp)
    try:
        con = duckdb.connect(str(tmp))
        try:
            report = _populate(con, path, source, digest, as_of, seed, end)
        finally:
            con.close()
        _remove_wal(path)  # a stale WAL of the old file must not be replayed onto the new one
        os.replace(tmp, path)
    except BaseException:
        _remove_db_files(tmp)
        raise
    return report


def _remove_wal(db: Path) -> None:
    db.with_name(db.name + ".wal").unlink(missing_ok=True)


def _remove_db_files(db: Path) -> None:
    db.unlink(missing_ok=True)
    _remove_wal(db)


def _populate(
    con: duckdb.DuckDBPyConnection,
    path: Path,
    source: Path,
    digest: str,
    as_of: date,
    seed: int,
    built_at: datetime,
) -> BuildReport:
    con.execute(DEMO_DDL)
    total_rows, dropped = _load_source(con, source)
    shift_days = _shift_days(con, as_of)
    _insert_order_lines(con, shift_days)
    customers = _customer_facts(con)
    ids = [cid for cid, _ in customers]
    emails = _synthesize_emails(ids, seed)
    shared = _share_one_address(emails, seed)
    consents = _synthesize_consents(customers, as_of, seed, always_valid=shared)
    requests = _synthesize_privacy_requests(
        _request_candidates(consents, emails, as_of, exclude=shared), as_of, seed
    )
    _insert_contacts(con, emails, _synthesize_phones(ids, seed), seed)
    _insert_consents(con, consents)
    _insert_privacy_requests(con, requests)
    _insert_web_events(con, ids, built_at, seed)
    _insert_build_info(con, as_of, shift_days, seed, source.name, digest, total_rows, dropped)
    con.execute("INSERT INTO main.warehouse_build VALUES ('built_at', ?)", [built_at.isoformat()])
    counts = {t: con.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in DEMO_TABLES}
    return BuildReport(
        path=path,
        as_of=as_of,
        seed=seed,
        shift_days=shift_days,
        counts=counts,
        dropped_rows=dropped,
        source_sha256=digest,
    )


# --- real data: load, shift, events, customer facts -------------------------------------------


def _load_source(con: duckdb.DuckDBPyConnection, source: Path) -> tuple[int, int]:
    """Load the CSV into TEMP table ``source_rows`` (``row_no`` = 1-based data line in the file).

    Returns (rows in the file, rows without CustomerID).
    """
    con.execute("SET preserve_insertion_order = true")
    con.execute(
        "CREATE TEMP TABLE raw_rows AS SELECT * FROM read_csv(?, header = true, nullstr = 'NA', "
        "columns = ?)",
        [str(source), _CSV_TYPES],
    )
    # rowid follows insertion order, which DuckDB keeps as the file order (asserted in tests).
    con.execute("CREATE TEMP TABLE source_rows AS SELECT rowid + 1 AS row_no, * FROM raw_rows")
    con.execute("DROP TABLE raw_rows")
    total, dropped = con.execute(
        "SELECT count(*), count(*) FILTER (WHERE CustomerID IS NULL) FROM source_rows"
    ).fetchone()
    if total == dropped:
        raise ValueError(f"{source} has no row with a CustomerID")
    names = [r[0] for r in con.execute("SELECT DISTINCT Country FROM source_rows").fetchall()]
    unknown = unmapped_country_names(names)
    if unknown:
        raise ValueError(f"country names without an ISO 3166-1 code mapping: {unknown}")
    con.execute("CREATE TEMP TABLE country_map (name VARCHAR PRIMARY KEY, code VARCHAR)")
    con.executemany("INSERT INTO country_map VALUES (?, ?)", sorted(DATASET_COUNTRY_CODES.items()))
    return total, dropped


def _shift_days(con: duckdb.DuckDBPyConnection, as_of: date) -> int:
    """Whole days that move the newest event (of a known customer) onto ``as_of - 1 day``."""
    newest = con.execute(
        "SELECT max(InvoiceDate) FROM source_rows WHERE CustomerID IS NOT NULL"
    ).fetchone()[0]
    return (as_of - timedelta(days=1) - newest.date()).days


_ORDER_LINES_SQL = """
INSERT INTO shop.order_lines
SELECT InvoiceNo || '-' || CAST(row_no AS VARCHAR)                       AS line_id,
       InvoiceNo                                                         AS order_no,
       CustomerID                                                        AS contact_id,
       InvoiceDate + to_days(CAST(? AS INTEGER))                         AS ordered_at,
       CASE WHEN starts_with(InvoiceNo, 'C') THEN 'RETURN' ELSE 'SALE' END AS line_type,
       StockCode, Description,
       CAST(Quantity AS INTEGER), UnitPrice,
       round(Quantity * UnitPrice, 2)                                    AS line_total_gbp
FROM source_rows
WHERE CustomerID IS NOT NULL
ORDER BY row_no
"""


def _insert_order_lines(con: duckdb.DuckDBPyConnection, shift_days: int) -> None:
    """One order line per invoice line of a known customer; id ``<InvoiceNo>-<row_no>``; a
    cancelled invoice (``C...``) is a ``RETURN``."""
    con.execute(_ORDER_LINES_SQL, [shift_days])


_CUSTOMER_FACTS_SQL = """
CREATE TEMP TABLE customer_facts AS
WITH by_country AS (
    SELECT CustomerID AS customer_id, Country AS country_name, count(*) AS lines
    FROM source_rows
    WHERE CustomerID IS NOT NULL
    GROUP BY ALL
),
chosen AS (  -- a customer recorded under two countries: the most frequent, then alphabetical
    SELECT customer_id, country_name
    FROM by_country
    QUALIFY row_number() OVER (
        PARTITION BY customer_id ORDER BY lines DESC, country_name ASC NULLS LAST) = 1
),
times AS (
    SELECT contact_id AS customer_id, min(ordered_at) AS created_at,
           max(ordered_at) AS last_contact_at
    FROM shop.order_lines
    GROUP BY contact_id
)
SELECT t.customer_id, m.code AS country, c.country_name, t.created_at, t.last_contact_at
FROM times AS t
JOIN chosen AS c USING (customer_id)
LEFT JOIN country_map AS m ON m.name = c.country_name
"""


def _customer_facts(con: duckdb.DuckDBPyConnection) -> list[tuple[int, datetime]]:
    """Create TEMP table ``customer_facts``; return (customer_id, created_at) by customer_id."""
    con.execute(_CUSTOMER_FACTS_SQL)
    return con.execute(
        "SELECT customer_id, created_at FROM customer_facts ORDER BY customer_id"
    ).fetchall()


# --- synthetic emails ------------------------------------------------------------------------

_DOMAINS = ("example.com", "example.org", "gmail.com")
_DOMAIN_WEIGHTS = (45, 25, 30)
_GMAIL_TAGS = ("shop", "orders", "news", "gifts", "retail")
_P_NULL, _P_EMPTY, _P_INVALID = 0.015, 0.01, 0.015
_P_UPPER, _P_MIXED, _P_PADDED, _P_GMAIL_TAG = 0.06, 0.09, 0.05, 0.3


def _synthesize_emails(customer_ids: Sequence[int], seed: int) -> dict[int, str | None]:
    """customer_id -> email as a messy CRM would hold it (None = NULL).

    Names come from Faker (``en_GB``), re-seeded per customer, and the messiness from one RNG
    per customer, so a customer's address does not depend on which other customers exist.
    """
    from faker import Faker  # demo-only dependency (extra "demo")

    fake = Faker("en_GB")
    emails: dict[int, str | None] = {}
    for cid in customer_ids:
        fake.seed_instance(f"{seed}:email:{cid}")
        name = (_ascii_word(fake.first_name()), _ascii_word(fake.last_name()))
        emails[cid] = _email_for(cid, name, random.Random(f"{seed}:email:{cid}"))
    return emails


def _ascii_word(name: str) -> str:
    return re.sub(r"[^a-z]", "", name.lower()) or "x"


def _email_for(cid: int, name: tuple[str, str], rng: random.Random) -> str | None:
    # The customer id ends the base local part, so no two customers normalize alike.
    first, last = name
    local = rng.choice(
        (f"{first}.{last}{cid}", f"{first}{last}{cid}", f"{first[0]}{last}{cid}",
         f"{first}_{last[0]}{cid}", f"{last}.{first[0]}{cid}")
    )  # fmt: skip
    domain = rng.choices(_DOMAINS, weights=_DOMAIN_WEIGHTS)[0]
    if domain == "gmail.com" and rng.random() < _P_GMAIL_TAG:
        local = f"{local}+{rng.choice(_GMAIL_TAGS)}"
    roll = rng.random()
    if roll < _P_NULL:
        return None
    if roll < _P_NULL + _P_EMPTY:
        return ""
    if roll < _P_NULL + _P_EMPTY + _P_INVALID:
        return rng.choice((f"{local}{domain}", f"{local}@@{domain}", f"{local}@{domain}@x", "n/a"))
    address = f"{local}@{domain}"
    roll = rng.random()
    if roll < _P_UPPER:
        address = address.upper()
    elif roll < _P_UPPER + _P_MIXED:
        address = address.title()
    if rng.random() < _P_PADDED:
        address = rng.choice((" {}", "{} ", "\t{}", "{}\t", "  {} ")).format(address)
    return address


def _share_one_address(emails: dict[int, str | None], seed: int) -> frozenset[int]:
    """Give two customers one address, in different letter case (a household or a re-registered
    person). Mutates ``emails``; returns the two customer ids."""
    clean = sorted(
        cid
        for cid, email in emails.items()
        if email
        and email == email.strip().lower()
        and email.count("@") == 1
        and not email.endswith("@gmail.com")
    )
    kept, other = sorted(random.Random(f"{seed}:shared-address").sample(clean, 2))
    emails[other] = emails[kept].title()
    return frozenset((kept, other))


def _looks_valid(email: str | None) -> bool:
    return (
        bool(email) and re.fullmatch(r"[^@\s]+@[^@\s]+\.[a-z]+", email.strip().lower()) is not None
    )


# --- synthetic consent log ------------------------------------------------------------------


class _Consent(NamedTuple):
    customer_id: int
    purpose: str
    status: str
    recorded_at: datetime
    source: str | None
    notice_version: str | None


@dataclass(frozen=True)
class _PurposePlan:
    """How the consent history of one purpose is drawn (shares of customers per scenario)."""

    purpose: str
    validity_days: int  # as declared in activation.yaml
    p_none: float
    p_expired: float
    expired_age_days: tuple[int, int]
    p_withdraw: float
    p_regrant: float
    grant_sources: tuple[str, ...]
    withdraw_sources: tuple[str, ...]


_PLANS = (
    _PurposePlan(
        purpose="email_marketing",
        validity_days=1095,
        p_none=0.15,
        p_expired=0.08,
        expired_age_days=(1100, 1500),
        p_withdraw=0.12,
        p_regrant=0.25,
        grant_sources=("checkout_form", "checkout_form", "preference_center"),
        withdraw_sources=("unsubscribe_link", "unsubscribe_link", "preference_center"),
    ),
    _PurposePlan(
        purpose="ad_targeting",
        validity_days=395,
        p_none=0.30,
        p_expired=0.10,
        expired_age_days=(400, 900),
        p_withdraw=0.10,
        p_regrant=0.25,
        grant_sources=("cookie_banner",),
        withdraw_sources=("cookie_banner", "preference_center"),
    ),
)
_P_NO_PROOF = 0.02
_ONE_DAY = timedelta(days=1)


def _notice_version(at: datetime) -> str:
    """The privacy notice in force at ``at``: a new version each January and July."""
    return f"{at.year}-{'01' if at.month < 7 else '07'}"


def _between(rng: random.Random, start: datetime, end: datetime) -> datetime:
    return start + timedelta(seconds=rng.randrange(int((end - start).total_seconds())))


def _grant(rng: random.Random, cid: int, plan: _PurposePlan, at: datetime, source: str) -> _Consent:
    notice: str | None = _notice_version(at)
    if rng.random() < _P_NO_PROOF:  # consent without proof: how or under which notice is lost
        source, notice = (None, notice) if rng.random() < 0.5 else (source, None)
    return _Consent(cid, plan.purpose, "granted", at, source, notice)


def _history(
    rng: random.Random, cid: int, plan: _PurposePlan, created_at: datetime, end: datetime
) -> list[_Consent]:
    """Consent records of one customer for one purpose, oldest first, all before ``end``."""
    roll = rng.random()
    if roll < plan.p_none:
        return []
    if roll < plan.p_none + plan.p_expired:
        age = rng.randint(*plan.expired_age_days)
        at = end - timedelta(days=age, seconds=rng.randrange(86_400))
        return [_grant(rng, cid, plan, at, plan.grant_sources[0])]
    source = rng.choice(plan.grant_sources)
    at = _granted_at(rng, source, created_at, end)
    records = [_grant(rng, cid, plan, at, source)]
    if rng.random() < plan.p_withdraw and end - at > 2 * _ONE_DAY:
        at = _between(rng, at + _ONE_DAY, end)
        records.append(
            _Consent(
                cid,
                plan.purpose,
                "withdrawn",
                at,
                rng.choice(plan.withdraw_sources),
                _notice_version(at),
            )
        )
        if rng.random() < plan.p_regrant and end - at > 2 * _ONE_DAY:
            at = _between(rng, at + _ONE_DAY, end)
            records.append(_grant(rng, cid, plan, at, "preference_center"))
    return records


def _granted_at(rng: random.Random, source: str, created_at: datetime, end: datetime) -> datetime:
    """Checkout: at the first order. Cookie banner: on a visit up to 3 days before it.
    Preference centre: up to 60 days after it (never after ``end``)."""
    if source == "cookie_banner":
        return created_at - timedelta(seconds=rng.randrange(3 * 86_400))
    if source == "preference_center" and end > created_at:
        return _between(rng, created_at, min(created_at + 60 * _ONE_DAY, end))
    return created_at


#: A partner's co-registration form: its notice did not name us, so its grants are no consent
#: for us (CNIL, SAN-2023-015, Canal+); the demo's model lists only our own collection points.
PARTNER_SOURCE = "partner_coregistration"
_P_PARTNER = 0.04


def _partner_grant(
    rng: random.Random, cid: int, created_at: datetime, end: datetime
) -> list[_Consent]:
    """An ad-targeting grant collected by a partner, for about 4% of customers, at some time
    after their first order (the newest record then decides, and is unproven for us)."""
    if rng.random() >= _P_PARTNER or end - created_at <= 2 * _ONE_DAY:
        return []
    at = _between(rng, created_at + _ONE_DAY, end)
    return [
        _Consent(cid, "ad_targeting", "granted", at, PARTNER_SOURCE, "partner-" + at.strftime("%Y"))
    ]


def _synthesize_consents(
    customers: Sequence[tuple[int, datetime]],
    as_of: date,
    seed: int,
    always_valid: Iterable[int] = (),
) -> list[tuple[str, _Consent]]:
    """The consent log as (consent_id, record), ids ``c-000001``... in (recorded_at,
    customer_id, purpose) order. Customers in ``always_valid`` get a plain, proven grant."""
    end = datetime.combine(as_of, time.min)
    forced = set(always_valid)
    records: list[_Consent] = []
    for cid, created_at in customers:
        for plan in _PLANS:
            rng = random.Random(f"{seed}:consent:{plan.purpose}:{cid}")
            if cid in forced:
                at = min(created_at, end)
                source = plan.grant_sources[0]
                records.append(
                    _Consent(cid, plan.purpose, "granted", at, source, _notice_version(at))
                )
            else:
                records.extend(_history(rng, cid, plan, created_at, end))
        if cid not in forced:
            records.extend(
                _partner_grant(random.Random(f"{seed}:partner:{cid}"), cid, created_at, end)
            )
    records.sort(key=lambda r: (r.recorded_at, r.customer_id, r.purpose, r.status))
    return [(f"c-{i:06d}", r) for i, r in enumerate(records, start=1)]


# --- synthetic privacy requests -------------------------------------------------------------

_ERASURES, _OBJECTIONS = 5, 5
_REQUEST_WINDOW_DAYS = 20


def _request_candidates(
    consents: Sequence[tuple[str, _Consent]],
    emails: Mapping[int, str | None],
    as_of: date,
    exclude: Iterable[int],
) -> list[int]:
    """Customers with a currently valid grant of our own for some purpose and a usable email,
    so that a request against them visibly removes someone from an audience."""
    end = datetime.combine(as_of, time.min)
    validity = {p.purpose: timedelta(days=p.validity_days) for p in _PLANS}
    latest: dict[tuple[int, str], _Consent] = {}
    for _, record in consents:  # sorted by recorded_at: the last one seen wins
        latest[(record.customer_id, record.purpose)] = record
    skip = set(exclude)
    return sorted(
        {
            r.customer_id
            for r in latest.values()
            if r.status == "granted"
            and r.source != PARTNER_SOURCE
            and r.recorded_at > end - validity[r.purpose]
            and r.customer_id not in skip
            and _looks_valid(emails.get(r.customer_id))
        }
    )


def _synthesize_privacy_requests(
    candidates: Sequence[int], as_of: date, seed: int
) -> list[tuple[str, int, str, datetime]]:
    """(request_id, customer_id, request_type, received_at): erasures (GDPR Art. 17) and
    objections (Art. 21) received in the last 20 days; ids ``pr-0001``... by received_at."""
    rng = random.Random(f"{seed}:privacy-requests")
    chosen = rng.sample(list(candidates), _ERASURES + _OBJECTIONS)
    end = datetime.combine(as_of, time.min)
    window = timedelta(days=_REQUEST_WINDOW_DAYS)
    rows = [
        (cid, "erasure" if i < _ERASURES else "objection", _between(rng, end - window, end))
        for i, cid in enumerate(chosen)
    ]
    rows.sort(key=lambda r: (r[2], r[0]))
    return [(f"pr-{i:04d}", cid, kind, at) for i, (cid, kind, at) in enumerate(rows, start=1)]


# --- the contacts table: CRM, loyalty programme, phones (synthetic) ---------------------------

_STORES = ("London Covent Garden", "Manchester Arndale", "Edinburgh Princes St", "Online")
_P_NO_PHONE = 0.3

_CONTACTS_SQL = """
INSERT INTO crm.contacts
SELECT f.customer_id, e.email, e.phone, f.country, f.country_name, f.created_at,
       f.last_contact_at,
       CASE WHEN v.spent >= 1000 THEN 'gold' WHEN v.spent >= 300 THEN 'silver' ELSE 'bronze' END,
       CAST(round(v.spent, 2) AS DECIMAL(12, 2)),
       s.stores[1 + CAST(hash(f.customer_id, $seed) % 4 AS INTEGER)]
FROM customer_facts AS f
JOIN new_contacts AS e USING (customer_id)
JOIN (
    SELECT contact_id AS customer_id, greatest(coalesce(sum(line_total_gbp), 0), 0) AS spent
    FROM shop.order_lines GROUP BY contact_id
) AS v USING (customer_id), (SELECT $stores AS stores) AS s
ORDER BY f.customer_id
"""


def _synthesize_phones(customer_ids: Sequence[int], seed: int) -> dict[int, str | None]:
    """customer_id -> a UK phone number in national format as a CRM holds it (None for about
    a third: never given). Faker ``en_GB``, re-seeded per customer."""
    from faker import Faker  # demo-only dependency (extra "demo")

    fake = Faker("en_GB")
    phones: dict[int, str | None] = {}
    for cid in customer_ids:
        fake.seed_instance(f"{seed}:phone:{cid}")
        rng = random.Random(f"{seed}:phone:{cid}")
        phones[cid] = None if rng.random() < _P_NO_PHONE else fake.cellphone_number()
    return phones


def _insert_contacts(
    con: duckdb.DuckDBPyConnection,
    emails: Mapping[int, str | None],
    phones: Mapping[int, str | None],
    seed: int,
) -> None:
    """``crm.contacts``: the facts of each customer, their email and phone, and the loyalty
    programme: tier from the lifetime value (GBP, sales less returns, never negative: gold from
    1,000, silver from 300) and a preferred store (seeded)."""
    ids = sorted(emails)
    table = pa.table(
        {
            "customer_id": pa.array(ids, pa.int64()),
            "email": pa.array([emails[c] for c in ids], pa.string()),
            "phone": pa.array([phones.get(c) for c in ids], pa.string()),
        }
    )
    con.register("new_contacts", table)
    try:
        con.execute(_CONTACTS_SQL, {"seed": seed, "stores": list(_STORES)})
    finally:
        con.unregister("new_contacts")


# --- the website (synthetic, shaped on the real REES46 event mix) -------------------------------

#: Events per session of the synthetic website, shaped on the real REES46 October 2019 sample
#: (``../shared/data/real``: 4,895 views, 50 carts, 54 purchases in 4,999 events): about 1%
#: of page views lead to a cart add, and about half the carts to a checkout.
_P_CART, _P_CHECKOUT = 0.06, 0.5
_WEB_DAYS = 30


def _insert_web_events(
    con: duckdb.DuckDBPyConnection, customer_ids: Sequence[int], end: datetime, seed: int
) -> None:
    """``web.events`` for about a third of the customers over the ``_WEB_DAYS`` days before
    ``end`` (the build time): sessions of page views, some with a cart add and a checkout
    started. Each event sits at a fixed distance before ``end`` (from ``seed`` and the
    customer id), so the events of the last day are the same people at any build time."""
    skus = [
        s
        for (s,) in con.execute(
            "SELECT DISTINCT stock_code FROM shop.order_lines ORDER BY 1"
        ).fetchall()
    ]
    rows: list[tuple] = []
    for cid in customer_ids:
        rng = random.Random(f"{seed}:web:{cid}")
        if rng.random() > 0.35:
            continue
        for session in range(rng.randint(1, 4)):
            at = end - timedelta(seconds=rng.randrange(60, _WEB_DAYS * 86400))
            sku = rng.choice(skus)
            steps = ["page_view"] * rng.randint(2, 12)
            if rng.random() < _P_CART:
                steps.append("add_to_cart")
                if rng.random() < _P_CHECKOUT:
                    steps.append("checkout_started")
            for n, action in enumerate(steps):
                moment = min(at + timedelta(seconds=40 * n), end - timedelta(seconds=1))
                rows.append(
                    (f"w-{cid}-{session}-{n}", cid, action, moment, sku, f"/products/{sku}")
                )
    table = pa.table(
        {
            "event_uuid": [r[0] for r in rows],
            "visitor_customer_id": pa.array([r[1] for r in rows], pa.int64()),
            "action": [r[2] for r in rows],
            "happened_at": pa.array([r[3] for r in rows], pa.timestamp("us")),
            "sku": [r[4] for r in rows],
            "page_path": [r[5] for r in rows],
        }
    )
    sql = "INSERT INTO web.events SELECT * FROM new_web ORDER BY event_uuid"
    _insert_arrow(con, table, sql, "new_web")


# --- writing ----------------------------------------------------------------------------------


def _insert_arrow(
    con: duckdb.DuckDBPyConnection, table: pa.Table, insert_sql: str, view: str
) -> None:
    con.register(view, table)
    try:
        con.execute(insert_sql)
    finally:
        con.unregister(view)


#: The consent platform's words: purpose names and statuses (mapped back by the model in
#: ``activation.yaml``: ``purpose_values`` and ``status_values``).
CMP_PURPOSES = {"email_marketing": "newsletter", "ad_targeting": "personalised_ads"}
CMP_STATUSES = {"granted": "OPT_IN", "withdrawn": "OPT_OUT"}
#: The support desk's words for privacy requests (``type_values`` in ``activation.yaml``).
TICKET_TYPES = {"erasure": "DELETE_MY_DATA", "objection": "STOP_MARKETING"}


def _insert_consents(
    con: duckdb.DuckDBPyConnection, consents: Sequence[tuple[str, _Consent]]
) -> None:
    """``cmp.consent_events`` in the consent platform's words (:data:`CMP_PURPOSES`,
    :data:`CMP_STATUSES`), ids ``cmp-000001``..."""
    table = pa.table(
        {
            "record_id": ["cmp-" + cid.removeprefix("c-") for cid, _ in consents],
            "contact_id": pa.array([r.customer_id for _, r in consents], pa.int64()),
            "purpose_name": [CMP_PURPOSES[r.purpose] for _, r in consents],
            "consent_status": [CMP_STATUSES[r.status] for _, r in consents],
            "captured_at": pa.array([r.recorded_at for _, r in consents], pa.timestamp("us")),
            "collection_point": pa.array([r.source for _, r in consents], pa.string()),
            "policy_version": pa.array([r.notice_version for _, r in consents], pa.string()),
        }
    )
    sql = "INSERT INTO cmp.consent_events SELECT * FROM new_consents ORDER BY record_id"
    _insert_arrow(con, table, sql, "new_consents")


def _insert_privacy_requests(
    con: duckdb.DuckDBPyConnection, requests: Sequence[tuple[str, int, str, datetime]]
) -> None:
    """``support.privacy_tickets`` in the support desk's words (:data:`TICKET_TYPES`), ids
    ``PRIV-0001``..., filed by contact id (no requester email)."""
    con.executemany(
        "INSERT INTO support.privacy_tickets (ticket_id, contact_id, requester_email, "
        "ticket_type, opened_at) VALUES (?, ?, NULL, ?, ?)",
        [
            ["PRIV-" + rid.removeprefix("pr-"), cid, TICKET_TYPES[kind], at]
            for rid, cid, kind, at in requests
        ],
    )


def _insert_build_info(
    con: duckdb.DuckDBPyConnection,
    as_of: date,
    shift_days: int,
    seed: int,
    source_name: str,
    digest: str,
    total_rows: int,
    dropped: int,
) -> None:
    info = {
        "as_of": as_of.isoformat(),
        "shift_days": str(shift_days),
        "seed": str(seed),
        "source_file": source_name,
        "source_sha256": digest,
        "source_rows": str(total_rows),
        "dropped_rows_without_customer_id": str(dropped),
        "dataset": "UCI Online Retail (doi:10.24432/C5BW33), CC BY 4.0; see data/ATTRIBUTION.md",
        "synthetic": "crm.contacts (email, phone, loyalty), web.events, cmp.consent_events, "
        "support.privacy_tickets",
    }
    con.executemany("INSERT INTO main.warehouse_build VALUES (?, ?)", sorted(info.items()))


# --- command line -----------------------------------------------------------------------------


@click.command()
@click.option(
    "--path",
    "path",
    required=True,
    type=click.Path(path_type=Path),
    help="DuckDB file to (re)build.",
)
@click.option(
    "--as-of",
    "as_of",
    type=click.DateTime(formats=["%Y-%m-%d"]),
    default=None,
    help="The demo's today, YYYY-MM-DD (default: today, UTC, the web events ending now; "
    "given: they end at its 00:00).",
)
@click.option(
    "--source",
    "source",
    type=click.Path(path_type=Path, exists=True, dir_okay=False),
    default=None,
    help="Source CSV (default: data/uci_online_retail_sample_20k.csv).",
)
@click.option(
    "--seed",
    type=int,
    default=DEFAULT_SEED,
    show_default=True,
    help="Seed of the synthetic emails, consents and requests.",
)
def main(path: Path, as_of: datetime | None, source: Path | None, seed: int) -> None:
    """Build the demo warehouse and print the row count of each table (never any email)."""
    from rich.console import Console
    from rich.table import Table

    now = datetime.now(UTC).replace(tzinfo=None, microsecond=0)
    day = as_of.date() if as_of is not None else now.date()
    report = build_demo_warehouse(path, day, source, seed, None if as_of is not None else now)
    table = Table(title=f"demo warehouse {report.path}")
    table.add_column("table")
    table.add_column("rows", justify="right")
    for name, count in report.table_counts().items():
        table.add_row(name, f"{count:,}")
    console = Console()
    console.print(table)
    console.print(
        f"as of {report.as_of}; events shifted by {report.shift_days:+,} days; "
        f"{report.dropped_rows:,} source rows without CustomerID dropped; seed {report.seed}"
    )


if __name__ == "__main__":
    main()
