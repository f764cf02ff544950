"""`make demo` names each broken segment file (file, line, field) before running the others."""

from __future__ import annotations

import shutil
from pathlib import Path

from rich.console import Console

from orchestrator.demo import report_segment_errors
from orchestrator.settings import Settings, default_project_dir


def test_a_broken_segment_file_is_named_with_its_line(tmp_path: Path) -> None:
    segments = tmp_path / "segments"
    segments.mkdir()
    shutil.copy(default_project_dir() / "segments" / "one_time_buyers.yaml", segments)
    (segments / "zz_broken.yaml").write_text(
        "description: broken on purpose\nowner: team:crm\npurpose: email_marketing\n"
        "legal_basis: consent\nschedule: '0 6 * * *'\naudience:\n  all:\n"
        "    - trait: country\n      in: [XX]\ndestinations: []\n"
    )
    settings = Settings.from_env(
        {
            "ACTIVATION_PROJECT_DIR": str(default_project_dir()),
            "ACTIVATION_SEGMENTS_DIR": str(segments),
        }
    )
    console = Console(record=True, width=200)
    assert report_segment_errors(settings, console) >= 1
    text = console.export_text()
    assert "zz_broken.yaml:" in text
    assert "one_time_buyers" not in text, "the valid file is not reported"


def test_no_output_when_every_file_is_valid(tmp_path: Path) -> None:
    settings = Settings.from_env({"ACTIVATION_PROJECT_DIR": str(default_project_dir())})
    console = Console(record=True, width=200)
    assert report_segment_errors(settings, console) == 0
    assert console.export_text() == ""
