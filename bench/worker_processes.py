"""Benchmark clients in spawned processes of their own, driven over pipes, and the floor
servers the benchmarks compare xdscp with (spawned, waited for until they serve)."""

from __future__ import annotations

import multiprocessing as mp
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from typing import Any


@dataclass
class Workers:
    """One pipe per worker process; each worker's target takes its pipe as its last argument."""

    pipes: list[Connection]
    procs: list[BaseProcess]

    def close(self) -> None:
        """Ask every worker to close its clients (outside any measured window), then join them."""
        for parent in self.pipes:
            parent.send("close")
        for parent in self.pipes:
            parent.poll(120) and parent.recv()
        for p in self.procs:
            p.join(10)


def start_workers(target: Callable[..., None], count: int, per_process: int,
                  args: Callable[[int], tuple[Any, ...]]) -> Workers:
    """``count`` clients over as many processes as ``per_process`` asks; ``args(size)``: a
    worker's arguments before its pipe."""
    ctx = mp.get_context("spawn")
    workers = max(1, -(-count // per_process))
    sizes = [count // workers + (1 if i < count % workers else 0) for i in range(workers)]
    pipes: list[Connection] = []
    procs: list[BaseProcess] = []
    for size in sizes:
        parent, child = ctx.Pipe()
        p = ctx.Process(target=target, args=(*args(size), child), daemon=True)
        p.start()
        pipes.append(parent)
        procs.append(p)
    return Workers(pipes, procs)


def start_floor(target: Callable[..., None], args: tuple[Any, ...], control_port: int,
                timeout: float = 60.0) -> BaseProcess:
    """A floor server in a process of its own, returned once its control port answers (404
    for a probe path it does not serve)."""
    floor = mp.get_context("spawn").Process(target=target, args=args, daemon=True)
    floor.start()
    deadline = time.monotonic() + timeout
    while True:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{control_port}/none", timeout=1)
        except urllib.error.HTTPError:
            return floor  # up
        except OSError:
            if time.monotonic() > deadline:
                floor.terminate()
                raise
            time.sleep(0.2)


def stop_floor(floor: BaseProcess) -> None:
    floor.terminate()
    floor.join(10)
