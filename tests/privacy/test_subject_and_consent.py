"""Who the data subject is and which consent decides, end to end through the real Definitions,
the real job and the mock platforms.

- One mailbox is one subject (C5): an internationalized domain in Unicode and in punycode,
  full-width letters, a pre-hashed CRM row: one member, one key sent, one erasure for all.
- Consent per address: a withdrawal on any customer row of the address (a pre-hashed one too)
  newer than the grant keeps the address out.
- Ties (P2): a withdrawal recorded at the same instant as a grant wins, whatever the ids.
- Purposes bound (P1, audience side): the case's own project (purpose ``service``, legitimate
  interest, ``mailchimp`` serving ``[email_marketing, service]``): a person who opted out of any
  marketing purpose, under any spelling of its name, is not mailed.
"""

from __future__ import annotations

import hashlib
from datetime import datetime, timedelta
from pathlib import Path

import dagster as dg
import duckdb
import pytest
import yaml

from orchestrator.assets import segment_key, sync_key
from orchestrator.definitions import ALL_SEGMENTS_JOB
from orchestrator.privacy.requests import record_request
from orchestrator.settings import Settings
from orchestrator.warehouse.schema import create_activation_schema, create_source_schema
from tests.privacy.helpers import REPO, load_defs
from tests.source_layout import repo_config, write_layout_config

AS_OF = datetime(2026, 11, 29, 6, 0, 0)
BEFORE = AS_OF - timedelta(days=10)
ADS, MAIL, SERVICE = "ads_people", "mail_people", "service_buyers"
META_AUD, LIST, SERVICE_LIST = "120210000000951", "subjectlist01", "servicelist01"
IDN = "user@xn--exmple-cua.com"
#: customer id -> email as the CRM holds it
CUSTOMERS = {
    1: "user@ex\u00e4mple.com",  # one mailbox ...
    2: "USER@XN--EXMPLE-CUA.COM",  # ... two spellings (C5)
    3: "\uff46\uff55\uff4c\uff4c@example.com",  # full-width: full@example.com ...
    4: "Full@Example.com",  # ... the same mailbox
    5: "tie@example.com",  # grant and withdrawal at the same instant (P2)
    6: "owner@example.net",  # withdrawn on another row of the address:
    7: hashlib.sha256(b"owner@example.net").hexdigest(),  # a pre-hashed CRM row
    8: "idn-erase@b\u00fccher.example",  # erased later, named by the punycode spelling
    9: "later-tie@example.com",  # a tie recorded after the first run (P2 variant)
    20: "buyer-ok@example.com",  # service: soft opt-in, no opt-out: mailed
    21: "buyer-optout@example.com",  # service: withdrew email marketing (P1)
    22: "buyer-variant@example.com",  # service: withdrew under 'Email-Marketing' (P1 variant)
    23: "buyer-ads-optout@example.com",  # service: withdrew ad targeting (P1 variant)
}
GRANTED = (1, 2, 3, 4, 6, 8, 9)


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def write_config(path: Path) -> Path:
    """The P1 case's project: purpose ``service`` (legitimate interest, ``marketing`` left to
    its default) that ``mailchimp`` serves beside ``email_marketing``."""
    data = repo_config()  # the hand-built layout's model
    data["purposes"]["service"] = {
        "description": "Order and account messages",
        "consent_validity_days": 365,
        "legal_bases": ["legitimate_interest"],
    }
    data["destinations"]["mailchimp"]["purposes"] = ["email_marketing", "service"]
    return write_layout_config(path, data)


def _segment(name: str, purpose: str, basis: str, ids: list[int], destination: dict) -> str:
    return yaml.safe_dump(
        {
            "name": name,
            "description": f"subject test segment {name}",
            "owner": "privacy-team@example.com",
            "purpose": purpose,
            "legal_basis": basis,
            "retention_days": 30,
            "schedule": "0 6 * * *",
            "sql": "SELECT customer_id FROM customers WHERE customer_id IN "
            f"({', '.join(map(str, ids))})",
            "destinations": [destination],
        }
    )


