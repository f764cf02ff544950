"""The SQL diff: which subjects are added, updated, removed (and why) or left alone."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from orchestrator.pseudonymize import google_key, normalize_email
from orchestrator.sync.diff import PENDING_HASH, DiffParams, DiffPlan, compute_diff
from orchestrator.warehouse.schema import create_source_schema
from tests.postgres import PgWarehouse
from tests.postgres import connect_any as connect
from tests.sync.helpers import T0, fake_emails, key_of, new_warehouse, set_audience

SEG, DEST = "loyal", "ads"


@pytest.fixture(params=["duckdb", "postgres"])
def wh(request: pytest.FixtureRequest, tmp_path: Path) -> Path | PgWarehouse:
    """The warehouse as a DuckDB file, or as a real PostgreSQL database (tests/postgres.py)."""
    if request.param == "postgres":
        warehouse = PgWarehouse(request.getfixturevalue("postgres_url"))
        with connect(warehouse) as con:
            create_source_schema(con)
            con.executemany(
                "INSERT INTO customers VALUES (?, ?, 'GB', 'United Kingdom', ?, NULL)",
                [(i + 1, e, T0) for i, e in enumerate(fake_emails(12))],
            )
        return warehouse
    path = tmp_path / "wh.duckdb"
    new_warehouse(path, fake_emails(12))
    return path


def _diff(wh: Path, tmp_path: Path, **kw) -> tuple[DiffPlan, dict[tuple[str, str | None], list]]:
    """Run compute_diff; return the plan and each send file's rows (as dicts)."""
    params = {"segment": SEG, "destination": DEST, "mode": "mirror", "kind": "ad", **kw}
    scratch = tmp_path / "scratch"
    scratch.mkdir(exist_ok=True)
    for old in scratch.iterdir():
        old.unlink()
    with connect(wh) as con:
        plan = compute_diff(con, DiffParams(**params), scratch)
    files = {(op, reason): pq.read_table(p).to_pylist() for op, reason, p in plan.files}
    return plan, files


def _hold(wh: Path, customer_ids, fields_hash: str | None = None, destination: str = DEST):
    """Put the customers in sync_state: with the hash the diff computes, or ``fields_hash``."""
    with connect(wh) as con:
        for cid in customer_ids:
            con.execute(
                "INSERT INTO activation.sync_state VALUES (?, ?, ?, NULL, ?, ?)",
                [SEG, destination, key_of(con, cid), fields_hash or "old", T0],
            )


def _sync_state_to_target(wh: Path, tmp_path: Path, **kw) -> None:
    """Make sync_state hold exactly the current target with its current hashes."""
    _, files = _diff(wh, tmp_path, **kw)
    with connect(wh) as con:
        for row in files.get(("add", None), []):
            con.execute(
                "INSERT INTO activation.sync_state VALUES (?, ?, ?, NULL, ?, ?)",
                [SEG, DEST, row["subject_key"], row["fields_hash"], T0],
            )


def _keys(files, op, reason=None) -> list[str]:
    return [r["subject_key"] for r in files.get((op, reason), [])]


def test_first_diff_adds_the_whole_audience_in_key_order(wh, tmp_path):
    with connect(wh) as con:
        set_audience(con, SEG, [1, 2, 3, 4])
        expected = sorted(key_of(con, c) for c in [1, 2, 3, 4])
    plan, files = _diff(wh, tmp_path)
    assert plan.counts["add"] == 4 and plan.counts["remove"] == plan.counts["update"] == 0
    assert _keys(files, "add") == expected
    assert all(r["send_key"] == r["subject_key"] for r in files[("add", None)])


def test_mirror_adds_updates_removes_and_leaves_the_rest(wh, tmp_path):
    with connect(wh) as con:
        set_audience(con, SEG, [1, 2, 3])
    _sync_state_to_target(wh, tmp_path)
    with connect(wh) as con:
        con.execute(
            "UPDATE activation.sync_state SET fields_hash = 'stale' WHERE subject_key = ?",
            [key_of(con, 2)],
        )
        set_audience(con, SEG, [2, 3, 4])
        k2, k4, k1 = key_of(con, 2), key_of(con, 4), key_of(con, 1)
    plan, files = _diff(wh, tmp_path)
    assert _keys(files, "add") == [k4]
    assert _keys(files, "update") == [k2]
    assert _keys(files, "remove", "left_segment") == [k1]
    assert plan.counts["unchanged"] == 1
    assert [op for op, _, _ in plan.files] == ["remove", "add", "update"]


