"""Purposes are bound to destinations (case P1): a marketing destination serves only marketing
purposes, a segment's purpose must be served by each of its destinations, and two destination
names reaching one platform list are one audience. Through ``activation validate`` and the
real Definitions."""

from __future__ import annotations

import copy
import shutil
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from orchestrator.cli import cli
from orchestrator.config import ProjectConfigError, load_project_config
from orchestrator.definitions import build_definitions
from orchestrator.settings import Settings
from tests.conftest import REPO

SERVICE = {
    "description": "Order and account notices",
    "consent_validity_days": 365,
    "legal_bases": ["legitimate_interest"],
    "marketing": False,
}
SERVICE_SEGMENT = {
    "name": "service_buyers",
    "description": "Bought in the last year",
    "owner": "crm-team@example.com",
    "purpose": "service",
    "legal_basis": "legitimate_interest",
    "retention_days": 30,
    "schedule": "0 6 * * *",
    "audience": {"event": "purchase", "within_days": 365},
    "destinations": [{"destination": "mailchimp", "audience_id": "svc0000001", "mode": "mirror"}],
}


def _config(tmp_path: Path, edit) -> Path:
    data = yaml.safe_load((REPO / "activation.yaml").read_text())
    edit(data)
    path = tmp_path / "activation.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def _segments(tmp_path: Path, *extra: dict) -> Path:
    folder = tmp_path / "segments"
    folder.mkdir()
    shutil.copyfile(REPO / "segments" / "recent_buyers_eu.yaml", folder / "recent_buyers_eu.yaml")
    for segment in extra:
        (folder / f"{segment['name']}.yaml").write_text(yaml.safe_dump(segment, sort_keys=False))
    return folder


def _validate(monkeypatch: pytest.MonkeyPatch, config: Path, segments: Path):
    monkeypatch.setenv("ACTIVATION_CONFIG", str(config))
    monkeypatch.setenv("ACTIVATION_SEGMENTS_DIR", str(segments))
    return CliRunner().invoke(cli, ["validate"])


def _service_on_mailchimp(data: dict) -> None:
    data["purposes"]["service"] = SERVICE
    data["destinations"]["mailchimp"]["purposes"] = ["email_marketing", "service"]


def test_a_marketing_list_serving_a_service_purpose_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = _config(tmp_path, _service_on_mailchimp)
    result = _validate(monkeypatch, config, _segments(tmp_path, SERVICE_SEGMENT))
    assert result.exit_code == 1
    line = result.stderr.strip()
    assert f"{config}:" in line and "destinations.mailchimp.purposes:" in line
    assert "'mailchimp'" in line and "email_marketing" in line and "service" in line
    with pytest.raises(ProjectConfigError, match="may serve only marketing purposes"):
        build_definitions(Settings.from_env(), load_project_config(config))


def test_an_undeclared_purpose_on_a_destination_is_refused_with_its_line(tmp_path: Path) -> None:
    def edit(data: dict) -> None:
        data["destinations"]["meta_ads"]["purposes"] = ["ad_targeting", "Email_Marketing"]

    with pytest.raises(ProjectConfigError) as raised:
        load_project_config(_config(tmp_path, edit))
    (error,) = raised.value.errors
    assert error.field == "destinations.meta_ads.purposes[1]"
    assert error.line is not None and "unknown purpose 'Email_Marketing'" in error.message


def test_a_segment_whose_purpose_the_destination_does_not_serve_fails_with_file_line_field(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def edit(data: dict) -> None:
        data["purposes"]["service"] = SERVICE
        data["destinations"]["notices"] = copy.deepcopy(data["destinations"]["mailchimp"])
        data["destinations"]["notices"]["purposes"] = ["service"]

    segments = _segments(tmp_path, SERVICE_SEGMENT)
    result = _validate(monkeypatch, _config(tmp_path, edit), segments)
    assert result.exit_code == 1
    assert (
        f"{segments / 'service_buyers.yaml'}:12 destinations[0].destination: destination"
        " 'mailchimp' does not serve purpose 'service' (it serves: email_marketing)"
    ) in result.stdout


def test_two_names_for_one_platform_list_are_one_audience(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def edit(data: dict) -> None:
        data["destinations"]["mailchimp_eu"] = copy.deepcopy(data["destinations"]["mailchimp"])

    clone = yaml.safe_load((REPO / "segments" / "recent_buyers_eu.yaml").read_text())
    clone["name"] = "recent_buyers_copy"
    clone["destinations"][0]["destination"] = "mailchimp_eu"  # same account, same list id
    segments = _segments(tmp_path, clone)
    result = _validate(monkeypatch, _config(tmp_path, edit), segments)
    assert result.exit_code == 1
    assert "recent_buyers_copy.yaml" in result.stdout and "recent_buyers_eu.yaml" in result.stdout
    assert result.stdout.count("each segment needs its own audience") == 2
    # Another account (its own token variable) with the same list id is another audience.
    other = tmp_path / "other"
    other.mkdir()

    def other_account(data: dict) -> None:
        edit(data)
        data["destinations"]["mailchimp_eu"]["token_env"] = "MAILCHIMP_EU_API_KEY"

    result = _validate(monkeypatch, _config(other, other_account), segments)
    assert result.exit_code == 0, result.output


def test_one_segment_cannot_list_one_platform_list_under_two_names(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def edit(data: dict) -> None:
        data["destinations"]["mailchimp_eu"] = copy.deepcopy(data["destinations"]["mailchimp"])

    both = yaml.safe_load((REPO / "segments" / "recent_buyers_eu.yaml").read_text())
    both["name"] = "twice"
    both["destinations"] = [
        {"destination": "mailchimp", "audience_id": "tw1", "mode": "mirror"},
        {"destination": "mailchimp_eu", "audience_id": "tw1", "mode": "mirror"},
    ]
    result = _validate(monkeypatch, _config(tmp_path, edit), _segments(tmp_path, both))
    assert result.exit_code == 1
    assert "destinations[1].audience_id: mailchimp_eu audience 'tw1' is the same audience" in (
        result.stdout
    )
