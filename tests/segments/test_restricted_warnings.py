"""Segment validation warns when a segment bound for an ad platform reads data the source model
marks as health or financial status (Meta flags such audiences and refuses their updates):
in ``activation validate``, in the loader's result, and in the ``segment_files_valid`` check of
the Definitions. Financial status is not a special category: it is warned about, never refused;
health data stays refused in marketing segments."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import dagster as dg
import pytest
import yaml

from orchestrator.config import load_project_config
from orchestrator.definitions import SEGMENT_FILES_VALID, build_definitions
from orchestrator.segments.loader import load_segments
from orchestrator.settings import Settings
from tests.cli.conftest import run_activation
from tests.conftest import REPO

HEADER = """\
description: test segment
owner: crm-team@example.com
legal_basis: consent
retention_days: 30
schedule: "0 6 * * *"
"""
SEGMENTS = {
    # a trait marked financial, to Meta: warned at the trait's line
    "big_spenders_ads": """\
name: big_spenders_ads
purpose: ad_targeting
audience:
  all:
    - event: purchase
      within_days: 90
    - trait: lifetime_value
      gte: 1000
destinations:
  - {destination: meta_ads, audience_id: "120210000000901", mode: mirror}
""",
    # words marked financial in an event field
    "credit_ads": """\
name: credit_ads
purpose: ad_targeting
audience:
  event: purchase
  within_days: 30
  where:
    - field: description
      contains: gift card credit
destinations:
  - {destination: meta_ads, audience_id: "120210000000902", mode: mirror}
""",
    # a sql: segment naming the financial column
    "spenders_sql_ads": """\
name: spenders_sql_ads
purpose: ad_targeting
sql: SELECT customer_id FROM activation.src_customers WHERE lifetime_value > 1000
destinations:
  - {destination: meta_ads, audience_id: "120210000000903", mode: mirror}
""",
    # the same trait for an email list: not an ad platform, no warning
    "big_spenders_mail": """\
name: big_spenders_mail
purpose: email_marketing
audience:
  trait: lifetime_value
  gte: 1000
destinations:
  - {destination: mailchimp, audience_id: "list901", mode: mirror}
""",
    # nothing marked: no warning
    "mugs_ads": """\
name: mugs_ads
purpose: ad_targeting
audience:
  event: purchase
  within_days: 30
  where:
    - field: description
      contains: mug
destinations:
  - {destination: meta_ads, audience_id: "120210000000904", mode: mirror}
""",
}


def _project(root: Path, *, health_word: str | None = None) -> tuple[Path, Path]:
    config = yaml.safe_load((REPO / "activation.yaml").read_text())
    config["source"]["restricted"] = [
        {
            "category": "financial",
            "traits": ["lifetime_value"],
            "values": {"description": ["CREDIT"]},
        }
    ]
    if health_word:
        config["source"]["sensitive"] = [
            {"category": "health", "values": {"description": [health_word]}}
        ]
    config_path = root / "activation.yaml"
    config_path.write_text(yaml.safe_dump(config))
    shutil.copyfile(REPO / "catalog.json", root / "catalog.json")  # the traits segments name
    folder = root / "segments"
    folder.mkdir()
    for name, body in SEGMENTS.items():
        (folder / f"{name}.yaml").write_text(HEADER + body)
    return config_path, folder


def _line(path: Path, text: str) -> int:
    return next(i for i, line in enumerate(path.read_text().splitlines(), 1) if text in line)


def test_the_loader_warns_with_file_line_and_field(tmp_path: Path) -> None:
    config_path, folder = _project(tmp_path)
    result = load_segments(folder, load_project_config(config_path))
    assert result.errors == []
    assert len(result.specs) == len(SEGMENTS)  # warned segments still load and run
    by_file = {w.path.stem: w for w in result.warnings}
    assert sorted(by_file) == ["big_spenders_ads", "credit_ads", "spenders_sql_ads"]
    trait = by_file["big_spenders_ads"]
    assert trait.line == _line(folder / "big_spenders_ads.yaml", "trait: lifetime_value")
    assert trait.field == "audience.all[1].trait"
    assert "trait 'lifetime_value' is marked financial" in trait.message
    assert "meta_ads" in trait.message and "Audience Upload Blocked" in trait.message
    words = by_file["credit_ads"]
    assert words.line == _line(folder / "credit_ads.yaml", "- field: description")
    assert "compared with 'CREDIT'" in words.message
    assert by_file["spenders_sql_ads"].field == "sql"


def test_health_data_is_still_refused_in_a_marketing_segment(tmp_path: Path) -> None:
    config_path, folder = _project(tmp_path, health_word="MUG")
    result = load_segments(folder, load_project_config(config_path))
    refused = [e for e in result.errors if e.path.stem == "mugs_ads"]
    assert refused and "special-category data (health" in refused[0].message


def test_validate_prints_the_warnings_and_exits_0(tmp_path: Path) -> None:
    config_path, folder = _project(tmp_path)
    env = {"ACTIVATION_CONFIG": str(config_path), "ACTIVATION_SEGMENTS_DIR": str(folder)}
    text = run_activation("validate", env=env)
    assert text.returncode == 0, text.stderr
    warned = [line for line in text.stdout.splitlines() if line.startswith("warning: ")]
    assert len(warned) == 3 and all(":" in w and "marked financial" in w for w in warned)
    assert "5 valid segment(s), 0 error(s), 3 warning(s)" in text.stderr
    one = run_activation("validate", str(folder / "credit_ads.yaml"), env=env)
    assert one.returncode == 0 and "warning: " in one.stdout
    as_json = json.loads(run_activation("validate", "--format", "json", env=env).stdout)
    assert [r["severity"] for r in as_json] == ["warning"] * 3


def test_the_segment_files_check_warns(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config_path, folder = _project(tmp_path)
    monkeypatch.setenv("ACTIVATION_CONFIG", str(config_path))
    monkeypatch.setenv("ACTIVATION_SEGMENTS_DIR", str(folder))
    monkeypatch.setenv("ACTIVATION_PROJECT_DIR", str(REPO))
    settings = Settings.from_env()
    defs = build_definitions(settings, load_project_config(config_path))
    (check,) = [
        c
        for c in defs.asset_checks or []
        if any(k.name == SEGMENT_FILES_VALID for k in c.check_keys)
    ]
    result = check()
    assert isinstance(result, dg.AssetCheckResult)
    assert result.passed is False and result.severity == dg.AssetCheckSeverity.WARN
    assert "3 warning(s)" in (result.description or "")
    assert "big_spenders_ads.yaml" in result.description