def test_upsert_never_removes_and_add_only_never_updates(wh, tmp_path):
    with connect(wh) as con:
        set_audience(con, SEG, [1, 2])
    _hold(wh, [2, 3])  # 2 held with a stale hash, 3 left the audience
    plan, files = _diff(wh, tmp_path, mode="upsert")
    assert plan.counts["remove"] == 0 and plan.counts["kept"] == 1
    assert plan.counts["update"] == 1 and plan.counts["add"] == 1
    plan, files = _diff(wh, tmp_path, mode="add_only")
    assert plan.counts["update"] == 0 and plan.counts["remove"] == 0
    assert plan.counts["add"] == 1 and plan.counts["unchanged"] == 1
    assert ("update", None) not in files


def test_suppressed_subjects_are_not_added_on_that_destination_only(wh, tmp_path):
    with connect(wh) as con:
        set_audience(con, SEG, [1, 2])
        k1 = key_of(con, 1)
        con.execute(
            "INSERT INTO activation.destination_suppressions (destination, subject_key, status, "
            "suppressed_at) VALUES (?, ?, 'unsubscribed', ?)",
            [DEST, k1, T0],
        )
    plan, files = _diff(wh, tmp_path)
    assert plan.counts["suppressed"] == 1 and k1 not in _keys(files, "add")
    plan, files = _diff(wh, tmp_path, destination="other_ads")
    assert k1 in _keys(files, "add")


def test_permanent_rejection_of_the_same_row_is_skipped_until_the_row_changes(wh, tmp_path):
    with connect(wh) as con:
        set_audience(con, SEG, [1, 2, 3])
    _, files = _diff(wh, tmp_path)
    hashes = {r["subject_key"]: r["fields_hash"] for r in files[("add", None)]}
    with connect(wh) as con:
        k1, k2, k3 = (key_of(con, c) for c in (1, 2, 3))
        rejections = [(k1, hashes[k1], True), (k2, "another-hash", True), (k3, hashes[k3], False)]
        for key, h, permanent in rejections:
            con.execute(
                "INSERT INTO activation.sync_rejections (segment, destination, subject_key, "
                "fields_hash, operation, reason, permanent, rejected_at) "
                "VALUES (?, ?, ?, ?, 'add', 'x', ?, ?)",
                [SEG, DEST, key, h, permanent, T0],
            )
    plan, files = _diff(wh, tmp_path)
    assert plan.counts["skipped_rejected"] == 1
    assert sorted(_keys(files, "add")) == sorted([k2, k3])


def test_remove_reasons_come_from_privacy_requests_and_exclusions(wh, tmp_path):
    held = [1, 2, 3, 4, 5, 6]
    _hold(wh, held)
    with connect(wh) as con:
        set_audience(con, SEG, [])
        k = {c: key_of(con, c) for c in held}
        con.executemany(
            "INSERT INTO privacy_requests VALUES (?, ?, ?, ?, ?)",
            [
                ("r1", None, k[1], "erasure", T0),  # by subject key
                ("r2", 2, None, "erasure", T0),  # by customer id only
                ("r3", 3, None, "objection", T0),
                ("r4", None, k[1], "objection", T0),  # erasure wins over objection
            ],
        )
        con.executemany(
            "INSERT INTO activation.audience_exclusions VALUES (?, ?, ?, ?)",
            [(SEG, 4, "withdrawn", T0), (SEG, 5, "expired", T0), ("other", 6, "withdrawn", T0)],
        )
    plan, files = _diff(wh, tmp_path)
    assert sorted(_keys(files, "remove", "erasure")) == sorted([k[1], k[2]])
    assert _keys(files, "remove", "objection") == [k[3]]
    assert _keys(files, "remove", "consent_withdrawn") == [k[4]]
    assert sorted(_keys(files, "remove", "left_segment")) == sorted([k[5], k[6]])
    assert plan.removes_by_reason == {
        "erasure": 2,
        "objection": 1,
        "consent_withdrawn": 1,
        "left_segment": 2,
    }
    assert [reason for _, reason, _ in plan.files] == [
        "erasure",
        "objection",
        "consent_withdrawn",
        "left_segment",
    ]


