"""Load a YAML or JSON document into a pydantic model, with every error located by line."""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from xdscp.errors import DocumentError, Problem

YAML_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
M = TypeVar("M", bound=BaseModel)
MAX_PROBLEMS = 20  # reported per document: the first ones make the point


def parse_document(data: bytes | str, path: str) -> Any:
    """Parse YAML (or JSON, by the .json suffix) into plain Python data."""
    text = data.decode("utf-8", errors="replace") if isinstance(data, bytes) else data
    if path.endswith(".json"):
        try:
            return json.loads(text)
        except json.JSONDecodeError as e:
            raise DocumentError(path, [Problem("", f"invalid JSON: {e.msg}", e.lineno)]) from None
    try:
        return yaml.load(text, Loader=YAML_LOADER)
    except yaml.MarkedYAMLError as e:
        line = e.problem_mark.line + 1 if e.problem_mark else None
        raise DocumentError(path, [Problem("", f"invalid YAML: {e.problem}", line)]) from None
    except yaml.YAMLError as e:
        raise DocumentError(path, [Problem("", f"invalid YAML: {e}")]) from None


def parse_mapping(data: bytes | str, path: str, *, empty: str | None = None) -> dict[Any, Any]:
    """Parse a document whose top level is a mapping; DocumentError otherwise.

    An empty document is an empty mapping, unless ``empty`` is given: then it is an error
    with that message (for files where emptiness is more likely a truncated write)."""
    raw = parse_document(data, path)
    if raw is None:
        if empty is not None:
            raise DocumentError(path, [Problem("", empty)])
        raw = {}
    if not isinstance(raw, dict):
        raise DocumentError(path, [Problem("", f"the top level must be a mapping, not {type(raw).__name__}", 1)])
    return raw


def load_document(data: bytes | str, path: str, model: type[M], *, empty: str | None = None) -> M:
    """Parse and validate; raise DocumentError naming the file, field path and line."""
    raw = parse_mapping(data, path, empty=empty)
    try:
        return model.model_validate(raw)
    except ValidationError as e:
        raise DocumentError(path, locate(data, validation_problems(e))) from None


def locate(data: bytes | str, found: Iterable[tuple[tuple[Any, ...], str]], *,
           prefix: tuple[Any, ...] = (), first_line: int = 1) -> list[Problem]:
    """The first problems ``found`` (where in ``data``, and what), each with its field path
    and line, in line order. ``data`` may be one value cut from a larger document: the value
    at ``prefix`` there, beginning on line ``first_line``."""
    found = list(found)[:MAX_PROBLEMS]
    text = data.decode("utf-8", errors="replace") if isinstance(data, bytes) else data
    try:
        root = yaml.compose(text, Loader=YAML_LOADER)
    except yaml.YAMLError:
        root = None
    problems = []
    for loc, message in found:
        line = _line_of(root, loc)
        problems.append(Problem(field_path((*prefix, *loc)), message, line + first_line - 1 if line else None))
    return sorted(problems, key=lambda p: p.line if p.line is not None else 0)


def validation_problems(error: ValidationError, at: tuple[Any, ...] = ()) -> list[tuple[tuple[Any, ...], str]]:
    """A pydantic error's problems for ``locate``; ``at``: where the value validated sits."""
    return [((*at, *err["loc"]), err["msg"]) for err in error.errors()]


def field_path(loc: tuple[Any, ...]) -> str:
    """('services', 0, 'port') -> 'services[0].port'."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out


def _line_of(node: yaml.Node | None, loc: tuple[Any, ...]) -> int | None:
    """Walk the YAML node tree (JSON is YAML too) along loc; the deepest node found gives the line."""
    line = None
    for part in loc:
        if node is None:
            break
        line = node.start_mark.line + 1
        if isinstance(node, yaml.MappingNode):
            node = next((v for k, v in node.value if getattr(k, "value", None) == str(part)), None)
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
            node = node.value[part]
        else:
            node = None
    if node is not None:
        line = node.start_mark.line + 1
    return line
