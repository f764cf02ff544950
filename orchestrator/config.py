"""Project configuration (``activation.yaml``): controller, purposes and destination instances.

The file holds no secret: each destination names the environment variables that hold its base
URL and token, read by the destination resources at run time.
"""

from __future__ import annotations

import os
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Literal, NoReturn

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_core import InitErrorDetails, PydanticCustomError

from orchestrator.limits import MAX_DAYS
from orchestrator.model.spec import DEFAULT_MODEL, SourceModel
from orchestrator.segments.catalog import DEFAULT_CATALOG, Catalog
from orchestrator.warehouse.product_schema import (
    DEFAULT_PRODUCT_SCHEMA,
    PRODUCT_SCHEMA_PATTERN,
    RESERVED_SCHEMAS,
    is_plain_identifier,
)

NAME_PATTERN = r"^[a-z][a-z0-9_]*$"
#: The catalog file's name, beside ``activation.yaml`` (``activation catalog`` writes it).
CATALOG_FILE = "catalog.json"


class LegalBasis(StrEnum):
    """Legal bases a segment may rely on (GDPR Art. 6(1)(a) consent, 6(1)(f) legitimate
    interest; soft opt-in for email to existing customers under ePrivacy Directive Art. 13(2))."""

    CONSENT = "consent"
    LEGITIMATE_INTEREST = "legitimate_interest"


class DestinationKind(StrEnum):
    AD = "ad"
    EMAIL = "email"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


#: Consent fields each platform takes with an upload (Google Data Manager API ``Consent``:
#: https://developers.google.com/data-manager/api/reference/rest/v1/Consent).
CONSENT_SIGNALS: dict[str, tuple[str, ...]] = {"google": ("ad_user_data", "ad_personalization")}


class Contact(_Strict):
    """A person or body the register names: ``name``, postal ``address``, ``contact`` (email)."""

    name: str
    address: str = ""
    contact: str


class Controller(_Strict):
    """The controller named in the Article 30(1)(a) register, with its data protection officer
    (``dpo``, Art. 37-39) and its representative in the Union (``eu_representative``, Art. 27:
    required of a controller established outside the EU)."""

    name: str
    address: str = ""
    contact: str
    dpo: Contact | None = None
    eu_representative: Contact | None = None


class Purpose(_Strict):
    """A declared processing purpose.

    ``consent_validity_days``: days after which a granted consent no longer counts (days).
    ``legal_bases``: the bases a segment with this purpose may declare.
    ``marketing``: whether the purpose is direct marketing (GDPR Art. 21(2)-(3): an objection
    to direct marketing ends every such purpose). Default true; a service purpose (order
    updates, account notices) sets ``marketing: false``. A destination that serves one
    marketing purpose serves only marketing purposes.
    ``consent_signals``: platform -> consent field -> the purpose whose valid consent grants it
    (e.g. ``{"google": {"ad_user_data": "ad_targeting", "ad_personalization":
    "ad_personalization"}}``): a member's signal is granted only when their latest consent
    record for that purpose is a grant still valid; denied otherwise (see
    :mod:`orchestrator.consent_signals`).
    """

    description: str
    consent_validity_days: int = Field(gt=0, le=MAX_DAYS)
    legal_bases: tuple[LegalBasis, ...] = Field(min_length=1)
    marketing: bool = True
    consent_signals: dict[str, dict[str, str]] = Field(default_factory=dict)

    @field_validator("consent_signals")
    @classmethod
    def _known_signals(cls, value: dict[str, dict[str, str]]) -> dict[str, dict[str, str]]:
        for platform, signals in value.items():
            known = CONSENT_SIGNALS.get(platform)
            if known is None:
                raise ValueError(f"no consent signals are known for platform {platform!r}")
            unknown = set(signals) - set(known)
            if unknown:
                raise ValueError(
                    f"{platform}: unknown consent signals {sorted(unknown)}; known: {list(known)}"
                )
        return value


