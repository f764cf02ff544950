"""A segment synced to Google and Meta through the real Dagster job, with phone numbers and
consent signals; then a withdrawal and an erasure.

The project is the repository's, plus a ``google_ads`` destination and an
``ad_personalization`` purpose that grants Google's ``ad_personalization`` signal; the demo
warehouse gets a ``phone`` column (valid, invalid and missing numbers). What each platform holds
is read through the mock's control API and compared with values computed here from the Python
references (:mod:`orchestrator.pseudonymize`, :mod:`orchestrator.phone`).
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import dagster as dg
import duckdb
import pytest
import yaml

from orchestrator.phone import google_phone_hash, meta_phone_hash
from orchestrator.pseudonymize import google_key
from tests.conftest import AS_OF, REPO
from tests.demo_layout import emails as demo_emails
from tests.demo_layout import insert_consent, insert_request
from tests.e2e_harness import E2EProject, _definitions_module, e2e_project, run_assets

SID = "mug_buyers_60d"
GOOGLE_AUDIENCE, META_AUDIENCE = "5550001", "120210000000777"
GRANTED, DENIED = "CONSENT_GRANTED", "CONSENT_DENIED"


def _project_files(root: Path) -> tuple[Path, Path]:
    config = yaml.safe_load((REPO / "activation.yaml").read_text())
    config["purposes"]["ad_personalization"] = {
        "description": "Personalized ads (Google's ad_personalization consent signal)",
        "consent_validity_days": 395,
        "legal_bases": ["consent"],
    }
    config["purposes"]["ad_targeting"]["consent_signals"] = {
        "google": {"ad_user_data": "ad_targeting", "ad_personalization": "ad_personalization"}
    }
    config["destinations"]["google_ads"] = {
        "platform": "google",
        "kind": "ad",
        "purposes": ["ad_targeting"],
        "country": "US",
        "transfer_safeguard": "EU-US Data Privacy Framework (adequacy decision of 10 July 2023)",
        "base_url_env": "GOOGLE_BASE_URL",
        "token_env": "GOOGLE_ACCESS_TOKEN",
        "account_id": "1234567890",
    }
    # the CRM's phone column added by _prepare_warehouse is a trait of crm.contacts (the
    # model takes every column but phone_number)
    config_path = root / "activation.yaml"
    config_path.write_text(yaml.safe_dump(config))
    segments = root / "segments"
    segments.mkdir()
    spec = yaml.safe_load((REPO / "segments" / f"{SID}.yaml").read_text())
    spec["destinations"] = [
        {"destination": "google_ads", "audience_id": GOOGLE_AUDIENCE, "mode": "mirror"},
        {"destination": "meta_ads", "audience_id": META_AUDIENCE, "mode": "mirror"},
    ]
    (segments / f"{SID}.yaml").write_text(yaml.safe_dump(spec))
    return config_path, segments


@pytest.fixture(scope="module")
def project(tmp_path_factory, demo_warehouse_template: Path) -> Iterator[E2EProject]:
    root = tmp_path_factory.mktemp("google_e2e")
    config_path, segments = _project_files(root)
    with e2e_project(root, demo_warehouse_template) as p, pytest.MonkeyPatch.context() as patch:
        patch.setenv("ACTIVATION_CONFIG", str(config_path))
        patch.setenv("ACTIVATION_SEGMENTS_DIR", str(segments))
        patch.setenv("GOOGLE_BASE_URL", p.mock.google_url)
        patch.setenv("GOOGLE_ACCESS_TOKEN", p.mock.google_token)
        yield p


def _keys() -> list[dg.AssetKey]:
    return [
        dg.AssetKey(["segment", SID]),
        dg.AssetKey(["audience", SID]),
        dg.AssetKey(["sync", SID, "google_ads"]),
        dg.AssetKey(["sync", SID, "meta_ads"]),
    ]


def _members(wh: Path) -> list[tuple]:
    con = duckdb.connect(str(wh))
    try:
        return con.execute(
            """
            SELECT am.customer_id, am.subject_key, am.google_key, c.phone, c.country,
                   EXISTS (SELECT 1 FROM activation.src_consents k
                           WHERE k.customer_id = am.customer_id
                           AND k.purpose = 'ad_personalization') AS personalized
            FROM activation.audience_members am
            JOIN activation.src_customers c USING (customer_id)
            WHERE am.segment = ? ORDER BY am.customer_id
            """,
            [SID],
        ).fetchall()
    finally:
        con.close()


def _prepare_warehouse(wh: Path) -> None:
    """A phone column (every third member a valid number, every fifth an invalid one) and an
    ``ad_personalization`` grant for every other customer."""
    con = duckdb.connect(str(wh))
    try:
        con.execute("ALTER TABLE crm.contacts ADD COLUMN phone VARCHAR")
        con.execute(
            "UPDATE crm.contacts SET phone = CASE WHEN contact_id % 5 = 0 THEN '0612' "
            "WHEN contact_id % 3 = 0 THEN '+33 6 ' || lpad(CAST(contact_id AS VARCHAR), 8, '0') "
            "END"
        )
        con.execute(
            "INSERT INTO cmp.consent_events SELECT 'adp-' || contact_id, contact_id, "
            "'ad_personalization', 'OPT_IN', ?, 'preference_center', 'v1' FROM crm.contacts "
            "WHERE contact_id % 2 = 0",
            [AS_OF - timedelta(days=3)],
        )
    finally:
        con.close()


def _expected_google(members: list[tuple]) -> list[dict]:
    out = []
    for _cid, _subject, gkey, phone, country, personalized in members:
        ids = [gkey] + ([h] if (h := google_phone_hash(phone, country)) else [])
        consent = {"adUserData": GRANTED, "adPersonalization": GRANTED if personalized else DENIED}
        # no consent fields for a known country outside the EEA, UK and Switzerland
        out.append({"identifiers": sorted(ids), "consent": consent if _eea(country) else {}})
    return sorted(out, key=lambda m: m["identifiers"][0])


EEA = "AT BE BG HR CY CZ DK EE FI FR DE GR HU IE IT LV LT LU MT NL PL PT RO SK SI ES SE IS LI NO"


def _eea(country: str | None) -> bool:
    """Consent signals are sent: EEA, UK, Switzerland, or an unknown country."""
    return country is None or country in [*EEA.split(), "GB", "CH"] or len(country) != 2


def _mark_eea_users(project: E2EProject) -> int:
    """Tell the mock which customers are in the EEA: it then refuses their upload without
    both consent signals, as Google's EU user consent policy requires."""
    con = duckdb.connect(str(project.warehouse))
    try:
        emails = con.execute(
            "SELECT email_address FROM crm.contacts WHERE email_address IS NOT NULL "
            "AND list_contains(?, country)",
            [EEA.split()],
        ).fetchall()
    finally:
        con.close()
    project.mock.google_eea_users([google_key(e) for (e,) in emails])
    return len(emails)


