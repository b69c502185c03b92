"""The Nacos servers one source follows: which one is current, and the login token for it.

Both transports share it: HTTP polling and the gRPC push connection log in over HTTP (as
Nacos' SDKs do), and after a failure each moves on to the next server in the list.
"""

from __future__ import annotations

import json

import aiohttp

from xdscp.sources.nacos.errors import NacosLoginFailed, NacosUnreachable
from xdscp.sources.nacos.settings import NacosSettings

_LOGIN_PATHS = ("/nacos/v1/auth/login", "/nacos/v3/auth/user/login")


class NacosServers:
    """The configured servers, in turn, and the access token (configured, or from logging in)."""

    def __init__(self, cfg: NacosSettings) -> None:
        self.servers = [s.rstrip("/") for s in cfg.servers]
        self.username, self.password = cfg.username, cfg.password
        self._token = cfg.access_token
        self._static_token = cfg.access_token is not None
        self._index = 0

    @property
    def current(self) -> str:
        return self.servers[self._index % len(self.servers)]

    def rotate(self) -> None:
        """After a failure, the next server in the list."""
        self._index += 1

    @property
    def token(self) -> str | None:
        return self._token

    def refused(self) -> None:
        """The server answered 401/403: a token from logging in has expired; log in again next time."""
        if not self._static_token:
            self._token = None

    async def login(self, session: aiohttp.ClientSession) -> None:
        """Log in (when a username is configured and no token is held yet)."""
        if self._token is not None or self.username is None:
            return
        form = {"username": self.username, "password": self.password or ""}
        status = 0
        for path in _LOGIN_PATHS:
            url = self.current + path
            try:
                async with session.post(url, data=form) as resp:
                    status = resp.status
                    if status in (404, 405, 410, 501):
                        continue  # this server has no such login path (3.x may have turned v1 off)
                    body = await resp.json(content_type=None)
            except (aiohttp.ClientError, TimeoutError) as e:
                raise NacosUnreachable(f"cannot log in to Nacos at {url}: {type(e).__name__} {e}".rstrip()) from None
            except json.JSONDecodeError:
                raise NacosLoginFailed(f"Nacos login at {url} did not answer JSON (HTTP {status})") from None
            if status != 200 or not isinstance(body, dict) or "accessToken" not in body:
                raise NacosLoginFailed(f"Nacos login as {self.username!r} failed: HTTP {status}")
            self._token = str(body["accessToken"])
            return
        raise NacosLoginFailed(f"Nacos login as {self.username!r} failed: no login path answered (HTTP {status})")
