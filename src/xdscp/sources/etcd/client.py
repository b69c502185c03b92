"""A small client for etcd's v3 JSON gateway, which every etcd 3.4+ serves on its client port.

It needs no client library: requests are JSON posts (keys and values base64), and a
watch is one long response of JSON lines. Endpoints are tried in turn: a failed call
moves the next call to the next endpoint.
"""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import aiohttp

from xdscp.errors import XdscpError

_MAX_LINE = 64 * 1024 * 1024
# The member is not there: the call may go to another one at once.
_GONE = (aiohttp.ClientConnectorError, aiohttp.ServerDisconnectedError)


class EtcdError(XdscpError):
    """etcd could not be reached, or refused a request (``code``: etcd's gRPC status code)."""

    def __init__(self, message: str, code: int | None = None) -> None:
        super().__init__(message)
        self.code = code


NOT_FOUND = 5  # gRPC NOT_FOUND: e.g. "requested lease not found"


def b64(s: str | bytes) -> str:
    return base64.b64encode(s.encode() if isinstance(s, str) else s).decode()


def unb64(s: str) -> bytes:
    return base64.b64decode(s)


def put_op(key: str, value: str | bytes, lease: int = 0) -> dict[str, Any]:
    """A transaction's put (bound to ``lease`` if given)."""
    put: dict[str, Any] = {"key": b64(key), "value": b64(value)}
    if lease:
        put["lease"] = str(lease)
    return {"request_put": put}


def delete_op(key: str) -> dict[str, Any]:
    return {"request_delete_range": {"key": b64(key)}}


def key_absent(key: str) -> dict[str, Any]:
    """A transaction's compare: ``key`` does not exist."""
    return {"key": b64(key), "target": "CREATE", "result": "EQUAL", "create_revision": "0"}


def key_present(key: str) -> dict[str, Any]:
    return {"key": b64(key), "target": "CREATE", "result": "GREATER", "create_revision": "0"}


def key_value(key: str, value: bytes) -> dict[str, Any]:
    """A transaction's compare: ``key`` holds ``value``."""
    return {"key": b64(key), "target": "VALUE", "result": "EQUAL", "value": b64(value)}


def key_lease(key: str, lease: int) -> dict[str, Any]:
    """A transaction's compare: ``key`` is bound to ``lease``."""
    return {"key": b64(key), "target": "LEASE", "result": "EQUAL", "lease": str(lease)}


def prefix_end(prefix: str) -> str:
    """The smallest key after every key starting with ``prefix`` (etcd's range_end)."""
    raw = bytearray(prefix.encode())
    raw[-1] += 1  # prefixes end with "/", so no overflow
    return raw.decode()


@dataclass(frozen=True, slots=True)
class EtcdAccess:
    """Where etcd is and how to log in: shared by the etcd source and the embedded registry's store."""

    endpoints: tuple[str, ...]
    timeout: float
    username: str | None
    password: str | None


