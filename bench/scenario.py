"""The benchmark's fixed scenario: evaluation time, seed, and the two segments built in code.

``bench_newsletter``: email_marketing (consent), a purchase in the last 180 days and a country
in :data:`~bench.generator.SEGMENT_COUNTRIES` -> ``mailchimp`` list ``bench-newsletter``,
mode mirror, merge field ``COUNTRY``.
``bench_retarget``: ad_targeting (consent), purchases worth at least 100 GBP in the last 365
days and a segment country -> ``meta_ads`` audience ``bench-retarget``, mode mirror.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

from bench.generator import SEGMENT_COUNTRIES
from orchestrator.config import ProjectConfig, load_project_config
from orchestrator.model.spec import DEFAULT_MODEL
from orchestrator.segments.catalog import DEFAULT_CATALOG
from orchestrator.segments.spec import SegmentSpec

#: The instant every run evaluates at (naive UTC); the warehouse is generated for it.
AS_OF = datetime(2026, 6, 1, 6, 0, 0)
DEFAULT_SEED = 20260601
REPO_ROOT = Path(__file__).resolve().parents[1]
PROJECT_FILE = REPO_ROOT / "activation.yaml"

_SEGMENTS: dict[str, dict[str, Any]] = {
    "bench_newsletter": {
        "description": "Bought in the last 180 days, lives in a segment country",
        "owner": "team:bench",
        "purpose": "email_marketing",
        "legal_basis": "consent",
        "retention_days": 30,
        "schedule": "0 6 * * *",
        "audience": {
            "all": [
                {"event": "purchase", "within_days": 180},
                {"trait": "country", "in": list(SEGMENT_COUNTRIES)},
            ]
        },
        "destinations": [
            {
                "destination": "mailchimp",
                "audience_id": "bench-newsletter",
                "mode": "mirror",
                "fields": {"COUNTRY": "country"},
            }
        ],
    },
    "bench_retarget": {
        "description": "Spent at least 100 GBP in the last year, lives in a segment country",
        "owner": "team:bench",
        "purpose": "ad_targeting",
        "legal_basis": "consent",
        "retention_days": 30,
        "schedule": "0 6 * * *",
        "audience": {
            "all": [
                {"event": "purchase", "within_days": 365, "total_value": {"gte": 100}},
                {"trait": "country", "in": list(SEGMENT_COUNTRIES)},
            ]
        },
        "destinations": [
            {"destination": "meta_ads", "audience_id": "bench-retarget", "mode": "mirror"}
        ],
    },
}

#: Segment names in run order.
SEGMENT_NAMES: tuple[str, ...] = tuple(_SEGMENTS)


def project_config() -> ProjectConfig:
    """The repository's ``activation.yaml`` (purposes and destinations) with the source model
    of the tables the generator writes (:data:`orchestrator.model.spec.DEFAULT_MODEL`, the
    layout of ``create_source_schema``; the demo's model maps a retailer's tables instead)
    and its catalog."""
    project = load_project_config(PROJECT_FILE).model_copy(update={"source": DEFAULT_MODEL})
    return project.with_catalog(DEFAULT_CATALOG)


def segment_spec(name: str, project: ProjectConfig) -> SegmentSpec:
    """The validated :class:`SegmentSpec` of one bench segment.

    Raises:
        KeyError: ``name`` is not one of :data:`SEGMENT_NAMES`.
        pydantic.ValidationError: the spec no longer fits the project config.
    """
    data = {"name": name, **_SEGMENTS[name]}
    return SegmentSpec.model_validate(data, context={"project": project})


__all__ = ["AS_OF", "DEFAULT_SEED", "SEGMENT_NAMES", "project_config", "segment_spec"]
