"""Nacos' ``lastRefTime`` of each service, as the embedded registry's stores stamp it.

nacos-sdk-go (which Higress' McpBridge uses) keeps a pushed or queried ServiceInfo only if
its lastRefTime is newer than the one it holds, and it keeps the one it holds across
reconnects (and, loading its disk cache, across restarts). So a service's stamp must
strictly increase with every change to it, whichever replica serves the client, and it
must stay on the wall clock's scale (milliseconds since 1970), or a client that holds a
stamp from before would drop every push.

- One process (memory or SQLite): ``LocalRefTimes``. An answer is stamped with the wall
  clock, as Nacos stamps each one (so a client that polls sees a newer stamp each time),
  and never lower than any earlier one for the service; a change is stamped one past the
  highest handed out if the clock has not passed it. So a change in the millisecond of an
  answer still gets a newer stamp, and ten thousand answers in one millisecond do not run
  the stamps ahead of the clock (only changes can, by one each).
- Replicas on etcd: ``stamp = offset + revision``. ``revision`` is the etcd revision the
  replica's mirror is at; a service that changed did so at a revision past any its earlier
  states were served at, so its stamp rises, and replicas at the same revision give the
  same stamp whatever their clocks say. ``offset`` is one etcd key, raised (never lowered)
  at each replica's full listing so that the stamp is at least that replica's wall clock:
  stamps stay above those a single-process registry or an earlier run handed out.
  Answers do not move the stamp here (no replica may run ahead of the others): a client
  that polls an unchanged service gets the stamp it holds, and nacos-sdk-go drops that
  answer as not newer, losing nothing, since the data is the same.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from xdscp.model.service import ServiceKey

WallMs = Callable[[], int]


def wall_ms() -> int:
    return int(time.time() * 1000)


class LocalRefTimes:
    """The stamps of a store that is the only writer of its services (memory, SQLite)."""

    def __init__(self, now_ms: WallMs = wall_ms) -> None:
        self._now_ms = now_ms
        self._floor = now_ms()  # under every stamp: the start, then the highest given for a non-service
        self._given: dict[ServiceKey, int] = {}  # the highest stamp handed out for each service

    def changed(self, key: ServiceKey) -> None:
        """``key`` changed: its next stamp is past every one handed out for it."""
        self._given[key] = max(self._now_ms(), self._given.get(key, self._floor) + 1)

    def stamp(self, key: ServiceKey, exists: bool) -> int:
        """The stamp of an answer about ``key`` now (``exists``: it is a service). A name that
        is no service is not remembered; the floor rises instead, so that creating it later
        still gives a newer stamp."""
        given = max(self._now_ms(), self._given.get(key, self._floor))
        if exists:
            self._given[key] = given
        else:
            self._floor = max(self._floor, given)
        return given


def parse_offset(value: bytes) -> int | None:
    """The etcd offset key's value; None if it is not an integer (then it is rewritten)."""
    try:
        return int(value.decode("ascii"))
    except (UnicodeDecodeError, ValueError):
        return None


def raised_offset(current: int | None, revision: int, now_ms: int) -> int | None:
    """The offset to write so that ``offset + revision >= now_ms``; None if ``current``
    already does (an offset is never lowered)."""
    wanted = now_ms - revision
    if current is not None and current >= wanted:
        return None
    return wanted
