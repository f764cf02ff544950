"""activation.yaml: the google platform and consent signals are validated with clear errors."""

from __future__ import annotations

import pydantic
import pytest

from orchestrator.config import ProjectConfig
from orchestrator.consent_signals import register_lines, signals_for

BASE = {
    "controller": {"name": "Demo", "contact": "dpo@example.com"},
    "purposes": {
        "ad_targeting": {
            "description": "ads",
            "consent_validity_days": 395,
            "legal_bases": ["consent"],
            "consent_signals": {
                "google": {"ad_user_data": "ad_targeting", "ad_personalization": "ad_pers"}
            },
        },
        "ad_pers": {"description": "p", "consent_validity_days": 30, "legal_bases": ["consent"]},
    },
    "destinations": {
        "google_ads": {
            "platform": "google",
            "kind": "ad",
            "purposes": ["ad_targeting"],
            "country": "US",
            "transfer_safeguard": "DPF",
            "base_url_env": "GOOGLE_BASE_URL",
            "token_env": "GOOGLE_ACCESS_TOKEN",
            "account_id": "1234567890",
        }
    },
}


def with_changes(**purpose_changes) -> dict:
    data = {**BASE, "purposes": {**BASE["purposes"]}}
    data["purposes"]["ad_targeting"] = {**BASE["purposes"]["ad_targeting"], **purpose_changes}
    return data


def test_google_destination_and_signals_load() -> None:
    project = ProjectConfig.model_validate(BASE)
    dest = project.destinations["google_ads"]
    assert dest.normalization == "google"  # Gmail dots removed, as Google documents
    signals = signals_for(project, "ad_targeting", "google")
    assert [(s.name, s.purpose, s.validity_days) for s in signals] == [
        ("ad_personalization", "ad_pers", 30),
        ("ad_user_data", "ad_targeting", 395),
    ]
    assert signals_for(project, "ad_targeting", "meta") == []
    assert register_lines(project) == {
        "google_ads": [
            "ad_personalization from consent for ad_pers (segments for ad_targeting)",
            "ad_user_data from consent for ad_targeting (segments for ad_targeting)",
        ]
    }


@pytest.mark.parametrize(
    ("signals", "words"),
    [
        ({"google": {"ad_storage": "ad_targeting"}}, "unknown consent signals"),
        ({"google": {"ad_user_data": "nope"}}, "'nope' is not a declared purpose"),
        ({"tiktok": {"ad_user_data": "ad_targeting"}}, "no consent signals are known"),
    ],
)
def test_bad_signals_are_refused_naming_the_field(signals, words) -> None:
    with pytest.raises(pydantic.ValidationError, match=words):
        ProjectConfig.model_validate(with_changes(consent_signals=signals))


def test_google_destination_needs_an_account() -> None:
    data = {**BASE, "destinations": {"google_ads": {**BASE["destinations"]["google_ads"]}}}
    del data["destinations"]["google_ads"]["account_id"]
    with pytest.raises(pydantic.ValidationError, match="account_id"):
        ProjectConfig.model_validate(data)
