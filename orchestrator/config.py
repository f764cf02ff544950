"""Project configuration (``activation.yaml``): controller, purposes and destination instances.

The file holds no secret: each destination names the environment variables that hold its base
URL and token, read by the destination resources at run time.
"""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import NoReturn

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic_core import InitErrorDetails, PydanticCustomError

from orchestrator.limits import MAX_DAYS

NAME_PATTERN = r"^[a-z][a-z0-9_]*$"


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


class Controller(_Strict):
    """The controller named in the Article 30(1)(a) register."""

    name: str
    address: str = ""
    contact: str


class Purpose(_Strict):
    """A declared processing purpose.

    ``consent_validity_days``: days after which a granted consent no longer counts (days).
    ``legal_bases``: the bases a segment with this purpose may declare.
    ``marketing``: whether the purpose is direct marketing (GDPR Art. 21(2)-(3): an objection
    to direct marketing ends every such purpose). Default true; a service purpose (order
    updates, account notices) sets ``marketing: false``. A destination that serves one
    marketing purpose serves only marketing purposes.
    """

    description: str
    consent_validity_days: int = Field(gt=0, le=MAX_DAYS)
    legal_bases: tuple[LegalBasis, ...] = Field(min_length=1)
    marketing: bool = True


class DestinationConfig(_Strict):
    """A destination instance: which platform client, which purposes it serves, where its data
    goes (country and transfer safeguard for the register), and the environment variable names
    of its base URL and token."""

    platform: str = Field(pattern=r"^(meta|mailchimp)$")
    kind: DestinationKind
    purposes: tuple[str, ...] = Field(min_length=1)
    country: str
    transfer_safeguard: str
    base_url_env: str
    token_env: str
    normalization: str = Field(default="base", pattern=r"^(base|google)$")

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


class ProjectConfig(_Strict):
    """The whole ``activation.yaml``. ``retention`` is optional (CNIL defaults).

    Cross-field rules: every purpose a destination serves is declared; a destination that
    serves a marketing purpose (:attr:`Purpose.marketing`) serves only marketing purposes, so a
    person who opted out of marketing is never reached on a marketing list under another name
    (GDPR Art. 21(3), ePrivacy Art. 13).
    """

    controller: Controller
    purposes: dict[str, Purpose]
    destinations: dict[str, DestinationConfig]
    retention: SourceRetention = SourceRetention()

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
        return parse_yaml_model(text, Path(path), ProjectConfig)
    except SegmentValidationError as error:
        raise ProjectConfigError(error.errors) from None
