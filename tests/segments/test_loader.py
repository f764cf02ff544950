"""Loading a folder of segment files: good files load beside bad ones; clashes reject both."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from orchestrator.config import ProjectConfig
from orchestrator.segments.loader import load_segment_text, load_segments
from orchestrator.segments.spec import SyncMode

from .conftest import REPO, VALID_SEGMENT


def _write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.write_text(text, encoding="utf-8")
    return path


def _variant(name: str, audience_id: str) -> str:
    return VALID_SEGMENT.replace("name: recent_buyers_fr", f"name: {name}").replace(
        '"a1b2c3d4e5"', f'"{audience_id}"'
    )


def test_valid_text_gives_a_spec_with_its_id_and_defaults(project: ProjectConfig) -> None:
    spec = load_segment_text(VALID_SEGMENT, "segments/recent_buyers_fr.yaml", project)
    assert spec.id == "recent_buyers_fr"
    assert spec.timezone == "Europe/Paris"
    assert spec.schedule_running is False
    assert spec.destinations[0].mode is SyncMode.MIRROR
    assert spec.destinations[0].fields == {"COUNTRY": "country"}


def test_id_is_the_normalized_name(project: ProjectConfig) -> None:
    text = _variant('"Spring Sale -- 2024!"', "x1")
    assert load_segment_text(text, "s.yaml", project).id == "spring_sale_2024"


def test_one_broken_file_does_not_stop_the_others(
    project: ProjectConfig, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    folder = tmp_path / "segments"
    folder.mkdir()
    _write(folder, "a_good.yaml", _variant("a_good", "aaa"))
    _write(
        folder,
        "b_broken.yaml",
        _variant("b_broken", "bbb").replace("within_days: 90", "within_days: 0"),
    )
    _write(folder, "c_good.yml", _variant("c_good", "ccc"))
    (folder / "d_unreadable.yaml").write_bytes(b"name: \xff\xfe broken\n")
    _write(folder, "notes.md", "not a segment")

    result = load_segments(folder, project)

    assert sorted(result.specs) == ["a_good", "c_good"]
    assert result.specs["a_good"].path == folder / "a_good.yaml"
    assert [str(error) for error in result.errors] == [
        "segments/b_broken.yaml:14 audience.all[1].within_days: must be > 0",
        "segments/d_unreadable.yaml: cannot read file: 'utf-8' codec can't decode byte 0xff"
        " in position 6: invalid start byte",
    ]
    assert not result.ok


def test_names_normalizing_to_one_id_reject_both_files(
    project: ProjectConfig, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    folder = tmp_path / "segments"
    folder.mkdir()
    _write(folder, "spring-sale.yaml", _variant("spring-sale", "list1"))
    _write(folder, "spring_sale.yaml", _variant("spring_sale", "list2"))
    _write(folder, "other.yaml", _variant("other", "list3"))

    result = load_segments(folder, project)

    assert sorted(result.specs) == ["other"]
    messages = [str(error) for error in result.errors]
    assert messages == [
        "segments/spring-sale.yaml:2 name: segment id 'spring_sale' is also the id of"
        " segments/spring_sale.yaml; ids come from the name (lowercase, other characters -> _)"
        " and must be unique: rename one",
        "segments/spring_sale.yaml:2 name: segment id 'spring_sale' is also the id of"
        " segments/spring-sale.yaml; ids come from the name (lowercase, other characters -> _)"
        " and must be unique: rename one",
    ]


def test_two_segments_sending_to_one_audience_are_both_rejected(
    project: ProjectConfig, tmp_path: Path
) -> None:
    _write(tmp_path, "first.yaml", _variant("first", "shared"))
    _write(tmp_path, "second.yaml", _variant("second", "shared"))

    result = load_segments(tmp_path, project)

    assert result.specs == {}
    assert [(e.path.name, e.line, e.field) for e in result.errors] == [
        ("first.yaml", 17, "destinations[0].audience_id"),
        ("second.yaml", 17, "destinations[0].audience_id"),
    ]
    assert "mailchimp audience 'shared' is also used by" in result.errors[0].message


def test_missing_folder_is_one_error(project: ProjectConfig, tmp_path: Path) -> None:
    result = load_segments(tmp_path / "nope", project)
    assert result.specs == {}
    assert [error.message for error in result.errors] == ["segments directory not found"]


def test_path_outside_the_current_folder_is_shown_absolute(
    project: ProjectConfig, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    _write(tmp_path, "bad.yaml", "")
    (error,) = load_segments(tmp_path, project).errors
    assert str(error).startswith(f"{tmp_path / 'bad.yaml'}:1: file is empty")


def test_dates_in_yaml_mean_the_same_quoted_or_not(project: ProjectConfig) -> None:
    text = VALID_SEGMENT.replace("within_days: 90", "between: [2024-03-01, '2024-03-31']")
    spec = load_segment_text(text, "s.yaml", project)
    event = spec.audience.all_[1]
    assert [str(day) for day in event.dates()] == ["2024-03-01", "2024-03-31"]


def test_loader_does_not_import_dagster() -> None:
    code = (
        "import sys; import orchestrator.segments.loader, orchestrator.segments.compiler;"
        " print(sorted(m for m in sys.modules if m.split('.')[0] == 'dagster'))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, check=True
    )
    assert done.stdout.strip() == "[]"


def test_validation_without_project_context_is_a_programming_error() -> None:
    import yaml

    from orchestrator.segments.spec import SegmentSpec

    with pytest.raises(TypeError, match="needs the project config"):
        SegmentSpec.model_validate(yaml.safe_load(VALID_SEGMENT))
