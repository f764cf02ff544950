"""The demo warehouse builder on the real UCI Online Retail sample: a retailer's own layout
(``crm.contacts``, ``shop.order_lines``, ``web.events``, ``cmp.consent_events``,
``support.privacy_tickets``) that only the model in ``activation.yaml`` maps."""

from __future__ import annotations

import csv
import hashlib
import re
from collections import Counter
from datetime import date, datetime, timedelta
from pathlib import Path

import duckdb
import pytest
from click.testing import CliRunner

from orchestrator.config import load_project_config
from orchestrator.model.views import refresh_source_views, unmapped_counts
from orchestrator.warehouse.demo import (
    DEMO_TABLES,
    PARTNER_SOURCE,
    BuildReport,
    build_demo_warehouse,
    default_source_csv,
    has_demo_layout,
    main,
)

REPO = Path(__file__).resolve().parents[2]
SOURCE = REPO / "data" / "uci_online_retail_sample_20k.csv"
SOURCE_SHA256 = "d0f85f541e88a6196d547834271e49d33095ffb7c096784457ee85009591d041"
AS_OF = date(2026, 11, 29)
MIDNIGHT = datetime(2026, 11, 29)
PRIMARY_KEYS = {
    "crm.contacts": "contact_id",
    "shop.order_lines": "line_id",
    "web.events": "event_uuid",
    "cmp.consent_events": "record_id",
    "support.privacy_tickets": "ticket_id",
    "main.warehouse_build": "key",
}
VALID_GRANTS_SQL = """
WITH latest AS (
    SELECT * FROM cmp.consent_events
    QUALIFY row_number() OVER (
        PARTITION BY contact_id, purpose_name ORDER BY captured_at DESC, record_id DESC) = 1
)
SELECT contact_id, purpose_name FROM latest
WHERE consent_status = 'OPT_IN' AND collection_point IS DISTINCT FROM 'partner_coregistration'
  AND captured_at > ? - to_days(
      CAST(CASE purpose_name WHEN 'personalised_ads' THEN ? ELSE ? END AS INT))
"""


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[BuildReport, Path]:
    path = tmp_path_factory.mktemp("demo") / "warehouse.duckdb"
    return build_demo_warehouse(path, AS_OF), path


@pytest.fixture(scope="module")
def con(built: tuple[BuildReport, Path]):
    connection = duckdb.connect(str(built[1]), read_only=True)
    yield connection
    connection.close()


@pytest.fixture(scope="module")
def source_lines() -> list[tuple[int, dict[str, str]]]:
    """(1-based data line number, row) of the CSV, read with the csv module (independent)."""
    with SOURCE.open(newline="", encoding="utf-8") as f:
        return list(enumerate(csv.DictReader(f), start=1))


@pytest.fixture(scope="module")
def emails(con: duckdb.DuckDBPyConnection) -> list[str | None]:
    return [
        r[0]
        for r in con.execute(
            "SELECT email_address FROM crm.contacts ORDER BY contact_id"
        ).fetchall()
    ]


def _one(con: duckdb.DuckDBPyConnection, sql: str, params: list | None = None):
    return con.execute(sql, params or []).fetchone()[0]


def _table_digests(path: Path) -> dict[str, str]:
    with duckdb.connect(str(path), read_only=True) as c:
        return {
            table: hashlib.sha256(
                repr(c.execute(f"SELECT * FROM {table} ORDER BY {key}").fetchall()).encode()
            ).hexdigest()
            for table, key in PRIMARY_KEYS.items()
        }


def test_only_rows_with_a_customer_id_are_loaded(built, con, source_lines) -> None:
    report, _ = built
    known = [row for _, row in source_lines if row["CustomerID"] != "NA"]
    assert report.counts["crm.contacts"] == len({row["CustomerID"] for row in known}) == 3049
    assert report.counts["shop.order_lines"] == len(known) == 14_922
    assert report.dropped_rows == len(source_lines) - len(known) == 5078
    assert report.table_counts() == {t: _one(con, f"SELECT count(*) FROM {t}") for t in DEMO_TABLES}
    for table, key in (("shop.order_lines", "contact_id"), ("web.events", "visitor_customer_id")):
        orphans = (
            f"SELECT count(*) FROM {table} WHERE {key} NOT IN (SELECT contact_id FROM crm.contacts)"
        )
        assert _one(con, orphans) == 0, table


