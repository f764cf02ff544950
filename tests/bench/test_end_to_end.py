"""The naive end-to-end baseline and the same-work floor admit exactly our audience.

A hand-made warehouse where each audience rule decides one customer (duplicate address,
invalid email, a hash held instead of an address, an empty Google form, requests matched by
id and by key, a Google-key suppression, source retention, blank consent source, expired and
withdrawn consent, a request received after ``as_of``): our ``build_audience`` and the
bench's plain model + Python key rules must keep the same subject keys, and the same-work
floor must count them.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

import duckdb
import pytest

from bench import scenario
from bench.end_to_end import naive_end_to_end, same_work_floor, target_from_rows
from bench.model import model_query
from bench.scenario import AS_OF, SEGMENT_NAMES, segment_spec
from orchestrator.audience import build_audience
from orchestrator.config import ProjectConfig, SourceRetention
from orchestrator.pseudonymize import google_key, sha256_hex, subject_key
from orchestrator.segments.materialize import write_segment_members
from orchestrator.warehouse.schema import create_activation_schema, create_source_schema

HEX = "ab" * 32
RECENT = AS_OF - timedelta(days=10)
PURCHASED_8 = AS_OF - timedelta(days=100)

# customer_id -> (email, expected exclusion reason or None for a member)
CUSTOMERS: dict[int, tuple[str | None, str | None]] = {
    1: ("dup@example.com", None),
    2: ("  DUP@Example.com ", "duplicate_address"),
    3: (HEX, "invalid_email"),
    4: ("+tag@gmail.com", "invalid_email"),
    5: ("not-an-address", "invalid_email"),
    6: ("keyreq@example.com", "erasure_requested"),
    7: ("first.last.x@gmail.com", "objection"),
    8: ("old@example.com", "retention_expired"),
    9: ("blank@example.com", "consent_unproven"),
    10: ("byid@example.com", "objection"),
    11: ("late@example.com", None),
    12: ("stale@example.com", "expired"),
    13: ("gone@example.com", "withdrawn"),
    14: ("ok@example.org", None),
    15: ("nobody@example.org", "no_consent"),
}


def project_config() -> ProjectConfig:
    """The repository's project with a 60-day source retention (the bench segments need a
    purchase within 180 days, so the 3-year default could never exclude a member)."""
    retention = SourceRetention(prospect_days=60, customer_days=60)
    return scenario.project_config().model_copy(update={"retention": retention})


def _insert(con: duckdb.DuckDBPyConnection, table: str, rows: list[tuple]) -> None:
    marks = ", ".join("?" * len(rows[0]))
    con.executemany(f"INSERT INTO {table} VALUES ({marks})", rows)


def _customers(con: duckdb.DuckDBPyConnection) -> None:
    created = AS_OF - timedelta(days=100)
    rows = [(i, email, "FR", "FR", created, RECENT) for i, (email, _) in CUSTOMERS.items()]
    _insert(con, "customers", rows)
    # 8: last purchase and last contact 100 days ago: in both segments, past the test
    # project's 60-day source retention (the others bought and got in touch 10 days ago).
    con.execute("UPDATE customers SET last_contact_at = ? WHERE customer_id = 8", [PURCHASED_8])
    events = [
        (
            f"e{i}",
            i,
            "purchase",
            RECENT if i != 8 else PURCHASED_8,
            "INV",
            "S",
            "MUG",
            1,
            150.0,
            150.0,
        )
        for i in CUSTOMERS
    ]
    _insert(con, "events", events)


def _consents(con: duckdb.DuckDBPyConnection) -> None:
    rows = []
    for purpose in ("email_marketing", "ad_targeting"):
        for i in CUSTOMERS:
            if i == 15:
                continue
            source = "  " if i == 9 else "signup_form"
            at = AS_OF - timedelta(days=2000) if i == 12 else RECENT
            rows.append((f"c-{purpose}-{i}", i, purpose, "granted", at, source, "notice-v3"))
        rows.append((f"w-{purpose}-13", 13, purpose, "withdrawn", AS_OF, "center", "notice-v3"))
        # recorded after as_of: ignored
        rows.append((f"w-{purpose}-14", 14, purpose, "withdrawn", AS_OF + timedelta(1), "c", "n"))
    _insert(con, "consents", rows)


def _requests(con: duckdb.DuckDBPyConnection) -> None:
    _insert(
        con,
        "privacy_requests",
        [
            ("r6", None, "KeyReq@Example.com ", "erasure", RECENT),
            ("r10", 10, None, "objection", RECENT),
            ("r11", 11, None, "erasure", AS_OF + timedelta(days=1)),
        ],
    )
    _insert(
        con,
        "activation.suppression_list",
        [("f" * 64, google_key("firstlastx@gmail.com"), "objection", RECENT)],
    )


@pytest.fixture(scope="module")
def warehouse(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The hand-made warehouse, with our segment and audience tables built for both bench
    segments at ``AS_OF``."""
    path = tmp_path_factory.mktemp("e2e") / "w.duckdb"
    project = project_config()
    con = duckdb.connect(str(path))
    try:
        create_source_schema(con)
        create_activation_schema(con)
        _customers(con)
        _consents(con)
        _requests(con)
        for name in SEGMENT_NAMES:
            spec = segment_spec(name, project)
            write_segment_members(con, spec, AS_OF)
            build_audience(
                con,
                segment=spec.id,
                purpose=spec.purpose,
                legal_basis=spec.legal_basis,
                purposes=project.purposes,
                as_of=AS_OF,
                retention=project.retention,
            )
    finally:
        con.close()
    return path