def _assert_explain_shows_the_signals(project: E2EProject, members: list[tuple]) -> None:
    """``activation explain`` says which consent record decided each signal sent."""
    from orchestrator.config import load_project_config
    from orchestrator.privacy.explain import explain, format_explanation
    from orchestrator.segments.loader import load_segments
    from orchestrator.settings import Settings

    settings = Settings.from_env()
    config = load_project_config(settings.config_path)
    specs = load_segments(settings.segments_dir, config).specs
    con = duckdb.connect(str(project.warehouse), read_only=True)
    emails = dict(demo_emails(con))
    con.close()
    for cid, *_rest, personalized in members[:4]:
        text = format_explanation(
            explain(project.warehouse, emails[cid], SID, config, specs, AS_OF)
        )
        value = GRANTED if personalized else DENIED
        assert f"consent signal ad_personalization={value} (" in text
        assert f"adp-{cid} granted" in text if personalized else "no consent record" in text
        assert "consent signal ad_user_data=CONSENT_GRANTED (" in text
        assert "@" not in text


def _assert_preview_sends_nothing(project: E2EProject) -> None:
    """The dry run computes the same rows (signals, phones) as the sync: nothing to send."""
    from orchestrator.cli.preview import preview_segment
    from orchestrator.config import load_project_config
    from orchestrator.segments.loader import load_segments
    from orchestrator.settings import Settings

    settings = Settings.from_env()
    config = load_project_config(settings.config_path)
    loaded = load_segments(settings.segments_dir, config).specs[SID]
    preview = preview_segment(project.warehouse, project.state_dir, loaded, config, AS_OF)
    for dest in preview.destinations:
        assert (dest.adds, dest.updates, dest.removes) == (0, 0, 0), dest