def test_each_event_traces_back_to_its_csv_line_shifted_in_whole_days(
    built, con, source_lines
) -> None:
    report, _ = built
    shift = timedelta(days=report.shift_days)
    expected = {
        (
            f"{row['InvoiceNo']}-{line}",
            int(row["CustomerID"]),
            row["StockCode"],
            int(row["Quantity"]),
            datetime.fromisoformat(row["InvoiceDate"]) + shift,
            round(int(row["Quantity"]) * float(row["UnitPrice"]), 2),
        )
        for line, row in source_lines
        if row["CustomerID"] != "NA"
    }
    loaded = con.execute(
        "SELECT line_id, contact_id, stock_code, quantity, ordered_at, line_total_gbp "
        "FROM shop.order_lines"
    ).fetchall()
    assert set(loaded) == expected


def test_newest_event_lands_on_the_day_before_as_of_and_the_shift_is_recorded(built, con) -> None:
    report, _ = built
    newest = _one(con, "SELECT max(ordered_at) FROM shop.order_lines")
    assert newest.date() == AS_OF - timedelta(days=1)
    assert newest.time().isoformat() == "12:50:00"  # time of day of the newest source line
    assert report.shift_days == (AS_OF - timedelta(days=1) - date(2011, 12, 9)).days
    info = dict(con.execute("SELECT key, value FROM main.warehouse_build").fetchall())
    assert info["as_of"] == "2026-11-29"
    assert info["shift_days"] == str(report.shift_days)
    assert info["source_sha256"] == report.source_sha256 == SOURCE_SHA256
    assert info["seed"] == "20261129"


def test_refunds_are_exactly_the_cancelled_invoice_lines(con, source_lines) -> None:
    cancelled = {
        f"{row['InvoiceNo']}-{line}"
        for line, row in source_lines
        if row["CustomerID"] != "NA" and row["InvoiceNo"].startswith("C")
    }
    refunds = {
        r[0]
        for r in con.execute(
            "SELECT line_id FROM shop.order_lines WHERE line_type = 'RETURN'"
        ).fetchall()
    }
    assert refunds == cancelled
    assert len(refunds) > 300
    assert _one(con, "SELECT count(DISTINCT line_type) FROM shop.order_lines") == 2


def test_building_twice_gives_identical_tables_and_replaces_the_file(built, tmp_path) -> None:
    _, first = built
    again = tmp_path / "again.duckdb"
    build_demo_warehouse(again, AS_OF)
    build_demo_warehouse(again, AS_OF)  # over an existing file
    assert _table_digests(again) == _table_digests(first)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["again.duckdb"]  # no temp leftovers

    other_seed = tmp_path / "other.duckdb"
    build_demo_warehouse(other_seed, AS_OF, seed=7)
    differ = {t for t, d in _table_digests(other_seed).items() if d != _table_digests(first)[t]}
    assert {"crm.contacts", "cmp.consent_events", "support.privacy_tickets"} <= differ
    assert "shop.order_lines" not in differ


def test_emails_are_as_messy_as_a_real_crm_export(emails) -> None:
    present = [e for e in emails if e]
    upper = sum(e == e.upper() and e != e.lower() for e in present)
    mixed = sum(e not in (e.upper(), e.lower()) for e in present)
    padded = sum(e != e.strip(" \t") for e in present)
    tabbed = sum("\t" in e for e in present)
    gmail = [e.strip().lower() for e in present if e.strip().lower().endswith("@gmail.com")]
    gmail_dot = sum("." in g.split("@")[0] for g in gmail)
    gmail_tag = sum("+" in g for g in gmail)
    invalid = sum(e.count("@") != 1 for e in present)
    not_applicable = sum(e.strip().lower() == "n/a" for e in present)
    assert upper >= 50 and mixed >= 50
    assert padded >= 50 and tabbed >= 10
    assert gmail_dot >= 50 and gmail_tag >= 50
    assert invalid >= 20 and not_applicable >= 3
    assert emails.count(None) >= 20 and emails.count("") >= 10
    domains = Counter(e.strip().lower().rsplit("@", 1)[1] for e in present if e.count("@") == 1)
    assert set(domains) == {"example.com", "example.org", "gmail.com"}


