"""``xdscp demo``: xdscp, a real Envoy and three upstreams on loopback, and a scripted tour.

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
from typing import Any

from xdscp.local.control_plane import XdscpProcess
from xdscp.local.envoy import REPO_ENVOY_DIR, EnvoyProcess
from xdscp.local.traffic import count_responses
from xdscp.local.upstream import NamedUpstream
from xdscp.sources.registry_file import write_registry_file

NAMES = ("alpha", "beta", "gamma")


class Demo:
    def __init__(self, workdir: Path, mode: str, out: Callable[[str], None] = print) -> None:
        self.workdir = workdir
        self.mode = mode
        self.say = out
        self.registry = workdir / "registry.yaml"
        self.upstreams: list[NamedUpstream] = []
        self.xdscp: XdscpProcess | None = None
        self.envoy: EnvoyProcess | None = None

    def write(self, instances: list[dict[str, Any]]) -> None:
        write_registry_file(self.registry, [{"name": "echo", "instances": instances}])

    def instance(self, i: int, **fields: Any) -> dict[str, Any]:
        return {"host": "127.0.0.1", "port": self.upstreams[i].port, **fields}

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

    def step(self, title: str, instances: list[dict[str, Any]], healthy: int) -> None:
        self.say(f"\n== {title}")
        self.write(instances)
        took = self.wait_hosts(healthy)
        self.say(f"   Envoy's /clusters shows {healthy} healthy host(s) after {took * 1000:.0f} ms")
        self.say(f"   30 requests through Envoy: {dict(sorted(self.spread().items()))}")

    def run(self) -> None:
        self.upstreams = [NamedUpstream(n).start() for n in NAMES]
        self.write([self.instance(i) for i in range(3)])
        self.xdscp = XdscpProcess(self.workdir, self.registry).start()
        self.say(f"xdscp: xDS on {self.xdscp.xds_address}, admin on 127.0.0.1:{self.xdscp.admin_port}, "
                 f"registry file {self.registry}")
        self.envoy = EnvoyProcess(REPO_ENVOY_DIR / f"bootstrap-{self.mode}.yaml", self.xdscp.xds_address,
                                  self.workdir).start()
        self.say(f"envoy: {self.mode} bootstrap, admin on {self.envoy.admin_url}, "
                 f"listener on 127.0.0.1:{self.xdscp.listener_port}")
        self.wait_hosts(3)
        self.say("\n== three instances registered")
        self.say(f"   30 requests through Envoy: {dict(sorted(self.spread().items()))}")
        self.step("gamma marked healthy: false", [self.instance(0), self.instance(1),
                                                  self.instance(2, healthy=False)], 2)
        self.step("gamma healthy again", [self.instance(i) for i in range(3)], 3)
        self.step("beta deregistered", [self.instance(0), self.instance(2)], 2)
        self.step("every instance deregistered", [], 0)
        self.step("all three back", [self.instance(i) for i in range(3)], 3)

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
