"""The source model declaration (``source:`` in ``activation.yaml``), parsed by pydantic.

The company's warehouse is read as it is: each role names a table or view (schema-qualified,
e.g. ``crm.contacts``) or a read-only SELECT, and the columns that play each part. Nothing is
copied: :mod:`orchestrator.model.views` renders the declaration into canonical views in the
product's own schema, which every reader uses.

Roles:

``customers`` (the parent model, one row per person): ``key`` (integer customer key),
``email`` (the raw address), ``traits`` (``all``, a list of column names, or ``{exclude:
[...]}``; types come from the warehouse), ``collected_at`` (when the record was collected:
the retention clock of a prospect starts there) and ``own_action_columns`` (columns that only
the person's own actions move: a last order, click or reply; never an import, a CRM update or
an email open).

``events`` (one or more sources): ``key``, ``time`` (a timestamp column), either ``type_column``
(its distinct values become event types) or ``type`` (a fixed type), optional ``id`` (unique
event id; derived from key, time and type when absent), ``value`` (amount summed by
``total_value``), ``order`` (what ``at_least`` counts distinct), and ``fields`` (columns a
segment may filter on, by their own names).

``purchase_event`` names the event type that makes a person a customer (soft opt-in,
retention); ``own_action_events`` the event types that are the person's own actions and move the
retention clock (the purchase always does).

``consents`` and ``privacy_requests``: a source with a column mapping (canonical name -> the
source's column) and value mappings (canonical value -> the source's words). Rows whose values
do not map are never read as consent (or as a request): they are left out of the view and
counted (:func:`orchestrator.model.views.unmapped_counts`). ``ours`` lists the consent sources
and notice versions collected under our own notice; a consent from anywhere else is unproven
(a partner's notice that did not name us is no consent for us: CNIL, deliberation
SAN-2023-015 of 12 October 2023 against Canal+).
"""

from __future__ import annotations

import re
from enum import StrEnum
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

IDENTIFIER = r"^[A-Za-z_][A-Za-z0-9_]*$"
#: ``table`` values: one to three dotted identifiers (``main.customers``, ``crm.contacts``).
QUALIFIED_NAME = r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*){0,2}$"

#: Column names the canonical customers view adds itself; a trait may not take them.
CUSTOMER_RESERVED = (
    "customer_id",
    "email",
    "collected_at",
    "last_own_action_at",
    "own_action_times",
)
#: Column names the canonical events view adds itself; a field may not take them.
EVENT_RESERVED = (
    "event_id",
    "customer_id",
    "event_type",
    "occurred_at",
    "value",
    "order_id",
    "is_purchase",
    "own_action",
)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class _Relation(_Strict):
    """A table or view (``table``, schema-qualified) or a read-only SELECT (``select``)."""

    table: str | None = Field(default=None, pattern=QUALIFIED_NAME)
    select: str | None = None

    @model_validator(mode="after")
    def _one_of_table_or_select(self) -> _Relation:
        if (self.table is None) == (self.select is None):
            raise ValueError("give exactly one of 'table' or 'select'")
        return self

    def relation_sql(self) -> str:
        """The FROM item: the table name, or the SELECT in parentheses."""
        if self.table is not None:
            return self.table
        return "(\n" + str(self.select).strip().rstrip(";") + "\n)"

    def described(self) -> str:
        """How a message names the relation: the table, or ``the customers SELECT``."""
        return self.table or "the declared SELECT"


class TraitExclude(_Strict):
    exclude: tuple[str, ...] = ()


class CustomersModel(_Relation):
    """The parent model: one row per person. See the module docstring."""

    key: str = Field(default="customer_id", pattern=IDENTIFIER)
    email: str = Field(default="email", pattern=IDENTIFIER)
    traits: Literal["all"] | tuple[str, ...] | TraitExclude = "all"
    collected_at: str | None = Field(default=None, pattern=IDENTIFIER)
    own_action_columns: tuple[str, ...] = ()

    @model_validator(mode="after")
    def _names(self) -> CustomersModel:
        for name in (*self.own_action_columns, *self.listed_traits()):
            if not re.match(IDENTIFIER, name):
                raise ValueError(f"{name!r} is not a column name")
        return self

    def listed_traits(self) -> tuple[str, ...]:
        """The trait columns named in the declaration (empty for ``all`` / exclude)."""
        return self.traits if isinstance(self.traits, tuple) else ()

    def excluded_traits(self) -> tuple[str, ...]:
        return self.traits.exclude if isinstance(self.traits, TraitExclude) else ()


