"""The synthetic registry every benchmark uses: S services x I instances on 10.x addresses."""

from __future__ import annotations

from xdscp.model.service import Instance, Service


def synthetic_registry(services: int, instances: int, *, ephemeral: bool = False, zones: int = 0) -> list[Service]:
    """``svc-0`` .. ``svc-{S-1}``, each with I instances on port 8080; with ``zones``, the
    instances are dealt over zones ``z0``.. of region ``r1`` and every service has locality
    failover."""
    return [Service(name=f"svc-{i}", locality_failover=True if zones else None, instances=tuple(
        Instance(host=f"10.{i // 250 % 256}.{i % 250}.{j + 1}", port=8080, ephemeral=ephemeral,
                 region="r1" if zones else "", zone=f"z{j % zones}" if zones else "")
        for j in range(instances))) for i in range(services)]
