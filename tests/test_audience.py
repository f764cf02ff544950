"""Consent filter: the SQL audience equals an independent plain-Python reading of the rules.

A synthetic warehouse (Faker, fixed seed, example.com/example.org) holds one hand-written
customer per rule plus a few hundred random ones. The oracle reads the raw tables with
``fetchall`` and applies the rules of docs/architecture.md row by row with the Python reference
pseudonymizer; it never calls the product's SQL.
"""

from __future__ import annotations

import hashlib
import random
import re
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path

import dagster as dg
import duckdb
import pyarrow as pa
import pytest
from faker import Faker

from orchestrator import audience
from orchestrator.audience import EXCLUSION_REASONS, AudienceStats, build_audience
from orchestrator.config import LegalBasis, Purpose, SourceRetention
from orchestrator.privacy.checks import evaluate_consent_purposes, evaluate_legal_basis
from orchestrator.pseudonymize import google_key, normalize_email, subject_key
from orchestrator.warehouse.schema import (
    SOURCE_COLUMNS,
    create_activation_schema,
    create_source_schema,
)
from tests.oracle import address_consent_state, fold_purpose, other_marketing
from tests.postgres import postgres_copy_of

AS_OF = datetime(2024, 6, 1, 12, 0)
CREATED = AS_OF - timedelta(days=300)
#: Different durations per kind, so a rule reading the wrong one shows up.
RETENTION = SourceRetention(prospect_days=1095, customer_days=730)
EMAIL, ADS = "email_marketing", "ad_targeting"
PURPOSES = {
    EMAIL: Purpose(
        description="marketing emails",
        consent_validity_days=1095,
        legal_bases=(LegalBasis.CONSENT, LegalBasis.LEGITIMATE_INTEREST),
    ),
    ADS: Purpose(
        description="custom audiences",
        consent_validity_days=395,
        legal_bases=(LegalBasis.CONSENT,),
    ),
}
CONSENT, LI = LegalBasis.CONSENT, LegalBasis.LEGITIMATE_INTEREST
MISSING_CUSTOMER = 9999


def ago(days: float) -> datetime:
    return AS_OF - timedelta(days=days)


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


class Warehouse:
    """Collects synthetic source rows, then writes them to a DuckDB file."""

    def __init__(self) -> None:
        self.customers: list[tuple] = []
        self.consents: list[tuple] = []
        self.events: list[tuple] = []
        self.requests: list[tuple] = []
        self.suppressions: list[tuple] = []

    def customer(
        self,
        cid: int,
        email: str | None,
        *,
        created: datetime = CREATED,
        contact: datetime | None = None,
    ) -> None:
        self.customers.append((cid, email, "GB", "United Kingdom", created, contact))

    def consent(
        self,
        cid: int,
        purpose: str,
        status: str,
        at: datetime,
        *,
        source: str | None = "signup_form",
        notice: str | None = "v3",
        consent_id: str | None = None,
    ) -> str:
        consent_id = consent_id or f"c{len(self.consents):06d}"
        self.consents.append((consent_id, cid, purpose, status, at, source, notice))
        return consent_id

    def grant_both(self, cid: int, at: datetime, **kwargs: str | None) -> None:
        for purpose in (EMAIL, ADS):
            self.consent(cid, purpose, "granted", at, **kwargs)

    def event(self, cid: int, kind: str, at: datetime, event_id: str | None = None) -> str:
        event_id = event_id or f"e{len(self.events):06d}"
        quantity = 1 if kind == "purchase" else -1
        self.events.append((event_id, cid, kind, at, "inv", "sku", "item", quantity, 2.5, 2.5))
        return event_id

    def request(self, kind: str, at: datetime, *, cid: int | None = None, key: str | None = None):
        self.requests.append((f"r{len(self.requests):05d}", cid, key, kind, at))

    def suppress(self, kind: str, at: datetime, key: str, google: str | None) -> None:
        """A row of activation.suppression_list (hashes only)."""
        self.suppressions.append((key, google, kind, at))

    def write(self, path: Path) -> None:
        con = duckdb.connect(str(path))
        try:
            create_source_schema(con)
            create_activation_schema(con)
            insert(con, "customers", self.customers)
            insert(con, "consents", self.consents)
            insert(con, "events", self.events)
            insert(con, "privacy_requests", self.requests)
            con.executemany(
                "INSERT INTO activation.suppression_list VALUES (?, ?, ?, ?)", self.suppressions
            )
        finally:
            con.close()


def insert(con: duckdb.DuckDBPyConnection, table: str, rows: list[tuple]) -> None:
    """Bulk insert through Arrow (executemany is row by row, and slow)."""
    columns = SOURCE_COLUMNS[table]
    by_column = zip(*rows, strict=True)
    data = pa.table({name: list(values) for name, values in zip(columns, by_column, strict=True)})
    con.register("incoming", data)
    try:
        con.execute(f"INSERT INTO {table} SELECT * FROM incoming")
    finally:
        con.unregister("incoming")


