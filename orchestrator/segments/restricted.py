"""Warn when a segment bound for an ad platform selects people by health or financial data.

Since September 2025 Meta flags custom audiences that suggest health or financial status and
then refuses membership edits ("Audience Upload Blocked", code 100, subcode 1713230; the
audience's ``operation_status`` is 471); the sync reports such an audience as blocked
(:mod:`destinations.meta`). Better to know before: a segment with an ad destination whose
conditions read a trait or event field marked health or financial, or compare a field with
words marked so, gets a warning naming the segment, the field and the label.

The marking comes from the source model (``sensitive``: trait or field -> special-category
label; ``sensitive_values``: field -> {label: words}); until the catalog carries it, callers
pass empty mappings and no warning is raised.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence

from orchestrator.config import DestinationKind, ProjectConfig
from orchestrator.segments.spec import (
    AllCondition,
    AnyCondition,
    EventCondition,
    NotCondition,
    SegmentSpec,
    TraitCondition,
)

#: Labels whose use in an ad audience Meta restricts (health, financial status).
RESTRICTED_LABELS = frozenset({"health", "financial"})


def _reads(condition: object) -> Iterator[tuple[str, list[str]]]:
    """(trait or event field, the text values it is compared with) for every condition."""
    if isinstance(condition, TraitCondition):
        values = [condition.eq] if condition.eq is not None else list(condition.in_ or [])
        yield condition.trait, [str(v) for v in values]
    elif isinstance(condition, EventCondition):
        for where in condition.where or []:
            words = [where.contains] if where.contains else []
            words += [str(where.eq)] if where.eq is not None else []
            words += [str(v) for v in where.in_ or []]
            yield where.field, words
    elif isinstance(condition, AllCondition):
        for child in condition.all_:
            yield from _reads(child)
    elif isinstance(condition, AnyCondition):
        for child in condition.any_:
            yield from _reads(child)
    elif isinstance(condition, NotCondition):
        yield from _reads(condition.not_)


def restricted_audience_warnings(
    spec: SegmentSpec,
    project: ProjectConfig,
    sensitive: Mapping[str, str],
    sensitive_values: Mapping[str, Mapping[str, Sequence[str]]],
) -> list[str]:
    """Warnings for ``spec`` when it has an ad destination and reads a field marked health or
    financial (``sensitive``: field -> label) or compares a field with words marked so
    (``sensitive_values``: field -> {label: words}, case-insensitive substring). [] otherwise,
    and always for segments written in SQL (their columns are not parsed here)."""
    ads = [
        e.destination
        for e in spec.destinations
        if project.destinations[e.destination].kind is DestinationKind.AD
    ]
    if not ads or spec.audience is None:
        return []
    found: list[str] = []
    for name, values in _reads(spec.audience):
        label = sensitive.get(name)
        if label in RESTRICTED_LABELS:
            found.append(f"{name} is marked {label}")
        for value_label, words in (sensitive_values.get(name) or {}).items():
            if value_label not in RESTRICTED_LABELS:
                continue
            hits = [v for v in values for w in words if w.lower() in v.lower()]
            if hits:
                found.append(f"{name} compared with {hits[0]!r}, marked {value_label}")
    return [
        f"segment {spec.id}: {reason}; ad destinations {', '.join(ads)} may flag the audience "
        "as suggesting health or financial status and refuse its updates (Meta: 'Audience "
        "Upload Blocked')"
        for reason in dict.fromkeys(found)
    ]


__all__ = ["RESTRICTED_LABELS", "restricted_audience_warnings"]
