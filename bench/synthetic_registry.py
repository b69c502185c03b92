"""The synthetic registry every benchmark uses: S services x I instances on 10.x addresses."""

from __future__ import annotations

from xdscp.model.service import Instance, Service


def synthetic_registry(services: int, instances: int, *, ephemeral: bool = False) -> list[Service]:
    """``svc-0`` .. ``svc-{S-1}``, each with I instances on port 8080."""
    return [Service(name=f"svc-{i}", instances=tuple(
        Instance(host=f"10.{i // 250 % 256}.{i % 250}.{j + 1}", port=8080, ephemeral=ephemeral)
        for j in range(instances))) for i in range(services)]