def write_segments(folder: Path) -> Path:
    folder.mkdir()
    people = [cid for cid in CUSTOMERS if cid < 20]
    buyers = [cid for cid in CUSTOMERS if cid >= 20]
    meta = {"destination": "meta_ads", "audience_id": META_AUD, "mode": "mirror"}
    mail = {"destination": "mailchimp", "audience_id": LIST, "mode": "mirror"}
    service = {"destination": "mailchimp", "audience_id": SERVICE_LIST, "mode": "mirror"}
    (folder / f"{ADS}.yaml").write_text(_segment(ADS, "ad_targeting", "consent", people, meta))
    (folder / f"{MAIL}.yaml").write_text(_segment(MAIL, "email_marketing", "consent", people, mail))
    (folder / f"{SERVICE}.yaml").write_text(
        _segment(SERVICE, "service", "legitimate_interest", buyers, service)
    )
    return folder


def consent(
    con: duckdb.DuckDBPyConnection,
    consent_id: str,
    cid: int,
    purpose: str,
    status: str,
    at: datetime,
) -> None:
    con.execute(
        "INSERT INTO consents VALUES (?, ?, ?, ?, ?, 'signup_form', 'v3')",
        [consent_id, cid, purpose, status, at],
    )


def write_warehouse(path: Path) -> None:
    con = duckdb.connect(str(path))
    try:
        create_source_schema(con)
        create_activation_schema(con)
        for cid, email in CUSTOMERS.items():
            con.execute(
                "INSERT INTO customers VALUES (?, ?, 'FR', 'France', ?, ?)",
                [cid, email, BEFORE, BEFORE],
            )
        for cid in GRANTED:
            for purpose in ("email_marketing", "ad_targeting"):
                consent(con, f"c-{cid}-{purpose}", cid, purpose, "granted", BEFORE)
        for purpose in ("email_marketing", "ad_targeting"):
            # the grant has the higher id: ordering by id alone would keep customer 5 in
            consent(con, f"c-5-{purpose}-z", 5, purpose, "granted", BEFORE)
            consent(con, f"c-5-{purpose}-a", 5, purpose, "withdrawn", BEFORE)
            consent(con, f"c-7-{purpose}", 7, purpose, "withdrawn", BEFORE + timedelta(days=1))
        for cid in (20, 21, 22, 23):
            con.execute(
                "INSERT INTO events VALUES (?, ?, 'purchase', ?, 'inv', 'sku', 'mug', 1, 9.5, 9.5)",
                [f"e-{cid}", cid, BEFORE],
            )
        consent(con, "c-21-w", 21, "email_marketing", "withdrawn", BEFORE)
        consent(con, "c-22-w", 22, "Email-Marketing", "withdrawn", BEFORE)
        consent(con, "c-23-w", 23, "ad_targeting", "withdrawn", BEFORE)
    finally:
        con.close()


