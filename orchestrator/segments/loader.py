"""Load segment files and report every problem as ``path:line field: message``.

Parsing only: this module never imports Dagster (the CLI, tests and Dagster code locations all
use it). One broken file never stops the others from loading; two segments whose names give the
same id, or that send to the same destination audience, are both rejected.

Line numbers come from the YAML node tree (``yaml.compose``): the error's pydantic location is
walked key by key and item by item; when the location ends at something absent (a missing
field), the nearest existing parent's line is used.

YAML dates stay text here (PyYAML's implicit timestamp type is turned off) so ``2024-03-01`` and
``"2024-03-01"`` mean the same; booleans keep YAML 1.1 rules (``NO`` is false: quote codes).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from orchestrator.config import ProjectConfig
from orchestrator.segments.catalog import catalog_from_context
from orchestrator.segments.spec import CONDITION_TAGS, SegmentSpec
from orchestrator.segments.sql_reads import SqlSandbox

SEGMENT_SUFFIXES: tuple[str, ...] = (".yaml", ".yml")
_Model = TypeVar("_Model", bound=BaseModel)
_TIMESTAMP_TAG = "tag:yaml.org,2002:timestamp"


#: libyaml's parser (C) when PyYAML was built with it, else the pure-Python one: same events,
#: nodes and marks, about ten times faster (500 segment files: bench/README.md).
_BaseLoader: type = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class _SegmentYamlLoader(_BaseLoader):  # type: ignore[misc,valid-type]
    """Safe loader without the implicit timestamp type (dates stay strings)."""


_SegmentYamlLoader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != _TIMESTAMP_TAG]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


@dataclass(frozen=True)
class SegmentError:
    """One problem in one segment file.

    ``path``: the file; ``line``: 1-based line (None when the file could not be read);
    ``field``: dotted location with ``[i]`` for list items (``audience.all[1].within_days``),
    empty for the whole file; ``message``: short, human.
    """

    path: Path
    line: int | None
    field: str
    message: str

    def __str__(self) -> str:
        where = display_path(self.path) + (f":{self.line}" if self.line else "")
        return f"{where} {self.field}: {self.message}" if self.field else f"{where}: {self.message}"


class SegmentValidationError(ValueError):
    """A segment file is invalid; ``errors`` lists every problem found (at least one)."""

    def __init__(self, errors: Sequence[SegmentError]) -> None:
        self.errors: list[SegmentError] = list(errors)
        super().__init__("\n".join(str(error) for error in self.errors))


@dataclass(frozen=True)
class LoadedSegment:
    """A valid segment and the file it came from."""

    spec: SegmentSpec
    path: Path


@dataclass
class LoadResult:
    """Outcome of :func:`load_segments`: valid segments by id, errors of the others, and
    ``warnings`` about valid segments (located like errors; they do not stop a segment:
    :func:`segment_warnings`)."""

    specs: dict[str, LoadedSegment] = field(default_factory=dict)
    errors: list[SegmentError] = field(default_factory=list)
    warnings: list[SegmentError] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when no file had an error."""
        return not self.errors


def display_path(path: Path) -> str:
    """``path`` relative to the current directory when it is inside it, else as given."""
    try:
        return str(Path(path).resolve().relative_to(Path.cwd().resolve()))
    except (ValueError, OSError):
        return str(path)


def load_segments(directory: Path, project: ProjectConfig) -> LoadResult:
    """Load every ``*.yaml`` / ``*.yml`` file of ``directory`` (not recursive, sorted by name).

    Returns valid specs by id and the errors of the invalid files; never raises for a bad file.
    A missing directory is reported as one error.
    """
    result = LoadResult()
    directory = Path(directory)
    if not directory.is_dir():
        result.errors.append(SegmentError(directory, None, "", "segments directory not found"))
        return result
    loaded: list[tuple[LoadedSegment, Node]] = []
    # one in-memory DuckDB for every sql: segment of the folder, shaped as the project's views
    with SqlSandbox(catalog_from_context({"project": project})) as sandbox:
        for path in sorted(p for p in directory.iterdir() if p.suffix in SEGMENT_SUFFIXES):
            try:
                spec, root = _load_file(path, project, sandbox)
            except SegmentValidationError as error:
                result.errors.extend(error.errors)
                continue
            loaded.append((LoadedSegment(spec, path), root))
    rejected = _cross_file_errors(loaded, project)
    result.errors.extend(error for errors in rejected.values() for error in errors)
    for segment, root in loaded:
        if segment.path not in rejected:
            result.specs[segment.spec.id] = segment
            result.warnings += segment_warnings(segment.spec, root, segment.path, project)
    return result


