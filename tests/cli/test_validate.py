"""``activation validate``: file:line field: message, JSON for CI, exit codes."""

from __future__ import annotations

import json
import re
from pathlib import Path

from click.testing import CliRunner

from orchestrator.cli import cli

from .conftest import run_activation

LINE = re.compile(r"^(?P<path>\S+\.ya?ml):(?P<line>\d+) (?P<field>\S+): (?P<message>.+)$")


def test_shipped_segments_are_valid(runner: CliRunner) -> None:
    result = runner.invoke(cli, ["validate"])
    assert result.exit_code == 0, result.output
    assert result.stdout == ""
    assert "7 valid segment(s), 0 error(s)" in result.stderr


def test_broken_file_is_reported_with_line_and_field(runner: CliRunner, broken_dir: Path) -> None:
    result = runner.invoke(cli, ["validate", str(broken_dir)])
    assert result.exit_code == 1
    lines = result.stdout.splitlines()
    assert lines, result.output
    parsed = [LINE.match(line) for line in lines]
    assert all(parsed), lines
    by_field = {m["field"]: m for m in parsed if m}
    assert "retention_days" in by_field
    assert by_field["retention_days"]["path"].endswith("broken_one.yaml")
    assert by_field["retention_days"]["line"] == "6"
    assert "1 valid segment(s)" in result.stderr
    assert "Traceback" not in result.output


def test_json_format_lists_errors_for_ci(runner: CliRunner, broken_dir: Path) -> None:
    result = runner.invoke(cli, ["validate", "--format", "json", str(broken_dir)])
    assert result.exit_code == 1
    errors = json.loads(result.stdout)
    assert errors and all(set(e) == {"path", "line", "field", "message"} for e in errors)
    retention = next(e for e in errors if e["field"] == "retention_days")
    assert retention["line"] == 6 and retention["message"] == "must be > 0"


def test_json_format_on_valid_files_is_an_empty_list(runner: CliRunner) -> None:
    good = Path("segments") / "recent_buyers_eu.yaml"
    result = runner.invoke(cli, ["validate", "--format", "json", str(good)])
    assert result.exit_code == 0
    assert json.loads(result.stdout) == []


def test_single_file_and_missing_path(runner: CliRunner, broken_dir: Path) -> None:
    ok = runner.invoke(cli, ["validate", str(broken_dir / "recent_buyers_eu.yaml")])
    assert ok.exit_code == 0
    missing = runner.invoke(cli, ["validate", "--format", "json", str(broken_dir / "nope.yaml")])
    assert missing.exit_code == 1
    assert json.loads(missing.stdout)[0]["message"] == "no such file or directory"


def test_invalid_yaml_points_at_its_line(runner: CliRunner, tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\npurpose: [unclosed\n")
    result = runner.invoke(cli, ["validate", "--format", "json", str(bad)])
    assert result.exit_code == 1
    (error,) = json.loads(result.stdout)
    assert error["line"] >= 2 and error["message"].startswith("invalid YAML")


def test_subprocess_exit_codes(broken_dir: Path) -> None:
    good = run_activation("validate")
    assert good.returncode == 0, good.stderr
    bad = run_activation("validate", "--format", "json", str(broken_dir))
    assert bad.returncode == 1
    assert any(e["field"] == "retention_days" for e in json.loads(bad.stdout))
    usage = run_activation("validate", "--format", "xml")
    assert usage.returncode == 2
    assert "Traceback" not in usage.stderr
