"""One Dagster resource per destination, of its platform's class, with its base URL and token
from environment variables (``dg.EnvVar``): the repository's real Definitions load with no
variable set, each sync asset requires only its own destination's resource, the Definitions'
snapshot (what the UI shows) holds the variable names as environment-sourced values, and the
token is never in the resource's ``repr``/``str``."""

from __future__ import annotations

import dagster as dg
import pytest
from dagster._core.remote_representation.external_data import (
    RepositorySnap,
    ResourceConfigEnvVarSnap,
)

from destinations.google import GoogleAudienceClient
from destinations.redaction import leaked_forms
from destinations.resources import (
    GoogleResource,
    MailchimpResource,
    MetaResource,
    destination_resource,
    destination_resource_key,
)
from orchestrator.config import DestinationConfig, load_project_config
from orchestrator.definitions import build_definitions
from orchestrator.settings import Settings
from tests.conftest import REPO

VARIABLES = ("META_BASE_URL", "META_ACCESS_TOKEN", "MAILCHIMP_BASE_URL", "MAILCHIMP_API_KEY")
SECRET = "EAABsbCS1iHgBAKZCZBmock0SecretZBZAtokenZDZD"


@pytest.fixture(scope="module")
def defs_without_variables() -> dg.Definitions:
    """The repository's Definitions loaded with no destination variable set."""
    with pytest.MonkeyPatch.context() as patch:
        for name in (*VARIABLES, "ACTIVATION_SEGMENTS_DIR", "ACTIVATION_CONFIG"):
            patch.delenv(name, raising=False)
        patch.setenv("ACTIVATION_PROJECT_DIR", str(REPO))
        settings = Settings.from_env()
        return build_definitions(settings, load_project_config(settings.config_path))


def test_definitions_load_with_no_variable_and_one_resource_per_destination(
    defs_without_variables: dg.Definitions,
) -> None:
    defs_without_variables.get_repository_def()  # resolves every job
    resources = defs_without_variables.resources or {}
    assert isinstance(resources["destination_meta_ads"], MetaResource)
    assert isinstance(resources["destination_mailchimp"], MailchimpResource)


def _destination_keys(assets_def: dg.AssetsDefinition) -> set[str]:
    """``destination_<name>`` of every ``sync/<segment>/<name>`` the definition materializes."""
    return {destination_resource_key(k.path[2]) for k in assets_def.keys if k.path[0] == "sync"}


def test_each_sync_asset_and_job_requires_only_its_own_destinations(
    defs_without_variables: dg.Definitions,
) -> None:
    repo = defs_without_variables.get_repository_def()
    syncs = [a for a in repo.asset_graph.assets_defs if _destination_keys(a)]
    assert syncs
    for sync in syncs:
        needed = {k for k in sync.required_resource_keys if k.startswith("destination_")}
        assert needed == _destination_keys(sync), sorted(sync.keys)
    jobs = [j for j in repo.get_all_jobs() if j.name.endswith("_job")]
    assert len(jobs) > 2
    for job in jobs:
        own = set().union(*(_destination_keys(a) for a in job.asset_layer.asset_graph.assets_defs))
        needed = {k for k in job.required_resource_keys if k.startswith("destination_")}
        assert needed == own, job.name


def test_the_snapshot_shows_base_url_and_token_as_environment_variables(
    defs_without_variables: dg.Definitions,
) -> None:
    repo = defs_without_variables.get_repository_def()
    snaps = {r.name: r for r in RepositorySnap.from_def(repo).resources or []}
    for key, url, token in (
        ("destination_meta_ads", "META_BASE_URL", "META_ACCESS_TOKEN"),
        ("destination_mailchimp", "MAILCHIMP_BASE_URL", "MAILCHIMP_API_KEY"),
    ):
        values = snaps[key].configured_values
        assert values["base_url"] == ResourceConfigEnvVarSnap(name=url)
        assert values["token"] == ResourceConfigEnvVarSnap(name=token)
    meta_jobs = {usage.job_name for usage in snaps["destination_meta_ads"].job_ops_using}
    assert "cart_abandoners_job" in meta_jobs and "recent_buyers_eu_job" not in meta_jobs


def _cfg(platform: str, kind: str, **extra: str) -> DestinationConfig:
    return DestinationConfig(
        platform=platform,
        kind=kind,
        purposes=("ad_targeting",),
        country="US",
        transfer_safeguard="DPF",
        base_url_env="X_URL",
        token_env="X_TOKEN",
        **extra,
    )


def test_the_token_is_never_in_repr_or_str_once_read(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("X_URL", "http://127.0.0.1:9/meta")
    monkeypatch.setenv("X_TOKEN", SECRET)
    declared = destination_resource(
        "meta_ads", _cfg("meta", "ad"), dg.EnvVar("X_URL"), dg.EnvVar("X_TOKEN")
    )
    resolved = declared.process_config_and_initialize()  # what a run's step receives
    assert resolved.token == SECRET and resolved.client()._http.policy.max_attempts == 6
    for text in (repr(resolved), str(resolved), f"{resolved!r} {resolved}"):
        assert "meta_ads" in text and leaked_forms(text, [SECRET]) == []
    literal = destination_resource("meta_ads", _cfg("meta", "ad"), "http://h", SECRET)
    assert leaked_forms(repr(literal) + str(literal), [SECRET]) == []


def test_google_resource_carries_the_operating_account() -> None:
    cfg = _cfg("google", "ad", account_id="1234567890")
    resource = destination_resource("google_ads", cfg, "http://h/google", "t", max_attempts=2)
    assert isinstance(resource, GoogleResource)
    client = resource.client("google_ads")
    assert isinstance(client, GoogleAudienceClient) and client._http.policy.max_attempts == 2
    with pytest.raises(KeyError, match="meta_ads"):
        resource.client("meta_ads")
