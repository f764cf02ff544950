"""No text from a segment file or the project config becomes a spreadsheet formula in a CSV
the product writes (OWASP "CSV Injection"): ``activation register --format csv`` end to end."""

from __future__ import annotations

import csv
import io
import shutil
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from orchestrator.cli import cli
from orchestrator.csv_output import FORMULA_PREFIXES, csv_writer, neutralize_cell
from tests.conftest import REPO

HYPERLINK = '=HYPERLINK("http://evil.example.com/","x")'


def _project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, description: str, **config) -> None:
    segments = tmp_path / "segments"
    segments.mkdir()
    source = yaml.safe_load((REPO / "segments" / "recent_buyers_eu.yaml").read_text())
    source["description"] = description
    (segments / "recent_buyers_eu.yaml").write_text(yaml.safe_dump(source))
    shutil.copyfile(REPO / "segments" / "mug_buyers_60d.yaml", segments / "mug_buyers_60d.yaml")
    data = yaml.safe_load((REPO / "activation.yaml").read_text())
    data["controller"].update(config.get("controller", {}))
    for name, text in config.get("purpose_descriptions", {}).items():
        data["purposes"][name]["description"] = text
    (tmp_path / "activation.yaml").write_text(yaml.safe_dump(data))
    monkeypatch.setenv("ACTIVATION_SEGMENTS_DIR", str(segments))
    monkeypatch.setenv("ACTIVATION_CONFIG", str(tmp_path / "activation.yaml"))


def _register_cells(tmp_path: Path) -> list[str]:
    out = tmp_path / "register.csv"
    result = CliRunner().invoke(cli, ["register", "--format", "csv", "--output", str(out)])
    assert result.exit_code == 0, result.output
    with out.open(encoding="utf-8", newline="") as handle:
        rows = list(csv.reader(handle))
    assert len(rows) >= 3  # header + one row per purpose and recipient
    return [cell for row in rows for cell in row]


def test_a_formula_in_a_segment_description_is_written_as_text(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # the record lists campaigns by file name; the purpose's text is where free text lands
    cells = _register_cells_of(
        tmp_path, monkeypatch, HYPERLINK, purpose_descriptions={"email_marketing": HYPERLINK}
    )
    assert "'" + HYPERLINK in cells
    assert not [cell for cell in cells if cell.startswith(FORMULA_PREFIXES)]


def _register_cells_of(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, description: str, **config
) -> list[str]:
    _project(tmp_path, monkeypatch, description, **config)
    return _register_cells(tmp_path)


@pytest.mark.parametrize("lead", ["+", "-", "@", "\t", "\r"])
def test_every_formula_lead_is_neutralized(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, lead: str
) -> None:
    text = f"{lead}cmd|' /C calc'!A0"
    cells = _register_cells_of(
        tmp_path, monkeypatch, text, purpose_descriptions={"ad_targeting": text}
    )
    assert "'" + text in cells
    assert not [cell for cell in cells if cell.startswith(FORMULA_PREFIXES)]


def test_project_config_text_is_neutralized_too(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cells = _register_cells_of(
        tmp_path,
        monkeypatch,
        "An ordinary description",
        controller={"name": "@SUM(1+1)*cmd|' /C calc'!A0"},
        purpose_descriptions={"email_marketing": "-2+3+cmd|' /C calc'!A0"},
    )
    assert any(cell.startswith("'@SUM(1+1)*cmd|' /C calc'!A0") for cell in cells)
    assert "'-2+3+cmd|' /C calc'!A0" in cells
    assert not [cell for cell in cells if cell.startswith(FORMULA_PREFIXES)]


def test_the_writer_leaves_numbers_and_plain_text_alone() -> None:
    out = io.StringIO()
    csv_writer(out).writerow(["plain", 12, -5, None, "a=b", "=1", " =1"])
    assert out.getvalue() == "plain,12,-5,,a=b,'=1, =1\r\n"
    assert neutralize_cell("@x") == "'@x"
