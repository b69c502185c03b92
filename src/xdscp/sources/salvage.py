"""Keep the good part of a registry listing: bad entries are dropped, each with a reason.

A registry someone else runs (an HTTP service list, etcd, ZooKeeper) may hold one bad
record among thousands. Refusing the whole listing would freeze every service on an
old view because of one typo; instead each instance and service is validated on its
own, the bad ones are dropped and reported, and the rest flows.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import partial
from typing import Any

from pydantic import ValidationError

from xdscp.documents import field_path
from xdscp.model.service import Instance, Service
from xdscp.sources.entry_memo import EntryMemo


@dataclass(slots=True)
class Salvaged:
    """The services that validated, and one line per dropped entry."""

    services: list[Service] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


def _reason(e: ValidationError) -> str:
    err = e.errors()[0]
    where = field_path(err["loc"])
    return f"{where}: {err['msg']}" if where else str(err["msg"])


def salvage_record(rec: Any) -> tuple[Service | None, tuple[str, ...]]:
    """One service record: the service (None when dropped) and its problems, each naming
    the field inside the record."""
    if not isinstance(rec, dict):
        return None, (f"must be a mapping, not {type(rec).__name__}",)
    problems: list[str] = []
    instances: list[Instance] = []
    addresses: set[tuple[str, int]] = set()
    raw_instances = rec.get("instances", [])
    if not isinstance(raw_instances, list):
        return None, ("instances must be a list",)
    for j, raw in enumerate(raw_instances):
        try:
            inst = Instance.model_validate(raw)
        except ValidationError as e:
            problems.append(f".instances[{j}]: {_reason(e)}; instance dropped")
            continue
        if (inst.host, inst.port) in addresses:
            problems.append(f".instances[{j}]: {inst.host}:{inst.port} is listed twice; the first is kept")
            continue
        addresses.add((inst.host, inst.port))
        instances.append(inst)
    try:
        return Service.model_validate({**rec, "instances": instances}), tuple(problems)
    except ValidationError as e:
        return None, (*problems, f": {_reason(e)}; service dropped")


def salvage_services(records: Any, memo: EntryMemo[tuple[Service | None, tuple[str, ...]]] | None = None) -> Salvaged:
    """Validate a list of service records (the registry file's ``services`` entries).

    With ``memo``, a record that reads exactly as one of the last read committed to it gives
    back what it gave then (the same Service object), unvalidated."""
    out = Salvaged()
    if not isinstance(records, list):
        out.problems.append(f"services must be a list, not {type(records).__name__}")
        return out
    seen: set[object] = set()
    for i, rec in enumerate(records):
        if memo is None:
            svc, problems = salvage_record(rec)
        else:
            # repr, not ==, tells apart what validation may not treat alike: 2 and 2.0, 1 and true
            svc, problems = memo.get(repr(rec), partial(salvage_record, rec))
        label = f"services[{i}] ({rec.get('name', '?')})" if isinstance(rec, dict) else f"services[{i}]"
        out.problems += [f"{label}{p}" if p.startswith((".", ":")) else f"{label}: {p}" for p in problems]
        if svc is None:
            continue
        if svc.key in seen:
            out.problems.append(f"{label}: service {svc.key} is listed twice; the first is kept")
            continue
        seen.add(svc.key)
        out.services.append(svc)
    return out
