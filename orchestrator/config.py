"""Project configuration (``activation.yaml``): controller, purposes and destination instances.

The file holds no secret: each destination names the environment variables that hold its base
URL and token, read by the destination resources at run time.
"""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field, field_validator

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
    consent_validity_days: int = Field(gt=0)
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

    prospect_days: int = Field(default=1095, gt=0)
    customer_days: int = Field(default=1095, gt=0)


class ProjectConfig(_Strict):
    """The whole ``activation.yaml``. ``retention`` is optional (CNIL defaults)."""

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


def load_project_config(path: Path) -> ProjectConfig:
    """Read and validate ``activation.yaml``.

    Raises:
        FileNotFoundError: the file is missing.
        pydantic.ValidationError: a field is wrong (the message names the field).
    """
    data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    return ProjectConfig.model_validate(data)
