"""``xdscp validate``: check a config file, then read every source once, as ``serve`` would.

One line per source: ``ok`` with what it holds, ``FAILED`` with why, or ``skipped``
(``--offline`` skips the sources that reach a server). Sources are read side by side,
each within ``timeout`` seconds; nothing is written to any registry.
"""

from __future__ import annotations

import asyncio
import logging
import sys
from dataclasses import dataclass
from pathlib import Path

from xdscp.cli import exit_codes
from xdscp.config import load_config
from xdscp.errors import ConfigError
from xdscp.model.registry import Registry
from xdscp.sources.base import Source
from xdscp.sources.kinds import build_sources


@dataclass(frozen=True, slots=True)
class SourceReport:
    source: str
    kind: str
    outcome: str  # "ok", "FAILED" or "skipped"
    detail: str

    def __str__(self) -> str:
        return f"source {self.source} ({self.kind}): {self.outcome}, {self.detail}"


async def read_source(src: Source, timeout: float) -> SourceReport:
    """One read of ``src`` within ``timeout`` seconds, then ``src`` is closed."""
    registry = Registry([src.name])
    try:
        await asyncio.wait_for(src.read_once(registry), timeout)
    except TimeoutError:
        why = f"no answer within {timeout:g} s"
        return SourceReport(src.name, src.kind, "FAILED", f"{why}: {src.last_error}" if src.last_error else why)
    except Exception as e:  # a read that breaks is this source's failure, not validate's
        return SourceReport(src.name, src.kind, "FAILED", f"{type(e).__name__}: {e}")
    finally:
        src.close()
    if src.last_error is not None:
        return SourceReport(src.name, src.kind, "FAILED", src.last_error)
    count = len(registry.source_services(src.name))
    return SourceReport(src.name, src.kind, "ok", f"{count} service{'s' if count != 1 else ''}")


async def read_sources(sources: list[Source], timeout: float, offline: bool) -> list[SourceReport]:
    async def one(src: Source) -> SourceReport:
        if offline and src.reads_network:
            src.close()
            return SourceReport(src.name, src.kind, "skipped", "it reads a server (--offline)")
        return await read_source(src, timeout)

    return list(await asyncio.gather(*(one(s) for s in sources)))


def validate(path: Path, timeout: float, offline: bool) -> int:
    """Print the report (failures on stderr); the exit code: 0 valid, 1 not."""
    try:
        cfg = load_config(path)
        sources = build_sources(cfg)
    except ConfigError as e:
        print(f"invalid config: {e}", file=sys.stderr)
        return exit_codes.FAILED
    logging.disable(logging.CRITICAL)  # each source's failure is its one line below, not a log
    try:
        reports = asyncio.run(read_sources(sources, timeout, offline))
    finally:
        logging.disable(logging.NOTSET)
    for r in reports:
        print(r, file=sys.stderr if r.outcome == "FAILED" else sys.stdout)
    failed = sum(1 for r in reports if r.outcome == "FAILED")
    if failed:
        print(f"{path}: {failed} of {len(reports)} source(s) failed", file=sys.stderr)
        return exit_codes.FAILED
    print(f"{path}: ok ({len(reports)} source(s))")
    return exit_codes.OK