def test_segment_to_google_and_meta_then_withdrawal_and_erasure(project: E2EProject) -> None:
    _prepare_warehouse(project.warehouse)
    assert _mark_eea_users(project) > 0
    first = run_assets(project.warehouse, AS_OF, selection=_keys())
    assert first.success, first.failed
    members = _members(project.warehouse)
    assert len(members) >= 6
    mock = project.mock
    # Google: email + phone identifiers, both consent signals, personalization only when granted
    held = mock.google_members(GOOGLE_AUDIENCE)
    assert held == _expected_google(members)
    assert any(m["consent"]["adPersonalization"] == DENIED for m in held)
    assert any(len(m["identifiers"]) == 2 for m in held)
    # Meta: email hashes held, phone hashes sent in the multi-key payload without the plus
    assert mock.meta_members(META_AUDIENCE) == sorted(m[1] for m in members)
    sent = {v for r in mock.requests_log("meta") for v in r["values"]}
    phones = {meta_phone_hash(m[3], m[4]) for m in members} - {None}
    assert phones and phones <= sent
    assert mock.violations("google")["raw_identifier"] == 0
    assert mock.violations("meta")["raw_identifier"] == 0
    _assert_explain_shows_the_signals(project, members)
    reconciliation = f"sync/{SID}/google_ads:reconciliation"
    assert first.checks[reconciliation] is True  # Google's count equals what we acknowledged
    _assert_preview_sends_nothing(project)

    # a withdrawal removes the member from both platforms, with the phone it was added with
    leaving = next(m for m in members if google_phone_hash(m[3], m[4]))
    con = duckdb.connect(str(project.warehouse))
    insert_consent(con, "w-1", leaving[0], "ad_targeting", "withdrawn", AS_OF - timedelta(hours=1))
    con.close()
    second = run_assets(project.warehouse, AS_OF, selection=_keys())
    assert second.success, second.failed
    google_held = [m["identifiers"] for m in mock.google_members(GOOGLE_AUDIENCE)]
    assert all(leaving[2] not in ids for ids in google_held)
    assert len(google_held) == len(members) - 1
    assert leaving[1] not in mock.meta_members(META_AUDIENCE)
    removes = [r for r in mock.requests_log("google") if r["path"].endswith(":remove")]
    assert removes and google_phone_hash(leaving[3], leaving[4]) in removes[-1]["values"]

    # an erasure reaches Google with a receipt
    erased = next(m for m in members if m[0] != leaving[0])
    con = duckdb.connect(str(project.warehouse))
    insert_request(con, "req-g1", erased[0], "erasure", AS_OF - timedelta(minutes=5))
    con.close()
    module = _definitions_module(project.warehouse)
    with dg.DagsterInstance.get() as instance:
        job = module.defs.resolve_job_def("privacy_requests_job")
        assert job.execute_in_process(instance=instance).success
    assert all(erased[2] not in m["identifiers"] for m in mock.google_members(GOOGLE_AUDIENCE))
    con = duckdb.connect(str(project.warehouse))
    receipts = con.execute(
        "SELECT destination, action, outcome FROM activation.erasure_receipts "
        "WHERE request_id = 'req-g1' ORDER BY destination"
    ).fetchall()
    con.close()
    assert ("google_ads", "remove", "ok") in receipts


def test_register_lists_the_consent_signals_sent_to_each_recipient(tmp_path: Path) -> None:
    from orchestrator.config import load_project_config
    from orchestrator.privacy.register import register_activities
    from orchestrator.segments.loader import load_segments

    config_path, segments = _project_files(tmp_path)
    project = load_project_config(config_path)
    loaded = load_segments(segments, project)
    (activity,) = register_activities(project, loaded.specs)
    google = next(r for r in activity.recipients if r.startswith("google_ads"))
    meta = next(r for r in activity.recipients if r.startswith("meta_ads"))
    assert "consent signals sent: ad_personalization (granted by a valid consent for " in google
    assert "ad_user_data (granted by a valid consent for ad_targeting, else denied)" in google
    assert "to members of the EEA, the UK, Switzerland or an unknown country" in google
    assert "consent signals" not in meta
