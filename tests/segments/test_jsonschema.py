"""The committed JSON Schema matches the models and offers the catalog's names."""

from __future__ import annotations

import json
import subprocess
import sys

from orchestrator.config import load_project_config
from orchestrator.segments.jsonschema import render, segment_json_schema

from .conftest import REPO

SCHEMA_FILE = REPO / "schemas" / "segment.schema.json"


def test_committed_schema_is_up_to_date() -> None:
    assert SCHEMA_FILE.read_text(encoding="utf-8") == render(), (
        "schemas/segment.schema.json is stale: run "
        "python -m orchestrator.segments.jsonschema > schemas/segment.schema.json"
    )


def test_module_prints_the_schema() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "orchestrator.segments.jsonschema"],
        capture_output=True,
        text=True,
        cwd=REPO,
        check=True,
    )
    assert json.loads(done.stdout) == segment_json_schema()


def test_schema_offers_catalog_names_and_forbids_unknown_fields() -> None:
    schema = segment_json_schema()
    defs = schema["$defs"]
    catalog = load_project_config(REPO / "activation.yaml").catalog  # the committed catalog
    assert "loyalty_tier" in catalog.traits and "add_to_cart" in catalog.event_types
    assert defs["TraitCondition"]["properties"]["trait"]["enum"] == list(catalog.traits)
    assert "email" not in defs["TraitCondition"]["properties"]["trait"]["enum"]
    assert defs["EventCondition"]["properties"]["event"]["enum"] == list(catalog.event_types)
    assert defs["FieldCondition"]["properties"]["field"]["enum"] == list(catalog.event_fields)
    assert set(defs["TraitCondition"]["properties"]) == {
        "trait",
        "eq",
        "in",
        "gte",
        "lte",
        "between",
        "is_null",
    }
    assert schema["additionalProperties"] is False
    assert all(d.get("additionalProperties") is False for d in defs.values() if "properties" in d)
    assert schema["oneOf"] == [{"required": ["audience"]}, {"required": ["sql"]}]
    assert set(schema["required"]) >= {"name", "purpose", "legal_basis", "destinations"}