def segment_warnings(
    spec: SegmentSpec, root: Node, path: Path, project: ProjectConfig
) -> list[SegmentError]:
    """Warnings about a valid segment, each with its file, line and field: a segment bound for
    an ad platform that uses data the source model marks health or financial
    (:mod:`orchestrator.segments.restricted`)."""
    from orchestrator.segments.restricted import restricted_audience_warnings

    return [
        SegmentError(path, node_line(root, loc), field_path(loc), message)
        for loc, message in restricted_audience_warnings(spec, project)
    ]


def check_segment_text(
    text: str, path: str | Path, project: ProjectConfig
) -> tuple[SegmentSpec, list[SegmentError]]:
    """:func:`load_segment_text` and the segment's warnings (:func:`segment_warnings`).

    Raises:
        SegmentValidationError: as :func:`load_segment_text`.
    """
    with SqlSandbox(catalog_from_context({"project": project})) as sandbox:
        spec, root = _parse(text, Path(path), project, sandbox)
    return spec, segment_warnings(spec, root, Path(path), project)


def load_segment_text(text: str, path: str | Path, project: ProjectConfig) -> SegmentSpec:
    """Parse and validate one segment file's text; ``path`` is only used in messages.

    Raises:
        SegmentValidationError: YAML syntax error, empty or non-mapping document, duplicate
            key, or any field error (each with its line and field).
    """
    with SqlSandbox(catalog_from_context({"project": project})) as sandbox:
        return _parse(text, Path(path), project, sandbox)[0]


def _load_file(path: Path, project: ProjectConfig, sandbox: SqlSandbox) -> tuple[SegmentSpec, Node]:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise SegmentValidationError(
            [SegmentError(path, None, "", f"cannot read file: {error}")]
        ) from None
    return _parse(text, path, project, sandbox)


#: Limits that keep one hostile or runaway file from stalling or crashing every load (the
#: loader runs at every Dagster import, in every step process): a segment is a page of YAML.
MAX_FILE_BYTES = 256 * 1024
MAX_NESTING = 40


def _check_shape(text: str, path: Path) -> None:
    """Refuse, before building anything, a file too large, nested too deeply (Python's
    recursion limit would crash the loader) or using YAML aliases (``*name``: an alias bomb
    expands a few lines into billions of nodes; segment files never need them)."""
    size = len(text.encode("utf-8"))
    if size > MAX_FILE_BYTES:
        message = f"file is {size:,} bytes; a segment file may be at most {MAX_FILE_BYTES:,}"
        raise SegmentValidationError([SegmentError(path, 1, "", message)])
    depth = 0
    for event in _yaml_step(path, lambda: list(yaml.parse(text, Loader=_SegmentYamlLoader))):
        line = event.start_mark.line + 1
        if isinstance(event, yaml.AliasEvent):
            message = "YAML aliases (*name) are not allowed in segment files; write the value out"
            raise SegmentValidationError([SegmentError(path, line, "", message)])
        if isinstance(event, yaml.CollectionStartEvent):
            depth += 1
            if depth > MAX_NESTING:
                message = f"nested more than {MAX_NESTING} levels deep; simplify the conditions"
                raise SegmentValidationError([SegmentError(path, line, "", message)])
        elif isinstance(event, yaml.CollectionEndEvent):
            depth -= 1


def _parse(
    text: str, path: Path, project: ProjectConfig, sandbox: SqlSandbox
) -> tuple[SegmentSpec, Node]:
    return _parse_model(text, path, SegmentSpec, {"project": project, "sql_sandbox": sandbox})


