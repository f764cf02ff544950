"""What a segment reads, in the words of the register: the company's own tables and columns,
from every event source a condition reaches (GDPR Art. 30(1)(c): the categories of personal
data processed for the purpose).

An event condition reads the sources that hold its event type: a fixed-type source of that
type, or a source whose type column holds it (as the catalog recorded per source; with a
catalog that did not record it, every source with a type column). A ``sql:`` segment reads the
canonical views, so a column of ``events`` it reads comes from every event source that maps
it. Each item is one text line, e.g. ``add_to_cart events: when (web.events.happened_at)``.
"""

from __future__ import annotations

from collections.abc import Iterable

from orchestrator.model.spec import EventSource, SourceModel
from orchestrator.segments.catalog import Catalog
from orchestrator.segments.spec import (
    AllCondition,
    AnyCondition,
    EventCondition,
    NotCondition,
    SegmentSpec,
    TraitCondition,
)


def _where(source: EventSource) -> str:
    """How the register names a source: its table, or ``<name> (a SELECT)``."""
    return source.table or f"event source {source.name} (a SELECT)"


def _own(source: EventSource, column: str) -> str:
    return f"{source.table}.{column}" if source.table else f"{source.name}.{column}"


def sources_of(event: str, model: SourceModel, catalog: Catalog) -> list[EventSource]:
    """The event sources that may hold events of type ``event``, in declared order."""
    found = []
    for source in model.events:
        if source.type is not None:
            if source.type == event:
                found.append(source)
        elif (
            source.name not in catalog.event_sources or event in catalog.event_sources[source.name]
        ):
            found.append(source)
    return found


def _event_reads(condition: EventCondition, model: SourceModel, catalog: Catalog) -> list[str]:
    items = []
    for source in sources_of(condition.event, model, catalog):
        what = f"{condition.event} events"
        columns = [_own(source, source.key), _own(source, source.time)]
        if source.type_column:
            columns.append(_own(source, source.type_column))
        items.append(f"{what} and when ({', '.join(columns)})")
        if condition.at_least > 1 and source.order:
            items.append(f"{what}: order numbers ({_own(source, source.order)})")
        if condition.total_value is not None and source.value:
            items.append(f"{what}: amounts ({_own(source, source.value)})")
        for where in condition.where or []:
            if where.field in source.fields:
                items.append(f"{what}: {where.field} ({_own(source, where.field)})")
    return items


def condition_reads(condition: object, model: SourceModel, catalog: Catalog) -> list[str]:
    """Register lines for what a condition tree reads, in the order met: a trait by its name
    (``country``), an event condition as ``<type> events ...`` per source holding it."""
    if isinstance(condition, TraitCondition):
        return [condition.trait]
    if isinstance(condition, EventCondition):
        return _event_reads(condition, model, catalog)
    if isinstance(condition, AllCondition):
        return [i for child in condition.all_ for i in condition_reads(child, model, catalog)]
    if isinstance(condition, AnyCondition):
        return [i for child in condition.any_ for i in condition_reads(child, model, catalog)]
    if isinstance(condition, NotCondition):
        return condition_reads(condition.not_, model, catalog)
    return []


def _event_column(source: EventSource, column: str) -> str | None:
    """The source's own column behind a canonical events column (None: the source has none)."""
    own = {
        "customer_id": source.key,
        "occurred_at": source.time,
        "event_type": source.type_column,
        "event_id": source.id,
        "value": source.value,
        "order_id": source.order,
    }
    if column in own:
        return own[column]
    return column if column in source.fields else None


def sql_reads(spec: SegmentSpec, model: SourceModel) -> list[str]:
    """Register lines for the columns a ``sql:`` segment reads (:attr:`SegmentSpec.sql_reads`,
    ``view.column``): a customers column by its name; an events column with the source column
    of every event source behind it (``event_type`` of a fixed-type source: its type)."""
    items = []
    for read in sorted(spec.sql_reads, key=_read_order):
        view, _, column = read.partition(".")
        if view != "events":
            items.append(column)
            continue
        behind = []
        for source in model.events:
            own = _event_column(source, column)
            if own is not None:
                behind.append(_own(source, own))
            elif column == "event_type" and source.type:
                behind.append(f"{_where(source)}: {source.type}")
        if behind:
            items.append(f"events: {column} ({', '.join(behind)})")
    return items


def _read_order(read: str) -> tuple[int, str]:
    return (0 if read.startswith("customers.") else 1, read)


def segment_reads(spec: SegmentSpec, model: SourceModel, catalog: Catalog) -> list[str]:
    """Register lines for what ``spec`` reads (condition tree or ``sql:``), without the
    email (listed apart) and without repeats."""
    items: Iterable[str] = (
        condition_reads(spec.audience, model, catalog) if spec.audience else sql_reads(spec, model)
    )
    return [i for i in dict.fromkeys(items) if i != model.customers.email and i != "email"]