def add_named_cases(w: Warehouse) -> None:
    """One customer per rule; the comments say what each must become."""
    w.customer(1, "granted@example.com")  # member of everything
    w.grant_both(1, ago(30))
    w.customer(2, "withdrawn@example.com")  # withdrawn
    w.grant_both(2, ago(100))
    for purpose in (EMAIL, ADS):
        w.consent(2, purpose, "withdrawn", ago(10))
    w.customer(3, "regranted@example.org")  # member: granted again after a withdrawal
    for purpose in (EMAIL, ADS):
        w.consent(3, purpose, "granted", ago(200))
        w.consent(3, purpose, "withdrawn", ago(100))
        w.consent(3, purpose, "granted", ago(5))
    w.customer(4, "expired@example.com")  # expired for both purposes
    w.grant_both(4, ago(1200))
    w.customer(5, "ads-expired@example.com")  # 500 days: expired for ads (395), valid for email
    w.grant_both(5, ago(500))
    w.customer(6, "no-source@example.com")  # consent_unproven
    w.grant_both(6, ago(20), source=None)
    w.customer(7, "blank-notice@example.com")  # consent_unproven
    w.grant_both(7, ago(20), notice="  ")
    w.customer(8, "no-record@example.com")  # no_consent
    w.customer(9, "buyer@example.com")  # soft opt-in (purchase), no_consent under consent
    w.event(9, "purchase", ago(400))
    w.event(9, "purchase", ago(40))
    w.customer(10, "refund-only@example.com")  # no purchase: no soft opt-in
    w.event(10, "refund", ago(10))
    w.customer(11, "buyer-withdrawn@example.com")  # withdrawal blocks soft opt-in
    w.event(11, "purchase", ago(10))
    w.consent(11, EMAIL, "withdrawn", ago(5))
    w.customer(12, "buyer-expired@example.com")  # expired grant: soft opt-in still applies
    w.event(12, "purchase", ago(60))
    w.grant_both(12, ago(1500))
    w.customer(13, "buyer-unproven@example.com")  # unproven grant: soft opt-in still applies
    w.event(13, "purchase", ago(60))
    w.grant_both(13, ago(10), source="")
    w.customer(14, "future-buyer@example.com")  # purchase after as_of does not count
    w.event(14, "purchase", AS_OF + timedelta(days=1))
    w.customer(15, "objector@example.com")  # objection by customer id
    w.grant_both(15, ago(10))
    w.event(15, "purchase", ago(10))
    w.request("objection", ago(1), cid=15)
    w.customer(16, "  Erase.Me@Example.ORG ")  # erasure by subject key only (upper-case hex)
    w.grant_both(16, ago(10))
    w.request("erasure", ago(2), key=sha("erase.me@example.org").upper())
    w.customer(17, "both-requests@example.com")  # erasure wins over objection
    w.grant_both(17, ago(10))
    w.request("objection", ago(3), cid=17)
    w.request("erasure", ago(2), cid=17)
    w.customer(18, "late-request@example.com")  # request after as_of: still a member
    w.grant_both(18, ago(10))
    w.request("erasure", AS_OF + timedelta(hours=1), cid=18)
    w.request("objection", AS_OF + timedelta(days=3), key=sha("late-request@example.com"))
    w.customer(19, "not-an-email")  # invalid_email
    w.grant_both(19, ago(10))
    w.customer(20, None)  # invalid_email
    w.grant_both(20, ago(10))
    w.customer(21, "Shared@Example.com")  # member (lowest id of the shared address)
    w.grant_both(21, ago(10))
    w.customer(22, " shared@example.COM")  # duplicate_address
    w.grant_both(22, ago(20))
    w.customer(23, "second-share@example.org")  # withdrawn: does not hold the address
    w.grant_both(23, ago(30))
    w.consent(23, EMAIL, "withdrawn", ago(3))
    w.consent(23, ADS, "withdrawn", ago(3))
    w.customer(24, "SECOND-share@example.org")  # member: the only eligible holder
    w.grant_both(24, ago(30))
    w.customer(25, "future-consent@example.com")  # consent after as_of: no_consent
    w.grant_both(25, AS_OF + timedelta(minutes=1))
    w.customer(26, "future-withdrawal@example.com")  # withdrawal after as_of: still a member
    w.grant_both(26, ago(50))
    w.consent(26, EMAIL, "withdrawn", AS_OF + timedelta(days=1))
    w.consent(26, ADS, "withdrawn", AS_OF + timedelta(days=1))
    w.customer(27, "tie@example.com")  # same recorded_at: the withdrawal wins, whatever the ids
    for purpose in (EMAIL, ADS):
        w.consent(27, purpose, "granted", ago(7), consent_id=f"tie-{purpose}-b")
        w.consent(27, purpose, "withdrawn", ago(7), consent_id=f"tie-{purpose}-a")
    w.customer(28, "J.Doe+News@GoogleMail.com")  # member; Google key differs from subject key
    w.grant_both(28, ago(10))
    w.customer(29, "+only-tag@gmail.com")  # Gmail form empty: invalid_email
    w.grant_both(29, ago(10))
    w.customer(30, "tied-buyer@example.org")  # soft opt-in: latest purchase, ties by event_id
    w.event(30, "purchase", ago(3), event_id="p-30-a")
    w.event(30, "purchase", ago(3), event_id="p-30-b")
    w.customer(31, sha("hashed@example.com"))  # CRM holds a hash: no address to send to
    w.grant_both(31, ago(10))
    w.customer(32, "  ren\u0065\u0301@Example.com\u00a0")  # NFD + NBSP: member
    w.grant_both(32, ago(10))
    w.customer(33, "REN\u00c9@example.com")  # same person as 32 after NFC: duplicate_address
    w.grant_both(33, ago(10))
    w.customer(34, "boundary@example.com")  # granted exactly validity days ago: expired
    w.customer(35, "inside@example.com")  # one second later: a member
    for purpose, purpose_config in PURPOSES.items():
        w.consent(34, purpose, "granted", ago(purpose_config.consent_validity_days))
        inside = ago(purpose_config.consent_validity_days) + timedelta(seconds=1)
        w.consent(35, purpose, "granted", inside)
    # Source retention (prospects 1095 days, customers 730 days in this file).
    w.customer(36, "old-prospect@example.com", created=ago(1095))  # retention_expired (boundary)
    w.grant_both(36, ago(10))
    w.customer(37, "contacted@example.com", created=ago(2000), contact=ago(1094))  # member
    w.grant_both(37, ago(10))
    w.customer(38, "lapsed@example.com", created=ago(5))  # customer: created_at ignored, expired
    w.event(38, "purchase", ago(731))
    w.grant_both(38, ago(10))
    w.customer(39, "replied@example.org", created=ago(2000), contact=ago(5))  # member
    w.event(39, "purchase", ago(1000))
    w.grant_both(39, ago(10))
    w.customer(40, "future-contact@example.com", created=ago(1200), contact=AS_OF + timedelta(2))
    w.grant_both(40, ago(10))  # a contact after as_of does not count: retention_expired
    w.customer(41, "old-eraser@example.com", created=ago(2000))  # erasure_requested first
    w.request("erasure", ago(1), cid=41)
    w.customer(42, "old-and-broken", created=ago(2000))  # retention_expired before invalid_email
    w.grant_both(42, ago(10))
    # Suppression list: applies whatever its date; the Google key catches Gmail variants.
    w.customer(51, "Sup.Pressed+news@GoogleMail.com")  # objection via the Google key only
    w.grant_both(51, ago(10))
    w.suppress("objection", AS_OF + timedelta(days=5), sha("suppressed@gmail.com"),
               google_key("suppressed@gmail.com"))  # fmt: skip
    w.customer(52, " Forgotten@Example.org")  # erasure via the subject key, Google key unknown
    w.grant_both(52, ago(10))
    w.suppress("erasure", ago(30), sha("forgotten@example.org"), None)
    add_address_cases(w)