def parse_yaml_model(
    text: str, path: Path, model: type[_Model], context: dict[str, Any] | None = None
) -> _Model:
    """Parse one YAML document into ``model`` with the rules of segment files: size, nesting
    and alias limits, a mapping at the top, no duplicate key, and every field error located
    (used for ``activation.yaml`` too).

    Raises:
        SegmentValidationError: every problem found, each with its line and field.
    """
    return _parse_model(text, path, model, context)[0]


def _parse_model(
    text: str, path: Path, model: type[_Model], context: dict[str, Any] | None
) -> tuple[_Model, Node]:
    _check_shape(text, path)
    # The text is composed once; the data is constructed from that node tree (no third parse).
    root = _yaml_step(path, lambda: yaml.compose(text, Loader=_SegmentYamlLoader))
    _check_document(root, path, model)
    problems = list(_duplicate_keys(root, path, ()))
    if problems:
        raise SegmentValidationError(problems)
    # A SafeLoader subclass: no Python object tags can be constructed.
    data = _yaml_step(path, lambda: _SegmentYamlLoader("").construct_document(root))
    try:
        parsed = model.model_validate(data, context=context)
    except ValidationError as error:
        raise SegmentValidationError(
            [_from_pydantic(item, root, path) for item in error.errors()]
        ) from None
    return parsed, root


def _yaml_step(path: Path, step: Callable[[], Any]) -> Any:
    try:
        return step()
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        line = mark.line + 1 if mark else 1
        detail = " ".join(part for part in (error.context, error.problem) if part)
        message = (
            f"nested more than {MAX_NESTING} levels deep; simplify the conditions"
            if "maximum nesting depth" in detail  # libyaml's own limit, met before ours
            else f"invalid YAML: {detail}"
        )
    except (yaml.YAMLError, ValueError) as error:
        line, message = 1, f"invalid YAML: {error}"
    raise SegmentValidationError([SegmentError(path, line, "", message)])


def _check_document(root: Node | None, path: Path, model: type[BaseModel]) -> None:
    fields = (
        "segment fields (name: ..., purpose: ...)"
        if model is SegmentSpec
        else f"fields ({', '.join(f'{name}: ...' for name in list(model.model_fields)[:2])})"
    )
    if root is None:
        message = (
            "file is empty; expected a segment (name, purpose, audience, destinations, ...)"
            if model is SegmentSpec
            else f"file is empty; expected a mapping of {fields}"
        )
        raise SegmentValidationError([SegmentError(path, 1, "", message)])
    if not isinstance(root, MappingNode):
        found = "a list" if isinstance(root, SequenceNode) else "a single value"
        message = f"expected a mapping of {fields}, found {found}"
        raise SegmentValidationError([SegmentError(path, root.start_mark.line + 1, "", message)])


def _duplicate_keys(node: Node, path: Path, loc: tuple) -> Iterable[SegmentError]:
    if isinstance(node, SequenceNode):
        for index, item in enumerate(node.value):
            yield from _duplicate_keys(item, path, (*loc, index))
    elif isinstance(node, MappingNode):
        first_line: dict[Any, int] = {}
        for key, value in node.value:
            name = key.value if isinstance(key, ScalarNode) else None
            line = key.start_mark.line + 1
            if name in first_line:
                message = f"duplicate key {name!r} (first at line {first_line[name]})"
                yield SegmentError(path, line, field_path((*loc, name)), message)
            first_line.setdefault(name, line)
            yield from _duplicate_keys(value, path, (*loc, name))


def _from_pydantic(error: Any, root: Node, path: Path) -> SegmentError:
    loc = tuple(part for part in error["loc"] if part not in _IGNORED_LOC_PARTS)
    return SegmentError(path, node_line(root, loc), field_path(loc), human_message(error))


_IGNORED_LOC_PARTS = frozenset({*CONDITION_TAGS.values(), "[key]"})


def field_path(loc: Sequence[str | int]) -> str:
    """Dotted field path with ``[i]`` for list items: ``("audience", "all", 1, "in")`` ->
    ``audience.all[1].in``."""
    text = ""
    for part in loc:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += f".{part}" if text else str(part)
    return text


def node_line(root: Node, loc: Sequence[str | int]) -> int:
    """1-based line of the YAML node at ``loc``, or of its nearest existing parent.

    For a mapping key the key's own line is used (so a block value points at its ``key:``).
    """
    node, line = root, root.start_mark.line + 1
    for part in loc:
        child = _child(node, part)
        if child is None:
            break
        line, node = child
    return line


