"""Segment owners are accepted exactly when Dagster accepts them as asset owners."""

from __future__ import annotations

import re

import pytest
from dagster._core.definitions.utils import is_valid_owner

from orchestrator.config import ProjectConfig
from orchestrator.segments.loader import SegmentValidationError, load_segment_text
from orchestrator.segments.spec import OWNER_PATTERN

from .conftest import VALID_SEGMENT

OWNERS = [
    "crm-team@example.com",
    "first.last+tag@mail.example.org",
    "team:crm",
    "team:",
    "CRM team",
    "crm@localhost",
    "",
    "@example.com",
]


@pytest.mark.parametrize("owner", OWNERS)
def test_owner_rule_matches_dagster(owner: str) -> None:
    assert bool(re.match(OWNER_PATTERN, owner)) == is_valid_owner(owner)


def test_bad_owner_is_reported_on_its_line(project: ProjectConfig) -> None:
    text = VALID_SEGMENT.replace("owner: crm-team@example.com", "owner: CRM team")
    with pytest.raises(SegmentValidationError) as caught:
        load_segment_text(text, "segments/s.yaml", project)
    assert [str(error) for error in caught.value.errors] == [
        "segments/s.yaml:4 owner: owner 'CRM team' must be an email address or team:<name>"
    ]