def add_address_cases(w: Warehouse) -> None:
    """One address, one person: spellings, pre-hashed rows, consent per address, ties,
    purpose-name variants and marketing opt-outs (customers 60-79)."""
    w.customer(60, "user@ex\u00e4mple.com")  # member (lowest id of the mailbox)
    w.grant_both(60, ago(10))
    w.customer(61, "User@XN--EXMPLE-CUA.com")  # the same mailbox in punycode: duplicate_address
    w.grant_both(61, ago(10))
    w.customer(62, "\uff55\uff53\uff45\uff52\uff12@example.com")  # full-width: member
    w.grant_both(62, ago(10))
    w.customer(63, "user2@example.com")  # the same mailbox after NFKC: duplicate_address
    w.grant_both(63, ago(10))
    w.customer(64, "idn-erase@B\u00fccher.example")  # erasure named by the punycode spelling
    w.grant_both(64, ago(10))
    w.request("erasure", ago(1), key=sha("idn-erase@xn--bcher-kva.example"))
    w.customer(65, "owner@example.net")  # withdrawn: a pre-hashed row of the address withdrew
    w.grant_both(65, ago(30))
    w.customer(66, sha("owner@example.net"))  # the CRM holds the hash: invalid_email
    w.consent(66, EMAIL, "withdrawn", ago(3))
    w.consent(66, ADS, "withdrawn", ago(3))
    w.customer(67, "older-withdrawal@example.net")  # member: its grant is newer than
    w.grant_both(67, ago(5))  # the other record's withdrawal
    w.customer(68, " Older-Withdrawal@example.net")  # member's duplicate: duplicate_address
    w.grant_both(68, ago(300))
    w.consent(68, EMAIL, "withdrawn", ago(50))
    w.consent(68, ADS, "withdrawn", ago(50))
    w.customer(69, "variant@example.com")  # withdrawn under a spelling variant: withdrawn
    w.grant_both(69, ago(30))
    w.consent(69, " Email-Marketing ", "withdrawn", ago(5))  # for ads too: newer than the grant
    w.customer(70, "variant-grant@example.com")  # a grant under a variant: no_consent
    w.consent(70, "Email_Marketing", "granted", ago(5))
    w.consent(70, "newsletter", "granted", ago(5))  # matches no purpose: not used
    w.customer(71, "ads-after@example.com")  # email withdrawn, then ads granted: ads member
    w.consent(71, EMAIL, "withdrawn", ago(100))
    w.consent(71, ADS, "granted", ago(10))
    w.customer(72, "objector-peer@example.com")  # objection by the other row: objection
    w.grant_both(72, ago(10))
    w.customer(73, "OBJECTOR-peer@example.com")
    w.request("objection", ago(1), cid=73)
    w.customer(74, "li-peer@example.com")  # soft opt-in blocked by the other row's withdrawal
    w.event(74, "purchase", ago(20))
    w.customer(75, "li-peer@example.com ")
    w.consent(75, EMAIL, "withdrawn", ago(400))
    w.customer(76, "li-ads-opt-out@example.com")  # soft opt-in blocked by an ads opt-out
    w.event(76, "purchase", ago(20))
    w.consent(76, ADS, "withdrawn", ago(400))
    w.customer(77, "tie-other@example.com")  # ads grant at the same instant as an email
    w.consent(77, ADS, "granted", ago(4))  # withdrawal: withdrawn for ads
    w.consent(77, EMAIL, "withdrawn", ago(4))


#: Spellings of one internationalized domain (the same mailbox for every local part).
IDN_SPELLINGS = ("ex\u00e4mple.org", "xn--exmple-cua.org", "EX\u00c4MPLE.ORG", "XN--EXMPLE-CUA.ORG")
#: Purpose-name variants the random consent log uses now and then.
VARIANTS = {EMAIL: "Email_Marketing", ADS: "ad-targeting"}


