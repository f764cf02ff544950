"""Shared fixtures for segment tests: the project config and a valid segment text."""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestrator.config import ProjectConfig, load_project_config

REPO = Path(__file__).resolve().parents[2]

VALID_SEGMENT = """\
# yaml-language-server: $schema=../schemas/segment.schema.json
name: recent_buyers_fr
description: Bought in the last 90 days and live in France
owner: crm-team@example.com
purpose: email_marketing
legal_basis: consent
retention_days: 30
schedule: "0 6 * * *"
audience:
  all:
    - trait: country
      in: [FR]
    - event: purchase
      within_days: 90
destinations:
  - destination: mailchimp
    audience_id: "a1b2c3d4e5"
    mode: mirror
    fields: {COUNTRY: country}
"""


@pytest.fixture(scope="session")
def project() -> ProjectConfig:
    """The repository's real ``activation.yaml``."""
    return load_project_config(REPO / "activation.yaml")
