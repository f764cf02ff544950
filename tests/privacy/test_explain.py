"""Explain one person: conditions one by one, the consent that allowed them or the exclusion
that applied, what the destination holds; never the address itself."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from orchestrator.audience import build_audience
from orchestrator.config import ProjectConfig
from orchestrator.privacy.explain import explain, format_explanation
from orchestrator.pseudonymize import subject_key
from orchestrator.segments.compiler import compile_segment
from orchestrator.segments.loader import load_segment_text
from orchestrator.segments.spec import SegmentSpec
from orchestrator.sync.diff import PENDING_HASH
from orchestrator.warehouse.target import Warehouse
from tests.privacy.conftest import BACKENDS, privacy_warehouse
from tests.privacy.helpers import AS_OF, ERIN, opened
from tests.source_layout import layout_project

SEGMENT = """
name: fr_recent_buyers
description: French customers who bought in the last 30 days
owner: privacy-team@example.com
purpose: email_marketing
legal_basis: consent
retention_days: 30
schedule: "0 6 * * *"
audience:
  all:
    - trait: country
      in: [FR]
    - event: purchase
      within_days: 30
destinations:
  - destination: mailchimp
    audience_id: explainlist
    mode: mirror
"""
SID = "fr_recent_buyers"


@pytest.fixture(params=BACKENDS)
def setup(
    tmp_path: Path, request: pytest.FixtureRequest
) -> tuple[Warehouse, dict[int, str], ProjectConfig, dict[str, SegmentSpec]]:
    """Erin (1) bought and consents; 2 never bought; 3 bought but withdrew; Erin is held by
    mailchimp, 3 as pending. On DuckDB and on PostgreSQL."""
    project = layout_project(tmp_path)  # the hand-built layout's model
    wh, emails = privacy_warehouse(request.param, tmp_path, request, project)
    spec = load_segment_text(SEGMENT, "fr_recent_buyers.yaml", project)
    with opened(wh) as con:
        for cid in (1, 3):
            con.execute(
                "INSERT INTO events VALUES (?, ?, 'purchase', ?, 'inv', 'sku', 'mug', 1, 5, 5)",
                [f"e{cid}", cid, AS_OF - timedelta(days=5)],
            )
        con.execute(
            "INSERT INTO consents VALUES ('w3', 3, 'email_marketing', 'withdrawn', ?, "
            "'preference_centre', 'v3')",
            [AS_OF - timedelta(days=1)],
        )
        query = compile_segment(spec, AS_OF)
        con.execute(
            f"INSERT INTO activation.segment_members SELECT ?, customer_id, ? FROM ({query.sql})",
            [SID, AS_OF, *query.params],
        )
        build_audience(con, segment=SID, purpose=spec.purpose, legal_basis=spec.legal_basis,
                       purposes=project.purposes, as_of=AS_OF)  # fmt: skip
        con.executemany(
            "INSERT INTO activation.sync_state VALUES (?, 'mailchimp', ?, NULL, ?, ?)",
            [
                [SID, subject_key(ERIN), "h1", AS_OF],
                [SID, subject_key(emails[3]), PENDING_HASH, AS_OF],
            ],
        )
    return wh, emails, project, {SID: spec}


def test_a_member_is_explained_by_conditions_consent_and_destination(setup) -> None:
    wh, _, project, specs = setup
    result = explain(wh, "  erin.tester@GMAIL.com", SID, project, specs, AS_OF)
    assert result["customer_ids"] == [1]
    assert result["in_segment"] and result["in_audience"]
    assert [c["matched"] for c in result["conditions"]] == [True, True]
    assert result["conditions"][0]["condition"] == "country in FR"
    assert result["legal_basis"] == "consent"
    assert result["consent"]["purpose"] == "email_marketing"
    assert result["consent"]["status"] == "granted" and result["consent"]["source"]
    assert result["destinations"] == [
        {
            "destination": "mailchimp",
            "audience_id": "explainlist",
            "held": True,
            "synced_at": AS_OF,
            "pending": False,
            "platform_status": None,
            "refused": [],
        }
    ]
    text = format_explanation(result)
    assert "[x] country in FR" in text and "[x] purchase in the last 30 days" in text
    assert "mailchimp holds this person" in text
    assert "@" not in text and "erin" not in text.lower()
    assert subject_key(ERIN)[:12] in text and subject_key(ERIN) not in text


def test_a_non_member_shows_the_failing_condition(setup) -> None:
    wh, emails, project, specs = setup
    result = explain(wh, emails[2], SID, project, specs, AS_OF)
    assert result["customer_ids"] == [2]
    assert not result["in_segment"] and not result["in_audience"]
    assert [c["matched"] for c in result["conditions"]] == [True, False]
    assert not result["destinations"][0]["held"]
    text = format_explanation(result)
    assert "[ ] purchase in the last 30 days" in text
    assert "@" not in text and emails[2].split("@")[0] not in text


def test_an_excluded_person_shows_the_reason_and_a_pending_send(setup) -> None:
    wh, emails, project, specs = setup
    result = explain(wh, emails[3].upper(), SID, project, specs, AS_OF)
    assert result["in_segment"] and not result["in_audience"]
    assert result["exclusions"] == [{"customer_id": 3, "reason": "withdrawn"}]
    assert result["destinations"][0]["held"] and result["destinations"][0]["pending"]
    text = format_explanation(result)
    assert "customer 3 excluded: withdrawn" in text and "pending" in text
    assert "@" not in text


def test_an_unknown_address_matches_nobody_and_bad_input_is_not_echoed(setup) -> None:
    wh, _, project, specs = setup
    result = explain(wh, "nobody@example.org", SID, project, specs, AS_OF)
    assert result["customer_ids"] == [] and not result["in_segment"]
    assert [c["matched"] for c in result["conditions"]] == [False, False]
    with pytest.raises(ValueError) as bad:
        explain(wh, "nobody-at-example.org", SID, project, specs, AS_OF)
    assert "nobody" not in str(bad.value)
    with pytest.raises(KeyError):
        explain(wh, ERIN, "no_such_segment", project, specs, AS_OF)


def test_a_person_the_platform_keeps_as_unsubscribed_is_said_so(setup) -> None:
    # found by an upgrade trial: "mailchimp does not hold this person" while the platform
    # still lists the contact, unsubscribed, as its suppression
    wh, emails, project, specs = setup
    with opened(wh) as con:
        con.execute(
            "DELETE FROM activation.sync_state WHERE subject_key = ?", [subject_key(emails[3])]
        )
        con.execute(
            "INSERT INTO activation.destination_suppressions "
            "(destination, subject_key, status, suppressed_at) "
            "VALUES ('mailchimp', ?, 'unsubscribed', ?)",
            [subject_key(emails[3]), AS_OF],
        )
    result = explain(wh, emails[3], SID, project, specs, AS_OF)
    assert result["destinations"][0]["platform_status"] == "unsubscribed"
    assert not result["destinations"][0]["held"]
    text = format_explanation(result)
    assert "mailchimp does not hold this person as a member" in text
    assert "kept by the platform as unsubscribed" in text
    erin = format_explanation(explain(wh, ERIN, SID, project, specs, AS_OF))
    assert "mailchimp holds this person, synced" in erin and "platform" not in erin


def test_members_and_every_segment_explained_on_each_backend(setup) -> None:
    from orchestrator.privacy.explain import explain_everywhere, format_everywhere
    from orchestrator.privacy.members import list_members

    wh, emails, project, specs = setup
    with opened(wh) as con:
        held = list_members(con, segment=SID, destination="mailchimp")
        audience = list_members(con, segment=SID)
    statuses = {row["subject"]: row["status"] for row in held}
    assert statuses == {
        subject_key(ERIN)[:12]: "held",
        subject_key(emails[3])[:12]: "held, not in the audience",
    }
    assert [(r["subject"], r["legal_basis"]) for r in audience] == [
        (subject_key(ERIN)[:12], "consent")
    ]
    everywhere = explain_everywhere(wh, ERIN, project, specs, AS_OF)
    text = format_everywhere(everywhere)
    assert SID in text and "@" not in text


def test_the_changes_sensor_finds_the_withdrawn_person_a_destination_holds(setup) -> None:
    """``privacy_changes_sensor``'s query on each backend: customer 3 withdrew and is still
    held (pending) at mailchimp; Erin is held with her consent standing."""
    from orchestrator.privacy.late_changes import held_withdrawn

    wh, _, _, _ = setup
    with opened(wh) as con:
        assert held_withdrawn(con, {SID: "email_marketing"}) == {SID: 1}
        assert held_withdrawn(con, {SID: "ad_targeting"}) == {}
