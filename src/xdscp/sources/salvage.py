"""Keep the good part of a registry listing: bad entries are dropped, each with a reason.

A registry someone else runs (an HTTP service list, etcd, ZooKeeper) may hold one bad
record among thousands. Refusing the whole listing would freeze every service on an
old view because of one typo; instead each instance and service is validated on its
own, the bad ones are dropped and reported, and the rest flows.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from xdscp.documents import field_path
from xdscp.model.service import Instance, Service


@dataclass(slots=True)
class Salvaged:
    """The services that validated, and one line per dropped entry."""

    services: list[Service] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


def _reason(e: ValidationError) -> str:
    err = e.errors()[0]
    where = field_path(err["loc"])
    return f"{where}: {err['msg']}" if where else str(err["msg"])


def salvage_services(records: Any) -> Salvaged:
    """Validate a list of service records (the registry file's ``services`` entries)."""
    out = Salvaged()
    if not isinstance(records, list):
        out.problems.append(f"services must be a list, not {type(records).__name__}")
        return out
    seen: set[object] = set()
    for i, rec in enumerate(records):
        label = f"services[{i}]"
        if not isinstance(rec, dict):
            out.problems.append(f"{label}: must be a mapping, not {type(rec).__name__}")
            continue
        label = f"services[{i}] ({rec.get('name', '?')})"
        instances: list[Instance] = []
        addresses: set[tuple[str, int]] = set()
        raw_instances = rec.get("instances", [])
        if not isinstance(raw_instances, list):
            out.problems.append(f"{label}: instances must be a list")
            continue
        for j, raw in enumerate(raw_instances):
            try:
                inst = Instance.model_validate(raw)
            except ValidationError as e:
                out.problems.append(f"{label}.instances[{j}]: {_reason(e)}; instance dropped")
                continue
            if (inst.host, inst.port) in addresses:
                out.problems.append(f"{label}.instances[{j}]: {inst.host}:{inst.port} is listed twice; "
                                    "the first is kept")
                continue
            addresses.add((inst.host, inst.port))
            instances.append(inst)
        try:
            svc = Service.model_validate({**rec, "instances": instances})
        except ValidationError as e:
            out.problems.append(f"{label}: {_reason(e)}; service dropped")
            continue
        if svc.key in seen:
            out.problems.append(f"{label}: service {svc.key} is listed twice; the first is kept")
            continue
        seen.add(svc.key)
        out.services.append(svc)
    return out
