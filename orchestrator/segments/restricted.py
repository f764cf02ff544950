"""Warn when a segment bound for an ad platform selects people by health or financial data.

Since 2 September 2025 Meta flags custom audiences that suggest "specific health conditions
(e.g., 'arthritis', 'diabetes') or financial status (e.g., 'credit score', 'high income')"
and then refuses their use and their membership edits ("Audience Upload Blocked", code 100,
subcode 1713230; the audience's ``operation_status`` is 471): Marketing API, Custom Audience,
https://developers.facebook.com/docs/marketing-api/reference/custom-audience/. The sync
reports such an audience as blocked (:mod:`destinations.meta`); better to know before.

The source model marks the data: health as a special category (``source.sensitive`` with
``category: health``, GDPR Art. 9, refused outright in marketing segments by
:mod:`orchestrator.segments.sensitive`), financial status under ``source.restricted`` with
``category: financial`` (not an Art. 9 category: not refused, only warned about). A segment
with an ad destination whose conditions (or ``sql:``) read a trait or event field so marked,
or compare a column with words so marked, gets one warning per use, located in its file.
"""

from __future__ import annotations

from typing import Any

from orchestrator.config import DestinationKind, ProjectConfig
from orchestrator.model.spec import RestrictedCategory, SpecialCategory
from orchestrator.segments.sensitive import data_uses

#: Labels whose use in an ad audience Meta restricts (health, financial status).
RESTRICTED_LABELS = frozenset({str(SpecialCategory.HEALTH), str(RestrictedCategory.FINANCIAL)})

Problem = tuple[tuple[str | int, ...], str]


def restricted_rules(project: ProjectConfig) -> list[Any]:
    """The source model's rules marking health (``sensitive``) or financial status
    (``restricted``) data."""
    source = project.source
    marked = [*source.sensitive, *source.restricted]
    return [rule for rule in marked if str(rule.category) in RESTRICTED_LABELS]


def restricted_audience_warnings(spec: Any, project: ProjectConfig) -> list[Problem]:
    """Warnings (location in the segment file, message) for ``spec`` when it has an ad
    destination and uses data the source model marks health or financial; [] otherwise.
    Never raises for a valid spec."""
    ads = [
        e.destination
        for e in spec.destinations
        if e.destination in project.destinations
        and project.destinations[e.destination].kind is DestinationKind.AD
    ]
    rules = restricted_rules(project)
    if not ads or not rules:
        return []
    found: dict[tuple, str] = {}
    for loc, label, what in data_uses(spec, rules):
        found.setdefault(
            (loc, what),
            f"{what} is marked {label} data: ad platforms restrict audiences that suggest "
            f"health or financial status (Meta flags them, then refuses their updates: "
            f"'Audience Upload Blocked'); ad destinations {', '.join(ads)}",
        )
    return [(loc, message) for (loc, _), message in found.items()]


__all__ = ["RESTRICTED_LABELS", "restricted_audience_warnings", "restricted_rules"]
