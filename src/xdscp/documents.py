"""Load a YAML or JSON document into a pydantic model, with every error located by line."""

from __future__ import annotations

import json
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from xdscp.errors import DocumentError, Problem

_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
M = TypeVar("M", bound=BaseModel)
_MAX_PROBLEMS = 20


def parse_document(data: bytes | str, path: str) -> Any:
    """Parse YAML (or JSON, by the .json suffix) into plain Python data."""
    text = data.decode("utf-8", errors="replace") if isinstance(data, bytes) else data
    if path.endswith(".json"):
        try:
            return json.loads(text)
        except json.JSONDecodeError as e:
            raise DocumentError(path, [Problem("", f"invalid JSON: {e.msg}", e.lineno)]) from None
    try:
        return yaml.load(text, Loader=_Loader)
    except yaml.MarkedYAMLError as e:
        line = e.problem_mark.line + 1 if e.problem_mark else None
        raise DocumentError(path, [Problem("", f"invalid YAML: {e.problem}", line)]) from None
    except yaml.YAMLError as e:
        raise DocumentError(path, [Problem("", f"invalid YAML: {e}")]) from None


def load_document(data: bytes | str, path: str, model: type[M], *, empty: str | None = None) -> M:
    """Parse and validate; raise DocumentError naming the file, field path and line.

    An empty document means all defaults, unless ``empty`` is given: then it is an error
    with that message (for files where emptiness is more likely a truncated write)."""
    raw = parse_document(data, path)
    if raw is None:
        if empty is not None:
            raise DocumentError(path, [Problem("", empty)])
        raw = {}
    if not isinstance(raw, dict):
        raise DocumentError(path, [Problem("", f"the top level must be a mapping, not {type(raw).__name__}", 1)])
    try:
        return model.model_validate(raw)
    except ValidationError as e:
        text = data.decode("utf-8", errors="replace") if isinstance(data, bytes) else data
        problems = [
            Problem(field_path(err["loc"]), err["msg"], _line_of(text, err["loc"]))
            for err in e.errors()[:_MAX_PROBLEMS]
        ]
        raise DocumentError(path, problems) from None


def field_path(loc: tuple[Any, ...]) -> str:
    """('services', 0, 'port') -> 'services[0].port'."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out


def _line_of(text: str, loc: tuple[Any, ...]) -> int | None:
    """Walk the YAML node tree (JSON is YAML too) along loc; the deepest node found gives the line."""
    try:
        node = yaml.compose(text, Loader=_Loader)
    except yaml.YAMLError:
        return None
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
