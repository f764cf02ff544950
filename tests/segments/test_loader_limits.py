"""One hostile or runaway segment file can neither crash nor stall the loading of the others:
the loader runs at every Dagster import, in every step process."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import pytest

from orchestrator.config import ProjectConfig
from orchestrator.segments.loader import (
    MAX_FILE_BYTES,
    SegmentValidationError,
    load_segment_text,
    load_segments,
)

REPO = Path(__file__).resolve().parents[2]

DEEP_NOT = "name: deep\naudience: " + "{not: " * 1200 + "{event: purchase}" + "}" * 1200 + "\n"
ALIAS_BOMB = """name: bomb
a: &a ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]
b: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]
c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b]
d: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c]
e: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d]
f: &f [*e, *e, *e, *e, *e, *e, *e, *e, *e]
g: &g [*f, *f, *f, *f, *f, *f, *f, *f, *f]
"""
HUGE = (
    "name: huge\naudience:\n  trait: customer_id\n  in: ["
    + ", ".join(str(i) for i in range(60_000))
    + "]\n"
)


@pytest.mark.parametrize(
    ("text", "line", "words"),
    [
        (DEEP_NOT, 2, "nested more than"),
        (ALIAS_BOMB, 3, "YAML aliases"),
        (HUGE, 1, f"at most {MAX_FILE_BYTES:,}"),
    ],
    ids=["deep-nesting", "alias-bomb", "huge-file"],
)
def test_hostile_file_is_refused_fast_with_its_line(
    project: ProjectConfig, text: str, line: int, words: str
) -> None:
    started = time.monotonic()
    with pytest.raises(SegmentValidationError) as caught:
        load_segment_text(text, "segments/hostile.yaml", project)
    assert time.monotonic() - started < 2
    (error,) = caught.value.errors
    assert error.line == line and words in error.message
    assert str(error).startswith(f"segments/hostile.yaml:{line}")


def test_hostile_files_beside_good_ones_leave_the_good_ones_loaded(
    project: ProjectConfig, tmp_path: Path
) -> None:
    for good in (REPO / "segments").glob("*.yaml"):
        shutil.copyfile(good, tmp_path / good.name)
    (tmp_path / "zz_deep.yaml").write_text(DEEP_NOT)
    (tmp_path / "zz_bomb.yaml").write_text(ALIAS_BOMB)
    started = time.monotonic()
    result = load_segments(tmp_path, project)
    assert time.monotonic() - started < 10
    assert len(result.specs) == len(list((REPO / "segments").glob("*.yaml")))
    assert sorted(Path(e.path).name for e in result.errors) == ["zz_bomb.yaml", "zz_deep.yaml"]
