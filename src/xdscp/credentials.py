"""Who may read and write the registry: the admin write token, and Nacos-style users who
log in for tokens that expire.

A user's password is kept as a PBKDF2-SHA256 hash (``xdscp hash-password`` makes one):
``pbkdf2_sha256$<iterations>$<salt, hex>$<hash, hex>``. Login (Nacos'
``/nacos/v1/auth/login``, ``/nacos/v1/auth/users/login``, ``/nacos/v3/auth/user/login``)
answers an ``accessToken``, which SDKs send with every request (as ``accessToken`` over
HTTP, in the gRPC headers). A token is ``<payload>.<signature>``: the user and the expiry
time, signed with HMAC-SHA256 under ``admin.token_secret``, so every replica given the
same secret accepts the tokens of the others.

With users configured, the Nacos APIs need a token to read as well, as Nacos with auth
on does; without users, reading is open and writing needs the write token if one is set.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass

from xdscp.errors import ConfigError

HASH_SCHEME = "pbkdf2_sha256"
HASH_ITERATIONS = 200_000


def hash_password(password: str, iterations: int = HASH_ITERATIONS) -> str:
    salt = secrets.token_bytes(16)
    digest = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, iterations)
    return f"{HASH_SCHEME}${iterations}${salt.hex()}${digest.hex()}"


def check_hash_format(encoded: str) -> str:
    """``encoded`` itself; ValueError if it is not a hash this module makes."""
    parts = encoded.split("$")
    if len(parts) != 4 or parts[0] != HASH_SCHEME or not parts[1].isdigit():
        raise ValueError(f"not a {HASH_SCHEME}$<iterations>$<salt>$<hash> password hash (xdscp hash-password)")
    try:
        bytes.fromhex(parts[2])
        bytes.fromhex(parts[3])
    except ValueError:
        raise ValueError("the salt and hash of a password hash are hex") from None
    return encoded


def _password_matches(password: str, encoded: str) -> bool:
    _, iterations, salt, expected = encoded.split("$")
    digest = hashlib.pbkdf2_hmac("sha256", password.encode(), bytes.fromhex(salt), int(iterations))
    return hmac.compare_digest(digest, bytes.fromhex(expected))


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass(frozen=True, slots=True)
class User:
    name: str
    password_hash: str
    write: bool


@dataclass(frozen=True, slots=True)
class Login:
    token: str
    ttl: int
    user: User


class Credentials:
    """Checks tokens: the static write token, or a user's signed, expiring login token."""

    def __init__(self, write_token: str | None, users: list[User], token_ttl: int, secret: str | None,
                 clock: Callable[[], float] = time.time) -> None:
        self.write_token = write_token
        self.users = {u.name: u for u in users}
        if len(self.users) != len(users):
            raise ConfigError("admin.users: a username is listed twice")
        self.token_ttl = token_ttl
        # without a shared secret, tokens are good on this process only (replicas: set one)
        self._secret = (secret or secrets.token_urlsafe(32)).encode()
        self._clock = clock

    @property
    def reads_guarded(self) -> bool:
        return bool(self.users)

    @property
    def writes_guarded(self) -> bool:
        return self.write_token is not None or bool(self.users)

    def login(self, username: str, password: str) -> Login | None:
        user = self.users.get(username)
        if user is None or not _password_matches(password, user.password_hash):
            return None
        payload = _b64(json.dumps({"u": user.name, "exp": int(self._clock()) + self.token_ttl}).encode())
        return Login(f"{payload}.{self._sign(payload)}", self.token_ttl, user)

    def may_write(self, token: str | None) -> bool:
        if not self.writes_guarded:
            return True
        if self._is_write_token(token):
            return True
        user = self._user_of(token) if token else None
        return user is not None and user.write

    def may_read(self, token: str | None) -> bool:
        if not self.reads_guarded:
            return True
        return self._is_write_token(token) or (bool(token) and self._user_of(token or "") is not None)

    def _is_write_token(self, token: str | None) -> bool:
        return bool(token) and self.write_token is not None and hmac.compare_digest(
            (token or "").encode(), self.write_token.encode())

    def _sign(self, payload: str) -> str:
        return _b64(hmac.new(self._secret, payload.encode(), hashlib.sha256).digest())

    def _user_of(self, token: str) -> User | None:
        payload, _, signature = token.partition(".")
        if not signature or not hmac.compare_digest(signature, self._sign(payload)):
            return None
        try:
            claims = json.loads(_unb64(payload))
            name, expires = str(claims["u"]), int(claims["exp"])
        except (ValueError, KeyError, TypeError):
            return None
        if expires <= self._clock():
            return None  # expired: the SDK logs in again
        return self.users.get(name)  # a user removed from the config is refused
