"""What a segment may refer to: customer traits, event types and event fields, with value types.

A :class:`Catalog` is read from the project's committed catalog file (written by ``activation
catalog`` from the warehouse, :mod:`orchestrator.model.catalog`); :data:`DEFAULT_CATALOG`, used
when a project has none, describes the default source tables
(:data:`orchestrator.warehouse.schema.SOURCE_COLUMNS`). Only columns a catalog lists can appear
in compiled SQL as identifiers; every value a marketer writes is bound as a parameter.

Deliberately absent: ``customers.email`` (a raw identifier is never a segment condition or a
merge field: the sync sends the address itself, to email destinations only), and the technical
columns of ``events`` (``event_id``, ``customer_id``, ``event_type``, ``occurred_at``), which the
event condition uses through ``event``, ``within_days`` and ``between``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from enum import StrEnum
from types import MappingProxyType
from typing import Any

from pydantic import BaseModel, ConfigDict

from orchestrator.warehouse.schema import SOURCE_COLUMNS


class ValueType(StrEnum):
    """Type of a column as a segment sees it, deciding which values and operators are valid.

    ``text``: YAML strings (quote codes YAML would read as numbers or booleans, e.g. ``"NO"``).
    ``integer``: whole numbers. ``number``: any number (GBP amounts). ``timestamp`` and
    ``date``: ISO dates (``2024-03-01``, a whole day) or date-times (``2024-03-01T12:00:00``, an
    instant). ``boolean``: true or false.
    """

    TEXT = "text"
    INTEGER = "integer"
    NUMBER = "number"
    TIMESTAMP = "timestamp"
    DATE = "date"
    BOOLEAN = "boolean"


_INTEGER_TYPES = (
    "TINYINT",
    "SMALLINT",
    "INTEGER",
    "BIGINT",
    "HUGEINT",
    "UTINYINT",
    "USMALLINT",
    "UINTEGER",
    "UBIGINT",
    "UHUGEINT",
)
_NUMBER_TYPES = ("DOUBLE", "FLOAT", "REAL", "DECIMAL", "NUMERIC")


def value_type_of(warehouse_type: str) -> ValueType | None:
    """The segment value type of a warehouse column type (DuckDB type names: ``VARCHAR`` ->
    text, ``BIGINT`` -> integer, ``DECIMAL(10,2)`` -> number, ``TIMESTAMP`` -> timestamp,
    ``DATE`` -> date, ``BOOLEAN`` -> boolean), or None for a type no condition can compare
    (lists, structs, blobs)."""
    name = warehouse_type.upper()
    if name.startswith(("VARCHAR", "TEXT", "STRING", "CHAR", "UUID", "ENUM")):
        return ValueType.TEXT
    if name.startswith(_INTEGER_TYPES) and "[" not in name:
        return ValueType.INTEGER
    if name.startswith(_NUMBER_TYPES) and "[" not in name:
        return ValueType.NUMBER
    if name.startswith("TIMESTAMP") and "[" not in name:
        return ValueType.TIMESTAMP
    if name == "DATE":
        return ValueType.DATE
    if name in ("BOOLEAN", "BOOL"):
        return ValueType.BOOLEAN
    return None


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
        ValueType.DATE: ("eq", "gte", "lte", "between", "is_null"),
        ValueType.BOOLEAN: ("eq", "is_null"),
    }
)
FIELD_OPERATORS: Mapping[ValueType, tuple[str, ...]] = MappingProxyType(
    {
        ValueType.TEXT: ("eq", "in", "contains", "is_null"),
        ValueType.INTEGER: ("eq", "in", "gte", "lte", "between", "is_null"),
        ValueType.NUMBER: ("eq", "in", "gte", "lte", "between", "is_null"),
        ValueType.TIMESTAMP: ("eq", "gte", "lte", "between", "is_null"),
        ValueType.DATE: ("eq", "gte", "lte", "between", "is_null"),
        ValueType.BOOLEAN: ("eq", "is_null"),
    }
)

#: The 249 officially assigned ISO 3166-1 alpha-2 country codes (ISO 3166 Maintenance Agency,
#: ISO Online Browsing Platform https://www.iso.org/obp/ui/#search, "Officially assigned"
#: codes). Reserved codes are not in it: exceptionally reserved ``UK`` (use ``GB``) and ``EL``
#: (use ``GR``), ``EU``, transitionally reserved ``AN``, ``CS``, ...; nor user-assigned ``XX``.
# fmt: off
ISO_3166_ALPHA2: frozenset[str] = frozenset(
    {
        "AD", "AE", "AF", "AG", "AI", "AL", "AM", "AO", "AQ", "AR", "AS", "AT", "AU", "AW",
        "AX", "AZ",
        "BA", "BB", "BD", "BE", "BF", "BG", "BH", "BI", "BJ", "BL", "BM", "BN", "BO", "BQ",
        "BR", "BS", "BT", "BV", "BW", "BY", "BZ",
        "CA", "CC", "CD", "CF", "CG", "CH", "CI", "CK", "CL", "CM", "CN", "CO", "CR", "CU",
        "CV", "CW", "CX", "CY", "CZ",
        "DE", "DJ", "DK", "DM", "DO", "DZ",
        "EC", "EE", "EG", "EH", "ER", "ES", "ET",
        "FI", "FJ", "FK", "FM", "FO", "FR",
        "GA", "GB", "GD", "GE", "GF", "GG", "GH", "GI", "GL", "GM", "GN", "GP", "GQ", "GR",
        "GS", "GT", "GU", "GW", "GY",
        "HK", "HM", "HN", "HR", "HT", "HU",
        "ID", "IE", "IL", "IM", "IN", "IO", "IQ", "IR", "IS", "IT",
        "JE", "JM", "JO", "JP",
        "KE", "KG", "KH", "KI", "KM", "KN", "KP", "KR", "KW", "KY", "KZ",
        "LA", "LB", "LC", "LI", "LK", "LR", "LS", "LT", "LU", "LV", "LY",
        "MA", "MC", "MD", "ME", "MF", "MG", "MH", "MK", "ML", "MM", "MN", "MO", "MP", "MQ",
        "MR", "MS", "MT", "MU", "MV", "MW", "MX", "MY", "MZ",
        "NA", "NC", "NE", "NF", "NG", "NI", "NL", "NO", "NP", "NR", "NU", "NZ",
        "OM",
        "PA", "PE", "PF", "PG", "PH", "PK", "PL", "PM", "PN", "PR", "PS", "PT", "PW", "PY",
        "QA",
        "RE", "RO", "RS", "RU", "RW",
        "SA", "SB", "SC", "SD", "SE", "SG", "SH", "SI", "SJ", "SK", "SL", "SM", "SN", "SO",
        "SR", "SS", "ST", "SV", "SX", "SY", "SZ",
        "TC", "TD", "TF", "TG", "TH", "TJ", "TK", "TL", "TM", "TN", "TO", "TR", "TT", "TV",
        "TW", "TZ",
        "UA", "UG", "UM", "US", "UY", "UZ",
        "VA", "VC", "VE", "VG", "VI", "VN", "VU",
        "WF", "WS",
        "YE", "YT",
        "ZA", "ZM", "ZW",
    }
)
# fmt: on

#: Exceptionally reserved codes people write for a country whose assigned code differs.
_RESERVED_HINTS: Mapping[str, str] = MappingProxyType(
    {
        "UK": "the United Kingdom is 'GB'",
        "EL": "Greece is 'GR' (EL is the EU's own abbreviation): use 'GR'",
    }
)


def country_code_error(value: str) -> str | None:
    """Why ``value`` is not an officially assigned ISO 3166-1 alpha-2 code, or None if it is.

    The warehouse stores ``customers.country`` as upper-case alpha-2 codes (``GB``, ``FR``), so
    any other spelling would silently match nobody. Messages: lower case -> the upper-case code
    to use; ``UK``/``EL`` (reserved by ISO 3166-1 for the UK and Greece, not assigned) -> ``GB``
    /``GR``; anything else -> unknown code. Source: ISO 3166-1, see :data:`ISO_3166_ALPHA2`.
    """
    if value in ISO_3166_ALPHA2:
        return None
    upper = value.upper()
    if upper in ISO_3166_ALPHA2:
        return f"country codes are upper case: use {upper!r}"
    if upper in _RESERVED_HINTS:
        return f"{value!r} is not an ISO 3166-1 code: {_RESERVED_HINTS[upper]}"
    return (
        f"unknown country code {value!r}: expected an ISO 3166-1 alpha-2 code, two upper-case"
        " letters such as 'FR' or 'GB'"
    )


#: Extra checks on the (text) values compared with a trait: trait -> (value -> problem or None).
TRAIT_VALUE_CHECKS: Mapping[str, Callable[[str], str | None]] = MappingProxyType(
    {"country": country_code_error}
)


class Catalog(BaseModel):
    """What segments of one project may name, with value types.

    ``traits``: trait (a column of ``activation.src_customers``) -> value type, in table
    order. ``event_types``: the values of the event type columns and the fixed types, sorted;
    ``event_types_capped``: True when a type column had more distinct values than the catalog
    keeps (the list is then incomplete, and a segment naming another type is refused).
    ``event_fields``: event field -> value type. ``columns``: canonical view
    (``customers``, ``events``) -> column -> warehouse type, for the drift check.
    ``relations``: role -> the company's tables it reads (for messages and lineage).
    ``sensitive``: trait or field -> special-category label (GDPR Art. 9), and
    ``sensitive_values``: field -> {label: words}. ``event_sources``: event source name (the
    model's) -> the event types it holds, sorted (at most the cap per type column; empty in a
    catalog written before it existed: every source with a type column may hold any type).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    version: int = 1
    traits: dict[str, ValueType]
    event_types: tuple[str, ...]
    event_types_capped: bool = False
    event_fields: dict[str, ValueType]
    columns: dict[str, dict[str, str]] = {}
    relations: dict[str, tuple[str, ...]] = {}
    sensitive: dict[str, str] = {}
    sensitive_values: dict[str, dict[str, tuple[str, ...]]] = {}
    event_sources: dict[str, tuple[str, ...]] = {}


#: The catalog of the default source tables, for a project without a catalog file.
DEFAULT_CATALOG = Catalog(
    traits=dict(TRAITS), event_types=EVENT_TYPES, event_fields=dict(EVENT_FIELDS)
)


def catalog_from_context(context: Any) -> Catalog:
    """The catalog of the project in a pydantic validation context (``{"project": ...}``), or
    :data:`DEFAULT_CATALOG` when there is none."""
    project = (context or {}).get("project")
    catalog = getattr(project, "catalog", None)
    return catalog if isinstance(catalog, Catalog) else DEFAULT_CATALOG
