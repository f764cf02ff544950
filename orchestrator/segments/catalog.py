"""What a segment may refer to: customer traits, event types and event fields, with value types.

Built on :data:`orchestrator.warehouse.schema.SOURCE_COLUMNS` so the catalog cannot name a column
the warehouse does not have. Only columns listed here can appear in compiled SQL as identifiers;
every value a marketer writes is bound as a parameter.

Deliberately absent: ``customers.email`` (a raw identifier is never a segment condition or a
merge field: the sync sends the address itself, to email destinations only), and the technical
columns of ``events`` (``event_id``, ``customer_id``, ``event_type``, ``occurred_at``), which the
event condition uses through ``event``, ``within_days`` and ``between``.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum
from types import MappingProxyType

from orchestrator.warehouse.schema import SOURCE_COLUMNS


class ValueType(StrEnum):
    """Type of a column as a segment sees it, deciding which values and operators are valid.

    ``text``: YAML strings (quote codes YAML would read as numbers or booleans, e.g. ``"NO"``).
    ``integer``: whole numbers. ``number``: any number (GBP amounts). ``timestamp``: ISO dates
    (``2024-03-01``, a whole day) or date-times (``2024-03-01T12:00:00``, an instant).
    """

    TEXT = "text"
    INTEGER = "integer"
    NUMBER = "number"
    TIMESTAMP = "timestamp"


#: Columns never allowed in a condition or a merge field (raw personal identifiers).
FORBIDDEN_COLUMNS: frozenset[str] = frozenset({"email"})

_CUSTOMER_TYPES: Mapping[str, ValueType] = MappingProxyType(
    {
        "customer_id": ValueType.INTEGER,
        "country": ValueType.TEXT,
        "country_name": ValueType.TEXT,
        "created_at": ValueType.TIMESTAMP,
        "last_contact_at": ValueType.TIMESTAMP,
    }
)
_EVENT_FIELD_TYPES: Mapping[str, ValueType] = MappingProxyType(
    {
        "invoice_no": ValueType.TEXT,
        "stock_code": ValueType.TEXT,
        "description": ValueType.TEXT,
        "quantity": ValueType.INTEGER,
        "unit_price": ValueType.NUMBER,
        "value": ValueType.NUMBER,
    }
)

#: Trait name (a ``customers`` column) -> value type, in table order.
TRAITS: Mapping[str, ValueType] = MappingProxyType(
    {
        column: _CUSTOMER_TYPES[column]
        for column in SOURCE_COLUMNS["customers"]
        if column in _CUSTOMER_TYPES and column not in FORBIDDEN_COLUMNS
    }
)

#: Event field name (an ``events`` column) -> value type, in table order.
EVENT_FIELDS: Mapping[str, ValueType] = MappingProxyType(
    {
        column: _EVENT_FIELD_TYPES[column]
        for column in SOURCE_COLUMNS["events"]
        if column in _EVENT_FIELD_TYPES
    }
)

#: Values of ``events.event_type`` a segment may select (see the warehouse schema docstring).
EVENT_TYPES: tuple[str, ...] = ("purchase", "refund")

#: Operators valid for each value type. ``contains`` (case-insensitive substring) is offered on
#: event fields only, as the brief for conditions specifies.
TRAIT_OPERATORS: Mapping[ValueType, tuple[str, ...]] = MappingProxyType(
    {
        ValueType.TEXT: ("eq", "in", "is_null"),
        ValueType.INTEGER: ("eq", "in", "gte", "lte", "between", "is_null"),
        ValueType.NUMBER: ("eq", "in", "gte", "lte", "between", "is_null"),
        ValueType.TIMESTAMP: ("eq", "gte", "lte", "between", "is_null"),
    }
)
FIELD_OPERATORS: Mapping[ValueType, tuple[str, ...]] = MappingProxyType(
    {
        ValueType.TEXT: ("eq", "in", "contains", "is_null"),
        ValueType.INTEGER: ("eq", "in", "gte", "lte", "between", "is_null"),
        ValueType.NUMBER: ("eq", "in", "gte", "lte", "between", "is_null"),
        ValueType.TIMESTAMP: ("eq", "gte", "lte", "between", "is_null"),
    }
)
