"""nacos-sdk-go 2.3.5's service cache rule, for tests of what the Nacos face pushes."""

from __future__ import annotations

from typing import Any


class GoSdkCache:
    """nacos-sdk-go's service cache: keeps a ServiceInfo only if its lastRefTime is newer
    (ServiceInfoHolder.ProcessService). ``lost`` counts the dropped ones whose instances
    differ from those held: a change the SDK never sees. Dropping an answer that repeats
    what is held (a redo in the same millisecond) loses nothing."""

    def __init__(self) -> None:
        self.held: dict[str, dict[str, Any]] = {}
        self.lost = 0

    def offer(self, info: dict[str, Any]) -> None:
        old = self.held.get(info["name"])
        if old is not None and info["lastRefTime"] <= old["lastRefTime"]:
            self.lost += info["hosts"] != old["hosts"]
            return
        self.held[info["name"]] = info