class EventSource(_Relation):
    """One event source. See the module docstring."""

    name: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    key: str = Field(default="customer_id", pattern=IDENTIFIER)
    time: str = Field(pattern=IDENTIFIER)
    type_column: str | None = Field(default=None, pattern=IDENTIFIER)
    type: str | None = Field(default=None, min_length=1)
    id: str | None = Field(default=None, pattern=IDENTIFIER)
    value: str | None = Field(default=None, pattern=IDENTIFIER)
    order: str | None = Field(default=None, pattern=IDENTIFIER)
    fields: tuple[str, ...] = ()

    @model_validator(mode="after")
    def _one_type(self) -> EventSource:
        if (self.type_column is None) == (self.type is None):
            raise ValueError("give exactly one of 'type_column' or 'type'")
        for name in self.fields:
            if not re.match(IDENTIFIER, name):
                raise ValueError(f"{name!r} is not a column name")
            if name in EVENT_RESERVED and name != "value":
                raise ValueError(f"field {name!r} collides with a column the model sets itself")
        return self


#: Canonical consent columns, in view order.
CONSENT_COLUMNS = (
    "consent_id",
    "customer_id",
    "purpose",
    "status",
    "recorded_at",
    "source",
    "notice_version",
)
#: Canonical privacy request columns, in view order.
REQUEST_COLUMNS = ("request_id", "customer_id", "subject_key", "request_type", "received_at")


class ConsentOwnership(_Strict):
    """Consent sources and notice versions collected under our own notice (empty: any)."""

    sources: tuple[str, ...] = ()
    notice_versions: tuple[str, ...] = ()


class ConsentsModel(_Relation):
    """The consent log: ``columns`` maps canonical names (:data:`CONSENT_COLUMNS`) to the
    source's columns (default: same name); ``status_values`` maps ``granted`` / ``withdrawn``
    to the source's words; ``purpose_values`` maps each declared purpose to the source's purpose
    names (default: the purpose's own name)."""

    columns: dict[str, str] = {}
    status_values: dict[Literal["granted", "withdrawn"], tuple[str, ...]] = {
        "granted": ("granted",),
        "withdrawn": ("withdrawn",),
    }
    purpose_values: dict[str, tuple[str, ...]] = {}
    ours: ConsentOwnership = ConsentOwnership()

    @model_validator(mode="after")
    def _known_columns(self) -> ConsentsModel:
        _check_columns(self.columns, CONSENT_COLUMNS)
        _check_values(self.status_values)
        _check_values(self.purpose_values)
        return self

    def column(self, name: str) -> str:
        return self.columns.get(name, name)


class RequestsModel(_Relation):
    """Privacy requests: ``columns`` maps canonical names (:data:`REQUEST_COLUMNS`) to the
    source's columns; ``type_values`` maps ``erasure`` (GDPR Art. 17) and ``objection`` (Art.
    21) to the source's words. ``subject_key`` holds a SHA-256 subject key or a raw address
    (normalized and hashed in the view)."""

    columns: dict[str, str] = {}
    type_values: dict[Literal["erasure", "objection"], tuple[str, ...]] = {
        "erasure": ("erasure",),
        "objection": ("objection",),
    }

    @model_validator(mode="after")
    def _known_columns(self) -> RequestsModel:
        _check_columns(self.columns, REQUEST_COLUMNS)
        _check_values(self.type_values)
        return self

    def column(self, name: str) -> str:
        return self.columns.get(name, name)


def _check_columns(columns: dict[str, str], canonical: tuple[str, ...]) -> None:
    for name, column in columns.items():
        if name not in canonical:
            raise ValueError(
                f"unknown column role {name!r}: expected one of {', '.join(canonical)}"
            )
        if not re.match(IDENTIFIER, column):
            raise ValueError(f"{column!r} is not a column name")


def _check_values(mapping: dict[str, tuple[str, ...]]) -> None:
    seen: dict[str, str] = {}
    for canonical, words in mapping.items():
        for word in words:
            if word in seen and seen[word] != canonical:
                raise ValueError(f"{word!r} maps to both {seen[word]!r} and {canonical!r}")
            seen[word] = canonical


