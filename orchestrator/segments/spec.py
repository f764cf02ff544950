"""Segment specification: the pydantic models for one ``segments/<name>.yaml`` file.

A segment says who is in it (``audience:`` conditions or a ``sql:`` SELECT), why we process
them (``purpose`` and ``legal_basis``, checked against ``activation.yaml``), how long a member
may stay in a destination after leaving (``retention_days``), when it runs (``schedule`` cron in
``timezone``) and where it goes (``destinations``).

Validation needs the project config, passed through the pydantic validation context::

    SegmentSpec.model_validate(data, context={"project": project_config})

Every model forbids unknown fields. Errors carry a precise location (``audience.all[1].in[2]``)
that the loader turns into ``file:line field: message``.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from datetime import UTC, date, datetime, timedelta
from enum import StrEnum
from typing import Annotated, Any, NoReturn
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import duckdb
from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    PrivateAttr,
    StrictBool,
    StrictInt,
    Tag,
    ValidationError,
    ValidationInfo,
    WithJsonSchema,
    field_validator,
    model_validator,
)
from pydantic_core import InitErrorDetails, PydanticCustomError

from orchestrator.config import NAME_PATTERN, DestinationKind, LegalBasis, ProjectConfig
from orchestrator.limits import MAX_COUNT, MAX_DAYS, day_problem, number_problem
from orchestrator.segments.catalog import (
    DEFAULT_CATALOG,
    EVENT_FIELDS,
    EVENT_TYPES,
    FIELD_OPERATORS,
    FORBIDDEN_COLUMNS,
    TRAIT_OPERATORS,
    TRAIT_VALUE_CHECKS,
    TRAITS,
    Catalog,
    ValueType,
    catalog_from_context,
)
from orchestrator.segments.cron import cron_error
from orchestrator.segments.sql_reads import SqlSandbox

DEFAULT_TIMEZONE = "Europe/Paris"
#: Union tags of the condition kinds. They contain a space so they can never be mistaken for a
#: field name when the loader turns an error location into a dotted field path.
CONDITION_TAGS: dict[str, str] = {
    "trait": "trait condition",
    "event": "event condition",
    "all": "all condition",
    "any": "any condition",
    "not": "not condition",
}
#: Mailchimp merge tags are upper case letters, digits and underscores (Mailchimp Marketing API,
#: "List Merge Fields", ``tag``); ``EMAIL`` is the address itself and cannot be mapped.
MERGE_TAG_PATTERN = r"^[A-Z][A-Z0-9_]{0,9}$"
AUDIENCE_ID_PATTERN = r"^[A-Za-z0-9_.-]{1,100}$"
#: Owners become Dagster asset owners: an email address or ``team:<name>`` (the rule of
#: ``dagster._core.definitions.utils.is_valid_owner``, 1.13; a test compares both).
OWNER_PATTERN = r"^(?:[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,7}|team:.+)$"

Problem = tuple[tuple[str | int, ...], str]

_SCALAR_SCHEMA = {"type": ["string", "number"]}
_Scalar = Annotated[Any, WithJsonSchema(_SCALAR_SCHEMA)]
_ScalarList = Annotated[
    list[Any], WithJsonSchema({"type": "array", "items": _SCALAR_SCHEMA, "minItems": 1})
]
_Pair = Annotated[
    list[Any],
    WithJsonSchema({"type": "array", "items": _SCALAR_SCHEMA, "minItems": 2, "maxItems": 2}),
]
_NumberPair = Annotated[
    list[Any],
    WithJsonSchema({"type": "array", "items": {"type": "number"}, "minItems": 2, "maxItems": 2}),
]
_DatePair = Annotated[
    list[Any],
    WithJsonSchema(
        {
            "type": "array",
            "items": {"type": "string", "format": "date"},
            "minItems": 2,
            "maxItems": 2,
        }
    ),
]
_Number = Annotated[Any, WithJsonSchema({"type": "number"})]
#: A number of days (``within_days``, ``retention_days``): 1 to :data:`MAX_DAYS`.
_Days = Annotated[StrictInt, Field(gt=0, le=MAX_DAYS)]


class SyncMode(StrEnum):
    """How a destination follows the segment.

    ``mirror``: adds, updates and removes (the destination holds exactly the audience).
    ``upsert``: adds and updates, never removes because someone left the segment (removals for
    withdrawn consent, objection or erasure still happen).
    ``add_only``: adds only; no updates and no removals for leaving the segment.
    """

    MIRROR = "mirror"
    UPSERT = "upsert"
    ADD_ONLY = "add_only"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


def fail(problems: list[Problem]) -> NoReturn:
    """Raise one pydantic ``ValidationError`` with a custom message per (location, message).

    Locations are relative to the value being validated; pydantic prefixes the outer path.
    """
    details = [
        InitErrorDetails(
            type=PydanticCustomError("segment", "{message}", {"message": message}),
            loc=loc,
            input=None,
        )
        for loc, message in problems
    ]
    raise ValidationError.from_exception_data("SegmentSpec", details)


def coerce_value(value_type: ValueType, value: Any) -> str | int | float | date | datetime:
    """Check one condition value against a catalog type and return it in Python form.

    Text -> ``str``; integer -> ``int``; number -> ``int | float``; boolean -> ``bool``;
    timestamp and date -> ``date`` (a whole day) or naive UTC ``datetime`` (an instant; aware
    values are converted to UTC, the warehouse stores naive UTC timestamps).

    Raises:
        ValueError: the value does not fit the type; the message says what was expected.
    """
    if value_type is ValueType.TEXT:
        if isinstance(value, str):
            return value
        if isinstance(value, bool):
            raise ValueError(
                f"expected text, got {str(value).lower()}: YAML reads yes/no/on/off/NO as"
                ' booleans, quote the value (e.g. "NO")'
            )
        raise ValueError(f"expected text, got {value!r}: quote the value")
    if value_type in (ValueType.TIMESTAMP, ValueType.DATE):
        moment = _timestamp(value)
        problem = day_problem(moment)
        if problem:
            raise ValueError(problem)
        return moment
    if value_type is ValueType.BOOLEAN:
        if isinstance(value, bool):
            return value
        raise ValueError(f"expected true or false, got {value!r}")
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"expected a number, got {value!r}")
    if value_type is ValueType.INTEGER and not isinstance(value, int):
        raise ValueError(f"expected a whole number, got {value!r}")
    problem = number_problem(value)
    if problem:
        raise ValueError(problem)
    return value


def _timestamp(value: Any) -> date | datetime:
    if isinstance(value, datetime):
        return _naive_utc(value)
    if isinstance(value, date):
        return value
    if isinstance(value, str):
        try:
            return (
                date.fromisoformat(value)
                if len(value) == 10
                else _naive_utc(datetime.fromisoformat(value))
            )
        except ValueError:
            pass
    raise ValueError(
        f"expected an ISO date like 2024-03-01 or date-time like 2024-03-01T12:00:00, got {value!r}"
    )


def _naive_utc(moment: datetime) -> datetime:
    return moment.astimezone(UTC).replace(tzinfo=None) if moment.tzinfo else moment


def timestamp_bounds(value: date | datetime) -> tuple[datetime, datetime | None]:
    """Bounds of a timestamp value: (start, exclusive end) for a date, (instant, None) else."""
    if isinstance(value, datetime):
        return value, None
    start = datetime(value.year, value.month, value.day)
    return start, start + timedelta(days=1)


def _order_key(value: Any) -> Any:
    return timestamp_bounds(value)[0] if isinstance(value, date) else value


def _unknown(kind: str, name: str, valid: Any) -> str:
    if name in FORBIDDEN_COLUMNS:
        return (
            f"{name!r} is not allowed: a raw identifier is never a segment condition or a"
            f" field; valid {kind}s: {', '.join(valid)}"
        )
    return f"unknown {kind} {name!r}; valid {kind}s: {', '.join(valid)}"


class _Comparison(_Strict):
    """One operator applied to a typed column: exactly one of the operator fields is given."""

    eq: _Scalar = None
    in_: _ScalarList | None = Field(default=None, alias="in")
    gte: _Scalar = None
    lte: _Scalar = None
    between: _Pair | None = None
    is_null: StrictBool | None = None

    def operator(self) -> tuple[str, Any]:
        """The (operator name, raw value) given; operator names as written in YAML."""
        for name in self.model_fields_set:
            if name in _COMPARISON_FIELDS:
                return _COMPARISON_FIELDS[name], getattr(self, name)
        raise AssertionError("validated comparisons always have one operator")

    def _problems(
        self,
        kind: str,
        column: str,
        value_type: ValueType,
        allowed: tuple[str, ...],
        check: Callable[[str], str | None] | None = None,
    ) -> list[Problem]:
        given = [_COMPARISON_FIELDS[n] for n in self.model_fields_set if n in _COMPARISON_FIELDS]
        if len(given) != 1:
            found = ", ".join(sorted(given)) or "none"
            return [((), f"give exactly one operator of {', '.join(allowed)} (found: {found})")]
        op, value = self.operator()
        if op not in allowed:
            return [
                (
                    (op,),
                    f"operator {op!r} does not apply to {kind} {column!r} ({value_type});"
                    f" use one of {', '.join(allowed)}",
                )
            ]
        return _value_problems(op, value, value_type, check)


_COMPARISON_FIELDS = {
    "eq": "eq",
    "in_": "in",
    "gte": "gte",
    "lte": "lte",
    "between": "between",
    "is_null": "is_null",
    "contains": "contains",
}


def _value_problems(
    op: str, value: Any, value_type: ValueType, check: Callable[[str], str | None] | None = None
) -> list[Problem]:
    """Problems of an operator's value: type per item, then ``check`` (a catalog value check,
    e.g. ISO country codes) on each well-typed text item; ``in``/``between`` items are located
    by index (``in[2]``)."""
    if value is None:
        return [((op,), "a value is required (is_null: true matches missing values)")]
    if op == "is_null":
        return []
    if op == "contains":
        return [] if isinstance(value, str) and value else [((op,), "expected non-empty text")]
    items = value if op in ("in", "between") else [value]
    if op == "in" and not items:
        return [((op,), "give at least one value")]
    if op == "between" and len(items) != 2:
        return [((op,), "expected [low, high]")]
    problems: list[Problem] = []
    for index, item in enumerate(items):
        loc = (op, index) if op in ("in", "between") else (op,)
        try:
            coerced = coerce_value(value_type, item)
        except ValueError as error:
            problems.append((loc, str(error)))
            continue
        message = check(coerced) if check is not None and isinstance(coerced, str) else None
        if message:
            problems.append((loc, message))
    if op == "between" and not problems:
        low, high = (_order_key(coerce_value(value_type, item)) for item in items)
        if low > high:
            problems.append(((op,), "low bound is above high bound"))
    return problems


class TraitCondition(_Comparison):
    """A customer trait compared with one operator: ``{trait: country, in: [FR, BE]}``.

    Operators by type: text ``eq``, ``in``, ``is_null``; numbers ``eq``, ``in``, ``gte``,
    ``lte``, ``between`` ([low, high], inclusive), ``is_null``; timestamps the same without
    ``in`` (a date means the whole day). A customer with no value (NULL) never matches a
    comparison, so ``not`` of it includes them. ``country`` values are officially assigned
    ISO 3166-1 alpha-2 codes in upper case (``GB``, not ``UK`` or ``gb``).
    """

    model_config = ConfigDict(json_schema_extra={"minProperties": 2, "maxProperties": 2})

    trait: Annotated[str, WithJsonSchema({"type": "string", "enum": list(TRAITS)})]

    @field_validator("trait")
    @classmethod
    def _known_trait(cls, value: str, info: ValidationInfo) -> str:
        traits = catalog_from_context(info.context).traits
        if value not in traits:
            raise _error(_unknown("trait", value, traits))
        return value

    @model_validator(mode="after")
    def _one_typed_operator(self, info: ValidationInfo) -> TraitCondition:
        value_type = catalog_from_context(info.context).traits[self.trait]
        problems = self._problems(
            "trait",
            self.trait,
            value_type,
            TRAIT_OPERATORS[value_type],
            TRAIT_VALUE_CHECKS.get(self.trait) if value_type is ValueType.TEXT else None,
        )
        if problems:
            fail(problems)
        return self


class FieldCondition(_Comparison):
    """A filter on the matching events' own columns: ``{field: description, contains: MUG}``.

    Operators as for traits, plus ``contains`` (case-insensitive substring) on text fields.
    """

    model_config = ConfigDict(json_schema_extra={"minProperties": 2, "maxProperties": 2})

    field: Annotated[str, WithJsonSchema({"type": "string", "enum": list(EVENT_FIELDS)})]
    contains: Annotated[str | None, WithJsonSchema({"type": "string"})] = None

    @field_validator("field")
    @classmethod
    def _known_field(cls, value: str, info: ValidationInfo) -> str:
        fields = catalog_from_context(info.context).event_fields
        if value not in fields:
            raise _error(_unknown("event field", value, fields))
        return value

    @model_validator(mode="after")
    def _one_typed_operator(self, info: ValidationInfo) -> FieldCondition:
        value_type = catalog_from_context(info.context).event_fields[self.field]
        problems = self._problems(
            "event field", self.field, value_type, FIELD_OPERATORS[value_type]
        )
        if problems:
            fail(problems)
        return self


class ValueBound(_Strict):
    """A bound on the total value (GBP) of the matching events: one of ``gte``, ``lte`` or
    ``between`` ([low, high], inclusive)."""

    model_config = ConfigDict(json_schema_extra={"minProperties": 1, "maxProperties": 1})

    gte: _Number = None
    lte: _Number = None
    between: _NumberPair | None = None

    def operator(self) -> tuple[str, Any]:
        """The (operator, value) given."""
        name = next(iter(self.model_fields_set))
        return name, getattr(self, name)

    @model_validator(mode="after")
    def _one_bound(self) -> ValueBound:
        given = sorted(self.model_fields_set)
        if len(given) != 1:
            found = ", ".join(given) or "none"
            fail([((), f"give exactly one of gte, lte, between (found: {found})")])
        problems = _value_problems(given[0], getattr(self, given[0]), ValueType.NUMBER)
        if problems:
            fail(problems)
        return self


class EventCondition(_Strict):
    """Customers with matching events: ``{event: purchase, within_days: 90}``.

    ``within_days`` (days before the run's as-of time) or ``between`` ([first day, last day],
    ISO dates, both days included) limit when; ``where`` filters on event fields; ``at_least``
    is the number of distinct orders (distinct ``invoice_no``; an event without one counts as
    its own order); ``total_value`` bounds the sum of ``value`` (GBP) over matching events.
    """

    event: Annotated[str, WithJsonSchema({"type": "string", "enum": list(EVENT_TYPES)})]
    within_days: _Days | None = None
    between: _DatePair | None = None
    at_least: Annotated[StrictInt, Field(ge=1, le=MAX_COUNT)] = 1
    total_value: ValueBound | None = None
    where: Annotated[list[FieldCondition], Field(min_length=1)] | None = None

    @field_validator("event")
    @classmethod
    def _known_event(cls, value: str, info: ValidationInfo) -> str:
        catalog = catalog_from_context(info.context)
        if value not in catalog.event_types:
            shown = ", ".join(catalog.event_types)
            more = " (the catalog lists only the first ones)" if catalog.event_types_capped else ""
            raise _error(f"unknown event type {value!r}; valid event types: {shown}{more}")
        return value

    @model_validator(mode="after")
    def _window(self) -> EventCondition:
        if self.within_days is not None and self.between is not None:
            fail([(("between",), "give within_days or between, not both")])
        if self.between is not None:
            fail_if(_date_pair_problems(self.between))
        return self

    def dates(self) -> tuple[date, date] | None:
        """The ``between`` window as (first day, last day), both included, or None."""
        if self.between is None:
            return None
        low, high = (_parse_day(item) for item in self.between)
        assert low is not None and high is not None  # checked at validation
        return low, high


def fail_if(problems: list[Problem]) -> None:
    """Raise :func:`fail` when there are problems."""
    if problems:
        fail(problems)


def _date_pair_problems(items: list[Any]) -> list[Problem]:
    if len(items) != 2:
        return [(("between",), "expected [first day, last day]")]
    days = [_parse_day(item) for item in items]
    for index, (item, day) in enumerate(zip(items, days, strict=True)):
        if day is None:
            return [(("between", index), f"expected an ISO date like 2024-03-01, got {item!r}")]
        problem = day_problem(day)
        if problem:
            return [(("between", index), problem)]
    if days[0] > days[1]:
        return [(("between",), "first day is after last day")]
    return []


def _parse_day(item: Any) -> date | None:
    if isinstance(item, datetime):
        return None
    if isinstance(item, date):
        return item
    try:
        return date.fromisoformat(item) if isinstance(item, str) else None
    except ValueError:
        return None


class AllCondition(_Strict):
    """Every listed condition holds: ``{all: [...]}``."""

    all_: Annotated[list[Condition], Field(min_length=1, alias="all")]


class AnyCondition(_Strict):
    """At least one listed condition holds: ``{any: [...]}``."""

    any_: Annotated[list[Condition], Field(min_length=1, alias="any")]


class NotCondition(_Strict):
    """The condition does not hold: ``{not: {...}}``. Customers with a NULL trait count as not
    matching the inner comparison, so they are included."""

    not_: Condition = Field(alias="not")


def _condition_kind(value: Any) -> str | None:
    if isinstance(value, BaseModel):
        return CONDITION_TAGS[value.__class__.__name__.removesuffix("Condition").lower()]
    if not isinstance(value, dict):
        return None
    kinds = [key for key in CONDITION_TAGS if key in value]
    return CONDITION_TAGS[kinds[0]] if len(kinds) == 1 else None


Condition = Annotated[
    Annotated[TraitCondition, Tag(CONDITION_TAGS["trait"])]
    | Annotated[EventCondition, Tag(CONDITION_TAGS["event"])]
    | Annotated[AllCondition, Tag(CONDITION_TAGS["all"])]
    | Annotated[AnyCondition, Tag(CONDITION_TAGS["any"])]
    | Annotated[NotCondition, Tag(CONDITION_TAGS["not"])],
    Discriminator(
        _condition_kind,
        custom_error_type="condition_kind",
        custom_error_message="a condition is a mapping with exactly one of trait, event, all,"
        " any, not",
    ),
]

for _model in (AllCondition, AnyCondition, NotCondition):
    _model.model_rebuild()


class DestinationEntry(_Strict):
    """One destination the segment syncs to.

    ``destination``: a name declared in ``activation.yaml``, serving the segment's purpose.
    ``audience_id``: the platform's audience or list id (text; quote numeric ids).
    ``mode``: see :class:`SyncMode`.
    ``fields``: merge fields for email destinations only, destination field (Mailchimp merge
    tag, e.g. ``COUNTRY``) -> trait name. Ad destinations receive hashed identifiers only.
    """

    destination: str
    audience_id: Annotated[str, Field(pattern=AUDIENCE_ID_PATTERN)]
    mode: SyncMode
    fields: Annotated[
        dict[str, str],
        WithJsonSchema(
            {
                "type": "object",
                "propertyNames": {"pattern": MERGE_TAG_PATTERN, "not": {"const": "EMAIL"}},
                "additionalProperties": {"type": "string", "enum": list(TRAITS)},
            }
        ),
    ] = Field(default_factory=dict)

    @field_validator("fields")
    @classmethod
    def _fields_are_traits(cls, value: dict[str, str], info: ValidationInfo) -> dict[str, str]:
        traits = catalog_from_context(info.context).traits
        problems: list[Problem] = []
        for tag, trait in value.items():
            if tag == "EMAIL" or not re.match(MERGE_TAG_PATTERN, tag):
                problems.append(
                    ((tag,), f"merge tag {tag!r} must match {MERGE_TAG_PATTERN} and not be EMAIL")
                )
            elif trait not in traits:
                problems.append(((tag,), _unknown("trait", trait, traits)))
        fail_if(problems)
        return value


def normalize_segment_id(name: str) -> str:
    """Segment id from its name: lowercase, runs of other characters than a-z and 0-9 become
    ``_``, leading and trailing ``_`` dropped (``"Spring-Sale 2024"`` -> ``spring_sale_2024``)."""
    return re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_")


def _project(info: ValidationInfo) -> ProjectConfig:
    project = (info.context or {}).get("project")
    if not isinstance(project, ProjectConfig):
        raise TypeError(
            "SegmentSpec validation needs the project config: "
            "SegmentSpec.model_validate(data, context={'project': project_config})"
        )
    return project


def check_select_sql(sql: str, sandbox: SqlSandbox | None = None) -> str:
    """Check a ``sql:`` segment and return it without trailing ``;`` and blanks.

    It must be exactly one SELECT statement that binds against the source model's views
    (``activation.src_customers``, ``activation.src_events``, shaped from the project's catalog:
    :func:`~orchestrator.segments.sql_reads.bind_catalog`) in an in-memory DuckDB with external
    access disabled (``sandbox``, or a fresh one of the default catalog), never reads
    an identifier column such as ``email`` (:data:`FORBIDDEN_COLUMNS`; the columns read come
    from :func:`~orchestrator.segments.sql_reads.columns_read`, so a whole-row reference such
    as ``CAST(c AS VARCHAR)`` or ``c.*`` reads it too: the address is only pseudonymized, GDPR
    Art. 5(1)(c), and the Article 30 register must say what is read), and returns exactly one
    integer column named ``customer_id``.

    Raises:
        ValueError: with a message saying which rule failed.
    """
    with _sandbox(sandbox) as box:
        con = box.connection()
        try:
            statements = con.extract_statements(sql)
        except duckdb.Error as error:
            raise ValueError(f"is not valid SQL: {_first_line(error)}") from None
        if len(statements) != 1:
            raise ValueError(f"must be exactly one statement, found {len(statements)}")
        if statements[0].type != duckdb.StatementType.SELECT:
            raise ValueError(f"must be a SELECT, found {statements[0].type.name}")
        query = sql.strip().rstrip(";").rstrip()
        try:
            columns = con.execute(f"DESCRIBE {query}").fetchall()
        except duckdb.Error as error:
            raise ValueError(f"does not run on the source tables: {_first_line(error)}") from None
        try:
            con.execute(f"DESCRIBE SELECT customer_id FROM (\n{query}\n) AS s")
        except duckdb.Error:
            raise ValueError("cannot be used as a subquery: remove the ';' at its end") from None
        forbidden = sorted(
            column
            for column in box.columns_read(query)
            if column.split(".", 1)[1] in FORBIDDEN_COLUMNS
        )
    if forbidden:
        names = ", ".join(dict.fromkeys(repr(column.split(".", 1)[1]) for column in forbidden))
        raise ValueError(
            f"{names} is not allowed: a raw identifier is never a segment condition (it is only"
            f" pseudonymized, GDPR Art. 5(1)(c)); the query reads {', '.join(forbidden)}. A"
            " whole-row reference (CAST(c AS VARCHAR), c.*, *, COLUMNS(*), {'x': c}) reads"
            " every column: name the columns you need"
        )
    names = [(row[0], row[1]) for row in columns]
    if len(names) != 1 or names[0][0].lower() != "customer_id":
        shown = ", ".join(name for name, _ in names)
        raise ValueError(f"must return exactly one column named customer_id, got: {shown}")
    if names[0][1] not in ("BIGINT", "INTEGER", "HUGEINT", "SMALLINT", "UBIGINT", "UINTEGER"):
        raise ValueError(f"customer_id must be an integer, got {names[0][1]}")
    return query


def _sandbox(sandbox: SqlSandbox | None) -> AbstractContextManager[SqlSandbox]:
    """``sandbox`` as is (its owner closes it), or a fresh one closed after use."""
    return nullcontext(sandbox) if sandbox is not None else SqlSandbox()


def _context_sandbox(info: ValidationInfo) -> AbstractContextManager[SqlSandbox]:
    """The load's sandbox (``context["sql_sandbox"]``, its owner closes it), or a fresh one of
    the project's catalog, closed after use."""
    sandbox = (info.context or {}).get("sql_sandbox")
    if isinstance(sandbox, SqlSandbox):
        return nullcontext(sandbox)
    return SqlSandbox(catalog_from_context(info.context))


