"""Editor support: every example segment names the JSON Schema on its first line, and the
schema (checked for staleness in tests/segments/test_jsonschema.py) accepts every example and
rejects what the loader rejects, so an editor flags mistakes before ``activation validate``."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest
import yaml

from orchestrator.segments.loader import _SegmentYamlLoader
from tests.conftest import REPO

SCHEMA_PATH = REPO / "schemas" / "segment.schema.json"
EXAMPLES = sorted((REPO / "segments").glob("*.yaml"))
MODELINE = "# yaml-language-server: $schema="


def _validator() -> jsonschema.protocols.Validator:
    schema = json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    return cls(schema, format_checker=cls.FORMAT_CHECKER)


def _data(text: str) -> object:
    # The loader's YAML rules (dates stay text), as the YAML language server reads them.
    return yaml.load(text, Loader=_SegmentYamlLoader)


def test_there_are_examples() -> None:
    assert len(EXAMPLES) >= 5


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_example_points_at_the_committed_schema(path: Path) -> None:
    first = path.read_text(encoding="utf-8").splitlines()[0]
    assert first.startswith(MODELINE), f"{path.name}: first line must be the schema comment"
    target = (path.parent / first.removeprefix(MODELINE).strip()).resolve()
    assert target == SCHEMA_PATH.resolve()


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_example_validates_against_the_json_schema(path: Path) -> None:
    errors = list(_validator().iter_errors(_data(path.read_text(encoding="utf-8"))))
    assert not errors, [f"{'.'.join(map(str, e.absolute_path))}: {e.message}" for e in errors]


@pytest.mark.parametrize(
    ("change", "where"),
    [
        (lambda d: d.update(retention_days=-1), "retention_days"),
        (lambda d: d.update(colour="blue"), ""),
        (lambda d: d["destinations"][0].update(mode="sometimes"), "destinations.0.mode"),
        (lambda d: d.update(audience={"trait": "email", "eq": "x"}), "audience"),
    ],
    ids=["negative_retention", "unknown_field", "bad_mode", "raw_identifier_trait"],
)
def test_schema_rejects_mistakes_an_editor_should_flag(change, where: str) -> None:
    data = _data((REPO / "segments" / "recent_buyers_eu.yaml").read_text(encoding="utf-8"))
    change(data)
    errors = list(_validator().iter_errors(data))
    assert errors
    assert any(".".join(map(str, e.absolute_path)).startswith(where) for e in errors)