def _ours(path: Path, segment: str) -> tuple[set[str], dict[int, str]]:
    con = duckdb.connect(str(path), read_only=True)
    try:
        keys = con.execute(
            "SELECT subject_key FROM activation.audience_members WHERE segment = ?", [segment]
        ).fetchall()
        reasons = con.execute(
            "SELECT customer_id, reason FROM activation.audience_exclusions WHERE segment = ?",
            [segment],
        ).fetchall()
    finally:
        con.close()
    return {k for (k,) in keys}, dict(reasons)


@pytest.mark.parametrize("segment", SEGMENT_NAMES)
def test_every_rule_decides_one_customer_in_our_audience(warehouse: Path, segment: str) -> None:
    keys, reasons = _ours(warehouse, segment)
    expected = {i: reason for i, (_, reason) in CUSTOMERS.items() if reason}
    assert reasons == expected
    members = [email for email, reason in CUSTOMERS.values() if reason is None]
    assert keys == {subject_key(email) for email in members}


@pytest.mark.parametrize("segment", SEGMENT_NAMES)
def test_naive_end_to_end_and_same_work_floor_keep_our_audience(
    warehouse: Path, segment: str
) -> None:
    project = project_config()
    spec = segment_spec(segment, project)
    entry = spec.destinations[0]
    kind = str(project.destinations[entry.destination].kind)
    result = naive_end_to_end(
        warehouse,
        spec=spec,
        project=project,
        as_of=AS_OF,
        destination=entry.destination,
        kind=kind,
        mode="mirror",
        fields=dict(entry.fields),
        batch_size=2,
    )
    keys, _ = _ours(warehouse, segment)
    assert set(result.keys["add"]) == keys  # empty state: every member is an add
    assert result.keys["remove"] == [] and result.keys["update"] == []
    assert result.batches["add"] == 2  # three members, batches of two
    floor = same_work_floor(
        warehouse, spec=spec, project=project, as_of=AS_OF, destination=entry.destination
    )
    assert (floor.target_keys, floor.adds, floor.removes) == (len(keys), len(keys), 0)


def test_same_work_floor_counts_removes_and_adds_against_state(warehouse: Path) -> None:
    project = project_config()
    spec = segment_spec("bench_retarget", project)
    con = duckdb.connect(str(warehouse))
    try:
        con.executemany(
            "INSERT INTO activation.sync_state (segment, destination, subject_key, fields_hash,"
            " destination_ref, synced_at) VALUES (?, 'meta_ads', ?, 'h', NULL, ?)",
            [(spec.id, subject_key("dup@example.com"), AS_OF), (spec.id, "e" * 64, AS_OF)],
        )
    finally:
        con.close()
    floor = same_work_floor(
        warehouse, spec=spec, project=project, as_of=AS_OF, destination="meta_ads"
    )
    assert (floor.target_keys, floor.adds, floor.removes) == (3, 2, 1)


def test_target_from_rows_keeps_the_lowest_id_and_hashes_fields_by_send_key() -> None:
    rows = [(1, "A@example.com", "FR"), (2, "a@example.com", "DE"), (3, None, "FR")]
    email = target_from_rows(
        rows, kind="email", names=["COUNTRY"], blocked=set(), blocked_google=set()
    )
    key = sha256_hex("a@example.com")
    assert list(email) == [key]
    ad = target_from_rows(rows, kind="ad", names=["COUNTRY"], blocked=set(), blocked_google=set())
    assert email[key] != ad[key]  # send key: the address for email, the key for ads
    assert target_from_rows(rows, kind="ad", names=[], blocked={key}, blocked_google=set()) == {}


def test_the_model_refuses_soft_opt_in_and_unknown_columns() -> None:
    project = project_config()
    spec = segment_spec("bench_newsletter", project)
    with pytest.raises(ValueError, match="consent only"):
        model_query(spec.model_copy(update={"legal_basis": "legitimate_interest"}), project, AS_OF)
    with pytest.raises(ValueError, match="not columns"):
        model_query(spec, project, datetime(2026, 1, 1), ["email; DROP TABLE customers"])
