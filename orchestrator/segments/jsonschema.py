"""JSON Schema for segment files, generated from the pydantic models.

Editors use it for completion and inline errors: each segment file starts with
``# yaml-language-server: $schema=../schemas/segment.schema.json``. The schema checks shape and
names (traits, event types, fields are enums); checks that need ``activation.yaml`` (purpose,
legal basis, destinations) or DuckDB (``sql:``) happen only in the loader.

Regenerate after changing the models (a test fails when the committed file is stale)::

    python -m orchestrator.segments.jsonschema > schemas/segment.schema.json
"""

from __future__ import annotations

import json
import sys
from typing import Any

from orchestrator.segments.spec import SegmentSpec

SCHEMA_ID = "https://example.com/activation/segment.schema.json"


def segment_json_schema() -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of one segment file, as a dict."""
    schema = SegmentSpec.model_json_schema(by_alias=True, mode="validation")
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": SCHEMA_ID,
        "title": "Segment",
        **{key: value for key, value in schema.items() if key != "title"},
    }


def render() -> str:
    """The schema as committed: indented JSON with a final newline."""
    return json.dumps(segment_json_schema(), indent=2, sort_keys=True) + "\n"


def main() -> None:
    """Write the schema to standard output."""
    sys.stdout.write(render())


if __name__ == "__main__":
    main()
