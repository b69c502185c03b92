"""One replica at a time, chosen through etcd, for work that must not be done N times.

The leader holds one key bound to a lease it keeps alive. A replica that dies stops
renewing, etcd deletes the key when the lease runs out, and the next replica to try
takes it. A replica that cannot renew counts itself out before its lease can have
expired, so two replicas never both believe they lead.
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import socket

from xdscp.logfmt import log_event
from xdscp.sources.etcd.client import EtcdClient, EtcdError, key_absent, put_op

log = logging.getLogger(__name__)


class EtcdLeader:
    """Campaigns for ``key`` forever; ``is_leader`` says whether this replica holds it now."""

    def __init__(self, client: EtcdClient, key: str, ttl: int) -> None:
        self.client = client
        self.key = key
        self.ttl = max(2, ttl)
        self.identity = f"{socket.gethostname()}/{os.getpid()}/{secrets.token_hex(4)}"
        self._held_until = 0.0

    @property
    def is_leader(self) -> bool:
        return asyncio.get_running_loop().time() < self._held_until

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            try:
                lease = await self._campaign()
                if lease:
                    log_event(log, logging.INFO, "leader.elected", key=self.key, identity=self.identity)
                    await self._hold(lease)
                    log_event(log, logging.WARNING, "leader.lost", key=self.key, identity=self.identity)
            except EtcdError as e:
                log_event(log, logging.DEBUG, "leader.unreachable", key=self.key, reason=str(e))
            self._held_until = min(self._held_until, loop.time())
            await asyncio.sleep(self.ttl / 3)

    async def _campaign(self) -> int:
        """The lease that now holds the key, or 0 if another replica holds it."""
        sent = asyncio.get_running_loop().time()
        lease = await self.client.grant(self.ttl)
        data = await self.client.txn([put_op(self.key, self.identity, lease)], compare=[key_absent(self.key)])
        if not data.get("succeeded"):
            await self.client.revoke(lease)
            return 0
        self._held_until = sent + self.ttl * 2 / 3
        return lease

    async def _hold(self, lease: int) -> None:
        """Renew the lease every ttl/3 until a renewal fails."""
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(self.ttl / 3)
            sent = loop.time()
            try:
                kept = await self.client.keepalive(lease)
            except EtcdError:
                if loop.time() >= self._held_until:
                    return
                continue  # still inside the lease: try again
            if not kept:
                return
            self._held_until = sent + self.ttl * 2 / 3