def add_random_customers(w: Warehouse, count: int, seed: int = 20240601) -> None:
    fake = Faker()
    fake.seed_instance(seed)
    rng = random.Random(seed)
    addresses: list[str] = []
    for cid in range(1000, 1000 + count):
        if addresses and rng.random() < 0.2:
            email = rng.choice(addresses)  # the same person under another id and spelling
            if rng.random() < 0.5:
                email = email.upper()
            email = email.replace("ex\u00e4mple.org", rng.choice(IDN_SPELLINGS))
        else:
            domain = rng.choice(["example.com", "example.org", "ex\u00e4mple.org"])
            email = f"{fake.first_name()}.{fake.last_name()}{cid}@{domain}"
            addresses.append(email)
        email = rng.choice(["", " ", "\t", "\u00a0"]) + email + rng.choice(["", " ", "\n"])
        if rng.random() < 0.03:
            email = rng.choice([None, "", "broken.example.com", "two@@example.com"])
        created = AS_OF - timedelta(days=rng.randint(10, 1600))
        contact = None
        if rng.random() < 0.4:
            contact = created + timedelta(days=rng.randint(0, (AS_OF - created).days + 30))
        w.customer(cid, email, created=created, contact=contact)
        for purpose in (EMAIL, ADS):
            for _ in range(rng.choice([0, 0, 1, 1, 2, 3])):
                at = AS_OF - timedelta(days=rng.randint(-20, 1500))  # some after as_of
                status = rng.choice(["granted", "granted", "withdrawn"])
                source = rng.choice(["signup_form", "checkout", "signup_form", "checkout", None])
                notice = rng.choice(["v1", "v2", "v3", "v3", "v3", ""])
                name = purpose
                if rng.random() < 0.05:  # a spelling variant of the purpose name
                    name = VARIANTS[purpose]
                w.consent(cid, name, status, at, source=source, notice=notice)
        for _ in range(rng.choice([0, 0, 1, 2])):
            kind = rng.choice(["purchase", "purchase", "refund"])
            w.event(cid, kind, AS_OF - timedelta(days=rng.randint(-30, 900)))
        if rng.random() < 0.06:
            kind = rng.choice(["erasure", "objection"])
            at = AS_OF - timedelta(days=rng.randint(-10, 100))
            if rng.random() < 0.5:
                w.request(kind, at, cid=cid)
            else:
                w.request(kind, at, key=subject_key(email))


# --- the oracle ---------------------------------------------------------------------------


def read_sources(con: duckdb.DuckDBPyConnection) -> dict[str, list[tuple]]:
    return {
        "customers": con.execute("SELECT customer_id, email FROM customers").fetchall(),
        "customer_dates": con.execute(
            "SELECT customer_id, created_at, last_contact_at FROM customers"
        ).fetchall(),
        "consents": con.execute(
            "SELECT consent_id, customer_id, purpose, status, recorded_at, source, "
            "notice_version FROM consents"
        ).fetchall(),
        "events": con.execute(
            "SELECT event_id, customer_id, event_type, occurred_at FROM events"
        ).fetchall(),
        "requests": con.execute(
            "SELECT customer_id, subject_key, request_type, received_at FROM privacy_requests"
        ).fetchall(),
        "suppressions": con.execute(
            "SELECT subject_key, google_key, request_type FROM activation.suppression_list"
        ).fetchall(),
    }


def oracle_retention_expired(src: dict, cid: int) -> bool:
    """Past the source retention: the person's last own action (purchase or contact for a
    customer; collection or contact for a prospect) is RETENTION days old or more."""
    dates = {row[0]: row[1:] for row in src["customer_dates"]}.get(cid)
    if dates is None:
        return False
    created, contact = dates
    contact = contact if contact is not None and contact <= AS_OF else None
    bought = [e[3] for e in src["events"] if e[1] == cid and e[2] == "purchase" and e[3] <= AS_OF]
    if bought:
        starts, days = [max(bought), contact], RETENTION.customer_days
    else:
        starts, days = [created, contact], RETENTION.prospect_days
    return max(d for d in starts if d is not None) <= AS_OF - timedelta(days=days)


def oracle_reason(
    src: dict, cid: int, purpose: str, basis: LegalBasis, marketing: bool = True
) -> tuple[str | None, str, str]:
    """(reason or None, legal_basis, consent_ref) for one customer, before duplicates.
    Consent and requests are read at the address (every customer with the same key)."""
    emails = dict(src["customers"])
    raw = emails.get(cid)
    key = subject_key(raw)
    holders = {cid} | ({c for c, e in emails.items() if subject_key(e) == key} if key else set())
    kinds = {
        kind
        for rcid, rkey, kind, at in src["requests"]
        if at <= AS_OF and (rcid in holders or (key is not None and subject_key(rkey) == key))
    }
    gkey = google_key(raw)
    kinds |= {
        kind
        for skey, sgoogle, kind in src["suppressions"]
        if (key is not None and skey == key) or (gkey is not None and sgoogle == gkey)
    }
    if "erasure" in kinds:
        return "erasure_requested", "", ""
    if "objection" in kinds:
        return "objection", "", ""
    if oracle_retention_expired(src, cid):
        return "retention_expired", "", ""
    if normalize_email(raw) is None or google_key(raw) is None:
        return "invalid_email", "", ""
    records = [r for r in src["consents"] if r[1] in holders]
    others = other_marketing(PURPOSES, purpose, marketing)
    validity = PURPOSES[purpose].consent_validity_days
    state, consent_id = address_consent_state(records, purpose, others, validity, AS_OF)
    if state == "valid":
        return None, "consent", consent_id
    purchases = [e for e in src["events"] if e[1] == cid and e[2] == "purchase" and e[3] <= AS_OF]
    if basis is LI and state != "withdrawn" and purchases:
        last = max(purchases, key=lambda e: (e[3], e[0]))
        return None, "legitimate_interest", f"purchase:{last[0]}"
    reason = {"none": "no_consent", "unproven": "consent_unproven"}.get(state, state)
    return reason, "", ""


def oracle(
    src: dict, members: list[int], purpose: str, basis: LegalBasis, marketing: bool = True
) -> tuple[set, dict]:
    """Expected audience rows and exclusions {customer_id: reason}."""
    emails = dict(src["customers"])
    audience: dict[str, tuple] = {}
    exclusions: dict[int, str] = {}
    for cid in sorted(members):
        reason, used, ref = oracle_reason(src, cid, purpose, basis, marketing)
        if reason is not None:
            exclusions[cid] = reason
            continue
        raw = emails[cid]
        key = subject_key(raw)
        if key in audience:
            exclusions[cid] = "duplicate_address"
            continue
        audience[key] = (key, google_key(raw), cid, normalize_email(raw), used, ref)
    return set(audience.values()), exclusions


# --- fixtures and helpers -------------------------------------------------------------------


