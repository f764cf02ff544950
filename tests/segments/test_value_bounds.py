"""Nothing a valid file holds can crash a run (case P5): numbers and dates out of bounds are
refused at validation with ``file:line field:`` (segment files and ``activation.yaml``), and
any value inside the bounds runs (a property test through the same code as a run)."""

from __future__ import annotations

import shutil
from datetime import date
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from orchestrator.cli import cli
from orchestrator.cli.preview import preview_segment
from orchestrator.config import ProjectConfigError, load_project_config
from orchestrator.limits import EARLIEST_DAY, LATEST_DAY, MAX_ABS_NUMBER, MAX_COUNT, MAX_DAYS
from orchestrator.segments.loader import LoadedSegment, load_segment_text
from tests.conftest import AS_OF, REPO

HUGE = 100000000000000000000

CASE = f"""\
name: huge_values
description: Values a file may hold that used to crash the run
owner: crm-team@example.com
purpose: email_marketing
legal_basis: consent
retention_days: {HUGE}
schedule: "0 6 * * *"
audience:
  all:
    - event: purchase
      within_days: {HUGE}
    - event: purchase
      between: ['2024-01-01', '9999-12-31']
destinations:
  - destination: mailchimp
    audience_id: "huge000001"
    mode: mirror
"""


def _validate(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, text: str) -> list[str]:
    folder = tmp_path / "segments"
    folder.mkdir(exist_ok=True)
    (folder / "huge_values.yaml").write_text(text)
    monkeypatch.setenv("ACTIVATION_SEGMENTS_DIR", str(folder))
    result = CliRunner().invoke(cli, ["validate"])
    assert result.exit_code == 1 and "Traceback" not in result.output
    prefix = f"{folder / 'huge_values.yaml'}:"
    return [line.removeprefix(prefix) for line in result.stdout.splitlines()]


def test_the_case_values_are_refused_with_file_line_field(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert _validate(tmp_path, monkeypatch, CASE) == [
        "6 retention_days: must be <= 36500",
        "11 audience.all[0].within_days: must be <= 36500",
        "13 audience.all[1].between[1]: must be a date from 1900-01-01 to 2999-12-31,"
        " got 9999-12-31",
    ]


def test_trait_dates_numbers_and_counts_are_bounded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    text = CASE.replace(f"retention_days: {HUGE}", "retention_days: 30").replace(
        f"""    - event: purchase
      within_days: {HUGE}
    - event: purchase
      between: ['2024-01-01', '9999-12-31']
""",
        f"""    - trait: signed_up_at
      gte: '0001-01-01'
    - trait: customer_id
      eq: {HUGE}
    - event: purchase
      at_least: {HUGE}
      total_value: {{gte: .inf}}
      where:
        - field: unit_price_gbp
          between: [1, 1.0e+300]
""",
    )
    assert _validate(tmp_path, monkeypatch, text) == [
        "11 audience.all[0].gte: must be a date from 1900-01-01 to 2999-12-31, got 0001-01-01",
        f"13 audience.all[1].eq: must be between -1e+15 and 1e+15, got {HUGE}",
        "15 audience.all[2].at_least: must be <= 1000000",
        "16 audience.all[2].total_value.gte: must be a finite number, got inf",
        "19 audience.all[2].where[0].between[1]: must be between -1e+15 and 1e+15, got 1e+300",
    ]


@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        (
            ("  consent_validity_days: 395", f"  consent_validity_days: {HUGE}"),
            "purposes.ad_targeting.consent_validity_days: must be <= 36500",
        ),
        (
            ("  customer_days: 1095", f"  customer_days: {HUGE}"),
            "retention.customer_days: must be <= 36500",
        ),
        (
            ("    token_env: META_ACCESS_TOKEN", "    token_env: A\n    token_env: B"),
            "destinations.meta_ads.token_env: duplicate key 'token_env' (first at line",
        ),
    ],
)
def test_project_config_bounds_and_duplicate_keys_are_refused_with_file_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, edit: tuple[str, str], expected: str
) -> None:
    text = (REPO / "activation.yaml").read_text()
    assert edit[0] in text
    config = tmp_path / "activation.yaml"
    config.write_text(text.replace(edit[0], edit[1], 1))
    with pytest.raises(ProjectConfigError) as raised:
        load_project_config(config)
    (error,) = raised.value.errors
    assert f"{error.field}: {error.message}".startswith(expected)
    line = text.replace(edit[0], edit[1], 1).splitlines()[error.line - 1]
    assert line.strip().startswith(error.field.rsplit(".", 1)[-1] + ":")
    monkeypatch.setenv("ACTIVATION_CONFIG", str(config))
    result = CliRunner().invoke(cli, ["validate"])
    assert result.exit_code == 1
    assert result.stderr.startswith(f"Error: invalid project config: {config}:{error.line} ")


_days = st.integers(1, MAX_DAYS)
_day = st.dates(EARLIEST_DAY, LATEST_DAY)
_amount = st.one_of(
    st.integers(-MAX_ABS_NUMBER, MAX_ABS_NUMBER),
    st.floats(-MAX_ABS_NUMBER, MAX_ABS_NUMBER, allow_nan=False),
)


@st.composite
def _bounded_segment(draw: st.DrawFn) -> dict:
    first, last = sorted((draw(_day), draw(_day)))
    low, high = sorted((draw(_amount), draw(_amount)))
    created = sorted((draw(_day), draw(_day)))
    return {
        "name": "bounded",
        "description": "Any value inside the bounds",
        "owner": "crm-team@example.com",
        "purpose": "email_marketing",
        "legal_basis": "consent",
        "retention_days": draw(_days),
        "schedule": "0 6 * * *",
        "audience": {
            "any": [
                {"event": "purchase", "within_days": draw(_days)},
                {
                    "event": "purchase",
                    "between": [first.isoformat(), last.isoformat()],
                    "at_least": draw(st.integers(1, MAX_COUNT)),
                    "total_value": {"between": [low, high]},
                    "where": [{"field": "quantity", "gte": draw(st.integers(-(10**15), 10**15))}],
                },
                {"trait": "signed_up_at", "between": [d.isoformat() for d in created]},
                {"trait": "customer_id", "lte": draw(st.integers(-(10**15), 10**15))},
            ]
        },
        "destinations": [
            {"destination": "mailchimp", "audience_id": "bounded001", "mode": "upsert"},
        ],
    }


@pytest.fixture(scope="module")
def bounded_warehouse(tmp_path_factory: pytest.TempPathFactory, demo_warehouse_template: Path):
    path = tmp_path_factory.mktemp("bounds") / "warehouse.duckdb"
    shutil.copyfile(demo_warehouse_template, path)
    return path


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(segment=_bounded_segment(), run_day=st.dates(date(2000, 1, 1), date(2999, 12, 31)))
def test_any_value_inside_the_bounds_runs(
    segment: dict, run_day: date, bounded_warehouse: Path, tmp_path: Path
) -> None:
    project = load_project_config(REPO / "activation.yaml")
    spec = load_segment_text(yaml.safe_dump(segment), "bounded.yaml", project)
    as_of = AS_OF.replace(year=run_day.year, month=run_day.month, day=run_day.day)
    loaded = LoadedSegment(spec, Path("bounded.yaml"))
    preview = preview_segment(bounded_warehouse, tmp_path / "state", loaded, project, as_of)
    assert preview.members >= preview.audience >= 0
