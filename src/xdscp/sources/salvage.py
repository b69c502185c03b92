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
from xdscp.model.service import Instance, Service, ServiceKey
from xdscp.sources.entry_memo import EntryMemo


@dataclass(slots=True)
class Salvaged:
    """The services that validated (by key, in listing order), and one line per dropped entry."""

    by_key: dict[ServiceKey, Service] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)

    @property
    def services(self) -> list[Service]:
        return list(self.by_key.values())


# What validating one record gives: the service and its key (None when dropped), and its
# problems, each naming the field inside the record.
Outcome = tuple[Service | None, ServiceKey | None, tuple[str, ...]]


def _reason(e: ValidationError) -> str:
    err = e.errors()[0]
    where = field_path(err["loc"])
    return f"{where}: {err['msg']}" if where else str(err["msg"])


def salvage_record(rec: Any) -> Outcome:
    """One service record, validated (see ``Outcome``)."""
    if not isinstance(rec, dict):
        return None, None, (f"must be a mapping, not {type(rec).__name__}",)
    problems: list[str] = []
    instances: list[Instance] = []
    addresses: set[tuple[str, int]] = set()
    raw_instances = rec.get("instances", [])
    if not isinstance(raw_instances, list):
        return None, None, ("instances must be a list",)
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
        svc = Service.model_validate({**rec, "instances": instances})
    except ValidationError as e:
        return None, None, (*problems, f": {_reason(e)}; service dropped")
    return svc, svc.key, tuple(problems)


def salvage_services(records: Any, memo: EntryMemo[Outcome] | None = None) -> Salvaged:
    """Validate a list of service records (the registry file's ``services`` entries).

    With ``memo``, a record that reads exactly as one of the last read committed to it gives
    back what it gave then (the same Service object), unvalidated."""
    out = Salvaged()
    if not isinstance(records, list):
        out.problems.append(f"services must be a list, not {type(records).__name__}")
        return out
    by_key = out.by_key
    for i, rec in enumerate(records):
        if memo is None:
            svc, key, problems = salvage_record(rec)
        else:
            # repr, not ==, tells apart what validation may not treat alike: 2 and 2.0, 1 and true
            svc, key, problems = memo.get(repr(rec), partial(salvage_record, rec))
        if problems or key in by_key:
            label = f"services[{i}] ({rec.get('name', '?')})" if isinstance(rec, dict) else f"services[{i}]"
            out.problems += [f"{label}{p}" if p.startswith((".", ":")) else f"{label}: {p}" for p in problems]
            if key in by_key:
                out.problems.append(f"{label}: service {key} is listed twice; the first is kept")
                continue
        if svc is not None and key is not None:
            by_key[key] = svc
    return out
