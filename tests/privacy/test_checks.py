"""Privacy checks evaluated on the demo warehouse after a normal segment -> audience build: each
passes, and fails on a crafted violation with the right severity and metadata (never an email).

The audiences are built once per module with the product's own compiler and consent filter
(what the Dagster assets run); each test works on its own copy of that warehouse.
"""

import re
import shutil
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import dagster as dg
import duckdb
import pytest

from orchestrator.audience import build_audience
from orchestrator.config import ProjectConfig, load_project_config
from orchestrator.model.views import refresh_source_views
from orchestrator.privacy.checks import (
    BASIS_PROBLEMS,
    acknowledged_count,
    evaluate_consent_proof,
    evaluate_destination_retention,
    evaluate_legal_basis,
    evaluate_no_raw_identifier,
    evaluate_reconciliation,
    evaluate_source_retention,
    evaluate_unregistered_state,
    pipeline_time,
)
from orchestrator.segments.compiler import compile_segment
from orchestrator.segments.loader import LoadedSegment, load_segments
from orchestrator.warehouse.schema import create_activation_schema
from tests.conftest import AS_OF, REPO
from tests.demo_layout import insert_consent, insert_request
from tests.postgres import (
    PASSWORD_ENV,
    clone_database,
    create_database,
    drop_database,
    open_warehouse,
    postgres_copy_of,
    url_without_password,
)
from tests.servers import PostgresServer

ADS_SEGMENT, EMAIL_SEGMENT, SOFT_SEGMENT = "mug_buyers_60d", "recent_buyers_eu", "one_time_buyers"
EMAIL_PATTERN = re.compile(r"[^\s@]+@[^\s@]+\.[a-z]{2,}", re.IGNORECASE)


def project() -> ProjectConfig:
    return load_project_config(REPO / "activation.yaml")


def segments() -> dict[str, LoadedSegment]:
    return load_segments(REPO / "segments", project()).specs


def build_segment(con: duckdb.DuckDBPyConnection, loaded: LoadedSegment, cfg: ProjectConfig):
    """segment -> audience for one segment, as the two assets do."""
    spec = loaded.spec
    query = compile_segment(spec, AS_OF)
    create_activation_schema(con)
    refresh_source_views(con, cfg.source, cfg.purposes)  # as the segment step does first
    con.execute("DELETE FROM activation.segment_members WHERE segment = ?", [spec.id])
    con.execute(
        f"INSERT INTO activation.segment_members SELECT ?, customer_id, ? FROM ({query.sql}) AS q",
        [spec.id, AS_OF, *query.params],
    )
    return build_audience(
        con,
        segment=spec.id,
        purpose=spec.purpose,
        legal_basis=spec.legal_basis,
        purposes=cfg.purposes,
        as_of=AS_OF,
        retention=cfg.retention,
    )


@pytest.fixture(scope="module")
def built_warehouse(tmp_path_factory: pytest.TempPathFactory, demo_warehouse_template) -> Path:
    path = tmp_path_factory.mktemp("checks") / "warehouse.duckdb"
    shutil.copyfile(demo_warehouse_template, path)
    cfg = project()
    con = duckdb.connect(str(path))
    try:
        for loaded in segments().values():
            assert build_segment(con, loaded, cfg).members > 0
    finally:
        con.close()
    return path


@pytest.fixture(scope="module")
def built_postgres(postgres_server: PostgresServer, demo_warehouse_template: Path) -> Iterator[str]:
    """The name of a PostgreSQL database holding the demo's tables with every segment's
    audience built there by the same stages (a template each test copies)."""
    name = create_database(postgres_server)
    cfg = project()
    with pytest.MonkeyPatch.context() as monkeypatch:
        monkeypatch.setenv(PASSWORD_ENV, postgres_server.password)
        con = postgres_copy_of(
            demo_warehouse_template, url_without_password(postgres_server, name), cfg
        )
        try:
            for loaded in segments().values():
                assert build_segment(con, loaded, cfg).members > 0
        finally:
            con.close()
    yield name
    drop_database(postgres_server, name)