@pytest.fixture(scope="module")
def warehouse(tmp_path_factory: pytest.TempPathFactory) -> Path:
    w = Warehouse()
    add_named_cases(w)
    add_random_customers(w, 400)
    path = tmp_path_factory.mktemp("audience") / "warehouse.duckdb"
    w.write(path)
    con = duckdb.connect(str(path))
    try:
        ids = [row[0] for row in con.execute("SELECT customer_id FROM customers").fetchall()]
        rows = [("everyone", cid, AS_OF) for cid in [*ids, MISSING_CUSTOMER]]
        rows += [("odd_ids", cid, AS_OF) for cid in ids if cid % 2]
        con.executemany("INSERT INTO activation.segment_members VALUES (?, ?, ?)", rows)
    finally:
        con.close()
    return path


@pytest.fixture(params=["duckdb", "postgres"])
def con(request: pytest.FixtureRequest, warehouse: Path) -> Iterator[duckdb.DuckDBPyConnection]:
    """The warehouse on each backend: the DuckDB file, or a real PostgreSQL database holding
    the same rows (tests/postgres.py)."""
    if request.param == "postgres":
        url = request.getfixturevalue("postgres_url")
        connection = postgres_copy_of(
            warehouse, url, activation=["segment_members", "suppression_list"]
        )
    else:
        connection = duckdb.connect(str(warehouse))
    try:
        yield connection
    finally:
        connection.close()


def build(con: duckdb.DuckDBPyConnection, segment: str, purpose: str, basis: LegalBasis):
    return build_audience(
        con,
        segment=segment,
        purpose=purpose,
        legal_basis=basis,
        purposes=PURPOSES,
        as_of=AS_OF,
        retention=RETENTION,
    )


def audience_rows(con: duckdb.DuckDBPyConnection, segment: str) -> set[tuple]:
    return set(
        con.execute(
            "SELECT subject_key, google_key, customer_id, email, legal_basis, consent_ref "
            "FROM activation.audience_members WHERE segment = ?",
            [segment],
        ).fetchall()
    )


def exclusion_rows(con: duckdb.DuckDBPyConnection, segment: str) -> dict[int, str]:
    return dict(
        con.execute(
            "SELECT customer_id, reason FROM activation.audience_exclusions WHERE segment = ?",
            [segment],
        ).fetchall()
    )


def segment_ids(con: duckdb.DuckDBPyConnection, segment: str) -> list[int]:
    rows = con.execute(
        "SELECT customer_id FROM activation.segment_members WHERE segment = ?", [segment]
    ).fetchall()
    return [row[0] for row in rows]


COMBINATIONS = [(EMAIL, CONSENT), (EMAIL, LI), (ADS, CONSENT)]


# --- tests --------------------------------------------------------------------------------


@pytest.mark.parametrize(("purpose", "basis"), COMBINATIONS)
@pytest.mark.parametrize("segment", ["everyone", "odd_ids"])
def test_audience_matches_oracle(con, segment: str, purpose: str, basis: LegalBasis) -> None:
    stats = build(con, segment, purpose, basis)
    expected_audience, expected_exclusions = oracle(
        read_sources(con), segment_ids(con, segment), purpose, basis
    )
    assert audience_rows(con, segment) == expected_audience
    assert exclusion_rows(con, segment) == expected_exclusions
    assert stats == AudienceStats(
        members=len(expected_audience),
        excluded={r: list(expected_exclusions.values()).count(r) for r in EXCLUSION_REASONS},
    )
    assert sum(stats.excluded.values()) + stats.members == len(segment_ids(con, segment))


def test_named_cases_email_consent(con) -> None:
    build(con, "everyone", EMAIL, CONSENT)
    excluded = exclusion_rows(con, "everyone")
    members = {row[2]: row for row in audience_rows(con, "everyone")}
    assert set(members) >= {1, 3, 5, 18, 21, 26, 28, 32}
    assert {cid: excluded[cid] for cid in (2, 4, 6, 7, 8, 9, 10, 11, 12, 13, 14)} == {
        2: "withdrawn",
        4: "expired",
        6: "consent_unproven",
        7: "consent_unproven",
        8: "no_consent",
        9: "no_consent",
        10: "no_consent",
        11: "withdrawn",
        12: "expired",
        13: "consent_unproven",
        14: "no_consent",
    }
    assert {cid: excluded[cid] for cid in (15, 16, 17, 19, 20, 22, 23, 24, 25, 27, 29, 31, 33)} == {
        15: "objection",
        16: "erasure_requested",
        17: "erasure_requested",
        19: "invalid_email",
        20: "invalid_email",
        22: "duplicate_address",
        23: "withdrawn",
        24: "withdrawn",  # 23 withdrew at the same address after 24's grant
        25: "no_consent",
        27: "withdrawn",
        29: "invalid_email",
        31: "invalid_email",
        33: "duplicate_address",
    }
    assert excluded[MISSING_CUSTOMER] == "invalid_email"
    assert excluded[34] == "expired" and 35 in members
    assert members[28][3] == "j.doe+news@googlemail.com"
    assert members[28][1] == google_key("jdoe@gmail.com") != members[28][0]
    assert members[32][3] == "ren\u00e9@example.com"


@pytest.mark.parametrize(("purpose", "basis"), COMBINATIONS)
def test_suppression_list_keeps_gmail_variants_out(con, purpose: str, basis: LegalBasis) -> None:
    build(con, "everyone", purpose, basis)
    excluded = exclusion_rows(con, "everyone")
    assert (excluded[51], excluded[52]) == ("objection", "erasure_requested")


def test_named_cases_soft_opt_in(con) -> None:
    build(con, "everyone", EMAIL, LI)
    excluded = exclusion_rows(con, "everyone")
    members = {row[2]: row for row in audience_rows(con, "everyone")}
    assert members[1][4] == "consent" and not members[1][5].startswith("purchase:")
    for cid in (9, 12, 13):
        assert members[cid][4] == "legitimate_interest"
        assert members[cid][5].startswith("purchase:e")
    assert members[30][4:] == ("legitimate_interest", "purchase:p-30-b")
    assert excluded[10] == "no_consent"
    assert excluded[11] == "withdrawn"
    assert excluded[14] == "no_consent"
    assert excluded[15] == "objection"  # a purchase does not override an objection


