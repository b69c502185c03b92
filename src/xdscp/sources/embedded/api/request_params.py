"""Typed reading of request parameters, with errors that name the parameter.

One reading for both Nacos faces: the HTTP APIs' query and form strings (``Params``) and
the gRPC face's JSON values (``to_int``, ``to_bool``), with the same defaults and caps.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any, TypeVar

from xdscp.errors import XdscpError

_N = TypeVar("_N", int, float)
_TRUE = {"true", "1", "yes", "on"}
_FALSE = {"false", "0", "no", "off"}
# Paging of service lists, over HTTP and gRPC alike.
DEFAULT_PAGE_SIZE = 20
MAX_PAGE_SIZE = 10_000


class ParamError(XdscpError):
    """A parameter is missing (``missing``) or not acceptable."""

    def __init__(self, param: str, message: str, *, missing: bool = False) -> None:
        self.param = param
        self.missing = missing
        super().__init__(message)


class Params:
    """Query string and form values, read by type; every problem is a ParamError."""

    def __init__(self, values: Mapping[str, str]) -> None:
        self._values = values

    def text(self, name: str, default: str | None = None, *, required: bool = False) -> str | None:
        value = self._values.get(name)
        if value is None or value == "":
            if required:
                raise ParamError(name, f"Param '{name}' is required.", missing=True)
            return default
        return value

    def required(self, name: str) -> str:
        value = self.text(name, required=True)
        assert value is not None
        return value

    def integer(self, name: str, default: int | None = None, *, required: bool = False,
                low: int | None = None, high: int | None = None) -> int | None:
        raw = self.text(name, required=required)
        return default if raw is None else to_int(raw, name, low=low, high=high)

    def number(self, name: str, default: float | None = None, *, low: float | None = None,
               high: float | None = None) -> float | None:
        raw = self.text(name)
        if raw is None:
            return default
        try:
            value = float(raw)
        except ValueError:
            raise ParamError(name, f"Param '{name}' must be a number, not {raw!r}.") from None
        if not math.isfinite(value):
            raise ParamError(name, f"Param '{name}' must be a finite number, not {raw}.")
        return _check_range(name, value, low, high)

    def boolean(self, name: str, default: bool | None = None) -> bool | None:
        raw = self.text(name)
        return default if raw is None else to_bool(raw, name)

    def json_object(self, name: str) -> dict[str, Any] | None:
        raw = self.text(name)
        if raw is None:
            return None
        try:
            value = json.loads(raw)
        except json.JSONDecodeError:
            value = _legacy_pairs(raw)  # Nacos also takes "k1=v1,k2=v2"
            if value is None:
                raise ParamError(name, f"Param '{name}' must be a JSON object.") from None
        if not isinstance(value, dict):
            raise ParamError(name, f"Param '{name}' must be a JSON object.")
        return value


def to_int(raw: Any, name: str, *, low: int | None = None, high: int | None = None) -> int:
    """An integer from a string or a JSON integer (never a boolean or a float)."""
    if isinstance(raw, int) and not isinstance(raw, bool):
        value = raw
    elif isinstance(raw, str):
        try:
            value = int(raw.strip())
        except ValueError:
            raise ParamError(name, f"Param '{name}' must be an integer, not {raw!r}.") from None
    else:
        raise ParamError(name, f"Param '{name}' must be an integer, not {json.dumps(raw)[:40]}.")
    return _check_range(name, value, low, high)


def to_bool(raw: Any, name: str) -> bool:
    """A boolean from a JSON boolean or a string (true/false, 1/0, yes/no, on/off)."""
    if isinstance(raw, bool):
        return raw
    if isinstance(raw, str):
        lowered = raw.strip().lower()
        if lowered in _TRUE:
            return True
        if lowered in _FALSE:
            return False
    raise ParamError(name, f"Param '{name}' must be true or false, not {json.dumps(raw)[:40]}.")


def _check_range(name: str, value: _N, low: _N | None, high: _N | None) -> _N:
    if (low is not None and value < low) or (high is not None and value > high):
        bounds = " and ".join(b for b in (f"at least {low}" if low is not None else "",
                                          f"at most {high}" if high is not None else "") if b)
        raise ParamError(name, f"Param '{name}' must be {bounds}, not {value}.")
    return value


def _legacy_pairs(raw: str) -> dict[str, str] | None:
    pairs = [p.split("=", 1) for p in raw.split(",") if p]
    if not pairs or any(len(p) != 2 or not p[0] for p in pairs):
        return None
    return {k: v for k, v in pairs}
