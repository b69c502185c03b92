"""``xdscp demo``: xdscp's embedded registry, a real Envoy and three upstreams on loopback.

Prints what it changes in the registry and what Envoy then does, from Envoy's own
answers. Every process it starts is stopped on exit or Ctrl-C.
"""

from __future__ import annotations

import argparse
import contextlib
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

from xdscp.local.control_plane import XdscpProcess
from xdscp.local.envoy import REPO_ENVOY_DIR, EnvoyProcess
from xdscp.local.registration import deregister, register
from xdscp.local.traffic import count_responses
from xdscp.local.upstream import NamedUpstream

NAMES = ("alpha", "beta", "gamma")


class Demo:
    """Three upstreams registered in xdscp's embedded registry, and a real Envoy routing to them."""

    def __init__(self, workdir: Path, mode: str, out: Callable[[str], None] = print) -> None:
        self.workdir = workdir
        self.mode = mode
        self.say = out
        self.upstreams: list[NamedUpstream] = []
        self.xdscp: XdscpProcess | None = None
        self.envoy: EnvoyProcess | None = None

    @property
    def admin(self) -> str:
        assert self.xdscp is not None
        return self.xdscp.admin_address

    def spread(self, n: int = 30) -> Counter[str]:
        assert self.xdscp is not None
        return count_responses(self.xdscp.listener_port, "echo", n)

    def wait_hosts(self, expected: int, timeout: float = 10.0) -> float:
        """Seconds until Envoy's /clusters shows ``expected`` healthy echo hosts."""
        assert self.envoy is not None
        start = time.monotonic()
        while time.monotonic() - start < timeout:
            hosts = self.envoy.cluster_hosts("echo")
            if sum(1 for h in hosts.values() if h["eds_health"] == "HEALTHY") == expected:
                return time.monotonic() - start
            time.sleep(0.01)
        raise TimeoutError(f"Envoy did not reach {expected} healthy hosts")

    def step(self, title: str, action: Callable[[], None], healthy: int) -> None:
        self.say(f"\n== {title}")
        action()
        took = self.wait_hosts(healthy)
        self.say(f"   Envoy's /clusters shows {healthy} healthy host(s) after {took * 1000:.0f} ms")
        self.say(f"   30 requests through Envoy: {dict(sorted(self.spread().items()))}")

    def register(self, *indices: int) -> None:
        for i in indices:
            register(self.admin, "echo", "127.0.0.1", self.upstreams[i].port)

    def deregister(self, *indices: int) -> None:
        for i in indices:
            deregister(self.admin, "echo", "127.0.0.1", self.upstreams[i].port)

    def set_health(self, i: int, healthy: bool) -> None:
        self.upstreams[i].healthy = healthy

    def run(self) -> None:
        self.upstreams = [NamedUpstream(n).start() for n in NAMES]
        self.xdscp = XdscpProcess(self.workdir, sources=[{
            "kind": "embedded", "database": str(self.workdir / "registry.db"),
            "instance_check": {"type": "http", "path": "/health", "interval": 0.5, "timeout": 0.5,
                               "healthy_threshold": 1, "unhealthy_threshold": 2},
        }]).start()
        self.say(f"xdscp: xDS on {self.xdscp.xds_address}, admin and registration API on http://{self.admin}")
        self.envoy = EnvoyProcess(REPO_ENVOY_DIR / f"bootstrap-{self.mode}.yaml", self.xdscp.xds_address,
                                  self.workdir).start()
        self.say(f"envoy: {self.mode} bootstrap, admin on {self.envoy.admin_url}, "
                 f"listener on 127.0.0.1:{self.xdscp.listener_port}")
        ports = ", ".join(f"{u.name}=127.0.0.1:{u.port}" for u in self.upstreams)
        self.say(f"upstreams: {ports}; xdscp checks each one's GET /health")
        self.step("alpha, beta and gamma register (POST /nacos/v1/ns/instance, ephemeral=false)",
                  lambda: self.register(0, 1, 2), 3)
        self.step("gamma's /health starts failing (503)", lambda: self.set_health(2, False), 2)
        self.step("gamma's /health recovers", lambda: self.set_health(2, True), 3)
        self.step("beta deregisters (DELETE /nacos/v1/ns/instance)", lambda: self.deregister(1), 2)
        self.step("alpha and gamma deregister: no instances left", lambda: self.deregister(0, 2), 0)
        self.step("all three register again", lambda: self.register(0, 1, 2), 3)

    def stop(self) -> None:
        if self.envoy is not None:
            self.envoy.stop()
        if self.xdscp is not None:
            self.xdscp.stop()
        for u in self.upstreams:
            u.stop()


@contextlib.contextmanager
def _workdir(path: Path | None) -> Iterator[Path]:
    if path is not None:
        path.mkdir(parents=True, exist_ok=True)
        yield path
    else:
        with tempfile.TemporaryDirectory(prefix="xdscp-demo-") as d:
            yield Path(d)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="xdscp demo", description=__doc__)
    p.add_argument("--mode", choices=["ads", "delta"], default="ads")
    p.add_argument("--hold", action="store_true", help="keep everything running until Ctrl-C")
    p.add_argument("--workdir", type=Path)
    args = p.parse_args(argv)
    with _workdir(args.workdir) as wd:
        demo = Demo(wd, args.mode)
        try:
            demo.run()
            if args.hold:
                print("\nrunning; Ctrl-C stops everything")
                while True:
                    time.sleep(1)
        except KeyboardInterrupt:
            pass
        finally:
            demo.stop()
            print("\nstopped xdscp, Envoy and the upstreams")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
