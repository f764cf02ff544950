"""Build a destination client from its ``activation.yaml`` entry."""

from __future__ import annotations

from dataclasses import fields
from typing import Any

from destinations.base import Destination, RemoveReason
from destinations.google import GoogleAudienceClient
from destinations.http import RetryPolicy
from destinations.mailchimp import MailchimpClient
from destinations.meta import MetaAudienceClient
from orchestrator.config import DestinationConfig

#: The :class:`RetryPolicy` settings a client takes (seconds, counts).
RETRY_FIELDS = frozenset(f.name for f in fields(RetryPolicy))


def platform_max_batch_size(platform: str) -> int:
    """Rows per call the client for ``platform`` sends at most (``meta`` 10,000: Meta Custom
    Audiences users endpoint; ``mailchimp`` 500: Mailchimp batch subscribe; ``google`` 10,000:
    Data Manager API ``audienceMembers:ingest``).

    Raises:
        KeyError: another platform.
    """
    sizes = {
        "meta": MetaAudienceClient.max_batch_size,
        "mailchimp": MailchimpClient.max_batch_size,
        "google": GoogleAudienceClient.max_batch_size,
    }
    return sizes[platform]


def platform_rows_per_call(platform: str, op: str, reason: RemoveReason | None = None) -> int:
    """Rows one call of ``platform``'s client carries for ``op`` (``add`` | ``update`` |
    ``remove``) and remove ``reason`` (0: no call), without building a client (dry runs).
    See ``MetaAudienceClient.rows_per_call`` and ``MailchimpClient.rows_per_call``.

    Raises:
        KeyError: another platform.
    """
    classes = {
        "meta": MetaAudienceClient,
        "mailchimp": MailchimpClient,
        "google": GoogleAudienceClient,
    }
    return classes[platform].rows_per_call(op, reason)


def build_client(
    name: str, cfg: DestinationConfig, base_url: str, token: str, **retry_overrides: Any
) -> Destination:
    """A client for destination ``name`` of platform ``cfg.platform`` (``meta``, ``mailchimp``
    or ``google``) talking to ``base_url`` with ``token``, built by its platform resource
    (:func:`destinations.resources.destination_resource`, the one place that does it).

    ``retry_overrides``: :class:`~destinations.http.RetryPolicy` fields (``max_attempts``,
    ``max_total_wait``, ``backoff_multiplier``, ``backoff_max``, ``max_hint_wait``,
    ``connect_timeout``, ``read_timeout``; seconds) replacing the defaults.

    Raises:
        ValueError: unknown platform, a kind that does not match the platform, or an unknown
            retry setting.
    """
    from destinations.resources import destination_resource  # Dagster: not for light imports

    return destination_resource(name, cfg, base_url, token, **retry_overrides).client()


__all__ = ["RETRY_FIELDS", "build_client", "platform_max_batch_size", "platform_rows_per_call"]