class Severity(StrEnum):
    """How loud a failed check is: ``warn`` (yellow in the UI) or ``error`` (red)."""

    WARN = "warn"
    ERROR = "error"


class RejectionPolicy(_Strict):
    """How the ``rejections`` check of a destination's syncs judges refused rows.

    ``max_permanent``: permanent refusals (rows the platform will not take until they change)
    tolerated before the check fails (rows; default 0: any). ``permanent_severity``: the
    severity of that failure (default ``warn``). ``privacy_removal_severity``: the severity
    when the destination refused to remove someone who asked for erasure (GDPR Art. 17) or
    objected (Art. 21): default ``error``, whatever ``max_permanent`` says.
    """

    max_permanent: int = Field(default=0, ge=0)
    permanent_severity: Severity = Severity.WARN
    privacy_removal_severity: Severity = Severity.ERROR


class RecipientRole(StrEnum):
    """What a recipient is to the controller (GDPR Art. 28 processor, Art. 26 joint
    controller: e.g. an ad platform matching custom audiences under its joint-controller terms)."""

    PROCESSOR = "processor"
    JOINT_CONTROLLER = "joint_controller"


class DestinationConfig(_Strict):
    """A destination instance: which platform client, which purposes it serves, where its data
    goes (country and transfer safeguard for the register), and the environment variable names
    of its base URL and token. ``account_id``: the operating account a Google destination
    writes to (the Google Ads customer id; required for ``google``, not a secret). For the
    register (Art. 30(1)(d)-(e)): ``legal_entity`` (the company receiving the data), ``role``
    (:class:`RecipientRole`) and ``dpa_reference`` (the data processing agreement or
    joint-controller arrangement, Art. 28(3) / 26(1))."""

    platform: str = Field(pattern=r"^(meta|mailchimp|google)$")
    kind: DestinationKind
    purposes: tuple[str, ...] = Field(min_length=1)
    country: str
    transfer_safeguard: str
    base_url_env: str
    token_env: str
    normalization: str = Field(default="base", pattern=r"^(base|google)$")
    rejections: RejectionPolicy = RejectionPolicy()
    legal_entity: str = ""
    role: RecipientRole = RecipientRole.PROCESSOR
    dpa_reference: str = ""
    account_id: str | None = Field(default=None, pattern=r"^[0-9A-Za-z_\-]+$")

    @model_validator(mode="before")
    @classmethod
    def _google_normalizes_like_google(cls, data: object) -> object:
        """A ``google`` destination matches on the Google-normalized email unless told
        otherwise (Gmail dots removed: Data Manager API formatting guide,
        https://developers.google.com/data-manager/api/get-started/formatting)."""
        if isinstance(data, dict) and data.get("platform") == "google":
            return {"normalization": "google", **data}
        return data

    @model_validator(mode="after")
    def _google_needs_account(self) -> DestinationConfig:
        if self.platform == "google" and not self.account_id:
            raise ValueError("a google destination needs account_id (the operating account)")
        return self

    def audience_identity(self, audience_id: str) -> tuple[str, str, str, str]:
        """What makes an audience one list at one platform account: (platform, base URL
        environment variable, token environment variable, audience or list id). Two
        destination names with the same platform, URL and token variables reach the same
        account, so the same ``audience_id`` under both is one audience."""
        return (self.platform, self.base_url_env, self.token_env, audience_id)


class SourceRetention(_Strict):
    """How long a person's source records may feed an audience (days), from the last action
    of the person.

    ``prospect_days``: a person with no purchase, counted from collection
    (``customers.created_at``) or their last inbound contact (``customers.last_contact_at``),
    whichever is later. ``customer_days``: a person with a purchase, counted from their last
    purchase or last inbound contact, whichever is later.

    Defaults: 3 years for both, the CNIL's reference for commercial prospection (CNIL,
    "Référentiel relatif aux traitements de données à caractère personnel mis en œuvre aux fins
    de gestion des activités commerciales", 2021, section on retention: prospects 3 years from
    collection or the last contact coming from the prospect; customers 3 years from the end of
    the commercial relationship), applying GDPR Art. 5(1)(e) (storage limitation).
    """

    prospect_days: int = Field(default=1095, gt=0, le=MAX_DAYS)
    customer_days: int = Field(default=1095, gt=0, le=MAX_DAYS)