@pytest.mark.parametrize("mode", ["upsert", "add_only"])
def test_acts_of_the_person_remove_in_every_mode_but_leaving_alone_is_kept(wh, tmp_path, mode):
    """Upsert and add_only keep people who merely left the segment, never people who withdrew
    consent, objected or asked for erasure (GDPR Art. 7(3), 21, 17)."""
    held = [1, 2, 3, 4, 5]
    _hold(wh, held)
    with connect(wh) as con:
        set_audience(con, SEG, [])
        k = {c: key_of(con, c) for c in held}
        con.executemany(
            "INSERT INTO privacy_requests VALUES (?, ?, ?, ?, ?)",
            [("r1", 1, None, "erasure", T0), ("r2", None, k[2], "objection", T0)],
        )
        # 3: still a member of the segment, excluded from its audience for the withdrawal.
        con.execute(
            "INSERT INTO activation.audience_exclusions VALUES (?, 3, 'withdrawn', ?)", [SEG, T0]
        )
        # 4: left the segment, then withdrew: only the consent log says so.
        con.executemany(
            "INSERT INTO consents VALUES (?, 4, 'email_marketing', ?, ?, 'form', 'v1')",
            [("c1", "granted", T0), ("c2", "withdrawn", T0.replace(year=2025, month=2))],
        )
        # 5: left the segment, consent for another purpose withdrawn: kept.
        con.execute(
            "INSERT INTO consents VALUES ('c3', 5, 'ad_targeting', 'withdrawn', ?, 'form', 'v1')",
            [T0],
        )
    plan, files = _diff(wh, tmp_path, mode=mode, purpose="email_marketing")
    assert _keys(files, "remove", "erasure") == [k[1]]
    assert _keys(files, "remove", "objection") == [k[2]]
    assert sorted(_keys(files, "remove", "consent_withdrawn")) == sorted([k[3], k[4]])
    assert plan.counts["kept"] == 1 and plan.counts["remove"] == 4
    assert ("remove", "left_segment") not in files


def test_upsert_removes_members_gone_longer_than_the_retention(wh, tmp_path):
    """A member who left stays at an upsert destination for retention_days at most."""
    _hold(wh, [1, 2])
    with connect(wh) as con:
        set_audience(con, SEG, [])
        k1, k2 = key_of(con, 1), key_of(con, 2)
        con.executemany(
            "INSERT INTO activation.departures VALUES (?, ?, ?, ?)",
            [(SEG, DEST, k1, T0 - timedelta(days=31)), (SEG, DEST, k2, T0 - timedelta(days=29))],
        )
    plan, files = _diff(wh, tmp_path, mode="upsert", retention_days=30, as_of=T0)
    assert _keys(files, "remove", "left_segment") == [k1]
    assert plan.counts["kept"] == 1
    plan, _ = _diff(wh, tmp_path, mode="upsert")  # no retention given: nobody removed
    assert plan.counts["remove"] == 0 and plan.counts["kept"] == 2


def test_no_subject_is_both_added_and_removed(wh, tmp_path):
    _hold(wh, [1, 2, 3, 4])
    _hold(wh, [5], fields_hash=PENDING_HASH)
    with connect(wh) as con:
        set_audience(con, SEG, [3, 4, 5, 6, 7])
    plan, files = _diff(wh, tmp_path)
    sent = [r["subject_key"] for rows in files.values() for r in rows]
    assert len(sent) == len(set(sent)) == 2 + 2 + 3  # 2 removes, 2 updates, 3 adds
    assert plan.counts["add"] == 3  # 6, 7 and the pending 5


def test_pending_rows_are_re_added_or_removed(wh, tmp_path):
    _hold(wh, [1, 2], fields_hash=PENDING_HASH)
    with connect(wh) as con:
        set_audience(con, SEG, [1])
        k1, k2 = key_of(con, 1), key_of(con, 2)
    _, files = _diff(wh, tmp_path)
    assert _keys(files, "add") == [k1]
    assert _keys(files, "remove", "left_segment") == [k2]


def test_email_destination_sends_the_address_and_hashes_fields(wh, tmp_path):
    email_kw = {"kind": "email", "fields": {"COUNTRY": "country", "CNAME": "country_name"}}
    with connect(wh) as con:
        set_audience(con, SEG, [1, 2])
        (raw1,) = con.execute("SELECT email FROM customers WHERE customer_id = 1").fetchone()
    plan, files = _diff(wh, tmp_path, **email_kw)
    row1 = next(r for r in files[("add", None)] if r["send_key"] == normalize_email(raw1))
    assert plan.field_names == ["CNAME", "COUNTRY"]
    assert (row1["f0"], row1["f1"]) == ("United Kingdom", "GB")
    _sync_state_to_target(wh, tmp_path, **email_kw)
    with connect(wh) as con:
        con.execute("UPDATE customers SET country = 'FR' WHERE customer_id = 2")
        k2 = key_of(con, 2)
    plan, files = _diff(wh, tmp_path, **email_kw)
    assert _keys(files, "update") == [k2] and plan.counts["unchanged"] == 1
    assert files[("update", None)][0]["f1"] == "FR"