class EtcdClient:
    """Calls to one etcd cluster; owns its HTTP session (``close()`` it)."""

    def __init__(self, access: EtcdAccess) -> None:
        endpoints, timeout, username, password = access.endpoints, access.timeout, access.username, access.password
        if not endpoints:
            raise EtcdError("no etcd endpoints given")
        self.endpoints = [e.rstrip("/") for e in endpoints]
        self.timeout = timeout
        self.username, self.password = username, password
        self._endpoint = 0
        self._token: str | None = None
        self._session: aiohttp.ClientSession | None = None

    @property
    def endpoint(self) -> str:
        return self.endpoints[self._endpoint % len(self.endpoints)]

    def next_endpoint(self) -> None:
        """Move to the next endpoint (after a failure)."""
        self._endpoint += 1

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession()
        return self._session

    async def _headers(self) -> dict[str, str]:
        if self.username is None:
            return {}
        if self._token is None:
            body = {"name": self.username, "password": self.password or ""}
            data = await self.call("/v3/auth/authenticate", body, auth=False)
            self._token = str(data.get("token", ""))
        return {"Authorization": self._token}

    async def call(self, path: str, body: dict[str, Any], auth: bool = True) -> dict[str, Any]:
        """One request; raises EtcdError on failure.

        An endpoint that refuses the connection, or closed it (a member going down), is
        skipped at once for the next one (xdscp's writes are puts and deletes: safe to
        repeat). Any other failure, and a 5xx answer, moves the *next* call on.
        """
        tries = len(self.endpoints)
        while True:
            tries -= 1
            try:
                return await self._call_once(path, body, auth)
            except (aiohttp.ClientError, TimeoutError, json.JSONDecodeError) as e:
                error = self._unreachable(e)
                if not (tries and isinstance(e, _GONE)):
                    raise error from None

    async def _call_once(self, path: str, body: dict[str, Any], auth: bool) -> dict[str, Any]:
        headers = await self._headers() if auth else {}
        timeout = aiohttp.ClientTimeout(total=self.timeout)
        async with self._http().post(self.endpoint + path, json=body, headers=headers, timeout=timeout) as resp:
            data = await resp.json(content_type=None)
            if resp.status == 200 and isinstance(data, dict):
                return data
            self._token = None if resp.status in (401, 403) else self._token
            message = data.get("message") if isinstance(data, dict) else data
            code = data.get("code") if isinstance(data, dict) else None
            error = EtcdError(f"etcd {path} at {self.endpoint} answered HTTP {resp.status}: {message}",
                              code if isinstance(code, int) else None)
        if resp.status >= 500:  # this member cannot serve now (no leader, overloaded): try another next
            self.next_endpoint()
        raise error

    def _unreachable(self, e: Exception) -> EtcdError:
        """The error for a failed connection; the next call goes to the next endpoint."""
        failed = self.endpoint
        self.next_endpoint()
        return EtcdError(f"cannot reach etcd at {failed}: {type(e).__name__} {e}".rstrip())

    # -- leases and transactions ---------------------------------------------------------
    async def grant(self, ttl: int) -> int:
        """A new lease of ``ttl`` seconds; its ID."""
        return int((await self.call("/v3/lease/grant", {"TTL": str(ttl)}))["ID"])

    async def keepalive(self, lease: int) -> bool:
        """Renew a lease; False if etcd no longer has it."""
        data = await self.call("/v3/lease/keepalive", {"ID": str(lease)})
        return int(data.get("result", {}).get("TTL", 0) or 0) > 0

    async def revoke(self, lease: int) -> None:
        await self.call("/v3/lease/revoke", {"ID": str(lease)})

    async def txn(self, success: list[dict[str, Any]], failure: list[dict[str, Any]] | None = None,
                  compare: list[dict[str, Any]] | None = None) -> dict[str, Any]:
        """One transaction: ``success`` if every ``compare`` holds, else ``failure``."""
        return await self.call("/v3/kv/txn", {"compare": compare or [], "success": success,
                                              "failure": failure or []})

    async def watch(self, body: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
        """The messages of one watch stream, until it ends (or fails with EtcdError)."""
        try:
            headers = await self._headers()
            timeout = aiohttp.ClientTimeout(total=None, connect=self.timeout, sock_connect=self.timeout)
            async with self._http().post(self.endpoint + "/v3/watch", json=body, headers=headers,
                                         timeout=timeout) as resp:
                if resp.status != 200:
                    raise EtcdError(f"etcd watch answered HTTP {resp.status}")
                buf = b""
                async for chunk in resp.content.iter_any():
                    buf += chunk
                    if len(buf) > _MAX_LINE:
                        raise EtcdError("etcd sent a watch message over 64 MiB")
                    *lines, buf = buf.split(b"\n")
                    for line in lines:
                        if line.strip():
                            yield json.loads(line)
        except (aiohttp.ClientError, TimeoutError, json.JSONDecodeError) as e:
            raise self._unreachable(e) from None
