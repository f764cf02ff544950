"""Dagster resource handing out destination clients, configured from the environment.

``activation.yaml`` names, for each destination, the environment variables holding its base URL
and token (``base_url_env``, ``token_env``). They are read when :meth:`client` is called inside a
run, never at import or definition time, and their values are never logged or put in errors.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import dagster as dg

from destinations.base import Destination
from destinations.registry import build_client
from orchestrator.config import load_project_config


class MissingEnvironmentVariable(RuntimeError):
    """A destination's base URL or token variable is unset or empty (the message names the
    variable, never a value)."""


def read_env(variable: str, destination: str, environ: Mapping[str, str] | None = None) -> str:
    """The value of ``variable``.

    Raises:
        MissingEnvironmentVariable: unset or empty.
    """
    value = (os.environ if environ is None else environ).get(variable, "")
    if not value.strip():
        raise MissingEnvironmentVariable(
            f"destination {destination!r} needs the environment variable {variable} "
            "(see activation.yaml); it is not set"
        )
    return value.strip()


class DestinationsResource(dg.ConfigurableResource):
    """Destination clients for the destinations declared in ``activation.yaml``.

    ``config_path``: path of ``activation.yaml``. Retry settings (seconds):
    ``max_attempts`` requests per call, ``max_total_wait`` cap on waiting per call,
    ``max_hint_wait`` cap on one platform-requested wait, ``connect_timeout`` and
    ``read_timeout`` per request.
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
        return build_client(
            name,
            cfg,
            read_env(cfg.base_url_env, name),
            read_env(cfg.token_env, name),
            max_attempts=self.max_attempts,
            max_total_wait=self.max_total_wait,
            max_hint_wait=self.max_hint_wait,
            connect_timeout=self.connect_timeout,
            read_timeout=self.read_timeout,
        )


__all__ = ["DestinationsResource", "MissingEnvironmentVariable", "read_env"]