@pytest.fixture(params=["duckdb", "postgres"])
def con(
    tmp_path: Path, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> Iterator[duckdb.DuckDBPyConnection]:
    """A private copy of the built warehouse: a DuckDB file, or a PostgreSQL database."""
    if request.param == "postgres":
        server = request.getfixturevalue("postgres_server")
        name = clone_database(server, request.getfixturevalue("built_postgres"))
        monkeypatch.setenv(PASSWORD_ENV, server.password)
        connection = open_warehouse(url_without_password(server, name))
        try:
            yield connection
        finally:
            connection.close()
            drop_database(server, name)
        return
    path = tmp_path / "warehouse.duckdb"
    shutil.copyfile(request.getfixturevalue("built_warehouse"), path)
    connection = duckdb.connect(str(path))
    try:
        yield connection
    finally:
        connection.close()


def legal_basis(con: duckdb.DuckDBPyConnection, sid: str) -> dg.AssetCheckResult:
    spec = segments()[sid].spec
    return evaluate_legal_basis(
        con,
        segment=sid,
        purpose=spec.purpose,
        legal_basis=spec.legal_basis,
        purposes=project().purposes,
    )


def assert_no_email(result: dg.AssetCheckResult) -> None:
    for value in result.metadata.values():
        assert not EMAIL_PATTERN.search(str(getattr(value, "value", value)))


def meta(result: dg.AssetCheckResult, key: str) -> object:
    return result.metadata[key].value


def a_member(con: duckdb.DuckDBPyConnection, sid: str) -> tuple[str, int]:
    return con.execute(
        "SELECT subject_key, customer_id FROM activation.audience_members WHERE segment = ? "
        "ORDER BY subject_key LIMIT 1",
        [sid],
    ).fetchone()


# --- legal_basis_valid ----------------------------------------------------------------------


@pytest.mark.parametrize("sid", sorted(segments()))
def test_legal_basis_holds_for_every_demo_audience(con, sid: str) -> None:
    result = legal_basis(con, sid)
    assert result.passed, result.metadata
    assert meta(result, "members_checked") > 0
    assert meta(result, "members_without_basis") == 0


def test_a_withdrawn_consent_ref_fails_with_error(con) -> None:
    key, _ = a_member(con, ADS_SEGMENT)
    (withdrawn,) = con.execute(
        "SELECT record_id FROM cmp.consent_events WHERE consent_status = 'OPT_OUT' "
        "AND purpose_name = 'personalised_ads' "
        "ORDER BY record_id LIMIT 1"
    ).fetchone()
    # the member now claims a withdrawal record (of someone, for the purpose) as its basis
    con.execute(
        "UPDATE activation.audience_members SET consent_ref = ? "
        "WHERE segment = ? AND subject_key = ?",
        [withdrawn, ADS_SEGMENT, key],
    )
    result = legal_basis(con, ADS_SEGMENT)
    assert not result.passed
    assert result.severity is dg.AssetCheckSeverity.ERROR
    assert meta(result, "members_without_basis") == 1
    problems = {p: meta(result, f"without_basis_{p}") for p in BASIS_PROBLEMS}
    assert sum(problems.values()) == 1
    assert problems["consent_of_another_address"] + problems["consent_not_granted"] == 1
    assert meta(result, "offending_hash_prefixes") == key[:12]
    assert meta(result, "oldest_offending_basis_at") != "none"
    assert_no_email(result)


def test_each_broken_basis_is_named(con) -> None:
    members = con.execute(
        "SELECT subject_key, customer_id, consent_ref FROM activation.audience_members "
        "WHERE segment = ? AND legal_basis = 'consent' ORDER BY subject_key LIMIT 4",
        [EMAIL_SEGMENT],
    ).fetchall()
    (first, _, _), (_, cid2, _), (_, cid3, _), (fourth, _, _) = members
    con.execute(
        "UPDATE activation.audience_members SET consent_ref = 'no-such-consent' "
        "WHERE segment = ? AND subject_key = ?",
        [EMAIL_SEGMENT, first],
    )
    later = AS_OF - timedelta(hours=1)  # a newer granted record without proof supersedes
    insert_consent(con, "zz-newer", cid2, "email_marketing", "granted", later, None, "v")
    insert_request(con, "zz-objection", cid3, "objection", later)
    con.execute(
        "UPDATE cmp.consent_events SET policy_version = ' ' WHERE record_id = ("
        "SELECT consent_ref FROM activation.audience_members WHERE segment = ? "
        "AND subject_key = ?)",
        [EMAIL_SEGMENT, fourth],
    )
    result = legal_basis(con, EMAIL_SEGMENT)
    assert not result.passed and meta(result, "members_without_basis") == 4
    for problem in ("consent_record_missing", "consent_superseded", "objection"):
        assert meta(result, f"without_basis_{problem}") == 1, problem
    assert meta(result, "without_basis_consent_unproven") == 1


def test_soft_opt_in_member_is_reverified(con) -> None:
    key, cid = con.execute(
        "SELECT subject_key, customer_id FROM activation.audience_members "
        "WHERE segment = ? AND legal_basis = 'legitimate_interest' ORDER BY subject_key LIMIT 1",
        [SOFT_SEGMENT],
    ).fetchone()
    assert legal_basis(con, SOFT_SEGMENT).passed
    insert_consent(
        con,
        "zz-withdrawal",
        cid,
        "email_marketing",
        "withdrawn",
        AS_OF - timedelta(minutes=5),
        "unsubscribe_link",
        "v",
    )
    result = legal_basis(con, SOFT_SEGMENT)
    assert not result.passed
    assert meta(result, "without_basis_consent_withdrawn") == 1
    assert meta(result, "offending_hash_prefixes") == key[:12]


def test_soft_opt_in_is_refused_for_a_consent_only_segment(con) -> None:
    key, _ = a_member(con, ADS_SEGMENT)
    (event_id,) = con.execute(
        "SELECT e.event_id FROM activation.src_events e JOIN activation.audience_members m "
        "ON m.customer_id = e.customer_id WHERE m.segment = ? AND m.subject_key = ? "
        "AND e.event_type = 'purchase' LIMIT 1",
        [ADS_SEGMENT, key],
    ).fetchone()
    con.execute(
        "UPDATE activation.audience_members SET consent_ref = ?, legal_basis = "
        "'legitimate_interest' WHERE segment = ? AND subject_key = ?",
        [f"purchase:{event_id}", ADS_SEGMENT, key],
    )
    result = legal_basis(con, ADS_SEGMENT)
    assert not result.passed
    assert meta(result, "without_basis_soft_opt_in_not_allowed") == 1


# --- no_raw_identifier ----------------------------------------------------------------------


def test_ad_keys_are_hashes_and_a_raw_email_fails(con) -> None:
    assert evaluate_no_raw_identifier(con, segment=ADS_SEGMENT).passed
    key, _ = a_member(con, ADS_SEGMENT)
    con.execute(
        "UPDATE activation.audience_members SET google_key = email "
        "WHERE segment = ? AND subject_key = ?",
        [ADS_SEGMENT, key],
    )
    result = evaluate_no_raw_identifier(con, segment=ADS_SEGMENT)
    assert not result.passed and result.severity is dg.AssetCheckSeverity.ERROR
    assert meta(result, "bad_google_key") == 1 and meta(result, "email_like") == 1
    assert meta(result, "bad_subject_key") == 0
    assert meta(result, "offending_hash_prefixes") == key[:12]
    assert_no_email(result)


def test_upper_case_hex_is_not_accepted(con) -> None:
    key, _ = a_member(con, ADS_SEGMENT)
    con.execute(
        "UPDATE activation.audience_members SET subject_key = upper(subject_key) "
        "WHERE segment = ? AND subject_key = ?",
        [ADS_SEGMENT, key],
    )
    result = evaluate_no_raw_identifier(con, segment=ADS_SEGMENT)
    assert not result.passed and meta(result, "bad_subject_key") == 1


# --- consent_proof --------------------------------------------------------------------------


def test_consent_proof_counts_unproven_records_no_member_uses_them(con) -> None:
    result = evaluate_consent_proof(con)
    assert result.passed and result.severity is dg.AssetCheckSeverity.WARN
    # the demo log holds a few grants without source or notice version (2 %)
    missing = meta(result, "records_missing_proof")
    assert missing > 0
    assert meta(result, "missing_source") + meta(result, "missing_notice_version") >= missing
    assert meta(result, "members_on_unproven") == 0
    key, _ = a_member(con, EMAIL_SEGMENT)
    con.execute(
        "UPDATE cmp.consent_events SET collection_point = NULL WHERE record_id = ("
        "SELECT consent_ref FROM "
        "activation.audience_members WHERE segment = ? AND subject_key = ?)",
        [EMAIL_SEGMENT, key],
    )
    result = evaluate_consent_proof(con)
    assert not result.passed and result.severity is dg.AssetCheckSeverity.WARN
    assert meta(result, "members_on_unproven") >= 1
    assert meta(result, "records_missing_proof") == missing + 1


def test_unproven_latest_grant_is_excluded_by_the_audience(con) -> None:
    _, cid = a_member(con, EMAIL_SEGMENT)
    insert_consent(
        con,
        "zz-unproven",
        cid,
        "email_marketing",
        "granted",
        AS_OF - timedelta(minutes=1),
        "checkout_form",
        None,
    )
    build_segment(con, segments()[EMAIL_SEGMENT], project())
    (reason,) = con.execute(
        "SELECT reason FROM activation.audience_exclusions WHERE segment = ? AND customer_id = ?",
        [EMAIL_SEGMENT, cid],
    ).fetchone()
    assert reason == "consent_unproven"
    assert evaluate_consent_proof(con).passed


# --- source_retention -----------------------------------------------------------------------


def test_source_retention_passes_on_demo_and_warns_on_old_subjects(con) -> None:
    cfg = project()
    result = evaluate_source_retention(con, cfg.retention, AS_OF)
    assert result.passed and meta(result, "subjects_past_retention") == 0
    old = AS_OF - timedelta(days=cfg.retention.prospect_days + 30)
    con.execute(
        "INSERT INTO crm.contacts VALUES (990001, 'old@example.com', NULL, 'FR', 'France', ?, "
        "NULL, 'bronze', 0, NULL)",
        [old],
    )
    result = evaluate_source_retention(con, cfg.retention, AS_OF)
    assert not result.passed and result.severity is dg.AssetCheckSeverity.WARN
    assert meta(result, "subjects_past_retention") == 1
    assert meta(result, "prospects_past_retention") == 1
    assert meta(result, "oldest_last_action_at") == old.isoformat()
    assert_no_email(result)


# --- destination_retention ------------------------------------------------------------------


def add_state(con: duckdb.DuckDBPyConnection, sid: str, dest: str, key: str, at) -> None:
    con.execute(
        "INSERT INTO activation.sync_state VALUES (?, ?, ?, NULL, 'h', ?)", [sid, dest, key, at]
    )


def test_departed_member_held_past_retention_fails(con) -> None:
    spec = segments()[SOFT_SEGMENT].spec  # upsert: never removes for leaving
    member, _ = a_member(con, SOFT_SEGMENT)
    gone = "ab" * 32
    add_state(con, SOFT_SEGMENT, "mailchimp", member, AS_OF)
    add_state(con, SOFT_SEGMENT, "mailchimp", gone, AS_OF - timedelta(days=400))
    assert pipeline_time(con, SOFT_SEGMENT) == AS_OF

    def evaluate(now):
        return evaluate_destination_retention(
            con,
            segment=SOFT_SEGMENT,
            destination="mailchimp",
            configured=["mailchimp"],
            retention_days=spec.retention_days,
            now=now,
        )

    first = evaluate(None)  # first seen absent now: the clock starts, nothing overdue
    assert first.passed and meta(first, "departed_members") == 1
    assert meta(first, "overdue_members") == 0
    just_before = evaluate(AS_OF + timedelta(days=spec.retention_days, seconds=-1))
    assert just_before.passed
    late = evaluate(AS_OF + timedelta(days=spec.retention_days))
    assert not late.passed and late.severity is dg.AssetCheckSeverity.ERROR
    assert meta(late, "overdue_members") == 1
    assert meta(late, "oldest_departure_at") == AS_OF.isoformat()
    con.execute("DELETE FROM activation.sync_state WHERE subject_key = ?", [gone])
    assert evaluate(AS_OF + timedelta(days=999)).passed  # removed from the destination


def test_member_back_in_the_audience_resets_departure(con) -> None:
    member, _ = a_member(con, SOFT_SEGMENT)
    add_state(con, SOFT_SEGMENT, "mailchimp", member, AS_OF)
    row = con.execute(
        "SELECT * FROM activation.audience_members WHERE segment = ? AND subject_key = ?",
        [SOFT_SEGMENT, member],
    ).fetchone()
    con.execute("DELETE FROM activation.audience_members WHERE subject_key = ?", [member])
    kwargs = {
        "segment": SOFT_SEGMENT,
        "destination": "mailchimp",
        "configured": ["mailchimp"],
        "retention_days": 90,
    }
    assert meta(evaluate_destination_retention(con, now=AS_OF, **kwargs), "departed_members") == 1
    con.execute("INSERT INTO activation.audience_members VALUES (?, ?, ?, ?, ?, ?, ?, ?)", row)
    back = evaluate_destination_retention(con, now=AS_OF + timedelta(days=200), **kwargs)
    assert back.passed and meta(back, "departed_members") == 0


def test_state_for_a_destination_no_longer_listed_fails(con) -> None:
    member, _ = a_member(con, EMAIL_SEGMENT)
    add_state(con, EMAIL_SEGMENT, "old_platform", member, AS_OF)
    result = evaluate_destination_retention(
        con,
        segment=EMAIL_SEGMENT,
        destination="mailchimp",
        configured=["mailchimp"],
        retention_days=30,
    )
    assert not result.passed and meta(result, "orphan_state_rows") == 1


def test_state_of_an_unregistered_segment_fails(con) -> None:
    pairs = [(sid, e.destination) for sid, s in segments().items() for e in s.spec.destinations]
    add_state(con, EMAIL_SEGMENT, "mailchimp", "cd" * 32, AS_OF)
    assert evaluate_unregistered_state(con, pairs).passed
    add_state(con, "deleted_segment", "mailchimp", "cd" * 32, AS_OF - timedelta(days=3))
    result = evaluate_unregistered_state(con, pairs)
    assert not result.passed and result.severity is dg.AssetCheckSeverity.ERROR
    assert meta(result, "unregistered_rows") == 1
    assert meta(result, "oldest_synced_at") == (AS_OF - timedelta(days=3)).isoformat()


# --- reconciliation -------------------------------------------------------------------------


def test_reconciliation_counts_acknowledged_rows_only(con) -> None:
    add_state(con, EMAIL_SEGMENT, "mailchimp", "ef" * 32, AS_OF)
    con.execute(
        "INSERT INTO activation.sync_state VALUES (?, 'mailchimp', ?, NULL, 'pending', ?)",
        [EMAIL_SEGMENT, "01" * 32, AS_OF],
    )
    state = acknowledged_count(con, segment=EMAIL_SEGMENT, destination="mailchimp")
    assert state == 1
    assert evaluate_reconciliation(state, 1, audience_id="a").passed
    gap = evaluate_reconciliation(state, 3, audience_id="a")
    assert not gap.passed and gap.severity is dg.AssetCheckSeverity.WARN
    assert meta(gap, "difference") == 2
    unknown = evaluate_reconciliation(state, None, audience_id="a")
    assert unknown.passed and meta(unknown, "reconciled") is False


# --- in Dagster: the blocking check stops one segment's syncs, not the others ----------------


def _ops_config(keys: list[dg.AssetKey]) -> dict:
    return {"ops": {"__".join(k.path): {"config": {"as_of": AS_OF.isoformat()}} for k in keys}}


def _evaluations(result) -> dict[tuple[str, str], object]:
    return {
        (e.asset_key.to_user_string(), e.check_name): e
        for e in result.get_asset_check_evaluations()
    }


def test_blocking_legal_basis_check_stops_only_the_corrupted_segments_sync(
    project_env, mock_destinations, monkeypatch: pytest.MonkeyPatch
) -> None:
    from destinations.resources import DestinationsResource
    from orchestrator.assets import audience_key, segment_key, sync_key
    from orchestrator.definitions import build_definitions
    from orchestrator.settings import Settings

    mock = mock_destinations
    for name, value in {
        "META_BASE_URL": mock.meta_url,
        "META_ACCESS_TOKEN": mock.meta_token,
        "MAILCHIMP_BASE_URL": mock.mailchimp_url,
        "MAILCHIMP_API_KEY": mock.mailchimp_token,
    }.items():
        monkeypatch.setenv(name, value)
    settings = Settings.from_env()
    bad, good = ADS_SEGMENT, EMAIL_SEGMENT
    bad_sync, good_sync = sync_key(bad, "meta_ads"), sync_key(good, "mailchimp")
    upstream = [segment_key(bad), audience_key(bad), segment_key(good), audience_key(good)]
    build = dg.define_asset_job("build_audiences", selection=dg.AssetSelection.assets(*upstream))
    send = dg.define_asset_job(
        "checks_then_sync",
        selection=dg.AssetSelection.checks_for_assets(audience_key(bad), audience_key(good))
        | dg.AssetSelection.assets(bad_sync, good_sync),
    )
    defs = dg.Definitions.merge(
        build_definitions(settings, project()), dg.Definitions(jobs=[build, send])
    )
    with dg.DagsterInstance.get() as instance:
        first = defs.resolve_job_def("build_audiences").execute_in_process(
            run_config=_ops_config([segment_key(bad), segment_key(good)]), instance=instance
        )
        assert first.success
        passed = _evaluations(first)
        assert passed[(f"audience/{bad}", "legal_basis_valid")].passed
        assert passed[(f"audience/{bad}", "no_raw_identifier")].passed

        with duckdb.connect(str(settings.warehouse_path)) as con:  # corrupt one member
            key, cid = a_member(con, bad)
            insert_consent(
                con,
                "zz-withdrawn",
                cid,
                "ad_targeting",
                "withdrawn",
                AS_OF - timedelta(hours=2),
                "cookie_banner",
                "v",
            )
            con.execute(
                "UPDATE activation.audience_members SET consent_ref = 'zz-withdrawn' "
                "WHERE segment = ? AND subject_key = ?",
                [bad, key],
            )
            (good_members,) = con.execute(
                "SELECT count(*) FROM activation.audience_members WHERE segment = ?", [good]
            ).fetchone()

        second = defs.resolve_job_def("checks_then_sync").execute_in_process(
            run_config=_ops_config([bad_sync, good_sync]), instance=instance, raise_on_error=False
        )
    assert not second.success
    checks = _evaluations(second)
    failed = checks[(f"audience/{bad}", "legal_basis_valid")]
    assert not failed.passed and failed.severity is dg.AssetCheckSeverity.ERROR
    assert failed.metadata["members_without_basis"].value == 1
    assert failed.metadata["without_basis_consent_not_granted"].value == 1
    assert checks[(f"audience/{good}", "legal_basis_valid")].passed
    materialized = {e.asset_key for e in second.get_asset_materialization_events()}
    assert materialized == {good_sync}
    bad_audience_id = segments()[bad].spec.destinations[0].audience_id
    assert not [r for r in mock.requests_log("meta") if bad_audience_id in r["path"]]
    assert mock.meta_members(bad_audience_id) == []
    good_audience_id = segments()[good].spec.destinations[0].audience_id
    members = mock.mailchimp_members(good_audience_id)
    assert len(members) == good_members > 0
    for name in ("destination_retention", "reconciliation"):
        assert checks[(good_sync.to_user_string(), name)].passed, name
    assert (
        checks[(good_sync.to_user_string(), "reconciliation")].metadata["destination_count"].value
        == good_members
    )

    # a contact added at the platform behind our back: reconciliation warns
    mock.seed(
        "mailchimp",
        {
            "list_id": good_audience_id,
            "members": [{"email_address": "stray@example.com", "status": "subscribed"}],
        },
    )
    client = DestinationsResource(config_path=str(settings.config_path)).client("mailchimp")
    try:
        with duckdb.connect(str(settings.warehouse_path)) as con:
            state = acknowledged_count(con, segment=good, destination="mailchimp")
        gap = evaluate_reconciliation(
            state, client.member_count(good_audience_id), audience_id=good_audience_id
        )
    finally:
        client.close()
    assert not gap.passed and gap.metadata["difference"].value == 1


def _suppress(con: duckdb.DuckDBPyConnection, key: str, at) -> None:
    con.execute(
        "INSERT INTO activation.suppression_list VALUES (?, NULL, 'objection', ?)", [key, at]
    )


def test_a_suppression_known_at_evaluation_fails_with_error(con) -> None:
    key, _ = a_member(con, EMAIL_SEGMENT)
    _suppress(con, key, AS_OF - timedelta(minutes=1))
    result = legal_basis(con, EMAIL_SEGMENT)
    assert not result.passed
    assert result.severity == dg.AssetCheckSeverity.ERROR
    assert meta(result, "without_basis_suppressed") == 1
    assert_no_email(result)


@pytest.mark.parametrize("mode", ["mirror", "upsert", "add_only"])
def test_an_objection_recorded_after_evaluation_is_kept_out_by_the_sync(
    con, tmp_path: Path, mode: str
) -> None:
    """An objection recorded while a run is under way (after the audience step) does not make
    the audience wrong, so the blocking check passes; the sync itself leaves the person out
    (not added) or takes them out (held: removed as an objection) in every mode."""
    from orchestrator.sync.diff import DiffParams, compute_diff

    spec = segments()[EMAIL_SEGMENT].spec
    entry = spec.destinations[0]
    held, _ = a_member(con, EMAIL_SEGMENT)
    fresh = con.execute(
        "SELECT subject_key FROM activation.audience_members WHERE segment = ? "
        "ORDER BY subject_key DESC LIMIT 1",
        [EMAIL_SEGMENT],
    ).fetchone()[0]
    con.execute(
        "INSERT INTO activation.sync_state VALUES (?, ?, ?, NULL, 'old-hash', ?)",
        [EMAIL_SEGMENT, entry.destination, held, AS_OF],
    )
    for key in (held, fresh):
        _suppress(con, key, AS_OF + timedelta(minutes=5))
    assert legal_basis(con, EMAIL_SEGMENT).passed
    params = DiffParams(
        EMAIL_SEGMENT, entry.destination, mode, "email", "base", dict(entry.fields),
        spec.purpose, spec.retention_days, AS_OF,
    )  # fmt: skip
    plan = compute_diff(con, params, tmp_path)
    adds = con.execute("SELECT subject_key FROM sync_diff WHERE action = 'add'").fetchall()
    assert (fresh,) not in adds and (held,) not in adds
    assert plan.removes_by_reason["objection"] == 1
    removed = con.execute(
        "SELECT subject_key FROM sync_remove_reasons WHERE reason = 'objection'"
    ).fetchall()
    assert removed == [(held,)]