class AlertsConfig(_Strict):
    """Where the alerts sensor posts (``orchestrator.alerts``): ``webhook_url_env`` names the
    environment variable holding the webhook URL (a secret: never in this file)."""

    webhook_url_env: str = Field(pattern=r"^[A-Z][A-Z0-9_]*$")


class DuckDBWarehouse(_Strict):
    """The embedded warehouse (the default): a DuckDB file. ``path``: the file, relative to
    the project folder (:func:`orchestrator.warehouse.factory.duckdb_path_for`: the
    ``ACTIVATION_WAREHOUSE`` environment variable wins when set); None: the file
    ``ACTIVATION_WAREHOUSE`` names, else ``.data/warehouse.duckdb``. ``product_schema``: the
    schema of the product's own tables and views (default ``activation``; a plain lowercase
    identifier, never a schema the source model reads from: :class:`ProjectConfig`)."""

    kind: Literal["duckdb"] = "duckdb"
    path: str | None = None
    product_schema: str = DEFAULT_PRODUCT_SCHEMA  # checked by ProjectConfig (file:line)


class PostgresWarehouse(_Strict):
    """A PostgreSQL server (15 or later) as the warehouse.

    ``url``: ``postgresql://user@host:port/database`` (query options such as ``sslmode``
    allowed); a password written in it is refused. ``password_env``: the environment
    variable holding the password (a secret: never in this file). ``statement_timeout_s``:
    a statement running longer is cancelled and the stage fails, rolled back (seconds; 0:
    none). ``connect_timeout_s``: how long to wait for the server (seconds).
    ``search_path``: schemas (comma-separated) where unqualified table names of the source
    model are found (default ``public``). ``product_schema``: the schema of the product's
    own tables, views and functions in that database (default ``activation``; created by the
    product: the user needs ``CREATE`` on the database, or the schema created and granted to
    it; never a schema the source model reads from, nor one of ``search_path``).
    """

    model_config = ConfigDict(extra="forbid", frozen=True, hide_input_in_errors=True)

    kind: Literal["postgres"]
    url: str = Field(pattern=r"^postgres(ql)?://")
    password_env: str = Field(pattern=r"^[A-Z][A-Z0-9_]*$")
    statement_timeout_s: float = Field(default=600, ge=0)
    connect_timeout_s: float = Field(default=10, gt=0)
    search_path: str = Field(default="public", pattern=r"^[a-z_][a-z0-9_]*(,[a-z_][a-z0-9_]*)*$")
    product_schema: str = DEFAULT_PRODUCT_SCHEMA  # checked by ProjectConfig (file:line)

    @field_validator("url")
    @classmethod
    def _no_password_in_url(cls, value: str) -> str:
        from orchestrator.warehouse.postgres import PostgresTarget

        PostgresTarget.from_url(value)  # raises ValueError naming the problem (never a value)
        return value


#: ``warehouse:`` of ``activation.yaml``: which backend, and how to reach it.
WarehouseConfig = Annotated[DuckDBWarehouse | PostgresWarehouse, Field(discriminator="kind")]