class SpecialCategory(StrEnum):
    """The special categories of personal data of GDPR Art. 9(1)."""

    RACIAL_OR_ETHNIC_ORIGIN = "racial_or_ethnic_origin"
    POLITICAL_OPINIONS = "political_opinions"
    RELIGIOUS_OR_PHILOSOPHICAL_BELIEFS = "religious_or_philosophical_beliefs"
    TRADE_UNION_MEMBERSHIP = "trade_union_membership"
    GENETIC = "genetic"
    BIOMETRIC = "biometric"
    HEALTH = "health"
    SEX_LIFE_OR_SEXUAL_ORIENTATION = "sex_life_or_sexual_orientation"


class SensitiveRule(_Strict):
    """Data that reveals a special category (GDPR Art. 9(1)): whole ``traits`` or event
    ``fields``, or ``values``: column (a trait, an event field, or ``event_type``) -> words that
    reveal it when a condition names them (case-insensitive; e.g. ``description: [PREGNANCY
    TEST]``). Such data is refused in any segment of a marketing purpose, in merge fields and
    in ``sql:`` segments (:mod:`orchestrator.segments.sensitive`)."""

    category: SpecialCategory
    traits: tuple[str, ...] = ()
    fields: tuple[str, ...] = ()
    values: dict[str, tuple[str, ...]] = {}


class RestrictedCategory(StrEnum):
    """Data that is not a special category of GDPR Art. 9 but that ad platforms restrict in
    audiences. ``financial``: financial status (income, credit score, debt, solvency). Meta
    flags custom audiences that suggest "specific health conditions" or "financial status
    (e.g., 'credit score', 'high income')" and blocks their use and updates (since 2 September
    2025; https://developers.facebook.com/docs/marketing-api/reference/custom-audience/).
    Health is marked as a special category (:class:`SpecialCategory`)."""

    FINANCIAL = "financial"


class RestrictedRule(_Strict):
    """Data that suggests a :class:`RestrictedCategory` (same shape as :class:`SensitiveRule`:
    whole ``traits`` or event ``fields``, or ``values``: column -> words). Unlike Art. 9 data
    it is not refused: a segment bound for an ad platform that reads it gets a warning
    (:mod:`orchestrator.segments.restricted`)."""

    category: RestrictedCategory
    traits: tuple[str, ...] = ()
    fields: tuple[str, ...] = ()
    values: dict[str, tuple[str, ...]] = {}


class SourceModel(_Strict):
    """The whole ``source:`` section. See the module docstring. ``sensitive``: the
    special-category data of the model (:class:`SensitiveRule`); ``restricted``: data ad
    platforms restrict in audiences, such as financial status (:class:`RestrictedRule`)."""

    customers: CustomersModel
    events: tuple[EventSource, ...] = Field(min_length=1)
    purchase_event: str = "purchase"
    own_action_events: tuple[str, ...] = ()
    consents: ConsentsModel
    privacy_requests: RequestsModel | None = None
    sensitive: tuple[SensitiveRule, ...] = ()
    restricted: tuple[RestrictedRule, ...] = ()

    @model_validator(mode="after")
    def _unique_sources(self) -> SourceModel:
        names = [source.name for source in self.events]
        duplicated = sorted({name for name in names if names.count(name) > 1})
        if duplicated:
            raise ValueError(f"event source names must be unique: {', '.join(duplicated)}")
        return self


#: The layout of the tables ``orchestrator.warehouse.schema.create_source_schema`` creates (the
#: tests' fixture layout and the benchmark's): ``main.customers``, ``main.events``,
#: ``main.consents``, ``main.privacy_requests`` with the product's own names and words.
DEFAULT_MODEL = SourceModel(
    customers=CustomersModel(
        table="main.customers",
        collected_at="created_at",
        own_action_columns=("last_contact_at",),
    ),
    events=(
        EventSource(
            name="events",
            table="main.events",
            time="occurred_at",
            type_column="event_type",
            id="event_id",
            value="value",
            order="invoice_no",
            fields=("invoice_no", "stock_code", "description", "quantity", "unit_price", "value"),
        ),
    ),
    consents=ConsentsModel(table="main.consents"),
    privacy_requests=RequestsModel(table="main.privacy_requests"),
)
