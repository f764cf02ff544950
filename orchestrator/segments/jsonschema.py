"""JSON Schema for segment files, generated from the pydantic models.

Editors use it for completion and inline errors: each segment file starts with
``# yaml-language-server: $schema=../schemas/segment.schema.json``. The schema checks shape and
names: traits, event types and fields are enums taken from the project's committed catalog
(``catalog.json``, :mod:`orchestrator.model.catalog`; never the warehouse), each with the valid
names in its description, and the operators a condition may use follow its column's type.
Checks that need ``activation.yaml`` (purpose, legal basis, destinations) or DuckDB (``sql:``)
happen only in the loader.

Regenerate after changing the models or the catalog (a test fails when the committed file is
stale)::

    python -m orchestrator.segments.jsonschema > schemas/segment.schema.json
"""

from __future__ import annotations

import json
import sys
from typing import Any

from orchestrator.segments.catalog import FIELD_OPERATORS, TRAIT_OPERATORS, Catalog, ValueType
from orchestrator.segments.spec import SegmentSpec

SCHEMA_ID = "https://example.com/activation/segment.schema.json"


def project_catalog() -> Catalog:
    """The catalog of the project the environment points at (its committed file)."""
    from orchestrator.config import load_project_config
    from orchestrator.settings import Settings

    return load_project_config(Settings.from_env().config_path).catalog


def segment_json_schema(catalog: Catalog | None = None) -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of one segment file for ``catalog`` (default: the
    project's, :func:`project_catalog`), as a dict."""
    catalog = catalog or project_catalog()
    schema = SegmentSpec.model_json_schema(by_alias=True, mode="validation")
    defs = schema["$defs"]
    _names(defs["TraitCondition"], "trait", list(catalog.traits), "traits")
    _operators(defs["TraitCondition"], "trait", catalog.traits, TRAIT_OPERATORS)
    _names(defs["FieldCondition"], "field", list(catalog.event_fields), "event fields")
    _operators(defs["FieldCondition"], "field", catalog.event_fields, FIELD_OPERATORS)
    event = defs["EventCondition"]["properties"]["event"]
    if catalog.event_types_capped:
        event.pop("enum", None)
        event["examples"] = list(catalog.event_types)
        event["description"] = "An event type (the catalog lists only the first ones)."
    else:
        _names(defs["EventCondition"], "event", list(catalog.event_types), "event types")
    fields = defs["DestinationEntry"]["properties"]["fields"]["additionalProperties"]
    fields["enum"] = list(catalog.traits)
    fields["description"] = "A trait; valid traits: " + ", ".join(catalog.traits)
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": SCHEMA_ID,
        "title": "Segment",
        **{key: value for key, value in schema.items() if key != "title"},
    }


def _names(definition: dict[str, Any], prop: str, names: list[str], kind: str) -> None:
    definition["properties"][prop]["enum"] = names
    definition["properties"][prop]["description"] = f"Valid {kind}: {', '.join(names)}"


def _operators(
    definition: dict[str, Any],
    prop: str,
    types: dict[str, ValueType],
    operators: Any,
) -> None:
    """One ``if``/``then`` per value type: a column of that type takes only its operators."""
    rules = []
    for value_type in ValueType:
        names = [name for name, kind in types.items() if kind is value_type]
        if not names:
            continue
        allowed = [prop, *operators[value_type]]
        rules.append(
            {
                "if": {"properties": {prop: {"enum": names}}, "required": [prop]},
                "then": {"propertyNames": {"enum": allowed}},
            }
        )
    if rules:
        definition["allOf"] = rules


def render(catalog: Catalog | None = None) -> str:
    """The schema as committed: indented JSON with a final newline."""
    return json.dumps(segment_json_schema(catalog), indent=2, sort_keys=True) + "\n"


def main() -> None:
    """Write the schema to standard output."""
    sys.stdout.write(render())


if __name__ == "__main__":
    main()