@pytest.mark.parametrize(("purpose", "basis"), COMBINATIONS)
def test_retention_expired_people_never_enter(con, purpose: str, basis: LegalBasis) -> None:
    stats = build(con, "everyone", purpose, basis)
    excluded = exclusion_rows(con, "everyone")
    members = {row[2] for row in audience_rows(con, "everyone")}
    assert {cid: excluded.get(cid) for cid in (36, 38, 40, 41, 42)} == {
        36: "retention_expired",
        38: "retention_expired",
        40: "retention_expired",
        41: "erasure_requested",
        42: "retention_expired",
    }
    assert {37, 39} <= members
    assert stats.excluded["retention_expired"] > 5  # random customers too


def test_default_retention_is_three_years_for_both(con) -> None:
    stats = build_audience(
        con, segment="everyone", purpose=EMAIL, legal_basis=LI, purposes=PURPOSES, as_of=AS_OF
    )
    excluded = exclusion_rows(con, "everyone")
    assert excluded[36] == "retention_expired"
    assert 38 in {row[2] for row in audience_rows(con, "everyone")}  # 731 days < 1095
    assert stats.excluded["retention_expired"] >= 2


def test_consent_ref_is_the_latest_record(con) -> None:
    build(con, "everyone", ADS, CONSENT)
    (ref,) = con.execute(
        "SELECT consent_ref FROM activation.audience_members WHERE segment = 'everyone' "
        "AND customer_id = 3"
    ).fetchone()
    (latest,) = con.execute(
        "SELECT consent_id FROM consents WHERE customer_id = 3 AND purpose = ? "
        "ORDER BY recorded_at DESC LIMIT 1",
        [ADS],
    ).fetchone()
    assert ref == latest
    excluded = exclusion_rows(con, "everyone")
    assert excluded[5] == "expired"  # 500 days > 395 for ads
    assert excluded[34] == "expired"
    assert 35 in {row[2] for row in audience_rows(con, "everyone")}


def test_soft_opt_in_never_reaches_ad_targeting(con) -> None:
    before = audience_rows(con, "everyone")
    with pytest.raises(ValueError, match="ad_targeting"):
        build(con, "everyone", ADS, LI)
    with pytest.raises(ValueError, match="unknown purpose"):
        build(con, "everyone", "profiling", CONSENT)
    assert audience_rows(con, "everyone") == before


@pytest.mark.parametrize(("purpose", "basis"), COMBINATIONS)
def test_nobody_without_a_legal_basis_is_a_member(con, purpose: str, basis: LegalBasis) -> None:
    build(con, "everyone", purpose, basis)
    src = read_sources(con)
    validity = timedelta(days=PURPOSES[purpose].consent_validity_days)
    consents = {r[0]: r for r in src["consents"]}
    purchases = {e[0]: e for e in src["events"] if e[2] == "purchase"}
    holders: dict[str, set[int]] = {}
    for c, e in src["customers"]:
        holders.setdefault(subject_key(e) or "", set()).add(c)
    for key, _, cid, _, used, ref in audience_rows(con, "everyone"):
        live = [r for r in src["requests"] if r[3] <= AS_OF]
        at_address = holders[key]
        assert not any(r[0] in at_address or (r[1] or "").lower() == key for r in live), cid
        records = [
            r for r in src["consents"] if r[1] in at_address and r[2] == purpose and r[4] <= AS_OF
        ]
        latest = max(records, key=lambda r: (r[4], r[3] != "granted", r[0]), default=None)
        if used == "consent":
            record = consents[ref]
            assert record == latest and record[3] == "granted" and record[5] and record[6]
            assert AS_OF - validity < record[4] <= AS_OF
        else:
            assert basis is LI and purpose == EMAIL
            event = purchases[ref.removeprefix("purchase:")]
            assert event[1] == cid and event[3] <= AS_OF
            assert latest is None or latest[3] == "granted"
        # no marketing opt-out at the address newer than the basis (any purpose, any spelling)
        basis_at = consents[ref][4] if used == "consent" else None
        for r in src["consents"]:
            declared = {fold_purpose(name): name for name in PURPOSES}.get(fold_purpose(r[2]))
            if r[1] in at_address and r[3] != "granted" and r[4] <= AS_OF and declared:
                later = [
                    g
                    for g in src["consents"]
                    if g[1] in at_address
                    and g[2] == declared
                    and g[3] == "granted"
                    and g[4] > r[4]
                    and g[4] <= AS_OF
                ]
                if not later:
                    assert basis_at is not None and basis_at > r[4], (cid, r)


def test_keys_are_hashes_never_raw_emails(con) -> None:
    build(con, "everyone", EMAIL, LI)
    rows = audience_rows(con, "everyone")
    assert len(rows) > 100
    for key, gkey, _, email, _, _ in rows:
        assert re.fullmatch("[0-9a-f]{64}", key) and re.fullmatch("[0-9a-f]{64}", gkey)
        assert key == sha(email) and "@" not in key
    assert len({row[0] for row in rows}) == len(rows)


