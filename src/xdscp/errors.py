"""Typed errors that carry the context an operator needs to act on them."""

from __future__ import annotations

from dataclasses import dataclass


class XdscpError(Exception):
    """Base of every error xdscp raises on purpose."""


@dataclass(frozen=True, slots=True)
class Problem:
    """One thing wrong in a document: where (field path, line) and why."""

    field: str
    message: str
    line: int | None = None

    def __str__(self) -> str:
        where = f"line {self.line}: " if self.line else ""
        field = f"{self.field}: " if self.field else ""
        return f"{where}{field}{self.message}"


class DocumentError(XdscpError):
    """A YAML/JSON file (config or registry) that does not parse or validate."""

    def __init__(self, path: str, problems: list[Problem]) -> None:
        self.path = path
        self.problems = problems
        super().__init__(f"{path}: " + "; ".join(str(p) for p in problems))


class ConfigError(XdscpError):
    """The control plane's own configuration is unusable."""


class BindError(XdscpError):
    """A listener (xDS or admin) could not bind its address."""

    def __init__(self, listener: str, address: str, reason: str) -> None:
        self.listener = listener
        self.address = address
        super().__init__(f"cannot listen for {listener} on {address}: {reason}")


class TranslationError(XdscpError):
    """One service could not be turned into Envoy resources."""

    def __init__(self, service: str, reason: str) -> None:
        self.service = service
        self.reason = reason
        super().__init__(f"service {service}: {reason}")


class ProtocolError(XdscpError):
    """A client broke the xDS protocol (garbage bytes, missing type URL, wrong service).

    ``reason`` is a short fixed label (``malformed``, ``type_url``, ``too_many_types``) for metrics.
    """

    def __init__(self, message: str, reason: str = "other") -> None:
        self.reason = reason
        super().__init__(message)


class PermissionDenied(XdscpError):
    """A client claimed a node its identity may not claim (see xdscp.server.authorization)."""


class LimitExceeded(XdscpError):
    """A client went past a configured limit (streams, names, request rate): the stream is
    refused with RESOURCE_EXHAUSTED rather than queued."""

    def __init__(self, message: str, limit: str) -> None:
        self.limit = limit
        super().__init__(message)
