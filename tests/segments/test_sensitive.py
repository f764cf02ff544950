"""Special-category data (GDPR Art. 9) declared in the source model is refused in marketing
segments: conditions, values, event types, merge fields and sql:; the register lists the
categories a segment uses."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import pytest

from orchestrator.config import ProjectConfig
from orchestrator.model.spec import SourceModel
from orchestrator.privacy.register import render_register_csv
from orchestrator.segments.loader import (
    LoadedSegment,
    SegmentValidationError,
    load_segment_text,
)

SENSITIVE = [
    {"category": "health", "values": {"description": ["PREGNANCY TEST", "PHARMACY"]}},
    {"category": "religious_or_philosophical_beliefs", "values": {"description": ["ROSARY"]}},
    {"category": "sex_life_or_sexual_orientation", "traits": ["country_name"]},
    {"category": "health", "fields": ["quantity"], "values": {"event_type": ["refund"]}},
]

BASE = """\
name: probe
description: probe
owner: crm-team@example.com
purpose: ad_targeting
legal_basis: consent
retention_days: 30
schedule: "0 6 * * *"
{body}
destinations:
  - destination: {destination}
    audience_id: "probe1"
    mode: mirror
{fields}"""


def csv_rows(text: str) -> dict[str, dict[str, str]]:
    return {row["activity"]: row for row in csv.DictReader(io.StringIO(text))}


@pytest.fixture
def sensitive_project(project: ProjectConfig) -> ProjectConfig:
    model = project.source.model_dump()
    model["sensitive"] = SENSITIVE
    return project.model_copy(update={"source": SourceModel.model_validate(model)})


def _load(project: ProjectConfig, body: str, *, email: bool = False, fields: str = ""):
    text = BASE.format(body=body, destination="mailchimp" if email else "meta_ads", fields=fields)
    if email:
        text = text.replace("purpose: ad_targeting", "purpose: email_marketing")
    return load_segment_text(text, "segments/probe.yaml", project)


@pytest.mark.parametrize(
    ("body", "line", "needle"),
    [
        (
            "audience:\n  all:\n    - event: purchase\n      where:\n"
            "        - field: description\n          contains: pregnancy",
            "audience.all[0].where[0]",
            "compared with 'PREGNANCY TEST' is special-category data (health, GDPR Art. 9)",
        ),
        (
            "audience:\n  any:\n    - event: purchase\n      where:\n"
            "        - field: description\n          in: [MUG, Rosary beads]",
            "audience.any[0].where[0]",
            "religious_or_philosophical_beliefs",
        ),
        (
            "audience:\n  not:\n    trait: country_name\n    eq: France",
            "audience.not.trait",
            "trait 'country_name' is special-category data (sex_life_or_sexual_orientation",
        ),
        (
            "audience:\n  all:\n    - event: purchase\n      where:\n"
            "        - field: quantity\n          gte: 2",
            "audience.all[0].where[0].field",
            "event field 'quantity' is special-category data (health",
        ),
        (
            "audience:\n  all:\n    - event: refund\n      within_days: 30",
            "audience.all[0].event",
            "event type 'refund' is special-category data (health",
        ),
        (
            "sql: |\n  SELECT customer_id FROM activation.src_events\n"
            "  WHERE description ILIKE '%pregnancy test%'",
            "sql",
            "the value 'PREGNANCY TEST' is special-category data (health",
        ),
    ],
)
def test_special_category_data_is_refused_in_marketing_segments(
    sensitive_project: ProjectConfig, body: str, line: str, needle: str
) -> None:
    with pytest.raises(SegmentValidationError) as caught:
        _load(sensitive_project, body)
    message = str(caught.value)
    assert f" {line}: " in message or f" {line}." in message, message
    assert needle in message


def test_a_sensitive_trait_is_refused_as_a_merge_field(sensitive_project: ProjectConfig) -> None:
    body = "audience:\n  all:\n    - event: purchase\n      within_days: 30"
    with pytest.raises(SegmentValidationError) as caught:
        _load(sensitive_project, body, email=True, fields="    fields: {CN: country_name}\n")
    assert "destinations[0].fields.CN: trait 'country_name' is special-category" in str(
        caught.value
    )


def test_ordinary_segments_still_load_and_the_register_says_none(
    sensitive_project: ProjectConfig,
) -> None:
    body = (
        "audience:\n  all:\n    - event: purchase\n      where:\n"
        "        - field: description\n          contains: MUG"
    )
    spec = _load(sensitive_project, body)
    rows = csv_rows(
        render_register_csv(
            sensitive_project, {spec.id: LoadedSegment(spec, Path("segments/probe.yaml"))}
        )
    )
    assert "special categories of data (GDPR Art. 9): none" in rows["probe"]["personal_data"]