def test_rebuild_replaces_only_its_segment(con) -> None:
    build(con, "odd_ids", EMAIL, CONSENT)
    odd_before = audience_rows(con, "odd_ids")
    build(con, "everyone", EMAIL, CONSENT)
    first = audience_rows(con, "everyone"), exclusion_rows(con, "everyone")
    assert (1, "granted@example.com") in {(row[2], row[3]) for row in first[0]}
    con.execute(
        "INSERT INTO consents VALUES ('late-withdrawal', 1, ?, 'withdrawn', ?, 'email', 'v3')",
        [EMAIL, AS_OF - timedelta(seconds=1)],
    )
    try:
        stats = build(con, "everyone", EMAIL, CONSENT)
        assert 1 not in {row[2] for row in audience_rows(con, "everyone")}
        assert exclusion_rows(con, "everyone")[1] == "withdrawn"
        assert stats.members == len(first[0]) - 1
        assert audience_rows(con, "odd_ids") == odd_before
        (computed,) = con.execute(
            "SELECT DISTINCT computed_at FROM activation.audience_members WHERE segment = ?",
            ["everyone"],
        ).fetchone()
        assert computed == AS_OF
    finally:
        con.execute("DELETE FROM consents WHERE consent_id = 'late-withdrawal'")


def test_emptied_segment_clears_its_audience(con) -> None:
    con.executemany(
        "INSERT INTO activation.segment_members VALUES ('shrinking', ?, ?)",
        [(cid, AS_OF) for cid in (1, 2, 3, 21, 22)],
    )
    first = build(con, "shrinking", EMAIL, CONSENT)
    assert first.members == 3 and first.excluded["duplicate_address"] == 1
    con.execute("DELETE FROM activation.segment_members WHERE segment = 'shrinking'")
    stats = build(con, "shrinking", EMAIL, CONSENT)
    assert stats == AudienceStats(members=0, excluded=dict.fromkeys(EXCLUSION_REASONS, 0))
    assert audience_rows(con, "shrinking") == set()
    assert exclusion_rows(con, "shrinking") == {}


def test_aware_as_of_means_the_same_instant(con) -> None:
    build(con, "everyone", ADS, CONSENT)
    naive = audience_rows(con, "everyone"), exclusion_rows(con, "everyone")
    paris_summer = timezone(timedelta(hours=2))
    build_audience(
        con,
        segment="everyone",
        purpose=ADS,
        legal_basis=CONSENT,
        purposes=PURPOSES,
        as_of=(AS_OF + timedelta(hours=2)).replace(tzinfo=paris_summer),
        retention=RETENTION,
    )
    assert (audience_rows(con, "everyone"), exclusion_rows(con, "everyone")) == naive


#: ``audience_members`` as warehouses created before 2026-12-02 hold it: with a primary key.
_OLD_AUDIENCE_DDL = """
CREATE TABLE activation.audience_members (
    segment VARCHAR NOT NULL, subject_key VARCHAR NOT NULL, google_key VARCHAR NOT NULL,
    customer_id BIGINT NOT NULL, email VARCHAR NOT NULL, legal_basis VARCHAR NOT NULL,
    consent_ref VARCHAR NOT NULL, computed_at TIMESTAMP NOT NULL,
    PRIMARY KEY (segment, subject_key))
"""


@pytest.mark.parametrize("created", ["now", "before 2026-12-02, with a primary key"])
def test_changed_members_are_rewritten_in_old_and_new_warehouses(
    warehouse: Path, tmp_path: Path, created: str
) -> None:
    copy = tmp_path / "warehouse.duckdb"
    copy.write_bytes(warehouse.read_bytes())
    con = duckdb.connect(str(copy))
    try:
        if created != "now":
            con.execute("DROP TABLE activation.audience_members")
            con.execute(_OLD_AUDIENCE_DDL)
        build(con, "everyone", EMAIL, LI)
        before = {row[2]: row for row in audience_rows(con, "everyone")}
        assert before[9][4:] == ("legitimate_interest", "purchase:" + before[9][5][9:])
        # the buyer consents (legal basis and reference change, same subject key) and the
        # granted customer withdraws (leaves): one build rewrites both, nothing else
        con.execute(
            "INSERT INTO consents VALUES ('c-9-new', 9, ?, 'granted', ?, 'web', 'v3'),"
            " ('c-1-off', 1, ?, 'withdrawn', ?, 'web', 'v3')",
            [EMAIL, ago(1), EMAIL, ago(1)],
        )
        build(con, "everyone", EMAIL, LI)
        expected, _ = oracle(read_sources(con), segment_ids(con, "everyone"), EMAIL, LI)
        after = audience_rows(con, "everyone")
        assert after == expected
        by_customer = {row[2]: row for row in after}
        assert by_customer[9][4:] == ("consent", "c-9-new") and 1 not in by_customer
        assert set(after) - {by_customer[9]} == set(before.values()) - {before[9], before[1]}
    finally:
        con.close()


def test_a_subject_key_twice_fails_the_build_and_writes_nothing(
    con, monkeypatch: pytest.MonkeyPatch
) -> None:
    build(con, "everyone", ADS, CONSENT)
    before = audience_rows(con, "everyone"), exclusion_rows(con, "everyone")
    con.execute("DELETE FROM activation.audience_members WHERE segment = 'everyone'")
    classify = audience._classify_sql

    def with_a_duplicate() -> str:
        # a bug that lets one allowed row through twice
        return classify() + (
            "UNION ALL SELECT * FROM (SELECT customer_id, subject_key, legal_basis,"
            " consent_ref, reason FROM classified WHERE reason IS NULL LIMIT 1)\n"
        )

    monkeypatch.setattr(audience, "_classify_sql", with_a_duplicate)
    with pytest.raises(RuntimeError, match="1 subject keys would have two rows"):
        build(con, "everyone", ADS, CONSENT)
    assert audience_rows(con, "everyone") == set()  # rolled back: the deleted rows stay gone
    assert exclusion_rows(con, "everyone") == before[1]
    monkeypatch.undo()
    build(con, "everyone", ADS, CONSENT)
    assert (audience_rows(con, "everyone"), exclusion_rows(con, "everyone")) == before