def _child(node: Node, part: str | int) -> tuple[int, Node] | None:
    if isinstance(node, MappingNode):
        for key, value in node.value:
            if isinstance(key, ScalarNode) and key.value == str(part):
                return key.start_mark.line + 1, value
    elif isinstance(node, SequenceNode) and isinstance(part, int) and 0 <= part < len(node.value):
        item = node.value[part]
        return item.start_mark.line + 1, item
    return None


_SIMPLE_MESSAGES = {
    "missing": "field required",
    "extra_forbidden": "extra field not allowed",
    "int_type": "must be a whole number",
    "int_parsing": "must be a whole number",
    "int_from_float": "must be a whole number",
    "bool_type": "must be true or false",
    "bool_parsing": "must be true or false",
    "string_type": "must be text (quote it)",
    "list_type": "must be a list",
    "dict_type": "must be a mapping",
    "model_type": "must be a mapping",
    "model_attributes_type": "must be a mapping",
}


def human_message(error: Any) -> str:
    """A short message for one pydantic error (``must be > 0``, ``field required``, ...)."""
    kind, ctx = error["type"], error.get("ctx") or {}
    if kind in _SIMPLE_MESSAGES:
        return _SIMPLE_MESSAGES[kind]
    templates = {
        "greater_than": "must be > {gt}",
        "greater_than_equal": "must be >= {ge}",
        "less_than": "must be < {lt}",
        "less_than_equal": "must be <= {le}",
        "string_too_short": "must not be empty",
        "string_pattern_mismatch": "must match {pattern}",
        "enum": "must be {expected}",
        "literal_error": "must be {expected}",
        "too_short": "must have at least {min_length} item(s)",
        "too_long": "must have at most {max_length} item(s)",
    }
    if kind in templates:
        try:
            return templates[kind].format(**ctx)
        except KeyError:
            pass
    message = str(error["msg"])
    return message[:1].lower() + message[1:] if kind != "segment" else message


def _cross_file_errors(
    loaded: Sequence[tuple[LoadedSegment, Node]], project: ProjectConfig
) -> dict[Path, list[SegmentError]]:
    """Errors for segments that clash with another file: same id, or same destination
    audience (two segments mirroring into one audience would remove each other's members).
    An audience is one list at one platform account
    (:meth:`~orchestrator.config.DestinationConfig.audience_identity`), so two destination
    names reaching the same account with the same ``audience_id`` are one audience."""
    errors: dict[Path, list[SegmentError]] = defaultdict(list)
    by_id: dict[str, list[tuple[LoadedSegment, Node]]] = defaultdict(list)
    by_audience: dict[tuple, list[tuple[LoadedSegment, Node, int]]] = defaultdict(list)
    for segment, root in loaded:
        by_id[segment.spec.id].append((segment, root))
        for index, entry in enumerate(segment.spec.destinations):
            config = project.destinations[entry.destination]
            identity = config.audience_identity(entry.audience_id)
            by_audience[identity].append((segment, root, index))
    for segment_id, group in by_id.items():
        for segment, root in group if len(group) > 1 else ():
            others = ", ".join(display_path(s.path) for s, _ in group if s is not segment)
            message = (
                f"segment id {segment_id!r} is also the id of {others}; ids come from the name"
                " (lowercase, other characters -> _) and must be unique: rename one"
            )
            errors[segment.path].append(
                SegmentError(segment.path, node_line(root, ("name",)), "name", message)
            )
    for group in by_audience.values():
        for segment, root, index in group if len(group) > 1 else ():
            entry = segment.spec.destinations[index]
            others = ", ".join(
                f"{display_path(s.path)} ({s.spec.destinations[i].destination})"
                for s, _, i in group
                if s is not segment
            )
            loc = ("destinations", index, "audience_id")
            message = (
                f"{entry.destination} audience {entry.audience_id!r} is also used by {others};"
                " each segment needs its own audience"
            )
            errors[segment.path].append(
                SegmentError(segment.path, node_line(root, loc), field_path(loc), message)
            )
    return dict(errors)