def test_exactly_one_pair_of_customers_shares_an_address(con, emails) -> None:
    plausible = [e for e in emails if e and e.count("@") == 1]
    by_address = Counter(e.strip().lower() for e in plausible)
    shared = [n for n in by_address.values() if n > 1]
    assert shared == [2]
    # still exactly one after Gmail dot/+tag folding: no accidental collisions
    folded = Counter(_gmail_fold(e.strip().lower()) for e in plausible)
    assert [n for n in folded.values() if n > 1] == [2]
    pair_cases = con.execute(
        "SELECT count(DISTINCT email_address) FROM crm.contacts WHERE lower(trim(email_address))"
        " IN (SELECT lower(trim(email_address)) FROM crm.contacts WHERE email_address LIKE '%@%' "
        "GROUP BY 1 HAVING count(*) = 2)"
    ).fetchone()[0]
    assert pair_cases == 2  # the two customers spell it in different letter case


def _gmail_fold(address: str) -> str:
    local, domain = address.split("@")
    if domain == "gmail.com":
        local = local.split("+")[0].replace(".", "")
    return f"{local}@{domain}"


def test_consent_log_has_every_case_the_filter_must_handle(con) -> None:
    config = load_project_config(REPO / "activation.yaml")
    validity = {p: config.purposes[p].consent_validity_days for p in config.purposes}
    assert validity == {"email_marketing": 1095, "ad_targeting": 395}
    words = config.source.consents.purpose_values
    latest = con.execute(
        "SELECT purpose_name, consent_status, captured_at FROM cmp.consent_events "
        "WHERE collection_point IS DISTINCT FROM ? QUALIFY row_number() OVER ("
        "PARTITION BY contact_id, purpose_name ORDER BY captured_at DESC, record_id DESC) = 1",
        [PARTNER_SOURCE],
    ).fetchall()
    customers = _one(con, "SELECT count(*) FROM crm.contacts")
    for purpose, days in validity.items():
        mine = [(s, at) for p, s, at in latest if p in words[purpose]]
        cutoff = MIDNIGHT - timedelta(days=days)
        valid = sum(s == "OPT_IN" and at > cutoff for s, at in mine)
        expired = sum(s == "OPT_IN" and at <= cutoff for s, at in mine)
        withdrawn = sum(s == "OPT_OUT" for s, _ in mine)
        without_record = customers - len(mine)
        assert valid > customers / 2, purpose
        assert expired >= 100 and withdrawn >= 50 and without_record >= 200, purpose
    regrants = _one(
        con,
        "SELECT count(*) FROM cmp.consent_events g JOIN cmp.consent_events w "
        "USING (contact_id, purpose_name) WHERE g.consent_status = 'OPT_IN' "
        "AND w.consent_status = 'OPT_OUT' AND g.captured_at > w.captured_at",
    )
    no_proof = _one(
        con,
        "SELECT count(*) FROM cmp.consent_events WHERE consent_status = 'OPT_IN' "
        "AND (collection_point IS NULL OR policy_version IS NULL)",
    )
    assert regrants >= 10 and no_proof >= 20
    assert _one(con, "SELECT max(captured_at) FROM cmp.consent_events") <= MIDNIGHT
    ids = [
        r[0]
        for r in con.execute(
            "SELECT record_id FROM cmp.consent_events ORDER BY captured_at, record_id"
        ).fetchall()
    ]
    assert ids == sorted(ids) and ids[0] == "cmp-000001"


def test_privacy_requests_hit_customers_who_would_otherwise_be_in_an_audience(con) -> None:
    requests = con.execute(
        "SELECT ticket_id, contact_id, requester_email, ticket_type, opened_at "
        "FROM support.privacy_tickets ORDER BY ticket_id"
    ).fetchall()
    kinds = Counter(r[3] for r in requests)
    assert kinds == {"DELETE_MY_DATA": 5, "STOP_MARKETING": 5}
    assert all(r[2] is None for r in requests)
    assert all(MIDNIGHT - timedelta(days=20) <= r[4] <= MIDNIGHT for r in requests)
    valid = {r[0] for r in con.execute(VALID_GRANTS_SQL, [MIDNIGHT, 395, 1095]).fetchall()}
    assert {r[1] for r in requests} <= valid


def test_countries_are_iso_alpha2_codes_or_null(con, source_lines) -> None:
    rows = con.execute("SELECT contact_id, country, country_name FROM crm.contacts").fetchall()
    assert all(c is None or re.fullmatch(r"[A-Z]{2}", c) for _, c, _ in rows)
    names = {name: code for _, code, name in rows}
    assert names["EIRE"] == "IE" and names["United Kingdom"] == "GB" and names["USA"] == "US"
    assert names["Unspecified"] is None and names["Channel Islands"] is None
    # a customer recorded under two countries gets the one of most of their lines
    per_customer: dict[str, Counter] = {}
    for _, row in source_lines:
        if row["CustomerID"] != "NA":
            per_customer.setdefault(row["CustomerID"], Counter())[row["Country"]] += 1
    recorded = {str(cid): name for cid, _, name in rows}
    for cid, counts in per_customer.items():
        best = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[0][0]
        assert recorded[cid] == best