def test_email_remove_carries_the_address_even_after_leaving_every_audience(wh, tmp_path):
    _hold(wh, [1])
    with connect(wh) as con:
        (raw1,) = con.execute("SELECT email FROM customers WHERE customer_id = 1").fetchone()
    _, files = _diff(wh, tmp_path, kind="email")
    assert files[("remove", "left_segment")][0]["send_key"] == normalize_email(raw1)


def test_google_normalization_sends_the_google_key(wh, tmp_path):
    with connect(wh) as con:
        set_audience(con, SEG, [1])
        (raw1,) = con.execute("SELECT email FROM customers WHERE customer_id = 1").fetchone()
    _, files = _diff(wh, tmp_path, normalization="google")
    assert files[("add", None)][0]["send_key"] == google_key(raw1)


@pytest.mark.parametrize(
    "bad",
    [
        {"mode": "replace"},
        {"kind": "sms"},
        {"kind": "ad", "fields": {"EMAIL": "email"}},
        {"kind": "email", "fields": {"FNAME": "first_name; DROP TABLE customers"}},
        {"kind": "email", "fields": {"bad name": "country"}},
    ],
)
def test_parameters_that_could_break_the_sql_are_refused(bad):
    params = {"segment": SEG, "destination": DEST, "mode": "mirror", "kind": "ad", **bad}
    with pytest.raises(ValueError):
        DiffParams(**params)


def test_email_removes_of_every_reason_get_their_address_from_an_audience_or_the_crm(wh, tmp_path):
    # 1 in another segment's audience, 2 only in customers, 3 erased, 4 gone from the warehouse
    _hold(wh, [1, 2, 3, 4])
    with connect(wh) as con:
        set_audience(con, "other", [1])
        raws = dict(con.execute("SELECT customer_id, email FROM customers").fetchall())
        keys = {cid: key_of(con, cid) for cid in (1, 2, 3, 4)}
        con.execute(
            "INSERT INTO privacy_requests (request_id, customer_id, subject_key, request_type, "
            "received_at) VALUES ('r3', 3, NULL, 'erasure', ?)",
            [T0],
        )
        con.execute("DELETE FROM customers WHERE customer_id = 4")
    _, files = _diff(wh, tmp_path, kind="email")
    sent = {
        r["subject_key"]: r["send_key"]
        for group in (("remove", "left_segment"), ("remove", "erasure"))
        for r in files[group]
    }
    assert sent == {
        keys[1]: normalize_email(raws[1]),
        keys[2]: normalize_email(raws[2]),
        keys[3]: normalize_email(raws[3]),
        keys[4]: "",
    }
    assert [r["subject_key"] for r in files[("remove", "erasure")]] == [keys[3]]


@pytest.mark.parametrize("mode", ["upsert", "add_only"])
def test_marketing_opt_outs_and_ties_remove_in_every_mode(wh, tmp_path, mode):
    """A held person who left the segment is removed as a withdrawal when any counted
    (marketing) purpose's latest record is a withdrawal not followed by a grant for the
    segment's purpose, under any spelling of the purpose name, and when a withdrawal ties a
    grant; a later grant for the segment's own purpose keeps them."""
    held = [5, 6, 7, 8, 9]
    _hold(wh, held)
    later = T0 + timedelta(days=1)
    rows = [
        ("a5", 5, "ad_targeting", "withdrawn", T0),  # no email record: removed
        ("a6", 6, "email_marketing", "granted", T0),  # ads opt-out after the grant: removed
        ("b6", 6, "ad_targeting", "withdrawn", later),
        ("a7", 7, "ad_targeting", "withdrawn", T0),  # email granted after it: kept
        ("b7", 7, "email_marketing", "granted", later),
        ("a8", 8, "email_marketing", "granted", T0),  # a variant spelling: removed
        ("b8", 8, " Email-Marketing ", "withdrawn", later),
        ("z9", 9, "email_marketing", "granted", T0),  # tie, the grant has the higher id
        ("a9", 9, "email_marketing", "withdrawn", T0),
    ]
    with connect(wh) as con:
        set_audience(con, SEG, [])
        k = {c: key_of(con, c) for c in held}
        con.executemany("INSERT INTO consents VALUES (?, ?, ?, ?, ?, 'form', 'v1')", rows)
    plan, files = _diff(
        wh, tmp_path, mode=mode, purpose="email_marketing", other_purposes=("ad_targeting",)
    )
    assert sorted(_keys(files, "remove", "consent_withdrawn")) == sorted([k[5], k[6], k[8], k[9]])
    assert plan.counts["kept"] == 1
