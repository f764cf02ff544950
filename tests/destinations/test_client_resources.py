"""The registry builds the right client; the Dagster resource reads env vars at call time."""

from __future__ import annotations

from pathlib import Path

import pytest

from destinations.base import Destination
from destinations.mailchimp import MailchimpClient
from destinations.meta import MetaAudienceClient
from destinations.registry import build_client
from destinations.resources import DestinationsResource, MissingEnvironmentVariable
from orchestrator.config import DestinationConfig

REPO = Path(__file__).resolve().parents[2]
CONFIG = str(REPO / "activation.yaml")


def cfg(platform: str, kind: str) -> DestinationConfig:
    return DestinationConfig(
        platform=platform,
        kind=kind,
        purposes=("ad_targeting",),
        country="US",
        transfer_safeguard="DPF",
        base_url_env="X_URL",
        token_env="X_TOKEN",
    )


def test_build_client_picks_the_platform_and_applies_retry_overrides():
    meta = build_client("meta_ads", cfg("meta", "ad"), "http://h/meta", "t", max_attempts=2)
    mc = build_client("mc", cfg("mailchimp", "email"), "http://h/mailchimp/3.0", "k")
    assert isinstance(meta, MetaAudienceClient) and isinstance(meta, Destination)
    assert (meta.kind, meta.max_batch_size, meta._http.policy.max_attempts) == ("ad", 10_000, 2)
    assert isinstance(mc, MailchimpClient) and (mc.kind, mc.max_batch_size) == ("email", 500)


def test_build_client_refuses_wrong_kind_and_unknown_settings():
    with pytest.raises(ValueError, match="kind"):
        build_client("x", cfg("meta", "email"), "http://h", "t")
    with pytest.raises(ValueError, match="unknown retry settings"):
        build_client("x", cfg("meta", "ad"), "http://h", "t", retries=3)


def test_resource_reads_variables_named_in_activation_yaml(monkeypatch):
    monkeypatch.setenv("META_BASE_URL", "http://127.0.0.1:9/meta")
    monkeypatch.setenv("META_ACCESS_TOKEN", "tok-123")
    resource = DestinationsResource(config_path=CONFIG, max_attempts=2, read_timeout=1.0)
    client = resource.client("meta_ads")
    assert isinstance(client, MetaAudienceClient) and client.name == "meta_ads"
    assert client._http.policy.read_timeout == 1.0
    assert client._http.session.headers["Authorization"] == "Bearer tok-123"


def test_missing_token_names_the_variable_never_a_value(monkeypatch):
    monkeypatch.setenv("MAILCHIMP_BASE_URL", "http://secret-host.example.org/3.0")
    monkeypatch.delenv("MAILCHIMP_API_KEY", raising=False)
    resource = DestinationsResource(config_path=CONFIG)
    with pytest.raises(MissingEnvironmentVariable) as info:
        resource.client("mailchimp")
    assert "MAILCHIMP_API_KEY" in str(info.value)
    assert "secret-host" not in str(info.value)


def test_unknown_destination_is_a_key_error():
    with pytest.raises(KeyError, match="nope"):
        DestinationsResource(config_path=CONFIG).client("nope")