def test_bad_sources_fail_without_leaving_a_file(tmp_path) -> None:
    target = tmp_path / "w.duckdb"
    with pytest.raises(FileNotFoundError, match=r"missing\.csv"):
        build_demo_warehouse(target, AS_OF, source_csv=tmp_path / "missing.csv")
    odd = tmp_path / "odd.csv"
    odd.write_text(
        '"InvoiceNo","StockCode","Description","Quantity","InvoiceDate","UnitPrice",'
        '"CustomerID","Country"\n"1","A","X",1,"2011-01-01 10:00:00",1.5,12345,"Atlantis"\n'
    )
    with pytest.raises(ValueError, match="Atlantis"):
        build_demo_warehouse(target, AS_OF, source_csv=odd)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["odd.csv"]
    assert default_source_csv() == SOURCE


def test_command_line_prints_counts_and_no_email(tmp_path) -> None:
    target = tmp_path / "cli.duckdb"
    result = CliRunner().invoke(main, ["--path", str(target), "--as-of", "2026-11-29"])
    assert result.exit_code == 0, result.output
    assert "14,922" in result.output and "3,049" in result.output
    assert "@" not in result.output
    assert target.is_file()


def test_only_the_retailers_tables_exist_and_only_the_model_maps_them(built, tmp_path) -> None:
    _, path = built
    copy = tmp_path / "mapped.duckdb"
    copy.write_bytes(path.read_bytes())
    config = load_project_config(REPO / "activation.yaml")
    with duckdb.connect(str(copy)) as c:
        tables = {
            f"{s}.{t}"
            for s, t in c.execute("SELECT schema_name, table_name FROM duckdb_tables()").fetchall()
        }
        assert tables == {*DEMO_TABLES, "main.warehouse_build"}  # no table in our words
        refresh_source_views(c, config.source, tuple(config.purposes))
        counts = dict(
            c.execute(
                "SELECT 'customers', count(*) FROM activation.src_customers UNION ALL "
                "SELECT 'events', count(*) FROM activation.src_events UNION ALL "
                "SELECT 'consents', count(*) FROM activation.src_consents UNION ALL "
                "SELECT 'requests', count(*) FROM activation.src_privacy_requests"
            ).fetchall()
        )
        assert counts == {
            "customers": 3049,
            "events": 14_922 + _one(c, "SELECT count(*) FROM web.events"),
            "consents": _one(c, "SELECT count(*) FROM cmp.consent_events"),  # every row maps
            "requests": 10,
        }
        assert unmapped_counts(c, config.source, config.purposes) == {}
        types = dict(
            c.execute(
                "SELECT event_type, count(*) FROM activation.src_events GROUP BY 1"
            ).fetchall()
        )
        assert set(types) == {"purchase", "refund", "page_view", "add_to_cart", "checkout_started"}
        assert types["refund"] == _one(
            c, "SELECT count(*) FROM shop.order_lines WHERE line_type = 'RETURN'"
        )
        words = c.execute(
            "SELECT DISTINCT purpose, status FROM activation.src_consents ORDER BY 1, 2"
        ).fetchall()
        assert words == [
            ("ad_targeting", "granted"),
            ("ad_targeting", "withdrawn"),
            ("email_marketing", "granted"),
            ("email_marketing", "withdrawn"),
        ]
        # a partner's grants are unproven for us (no notice of ours), never dropped
        partner = c.execute(
            "SELECT count(*), count(notice_version) FROM activation.src_consents WHERE source = ?",
            [PARTNER_SOURCE],
        ).fetchone()
        assert partner[0] >= 50 and partner[1] == 0
        kinds = dict(
            c.execute(
                "SELECT request_type, count(*) FROM activation.src_privacy_requests GROUP BY 1"
            ).fetchall()
        )
        assert kinds == {"erasure": 5, "objection": 5}


def test_an_older_layout_is_recognized_for_a_rebuild(built, tmp_path) -> None:
    assert has_demo_layout(built[1])
    old = tmp_path / "old.duckdb"
    with duckdb.connect(str(old)) as c:
        c.execute("CREATE TABLE customers (customer_id BIGINT, email VARCHAR)")
    assert not has_demo_layout(old)