ADDRESS_CASES = {
    # customer: (email consent, email soft opt-in, ads consent)
    60: ("member", "member", "member"),
    61: ("duplicate_address",) * 3,
    62: ("member", "member", "member"),
    63: ("duplicate_address",) * 3,
    64: ("erasure_requested",) * 3,
    65: ("withdrawn",) * 3,
    66: ("invalid_email",) * 3,
    67: ("member", "member", "member"),
    68: ("duplicate_address",) * 3,
    69: ("withdrawn",) * 3,
    70: ("no_consent",) * 3,
    71: ("withdrawn", "withdrawn", "member"),
    72: ("objection",) * 3,
    74: ("withdrawn",) * 3,
    76: ("withdrawn", "withdrawn", "withdrawn"),
    77: ("withdrawn",) * 3,
}


@pytest.mark.parametrize(("index", "purpose", "basis"), [(0, EMAIL, CONSENT), (1, EMAIL, LI),
                                                          (2, ADS, CONSENT)])  # fmt: skip
def test_one_address_is_one_person(con, index: int, purpose: str, basis: LegalBasis) -> None:
    """C5 and consent per address: every spelling of a mailbox (Unicode or punycode domain,
    full-width letters, a pre-hashed CRM row) is one data subject for duplicates, requests
    and consent; a withdrawal wins a tie (P2); a withdrawal under a purpose-name variant or
    under another marketing purpose keeps the person out (P1)."""
    build(con, "everyone", purpose, basis)
    excluded = exclusion_rows(con, "everyone")
    members = {row[2]: row for row in audience_rows(con, "everyone")}
    got = {cid: "member" if cid in members else excluded[cid] for cid in ADDRESS_CASES}
    assert got == {cid: cases[index] for cid, cases in ADDRESS_CASES.items()}
    assert members[60][3] == "user@xn--exmple-cua.com"
    assert members[60][0] == sha("user@xn--exmple-cua.com")
    assert members[62][3] == "user2@example.com"


def test_a_non_marketing_segment_ignores_marketing_opt_outs(con) -> None:
    """Withdrawals under other purposes count only for a marketing segment."""
    build_audience(
        con, segment="everyone", purpose=ADS, legal_basis=CONSENT, purposes=PURPOSES,
        as_of=AS_OF, retention=RETENTION, marketing=False,
    )  # fmt: skip
    members = {row[2] for row in audience_rows(con, "everyone")}
    assert {69, 77} <= members  # their own ads grants stand
    expected, exclusions = oracle(
        read_sources(con), segment_ids(con, "everyone"), ADS, CONSENT, marketing=False
    )
    assert audience_rows(con, "everyone") == expected
    assert exclusion_rows(con, "everyone") == exclusions


def test_unmatched_purpose_names_are_reported(con) -> None:
    stats = build(con, "everyone", EMAIL, CONSENT)
    found = {m.name: m.purpose for m in stats.unmatched_purposes}
    assert found == {
        " Email-Marketing ": EMAIL,
        "Email_Marketing": EMAIL,
        "ad-targeting": ADS,
        "newsletter": None,
    }


@pytest.mark.parametrize(("purpose", "basis"), COMBINATIONS)
def test_the_legal_basis_check_agrees_at_the_address(con, purpose: str, basis: LegalBasis) -> None:
    """The blocking check, written without the audience's windows, passes on every audience
    the product builds here (shared addresses, ties, variants, opt-outs, random customers)."""
    build(con, "everyone", purpose, basis)
    result = evaluate_legal_basis(
        con, segment="everyone", purpose=purpose, legal_basis=basis, purposes=PURPOSES
    )
    assert result.passed, result.metadata


@pytest.mark.parametrize(
    ("cid", "purpose", "problem"),
    [
        (65, EMAIL, "consent_superseded"),  # the pre-hashed row of the address withdrew later
        (24, ADS, "consent_superseded"),  # the other customer row withdrew later
        (27, EMAIL, "consent_superseded"),  # a withdrawal at the same instant wins
        (69, ADS, "marketing_opt_out"),  # an email opt-out under a variant spelling
        (77, ADS, "marketing_opt_out"),  # an email opt-out at the same instant as the grant
    ],
)
def test_the_legal_basis_check_catches_a_member_the_address_withdrew(
    con, cid: int, purpose: str, problem: str
) -> None:
    build(con, "everyone", purpose, CONSENT)
    (raw,) = con.execute("SELECT email FROM customers WHERE customer_id = ?", [cid]).fetchone()
    (grant,) = con.execute(
        "SELECT consent_id FROM consents WHERE customer_id = ? AND purpose = ? "
        "AND status = 'granted' ORDER BY consent_id LIMIT 1",
        [cid, purpose],
    ).fetchone()
    con.execute(
        "INSERT INTO activation.audience_members VALUES ('everyone', ?, ?, ?, ?, 'consent', ?, ?)",
        [subject_key(raw), google_key(raw), cid, normalize_email(raw), grant, AS_OF],
    )
    result = evaluate_legal_basis(
        con, segment="everyone", purpose=purpose, legal_basis=CONSENT, purposes=PURPOSES
    )
    assert not result.passed
    assert result.metadata[f"without_basis_{problem}"].value == 1
    assert result.metadata["members_without_basis"].value == 1


def test_the_consent_purposes_check_names_variants_and_unknown_names(con) -> None:
    result = evaluate_consent_purposes(con, PURPOSES)
    assert not result.passed and result.severity is dg.AssetCheckSeverity.WARN
    meta = {k: v.value for k, v in result.metadata.items()}
    assert (meta["variant_names"], meta["unknown_names"]) == (3, 1)
    (variants,) = con.execute(
        "SELECT count(*) FROM consents WHERE purpose NOT IN ('email_marketing', 'ad_targeting')"
    ).fetchone()
    assert meta["records_unmatched"] == variants
    assert "'newsletter': matches no declared purpose" in meta["detail"]
    assert "'Email_Marketing': variant of 'email_marketing'" in meta["detail"]
    clean = duckdb.connect()
    create_source_schema(clean)
    clean.execute(
        "INSERT INTO consents VALUES ('c1', 1, 'email_marketing', 'granted', ?, 's', 'v')",
        [AS_OF],
    )
    assert evaluate_consent_purposes(clean, PURPOSES).passed
