"""Special-category data (GDPR Art. 9(1): health, religion, sexual orientation, ...) never
feeds marketing.

The source model marks traits, event fields and values (words of a column such as a product
description) as revealing a special category (:class:`orchestrator.model.spec.SensitiveRule`).
Processing such data needs the person's explicit consent to that processing (Art. 9(2)(a)),
which a marketing consent is not; so a segment of a marketing purpose may not name such a trait
or field in a condition, compare a column with such a word, select such an event type, send
such a trait as a merge field, or name any of them in its ``sql:``. (A trial uploaded the hashes
of pregnancy-test buyers to an ad platform: exactly what the CNIL and the EDPB's Guidelines
8/2020 on targeting of social media users, section 7, warn against.)

:func:`sensitive_problems` returns the violations with their location in the segment file;
:func:`categories_used` the categories a segment reads (the register lists them).
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from typing import Any

from orchestrator.model.spec import SensitiveRule

Problem = tuple[tuple[str | int, ...], str]


def _walk(condition: Any, loc: tuple[str | int, ...]) -> Iterator[tuple[tuple, Any]]:
    """Every leaf condition (trait, event, field filter) with its location."""
    from orchestrator.segments.spec import (
        AllCondition,
        AnyCondition,
        EventCondition,
        NotCondition,
    )

    if isinstance(condition, AllCondition):
        for index, child in enumerate(condition.all_):
            yield from _walk(child, (*loc, "all", index))
    elif isinstance(condition, AnyCondition):
        for index, child in enumerate(condition.any_):
            yield from _walk(child, (*loc, "any", index))
    elif isinstance(condition, NotCondition):
        yield from _walk(condition.not_, (*loc, "not"))
    else:
        yield loc, condition
        if isinstance(condition, EventCondition):
            for index, where in enumerate(condition.where or ()):
                yield (*loc, "where", index), where


def _texts(condition: Any) -> list[str]:
    """The text values a comparison names (eq, in, contains)."""
    op, value = condition.operator()
    if op in ("eq", "contains") and isinstance(value, str):
        return [value]
    if op == "in":
        return [item for item in value if isinstance(item, str)]
    return []


def _matching_word(texts: Sequence[str], words: Sequence[str]) -> str | None:
    for text in texts:
        lowered = text.strip().lower()
        for word in words:
            needle = word.lower()
            if needle in lowered or (len(lowered) >= 3 and lowered in needle):
                return word
    return None


def _hits(spec: Any, rules: Sequence[SensitiveRule]) -> Iterator[tuple[tuple, str, str]]:
    """(location, category, what) for every use of special-category data in ``spec``."""
    from orchestrator.segments.spec import EventCondition, FieldCondition, TraitCondition

    for rule in rules:
        category = str(rule.category)
        for index, entry in enumerate(spec.destinations):
            for tag, trait in entry.fields.items():
                if trait in rule.traits or trait in rule.values:
                    yield ("destinations", index, "fields", tag), category, f"trait {trait!r}"
        if spec.sql is not None:
            words = set(re.findall(r"[A-Za-z_][A-Za-z0-9_]*", spec.sql))
            for column in (*rule.traits, *rule.fields):
                if column in words:
                    yield ("sql",), category, f"column {column!r}"
            found = _matching_word([spec.sql], [w for ws in rule.values.values() for w in ws])
            if found:
                yield ("sql",), category, f"the value {found!r}"
            continue
        for loc, leaf in _walk(spec.audience, ("audience",)):
            if isinstance(leaf, TraitCondition):
                name, column = f"trait {leaf.trait!r}", leaf.trait
                if column in rule.traits:
                    yield (*loc, "trait"), category, name
            elif isinstance(leaf, FieldCondition):
                name, column = f"event field {leaf.field!r}", leaf.field
                if column in rule.fields:
                    yield (*loc, "field"), category, name
            elif isinstance(leaf, EventCondition):
                found = _matching_word([leaf.event], rule.values.get("event_type", ()))
                if found:
                    yield (*loc, "event"), category, f"event type {leaf.event!r}"
                continue
            else:
                continue
            found = _matching_word(_texts(leaf), rule.values.get(column, ()))
            if found:
                yield loc, category, f"{name} compared with {found!r}"


def data_uses(spec: Any, rules: Sequence[Any]) -> list[tuple[tuple, str, str]]:
    """(location in the segment file, the rule's ``category``, what is used) for every use
    ``spec`` makes of data a rule marks; ``rules``: :class:`SensitiveRule` or anything of its
    shape (``category``, ``traits``, ``fields``, ``values``)."""
    return list(_hits(spec, rules))


def sensitive_problems(spec: Any, rules: Sequence[SensitiveRule], marketing: bool) -> list[Problem]:
    """Problems for a segment of a marketing purpose that uses special-category data (none
    when ``marketing`` is False: the register then lists the categories)."""
    if not marketing:
        return []
    return [
        (
            loc,
            f"{what} is special-category data ({category}, GDPR Art. 9) and is never used for "
            "marketing: remove it from this segment",
        )
        for loc, category, what in _hits(spec, rules)
    ]


def categories_used(spec: Any, rules: Sequence[SensitiveRule]) -> list[str]:
    """The special categories ``spec`` reads, sorted (empty for almost every segment)."""
    return sorted({category for _, category, _ in _hits(spec, rules)})