def _first_line(error: Exception) -> str:
    return str(error).strip().splitlines()[0]


class SegmentSpec(_Strict):
    """One segment file.

    Fields: ``name`` (its :attr:`id` is the normalized name), ``description``, ``owner`` (an
    email address or ``team:<name>``),
    ``purpose`` (declared in the project config), ``legal_basis`` (accepted by the purpose),
    ``retention_days`` (days a member may stay in a destination after leaving, > 0),
    ``schedule`` (5-field cron), ``timezone`` (IANA name, default Europe/Paris),
    ``schedule_running`` (default false: the Dagster schedule starts stopped), exactly one of
    ``audience`` (conditions) or ``sql`` (a single SELECT returning ``customer_id``), and
    ``destinations`` (at least one, each destination once).
    """

    model_config = ConfigDict(
        json_schema_extra={"oneOf": [{"required": ["audience"]}, {"required": ["sql"]}]}
    )

    name: str
    description: Annotated[str, Field(min_length=1)]
    owner: str
    purpose: str
    legal_basis: LegalBasis
    retention_days: _Days
    schedule: str
    timezone: str = DEFAULT_TIMEZONE
    schedule_running: StrictBool = False
    audience: Condition | None = None
    sql: str | None = None
    destinations: Annotated[list[DestinationEntry], Field(min_length=1)]
    _sql_reads: frozenset[str] = PrivateAttr(default=frozenset())

    _catalog: Catalog = PrivateAttr(default=DEFAULT_CATALOG)

    @property
    def id(self) -> str:
        """The segment id (``^[a-z][a-z0-9_]*$``) used for asset, job and schedule names."""
        return normalize_segment_id(self.name)

    @property
    def catalog(self) -> Catalog:
        """The catalog this segment was validated against (its traits' and fields' types)."""
        return self._catalog

    @model_validator(mode="after")
    def _remember_catalog(self, info: ValidationInfo) -> SegmentSpec:
        self._catalog = catalog_from_context(info.context)
        return self

    @model_validator(mode="after")
    def _no_special_category_for_marketing(self, info: ValidationInfo) -> SegmentSpec:
        from orchestrator.segments.sensitive import sensitive_problems

        project = _project(info)
        purpose = project.purposes.get(self.purpose)
        marketing = getattr(purpose, "marketing", True)
        fail_if(sensitive_problems(self, project.source.sensitive, marketing))
        return self

    @model_validator(mode="before")
    @classmethod
    def _audience_or_sql(cls, data: Any) -> Any:
        if isinstance(data, dict):
            if "audience" in data and "sql" in data:
                fail([(("sql",), "give either audience or sql, not both")])
            if "audience" not in data and "sql" not in data:
                fail([((), "an audience: (conditions) or a sql: (SELECT) section is required")])
        return data

    @field_validator("name")
    @classmethod
    def _name_gives_id(cls, value: str) -> str:
        segment_id = normalize_segment_id(value)
        if not re.match(NAME_PATTERN, segment_id):
            raise _error(
                f"name {value!r} gives id {segment_id!r}, which must start with a letter"
                f" ({NAME_PATTERN})"
            )
        return value

    @field_validator("owner")
    @classmethod
    def _owner_for_dagster(cls, value: str) -> str:
        if not re.match(OWNER_PATTERN, value):
            raise _error(f"owner {value!r} must be an email address or team:<name>")
        return value

    @field_validator("purpose")
    @classmethod
    def _declared_purpose(cls, value: str, info: ValidationInfo) -> str:
        purposes = _project(info).purposes
        if value not in purposes:
            raise _error(f"unknown purpose {value!r}; declared purposes: {', '.join(purposes)}")
        return value

    @field_validator("legal_basis")
    @classmethod
    def _basis_accepted(cls, value: LegalBasis, info: ValidationInfo) -> LegalBasis:
        purpose = _project(info).purposes.get(info.data.get("purpose", ""))
        if purpose is not None and value not in purpose.legal_bases:
            accepted = ", ".join(basis.value for basis in purpose.legal_bases)
            raise _error(
                f"purpose {info.data['purpose']!r} does not accept legal basis {value.value!r}"
                f" (accepted: {accepted})"
            )
        return value

    @field_validator("schedule")
    @classmethod
    def _cron(cls, value: str) -> str:
        problem = cron_error(value)
        if problem:
            raise _error(problem)
        return value

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise _error(
                f"unknown time zone {value!r} (use an IANA name like Europe/Paris)"
            ) from None
        return value

    @field_validator("sql")
    @classmethod
    def _select_only(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is None:
            return None
        try:
            with _context_sandbox(info) as sandbox:
                return check_select_sql(value, sandbox)
        except ValueError as error:
            raise _error(str(error)) from None

    @model_validator(mode="after")
    def _know_what_sql_reads(self, info: ValidationInfo) -> SegmentSpec:
        if self.sql is not None:
            with _context_sandbox(info) as box:
                self._sql_reads = box.columns_read(self.sql)
        return self

    @property
    def sql_reads(self) -> frozenset[str]:
        """``table.column`` of every source column a ``sql:`` segment reads (whole-row
        references expanded; see :mod:`orchestrator.segments.sql_reads`); empty for an
        ``audience:`` segment."""
        return self._sql_reads

    @field_validator("destinations")
    @classmethod
    def _destinations_fit(
        cls, value: list[DestinationEntry], info: ValidationInfo
    ) -> list[DestinationEntry]:
        fail_if(_destination_problems(value, _project(info), info.data.get("purpose")))
        return value


def _destination_problems(
    entries: list[DestinationEntry], project: ProjectConfig, purpose: str | None
) -> list[Problem]:
    problems: list[Problem] = []
    seen: dict[str, int] = {}
    audiences: dict[tuple[str, str, str, str], int] = {}
    for index, entry in enumerate(entries):
        config = project.destinations.get(entry.destination)
        where = (index, "destination")
        if config is None:
            declared = ", ".join(project.destinations)
            problems.append(
                (
                    where,
                    f"unknown destination {entry.destination!r}; declared destinations: {declared}",
                )
            )
            continue
        if entry.destination in seen:
            problems.append(
                (
                    where,
                    f"destination {entry.destination!r} is already listed"
                    f" at destinations[{seen[entry.destination]}]",
                )
            )
        seen.setdefault(entry.destination, index)
        identity = config.audience_identity(entry.audience_id)
        if identity in audiences and entries[audiences[identity]].destination != entry.destination:
            problems.append(
                (
                    (index, "audience_id"),
                    f"{entry.destination} audience {entry.audience_id!r} is the same audience as"
                    f" destinations[{audiences[identity]}] (same platform account and list)",
                )
            )
        audiences.setdefault(identity, index)
        if purpose is not None and purpose not in config.purposes:
            problems.append(
                (
                    where,
                    f"destination {entry.destination!r} does not serve purpose"
                    f" {purpose!r} (it serves: {', '.join(config.purposes)})",
                )
            )
        if entry.fields and config.kind is not DestinationKind.EMAIL:
            problems.append(
                (
                    (index, "fields"),
                    f"fields are not allowed for {config.kind.value}"
                    f" destination {entry.destination!r}: ad platforms receive hashed"
                    " identifiers only",
                )
            )
    return problems


def _error(message: str) -> PydanticCustomError:
    return PydanticCustomError("segment", "{message}", {"message": message})