@pytest.fixture
def project(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, dagster_home: Path, mock_destinations
) -> tuple[Settings, object]:
    mock = mock_destinations
    env = {
        "ACTIVATION_PROJECT_DIR": str(REPO),
        "ACTIVATION_WAREHOUSE": str(tmp_path / "warehouse.duckdb"),
        "ACTIVATION_STATE_DIR": str(tmp_path / "state"),
        "ACTIVATION_SEGMENTS_DIR": str(write_segments(tmp_path / "segments")),
        "ACTIVATION_CONFIG": str(write_config(tmp_path / "activation.yaml")),
        "DAGSTER_HOME": str(dagster_home),
        "META_BASE_URL": mock.meta_url,
        "META_ACCESS_TOKEN": mock.meta_token,
        "MAILCHIMP_BASE_URL": mock.mailchimp_url,
        "MAILCHIMP_API_KEY": mock.mailchimp_token,
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    write_warehouse(tmp_path / "warehouse.duckdb")
    return Settings.from_env(), mock


def run(as_of: datetime = AS_OF) -> dg.ExecuteInProcessResult:
    pairs = {ADS: "meta_ads", MAIL: "mailchimp", SERVICE: "mailchimp"}
    keys = [k for sid, d in pairs.items() for k in (segment_key(sid), sync_key(sid, d))]
    config = {"config": {"as_of": as_of.isoformat()}}
    run_config = {"ops": {key.to_python_identifier(): config for key in keys}}
    with dg.DagsterInstance.get() as instance:
        result = (
            load_defs()
            .resolve_job_def(ALL_SEGMENTS_JOB)
            .execute_in_process(run_config=run_config, instance=instance)
        )
    assert result.success
    return result


def subscribed(mock, list_id: str) -> set[str]:
    return {m["email_address"] for m in mock.mailchimp_members(list_id)
            if m["status"] == "subscribed"}  # fmt: skip


def test_one_mailbox_is_one_subject_everywhere(project) -> None:
    """C5: two spellings of an internationalized domain (and full-width letters) are one
    member, sent once under one key; a pre-hashed row of an address is that person: its
    withdrawal keeps the address out, and it is never sent itself; P2: a withdrawal at the
    same instant as a grant wins."""
    _, mock = project
    run()
    expected = {IDN, "full@example.com", "idn-erase@xn--bcher-kva.example",
                "later-tie@example.com"}  # fmt: skip
    assert set(mock.meta_members(META_AUD)) == {sha(email) for email in expected}
    assert subscribed(mock, LIST) == expected
    assert mock.violations("meta") == {} or not any(mock.violations("meta").values())


def test_an_erasure_named_by_another_spelling_removes_the_person(project) -> None:
    """C5 variant: the customer row spells the domain in Unicode, the request in punycode."""
    settings, mock = project
    run()
    held, listed = set(mock.meta_members(META_AUD)), subscribed(mock, LIST)
    record_request(settings.warehouse_path, "IDN-Erase@XN--BCHER-KVA.example", "erasure")
    run(AS_OF + timedelta(hours=1))
    assert len(held - set(mock.meta_members(META_AUD))) == 1  # the person, under one key
    assert set(mock.meta_members(META_AUD)) < held
    still = subscribed(mock, LIST)
    assert still < listed and not any("idn-erase" in email for email in still)


def test_a_tie_recorded_later_removes_the_member(project) -> None:
    """P2 variant: after the first run, a new grant and a withdrawal share one instant."""
    settings, mock = project
    run()
    assert sha("later-tie@example.com") in set(mock.meta_members(META_AUD))
    at = AS_OF + timedelta(minutes=30)
    con = duckdb.connect(str(settings.warehouse_path))
    try:
        for purpose in ("email_marketing", "ad_targeting"):
            consent(con, f"c-9-{purpose}-zz", 9, purpose, "granted", at)
            consent(con, f"c-9-{purpose}-aa", 9, purpose, "withdrawn", at)
    finally:
        con.close()
    run(AS_OF + timedelta(hours=1))
    assert sha("later-tie@example.com") not in set(mock.meta_members(META_AUD))
    assert "later-tie@example.com" not in subscribed(mock, LIST)


def test_a_marketing_opt_out_keeps_a_person_off_a_list_of_another_purpose(project) -> None:
    """P1, audience side: the service segment mails buyers by legitimate interest; a buyer who
    withdrew email marketing, withdrew it under a variant spelling, or withdrew ad targeting
    is not mailed. The unmatched spelling is reported on the audience."""
    _, mock = project
    result = run()
    assert subscribed(mock, SERVICE_LIST) == {"buyer-ok@example.com"}
    metadata = {
        event.asset_key.to_user_string(): event.step_materialization_data.materialization.metadata
        for event in result.get_asset_materialization_events()
    }
    audience = metadata[f"audience/{SERVICE}"]
    assert audience["excluded_withdrawn"].value == 3
    assert audience["consent_purposes_unmatched"].value == 1
    assert "'Email-Marketing': variant of 'email_marketing'" in (
        audience["consent_purposes_unmatched_detail"].value
    )