class ProjectConfig(_Strict):
    """The whole ``activation.yaml``. ``retention`` is optional (CNIL defaults); ``alerts``
    is optional (no alerts sensor without it); ``source`` is the declared source model
    (:mod:`orchestrator.model.spec`; default: the tables
    ``orchestrator.warehouse.schema.create_source_schema`` creates); ``warehouse`` chooses
    the backend (:class:`DuckDBWarehouse`, the default, or :class:`PostgresWarehouse`).

    Cross-field rules: every purpose a destination serves is declared; a destination that
    serves a marketing purpose (:attr:`Purpose.marketing`) serves only marketing purposes, so a
    person who opted out of marketing is never reached on a marketing list under another name
    (GDPR Art. 21(3), ePrivacy Art. 13).
    """

    controller: Controller
    purposes: dict[str, Purpose]
    destinations: dict[str, DestinationConfig]
    retention: SourceRetention = SourceRetention()
    alerts: AlertsConfig | None = None
    source: SourceModel = DEFAULT_MODEL
    warehouse: WarehouseConfig = DuckDBWarehouse()
    _catalog: Catalog = PrivateAttr(default=DEFAULT_CATALOG)

    @property
    def catalog(self) -> Catalog:
        """The committed catalog of the source model (:mod:`orchestrator.model.catalog`), or
        :data:`orchestrator.segments.catalog.DEFAULT_CATALOG` when the project has none."""
        return self._catalog

    @property
    def product_schema(self) -> str:
        """The schema of the product's own tables (``warehouse.product_schema``)."""
        return self.warehouse.product_schema

    def with_catalog(self, catalog: Catalog) -> ProjectConfig:
        """A copy of this config validating segments against ``catalog``."""
        copy = self.model_copy()
        copy._catalog = catalog
        return copy

    @model_validator(mode="after")
    def _signals_name_purposes(self) -> ProjectConfig:
        problems: list[tuple[tuple[str | int, ...], str]] = [
            (
                ("purposes", name, "consent_signals", platform, signal),
                f"{source!r} is not a declared purpose",
            )
            for name, purpose in self.purposes.items()
            for platform, signals in purpose.consent_signals.items()
            for signal, source in signals.items()
            if source not in self.purposes
        ]
        if problems:
            _fail(problems)
        return self

    @model_validator(mode="after")
    def _product_schema_apart(self) -> ProjectConfig:
        """Our tables are never mixed with the user's: the product schema is none of the
        schemas the source model reads from (nor, on PostgreSQL, of ``search_path``, where
        its unqualified names are found), nor a backend's own or default schema."""
        schema = self.warehouse.product_schema
        if not is_plain_identifier(schema):
            _fail(
                [
                    (
                        ("warehouse", "product_schema"),
                        f"{schema!r} is not a plain SQL identifier: lowercase letters, digits "
                        f"and _, not starting with a digit, at most 63 characters "
                        f"({PRODUCT_SCHEMA_PATTERN})",
                    )
                ]
            )
        users = user_schemas(self.source, self.warehouse)
        if schema in users or schema in RESERVED_SCHEMAS:
            where = (
                f"the source model reads from the schema {schema!r}"
                if schema in users
                else f"{schema!r} is a schema of the warehouse itself"
            )
            _fail(
                [
                    (
                        ("warehouse", "product_schema"),
                        f"{where}; the product's own tables must stay apart from the "
                        "company's: name a schema of their own (default "
                        f"{DEFAULT_PRODUCT_SCHEMA!r})",
                    )
                ]
            )
        return self

    @field_validator("purposes", "destinations")
    @classmethod
    def _names_are_identifiers(cls, value: dict) -> dict:
        import re

        for name in value:
            if not re.match(NAME_PATTERN, name):
                raise ValueError(f"{name!r} must match {NAME_PATTERN}")
        return value

    @model_validator(mode="after")
    def _destinations_serve_declared_purposes(self) -> ProjectConfig:
        problems: list[tuple[tuple[str | int, ...], str]] = []
        for name, destination in self.destinations.items():
            loc: tuple[str | int, ...] = ("destinations", name, "purposes")
            unknown = [p for p in destination.purposes if p not in self.purposes]
            for purpose in unknown:
                index = destination.purposes.index(purpose)
                declared = ", ".join(self.purposes)
                problems.append(
                    ((*loc, index), f"unknown purpose {purpose!r}; declared purposes: {declared}")
                )
            if unknown:
                continue
            marketing = [p for p in destination.purposes if self.purposes[p].marketing]
            other = [p for p in destination.purposes if not self.purposes[p].marketing]
            if marketing and other:
                problems.append(
                    (
                        loc,
                        f"destination {name!r} is used for marketing ({', '.join(marketing)})"
                        f" and may serve only marketing purposes, not {', '.join(other)}"
                        " (marketing: false); declare another destination for it",
                    )
                )
        if problems:
            _fail(problems)
        return self


