"""Dagster resources handing out destination clients, configured from the environment.

``activation.yaml`` names, for each destination, the environment variables holding its base URL
and token (``base_url_env``, ``token_env``). Two ways to reach them, built by one function
(:func:`destination_resource`, the one place that turns a destination's config into a client):

- one resource per destination, of its platform's class (:class:`MetaResource`,
  :class:`MailchimpResource`, :class:`GoogleResource`), under the key
  ``destination_<name>`` (:func:`destination_resource_key`), with ``dg.EnvVar`` fields for the
  base URL and the token (:func:`destination_resources`). Dagster resolves them when a run
  starts, shows them in the UI as environment-sourced, and stores only the variable names in
  the run's config. A sync asset requires only the key of its own destination, so a job needs
  only its own destinations' variables; an unset one fails that job naming the variable.
- :class:`DestinationsResource`, reading the variables when :meth:`~DestinationsResource.client`
  is called (the privacy receipts step, which may reach any destination holding a person, and
  tools outside Dagster).

A token is never logged, put in an error, shown by ``repr``/``str`` or in metadata.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, ClassVar

import dagster as dg
from pydantic import Field

from destinations.base import Destination
from destinations.google import GoogleAudienceClient
from destinations.http import RetryPolicy
from destinations.mailchimp import MailchimpClient
from destinations.meta import MetaAudienceClient
from destinations.redaction import redact
from destinations.registry import RETRY_FIELDS
from orchestrator.config import DestinationConfig, ProjectConfig, load_project_config

#: Prefix of the resource key of one destination (``destination_meta_ads``).
RESOURCE_KEY_PREFIX = "destination_"


class MissingEnvironmentVariable(RuntimeError):
    """A destination's base URL or token variable is unset or empty (the message names the
    variable, never a value)."""


def _missing(variable: str, destination: str) -> MissingEnvironmentVariable:
    return MissingEnvironmentVariable(
        f"destination {destination!r} needs the environment variable {variable} "
        "(see activation.yaml); it is not set"
    )


def read_env(variable: str, destination: str, environ: Mapping[str, str] | None = None) -> str:
    """The value of ``variable``.

    Raises:
        MissingEnvironmentVariable: unset or empty.
    """
    value = (os.environ if environ is None else environ).get(variable, "")
    if not value.strip():
        raise _missing(variable, destination)
    return value.strip()


def destination_resource_key(name: str) -> str:
    """The resource key of destination ``name`` (``destination_<name>``; destination names are
    identifiers, ``^[a-z][a-z0-9_]*$``)."""
    return f"{RESOURCE_KEY_PREFIX}{name}"


class PlatformResource(dg.ConfigurableResource):
    """One destination's client settings: ``destination`` (its name in ``activation.yaml``),
    ``base_url`` and ``token`` (secret; ``dg.EnvVar`` in the Definitions), the names of their
    variables (``base_url_env``, ``token_env``: for error messages), and retry settings
    (seconds): ``max_attempts`` requests per call, ``max_total_wait`` cap on waiting per call,
    ``backoff_multiplier``/``backoff_max`` waits without a platform hint, ``max_hint_wait``
    cap on one platform-requested wait, ``connect_timeout`` and ``read_timeout`` per request
    (:class:`~destinations.http.RetryPolicy`). The token never appears in ``repr``/``str``."""

    platform: ClassVar[str] = ""
    kind: ClassVar[str] = ""

    destination: str = Field(description="The destination's name in activation.yaml.")
    base_url: str = Field(description="The platform's API base URL (base_url_env).")
    token: str = Field(
        description="The platform's access token or API key (token_env). Secret.",
        repr=False,
        json_schema_extra={"dagster__is_secret": True},  # masked in the UI if given literally
    )
    base_url_env: str = Field(default="", description="Name of the base URL's variable.")
    token_env: str = Field(default="", description="Name of the token's variable.")
    max_attempts: int = 6
    max_total_wait: float = 600.0
    backoff_multiplier: float = 1.0
    backoff_max: float = 60.0
    max_hint_wait: float = 600.0
    connect_timeout: float = 10.0
    read_timeout: float = 120.0

    def __repr_args__(self) -> Iterable[tuple[str | None, Any]]:
        for name, value in super().__repr_args__():  # the token is left out (repr=False)
            if name == "base_url" and not isinstance(value, dg.EnvVar):
                yield name, redact(str(value), [str(self.token)])
            else:
                yield name, value

    def __str__(self) -> str:
        return self.__repr__()

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        """Refuses an empty base URL or token at run start.

        Raises:
            MissingEnvironmentVariable: naming the empty variable.
        """
        for value, variable in ((self.base_url, self.base_url_env), (self.token, self.token_env)):
            if not str(value).strip():
                raise _missing(variable or "(unnamed)", self.destination)

    def policy(self) -> RetryPolicy:
        """The :class:`RetryPolicy` of these settings."""
        return RetryPolicy(**{setting: getattr(self, setting) for setting in RETRY_FIELDS})

    def client(self, name: str | None = None) -> Destination:
        """A new client (close it when done: ``client.close()``). ``name``, when given, must be
        this resource's destination (the call shape of :meth:`DestinationsResource.client`).

        Raises:
            KeyError: ``name`` is another destination.
        """
        if name is not None and name != self.destination:
            raise KeyError(f"this resource is destination {self.destination!r}, not {name!r}")
        return self._build()

    def _build(self) -> Destination:
        raise NotImplementedError


class MetaResource(PlatformResource):
    """A Meta Custom Audiences destination (:class:`~destinations.meta.MetaAudienceClient`)."""

    platform: ClassVar[str] = "meta"
    kind: ClassVar[str] = MetaAudienceClient.kind

    def _build(self) -> Destination:
        return MetaAudienceClient(
            self.destination, self.base_url.strip(), self.token.strip(), policy=self.policy()
        )


class MailchimpResource(PlatformResource):
    """A Mailchimp audience destination (:class:`~destinations.mailchimp.MailchimpClient`)."""

    platform: ClassVar[str] = "mailchimp"
    kind: ClassVar[str] = MailchimpClient.kind

    def _build(self) -> Destination:
        return MailchimpClient(
            self.destination, self.base_url.strip(), self.token.strip(), policy=self.policy()
        )


class GoogleResource(PlatformResource):
    """A Google Customer Match destination (:class:`~destinations.google.GoogleAudienceClient`);
    ``account_id``: the operating account (not a secret)."""

    platform: ClassVar[str] = "google"
    kind: ClassVar[str] = GoogleAudienceClient.kind

    account_id: str = ""

    def _build(self) -> Destination:
        return GoogleAudienceClient(
            self.destination,
            self.base_url.strip(),
            self.token.strip(),
            account_id=self.account_id,
            policy=self.policy(),
        )


PLATFORM_RESOURCES: dict[str, type[PlatformResource]] = {
    cls.platform: cls for cls in (MetaResource, MailchimpResource, GoogleResource)
}


def destination_resource(
    name: str, cfg: DestinationConfig, base_url: str, token: str, **retry: Any
) -> PlatformResource:
    """The resource of destination ``name`` (platform ``cfg.platform``) reaching ``base_url``
    with ``token`` (strings, or ``dg.EnvVar`` read when a run starts); ``retry``:
    :data:`RETRY_FIELDS` settings replacing the defaults.

    Raises:
        ValueError: unknown platform, a kind that does not match the platform, or an unknown
            retry setting.
    """
    unknown = set(retry) - RETRY_FIELDS
    if unknown:
        raise ValueError(f"unknown retry settings: {sorted(unknown)}")
    cls = PLATFORM_RESOURCES.get(cfg.platform)
    if cls is None:
        raise ValueError(f"destination {name!r}: unknown platform {cfg.platform!r}")
    if cls.kind != cfg.kind:
        raise ValueError(
            f"destination {name!r}: platform {cfg.platform!r} is kind {cls.kind!r}, "
            f"activation.yaml says {cfg.kind!r}"
        )
    extra = {"account_id": cfg.account_id or ""} if cls is GoogleResource else {}
    return cls(
        destination=name,
        base_url=base_url,
        token=token,
        base_url_env=cfg.base_url_env,
        token_env=cfg.token_env,
        **extra,
        **retry,
    )


def destination_resources(project: ProjectConfig) -> dict[str, PlatformResource]:
    """``destination_<name>`` -> the platform resource of every destination of ``project``,
    its base URL and token as ``dg.EnvVar`` of the variables ``activation.yaml`` names (nothing
    is read here: definitions load with no variable set)."""
    return {
        destination_resource_key(name): destination_resource(
            name, cfg, dg.EnvVar(cfg.base_url_env), dg.EnvVar(cfg.token_env)
        )
        for name, cfg in sorted(project.destinations.items())
    }


def destination_variables(project: ProjectConfig, destinations: Iterable[str]) -> list[str]:
    """The base URL and token variable names (in order, no repeats) of ``destinations``: what
    a job syncing them needs set when its run starts. Unknown destination names are skipped."""
    names: list[str] = []
    for name in destinations:
        cfg = project.destinations.get(name)
        for variable in (cfg.base_url_env, cfg.token_env) if cfg else ():
            if variable not in names:
                names.append(variable)
    return names


def unset_in(variables: Iterable[str], environ: Mapping[str, str] | None = None) -> list[str]:
    """The ``variables`` unset or empty in ``environ`` (default ``os.environ``)."""
    env = os.environ if environ is None else environ
    return [variable for variable in variables if not env.get(variable, "").strip()]


def unset_variables(
    project: ProjectConfig, destinations: Iterable[str], environ: Mapping[str, str] | None = None
) -> list[str]:
    """The variables ``destinations`` need (:func:`destination_variables`) that are unset or
    empty in ``environ`` (default ``os.environ``): a run of a job syncing them would be refused
    or fail at start."""
    return unset_in(destination_variables(project, destinations), environ)


class DestinationsResource(dg.ConfigurableResource):
    """Destination clients for the destinations declared in ``activation.yaml``, their
    variables read when :meth:`client` is called (not at run start).

    ``config_path``: path of ``activation.yaml``. Retry settings: see :class:`PlatformResource`.
    """

    config_path: str
    max_attempts: int = 6
    max_total_wait: float = 600.0
    max_hint_wait: float = 600.0
    connect_timeout: float = 10.0
    read_timeout: float = 120.0

    def client(self, name: str) -> Destination:
        """A new client for destination ``name`` (close it when done: ``client.close()``).

        Raises:
            KeyError: no destination of that name in ``activation.yaml``.
            MissingEnvironmentVariable: its base URL or token variable is unset.
        """
        project = load_project_config(Path(self.config_path))
        if name not in project.destinations:
            raise KeyError(
                f"unknown destination {name!r}; declared: {sorted(project.destinations)}"
            )
        cfg = project.destinations[name]
        settings = ("max_attempts", "max_total_wait", "max_hint_wait", "connect_timeout")
        retry = {setting: getattr(self, setting) for setting in (*settings, "read_timeout")}
        resource = destination_resource(
            name, cfg, read_env(cfg.base_url_env, name), read_env(cfg.token_env, name), **retry
        )
        return resource.client()


__all__ = [
    "RETRY_FIELDS",
    "DestinationsResource",
    "GoogleResource",
    "MailchimpResource",
    "MetaResource",
    "MissingEnvironmentVariable",
    "PlatformResource",
    "destination_resource",
    "destination_resource_key",
    "destination_resources",
    "destination_variables",
    "read_env",
    "unset_in",
    "unset_variables",
]
