"""Registry change -> Envoy holding it, with a real Envoy on loopback, at any registry size.

Each change flips one of echo's three instances between healthy and unhealthy and times
until Envoy's healthy-host gauge for echo shows it. The clock is the cheapest look at
Envoy (one exact gauge, ``EnvoyAdmin.gauge``); its own median time is printed beside the
figures, since at 10,000 clusters even that walks every stat name. ``--services`` pads
the registry with other services Envoy also holds. Two registries:

* file: the registry file (JSON) is replaced atomically (as config management does; the
  next content is written before the clock starts); xdscp polls it (20 ms by default);
* embedded: ``PATCH /v1/services/echo/instances/HOST:PORT {"healthy": ...}`` on the
  embedded registry's API; the clock starts before the call.

Prints p50/p99/max in milliseconds.

    python bench/convergence.py --changes 100 --source both --mode both
    python bench/convergence.py --changes 20 --services 1000,10000 --mode ads
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from xdscp.local.control_plane import XdscpProcess
from xdscp.local.envoy import REPO_ENVOY_DIR, EnvoyProcess
from xdscp.local.registration import patch_instance, register
from xdscp.local.upstream import NamedUpstream
from xdscp.model.service import Service
from xdscp.sources.embedded.database import RegistryDatabase


def percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def registry_doc(ports: list[int], unhealthy: int | None, padding: int) -> dict[str, Any]:
    """echo (three local upstreams) and ``padding`` other services Envoy also holds."""
    instances = [{"host": "127.0.0.1", "port": p, "healthy": i != unhealthy} for i, p in enumerate(ports)]
    others = [{"name": f"svc-{i}", "instances": [{"host": f"10.{i // 250 % 256}.{i % 250}.1", "port": 8080}]}
              for i in range(padding)]
    return {"services": [{"name": "echo", "instances": instances}, *others]}


def stage(path: Path, doc: dict[str, Any]) -> Path:
    """The next registry file, written beside it before the clock starts; renaming it over
    the file is the change (atomic, as config management does)."""
    staged = path.with_name(path.name + ".next")
    staged.write_text(json.dumps(doc))
    return staged


def run(source: str, mode: str, changes: int, poll_interval: float, padding: int,
        workdir: Path) -> tuple[list[float], list[float]]:
    """Change -> Envoy's healthy-host gauge for echo, ``changes`` times; and the clock's own calls."""
    upstreams = [NamedUpstream(n).start() for n in ("a", "b", "c")]
    ports = [u.port for u in upstreams]
    registry = workdir / "registry.json"  # JSON: written in milliseconds at any size
    if source == "file":
        registry.write_text(json.dumps(registry_doc(ports, None, padding)))
        xdscp = XdscpProcess(workdir, registry, poll_interval=poll_interval, log_level="warning").start(timeout=600)

        def prepare(unhealthy: bool) -> Callable[[], None]:
            staged = stage(registry, registry_doc(ports, 2 if unhealthy else None, padding))
            return lambda: staged.replace(registry)
    else:
        db = RegistryDatabase(workdir / "registry.db")
        db.import_services([Service.model_validate(s) for s in registry_doc(ports, None, padding)["services"][1:]])
        db.close()
        # Health comes from the API alone: the embedded registry's own checks are off.
        xdscp = XdscpProcess(workdir, log_level="warning", sources=[{
            "kind": "embedded", "database": str(workdir / "registry.db"),
            "instance_check": {"enabled": False}}]).start(timeout=600)
        for port in ports:
            register(xdscp.admin_address, "echo", "127.0.0.1", port)

        def prepare(unhealthy: bool) -> Callable[[], None]:
            return lambda: patch_instance(xdscp.admin_address, "echo", "127.0.0.1", ports[2], healthy=not unhealthy)
    envoy = EnvoyProcess(REPO_ENVOY_DIR / f"bootstrap-{mode}.yaml", xdscp.xds_address, workdir).start()
    samples: list[float] = []
    clock: list[float] = []

    def healthy() -> int:
        # The cheapest look at Envoy (one exact gauge); at 10,000 clusters it still walks
        # every stat name, so its own time is reported beside the figures.
        t = time.perf_counter()
        value = envoy.gauge("cluster.echo.membership_healthy") or 0
        clock.append(time.perf_counter() - t)
        return value

    try:
        deadline = time.monotonic() + 600
        while healthy() != 3:
            if time.monotonic() > deadline:
                raise TimeoutError("Envoy never got echo's three instances")
            time.sleep(0.05)
        for i in range(changes):
            unhealthy = i % 2 == 0
            change = prepare(unhealthy)
            time.sleep(0.05 + (i % 7) * 0.013)  # spread changes across the file poll's phase
            start = time.perf_counter()
            change()
            while healthy() != (2 if unhealthy else 3):
                if time.perf_counter() - start > 30:
                    raise TimeoutError("Envoy did not follow the change in 30 s")
            samples.append((time.perf_counter() - start) * 1000)
    finally:
        envoy.stop()
        xdscp.stop()
        for u in upstreams:
            u.stop()
    return samples, clock


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--changes", type=int, default=100)
    p.add_argument("--mode", choices=["ads", "delta", "both"], default="both")
    p.add_argument("--source", choices=["file", "embedded", "both"], default="both")
    p.add_argument("--services", default="1", help="comma-separated registry sizes (echo and others Envoy holds)")
    p.add_argument("--poll-interval", type=float, default=0.02, help="file source poll interval (xdscp's default 0.02)")
    args = p.parse_args()
    modes = ["ads", "delta"] if args.mode == "both" else [args.mode]
    sources = ["file", "embedded"] if args.source == "both" else [args.source]
    poll_ms = args.poll_interval * 1000
    print(f"registry change -> Envoy's healthy hosts for echo, {args.changes} changes, file poll {poll_ms:.0f} ms")
    print(f"{'services':>9} {'source':<9}{'mode':<6} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8} {'mean ms':>8}"
          f" {'clock ms':>9}")
    for size in (int(x) for x in args.services.split(",")):
        for source in sources:
            for mode in modes:
                with tempfile.TemporaryDirectory(prefix="xdscp-bench-") as d:
                    s, clock = run(source, mode, args.changes, args.poll_interval, size - 1, Path(d))
                print(f"{size:>9,} {source:<9}{mode:<6} {statistics.median(s):8.1f} {percentile(s, 0.99):8.1f} "
                      f"{max(s):8.1f} {statistics.fmean(s):8.1f} {statistics.median(clock) * 1000:9.2f}")
    print("(clock ms: the median look at Envoy's gauge; a change is seen up to one look late)")


if __name__ == "__main__":
    main()
