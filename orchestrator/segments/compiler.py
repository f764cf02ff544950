"""Compile a segment into one DuckDB SELECT with positional ``?`` parameters.

Shape of the result: one column ``customer_id`` (BIGINT), DISTINCT, read from the canonical views
of the source model, ``activation.src_customers`` and ``activation.src_events`` (see
``orchestrator/model/views.py``). Every customer row is a candidate; conditions become a WHERE
predicate over ``activation.src_customers AS c``.

Safety: identifiers in the SQL text come only from the segment's catalog (``spec.catalog``:
traits and event fields, quoted); every value from the YAML is a bound parameter, never pasted.

Semantics:
- Each leaf predicate is wrapped in ``coalesce(..., false)``, so a customer whose trait is NULL
  does not match the comparison and *does* match its ``not``.
- An event condition is ``c.customer_id IN (SELECT e.customer_id FROM src_events AS e WHERE ...
  GROUP BY e.customer_id HAVING ...)``: ``within_days`` becomes ``e.occurred_at >= ?`` with the
  bound timestamp ``as_of - within_days``; ``between`` dates become ``>= first day 00:00`` and
  ``< day after the last day 00:00`` (both days whole); ``at_least`` counts distinct orders
  (``order_id``, the model's order column; an event without one counting alone);
  ``total_value`` bounds ``sum(value)``.
- Timestamps are naive UTC: an aware ``as_of`` is converted to UTC first.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

from orchestrator.model.views import CUSTOMERS_VIEW, EVENTS_VIEW, quote_ident
from orchestrator.segments.catalog import Catalog, ValueType
from orchestrator.segments.spec import (
    AllCondition,
    AnyCondition,
    EventCondition,
    FieldCondition,
    NotCondition,
    SegmentSpec,
    TraitCondition,
    ValueBound,
    coerce_value,
    timestamp_bounds,
)

_COMPARATORS = {"eq": "=", "gte": ">=", "lte": "<="}


@dataclass(frozen=True)
class CompiledQuery:
    """A single SELECT returning DISTINCT ``customer_id`` and its positional parameters."""

    sql: str
    params: list[Any]


@dataclass(frozen=True)
class _Sql:
    text: str
    params: tuple[Any, ...] = ()


def compile_segment(spec: SegmentSpec, as_of: datetime) -> CompiledQuery:
    """Compile ``spec`` as of ``as_of`` (the run's reference time) into one SELECT.

    ``sql:`` segments are wrapped as ``SELECT DISTINCT customer_id FROM (<sql>) AS s WHERE
    customer_id IS NOT NULL`` with no parameters.
    """
    if spec.sql is not None:
        return CompiledQuery(
            f"SELECT DISTINCT customer_id\nFROM (\n{spec.sql}\n) AS s\n"
            "WHERE customer_id IS NOT NULL",
            [],
        )
    assert spec.audience is not None  # validation requires audience or sql
    predicate = _condition(spec.audience, _naive_utc(as_of), spec.catalog)
    sql = f"SELECT DISTINCT c.customer_id\nFROM {CUSTOMERS_VIEW} AS c\nWHERE {predicate.text}"
    return CompiledQuery(sql, list(predicate.params))


def _naive_utc(moment: datetime) -> datetime:
    return moment.astimezone(UTC).replace(tzinfo=None) if moment.tzinfo else moment


def _condition(condition: Any, as_of: datetime, catalog: Catalog) -> _Sql:
    if isinstance(condition, TraitCondition):
        column = f"c.{quote_ident(condition.trait)}"
        return _coalesced(_comparison(condition, column, catalog.traits[condition.trait]))
    if isinstance(condition, EventCondition):
        return _event(condition, as_of, catalog)
    if isinstance(condition, AllCondition | AnyCondition):
        parts = condition.all_ if isinstance(condition, AllCondition) else condition.any_
        joiner = "\n  AND " if isinstance(condition, AllCondition) else "\n  OR "
        return _join([_condition(part, as_of, catalog) for part in parts], joiner)
    if isinstance(condition, NotCondition):
        inner = _condition(condition.not_, as_of, catalog)
        return _Sql(f"NOT ({inner.text})", inner.params)
    raise TypeError(f"unknown condition {type(condition).__name__}")


def _join(parts: list[_Sql], joiner: str) -> _Sql:
    return _Sql(
        "(" + joiner.join(part.text for part in parts) + ")",
        tuple(param for part in parts for param in part.params),
    )


def _coalesced(predicate: _Sql) -> _Sql:
    return _Sql(f"coalesce({predicate.text}, false)", predicate.params)


def _comparison(
    condition: TraitCondition | FieldCondition, column: str, value_type: ValueType
) -> _Sql:
    op, raw = condition.operator()
    if op == "is_null":
        return _Sql(f"{column} IS {'' if raw else 'NOT '}NULL")
    if op == "contains":
        return _Sql(f"strpos(lower({column}), lower(?)) > 0", (raw,))
    if op == "in":
        values = tuple(coerce_value(value_type, item) for item in raw)
        return _Sql(f"{column} IN ({', '.join('?' for _ in values)})", values)
    if op == "between":
        low, high = raw
        return _join(
            [_bound(column, "gte", low, value_type), _bound(column, "lte", high, value_type)],
            " AND ",
        )
    return _bound(column, op, raw, value_type)


def _bound(column: str, op: str, raw: Any, value_type: ValueType) -> _Sql:
    value = coerce_value(value_type, raw)
    if value_type not in (ValueType.TIMESTAMP, ValueType.DATE) or isinstance(value, datetime):
        return _Sql(f"{column} {_COMPARATORS[op]} ?", (value,))
    assert isinstance(value, date)
    start, end = timestamp_bounds(value)
    if op == "gte":
        return _Sql(f"{column} >= ?", (start,))
    if op == "lte":
        return _Sql(f"{column} < ?", (end,))
    return _Sql(f"({column} >= ? AND {column} < ?)", (start, end))


def _event(condition: EventCondition, as_of: datetime, catalog: Catalog) -> _Sql:
    # Nothing after the evaluation time counts: a replayed run sees the warehouse as it was.
    filters = [_Sql("e.event_type = ? AND e.occurred_at <= ?", (condition.event, as_of))]
    if condition.within_days is not None:
        filters.append(_Sql("e.occurred_at >= ?", (as_of - timedelta(days=condition.within_days),)))
    days = condition.dates()
    if days is not None:
        start, _ = timestamp_bounds(days[0])
        _, end = timestamp_bounds(days[1])
        filters.append(_Sql("e.occurred_at >= ? AND e.occurred_at < ?", (start, end)))
    for where in condition.where or ():
        column = f"e.{quote_ident(where.field)}"
        filters.append(_comparison(where, column, catalog.event_fields[where.field]))
    # Every group holds at least one event, so ``at_least: 1`` needs no count; counting
    # distinct orders costs about 2 CPU s over 4.5M purchases at 1M customers (bench/README.md).
    having = []
    if condition.at_least > 1:
        having.append(
            _Sql(
                "count(DISTINCT coalesce(e.order_id, 'event:' || e.event_id)) >= ?",
                (condition.at_least,),
            )
        )
    if condition.total_value is not None:
        having.append(_total_value(condition.total_value))
    where_sql = _join(filters, "\n      AND ")
    if not having:
        return _Sql(
            f"c.customer_id IN (\n    SELECT e.customer_id FROM {EVENTS_VIEW} AS e\n"
            f"    WHERE {where_sql.text}\n  )",
            where_sql.params,
        )
    having_sql = _join(having, " AND ")
    return _Sql(
        f"c.customer_id IN (\n    SELECT e.customer_id FROM {EVENTS_VIEW} AS e\n"
        f"    WHERE {where_sql.text}\n    GROUP BY e.customer_id\n"
        f"    HAVING {having_sql.text}\n  )",
        where_sql.params + having_sql.params,
    )


def _total_value(bound: ValueBound) -> _Sql:
    op, value = bound.operator()
    if op == "between":
        return _Sql("sum(e.value) BETWEEN ? AND ?", (value[0], value[1]))
    return _Sql(f"sum(e.value) {_COMPARATORS[op]} ?", (value,))


def conditions_summary(spec: SegmentSpec) -> list[str]:
    """Human text for each top-level condition (each item of a top-level ``all``), for
    ``explain``: e.g. ``["country in FR, DE", "purchase in the last 90 days"]``."""
    if spec.sql is not None:
        return ["custom SQL: " + " ".join(spec.sql.split())]
    assert spec.audience is not None
    top = spec.audience.all_ if isinstance(spec.audience, AllCondition) else [spec.audience]
    return [describe_condition(condition) for condition in top]


def describe_condition(condition: Any) -> str:
    """One condition as a short English phrase (nested conditions in parentheses)."""
    if isinstance(condition, TraitCondition):
        return _describe_comparison(condition.trait, condition)
    if isinstance(condition, EventCondition):
        return _describe_event(condition)
    if isinstance(condition, AllCondition | AnyCondition):
        parts = condition.all_ if isinstance(condition, AllCondition) else condition.any_
        word = " and " if isinstance(condition, AllCondition) else " or "
        return "(" + word.join(describe_condition(part) for part in parts) + ")"
    return f"not ({describe_condition(condition.not_)})"


def _describe_comparison(subject: str, condition: TraitCondition | FieldCondition) -> str:
    op, value = condition.operator()
    if op == "is_null":
        return f"{subject} is {'' if value else 'not '}empty"
    if op == "in":
        return f"{subject} in {', '.join(str(item) for item in value)}"
    if op == "between":
        return f"{subject} between {value[0]} and {value[1]}"
    if op == "contains":
        return f"{subject} contains {value!r}"
    return f"{subject} {dict(eq='=', gte='>=', lte='<=')[op]} {value}"


def _describe_event(condition: EventCondition) -> str:
    text = condition.event
    if condition.within_days is not None:
        text += f" in the last {condition.within_days} days"
    days = condition.dates()
    if days is not None:
        text += f" from {days[0]} to {days[1]}"
    if condition.where:
        text += " where " + " and ".join(
            _describe_comparison(where.field, where) for where in condition.where
        )
    if condition.at_least > 1:
        text += f", at least {condition.at_least} orders"
    if condition.total_value is not None:
        op, value = condition.total_value.operator()
        shown = f"between {value[0]} and {value[1]}" if op == "between" else f"{op} {value}"
        text += f", total value {shown.replace('gte', '>=').replace('lte', '<=')} GBP"
    return text