def user_schemas(model: SourceModel, warehouse: DuckDBWarehouse | PostgresWarehouse) -> set[str]:
    """The schemas ``model`` reads from, lowercased: the schema of each ``table``, the tables
    each ``select`` names (parsed with SQLGlot), and where unqualified names are found
    (DuckDB ``main``; PostgreSQL every schema of ``search_path``). A SELECT that does not
    parse adds nothing here (the source model's own check reports it)."""
    import sqlglot
    import sqlglot.errors

    default = (
        set(warehouse.search_path.split(","))
        if isinstance(warehouse, PostgresWarehouse)
        else {"main"}
    )
    found = set(default)
    relations = [model.customers, *model.events, model.consents]
    if model.privacy_requests is not None:
        relations.append(model.privacy_requests)
    for relation in relations:
        if relation.table is not None:
            parts = relation.table.split(".")
            if len(parts) > 1:
                found.add(parts[-2].lower())
            continue
        try:
            trees = sqlglot.parse(str(relation.select), read="duckdb")
        except sqlglot.errors.SqlglotError:
            continue
        for tree in trees:
            for table in tree.find_all(sqlglot.exp.Table) if tree is not None else ():
                if table.db:
                    found.add(table.db.lower())
    return found


def _fail(problems: list[tuple[tuple[str | int, ...], str]]) -> NoReturn:
    details = [
        InitErrorDetails(
            type=PydanticCustomError("config", "{message}", {"message": message}),
            loc=loc,
            input=None,
        )
        for loc, message in problems
    ]
    raise ValidationError.from_exception_data("ProjectConfig", details)


class ProjectConfigError(ValueError):
    """``activation.yaml`` is invalid; ``errors`` lists every problem as a
    :class:`orchestrator.segments.loader.SegmentError` (``file:line field: message``); the
    message is one problem per line."""

    def __init__(self, errors: list) -> None:
        self.errors = list(errors)
        super().__init__("\n".join(str(error) for error in self.errors))


def load_project_config(path: Path) -> ProjectConfig:
    """Read and validate ``activation.yaml`` with the same rules as segment files: YAML
    aliases, duplicate keys, and field errors are reported with file, line and field.

    Raises:
        FileNotFoundError: the file is missing.
        ProjectConfigError: invalid YAML, a duplicate key, or a field error (each problem as
            ``activation.yaml:12 destinations.mailchimp.purposes: ...``).
    """
    from orchestrator.segments.loader import SegmentValidationError, parse_yaml_model

    text = Path(path).read_text(encoding="utf-8")
    try:
        project = parse_yaml_model(text, Path(path), ProjectConfig)
    except SegmentValidationError as error:
        raise ProjectConfigError(error.errors) from None
    return _with_committed_catalog(project, Path(path))


def catalog_path_for(config_path: Path) -> Path:
    """The catalog file of a project: ``ACTIVATION_CATALOG``, else ``catalog.json`` beside
    its ``activation.yaml``."""
    env = os.environ.get("ACTIVATION_CATALOG")
    return Path(env) if env else Path(config_path).parent / CATALOG_FILE


def _with_committed_catalog(project: ProjectConfig, config_path: Path) -> ProjectConfig:
    """``project`` with the catalog file read (never the warehouse), when there is one.

    Raises:
        pydantic.ValidationError: the catalog file is not a valid catalog.
    """
    path = catalog_path_for(config_path)
    if not path.is_file():
        return project
    return project.with_catalog(Catalog.model_validate_json(path.read_text(encoding="utf-8")))
