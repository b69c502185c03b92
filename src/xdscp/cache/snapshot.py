"""Immutable snapshots: per type, the resources a node group is served, and what changed."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

from xdscp.cache.resource import Resource
from xdscp.cache.sharded_map import ShardedMap
from xdscp.type_urls import canonical

# Distinct subscriptions whose bodies one snapshot keeps; a fleet has a few.
_MAX_SUBSETS = 8


def _entry_hash(name: str, version: str) -> int:
    return int.from_bytes(hashlib.blake2b(f"{name}\0{version}".encode(), digest_size=8).digest(), "big")


@dataclass(slots=True)
class TypeSnapshot:
    """All resources of one type at one point, and the names changed since ``prev_version``.

    The version is an order-independent hash of every (name, version) pair, kept up to
    date incrementally (XOR), so a one-resource change costs O(1) hashing, not O(n).
    """

    type_url: str
    resources: ShardedMap[Resource]
    version: str
    prev_version: str | None = None
    changed: frozenset[str] = frozenset()
    _acc: int = 0
    _body: bytes | None = field(default=None, repr=False)
    _delta_body: bytes | None = field(default=None, repr=False)
    _subsets: dict[tuple[frozenset[str], bool], tuple[bytes, int]] = field(default_factory=dict, repr=False)

    @classmethod
    def empty(cls, type_url: str) -> TypeSnapshot:
        return cls(type_url, ShardedMap(), _version_of(0, 0))

    @classmethod
    def build(cls, type_url: str, resources: Iterable[Resource]) -> TypeSnapshot:
        return cls.empty(type_url).evolve({r.name: r for r in resources}, (), replace_all=True)

    def evolve(
        self, upserts: Mapping[str, Resource], removed: Iterable[str], *, replace_all: bool = False
    ) -> TypeSnapshot:
        """The next snapshot of this type; ``self`` itself if nothing actually changed."""
        if replace_all:
            removed = [n for n in self.resources if n not in upserts]
        elif not upserts and not removed:
            return self
        current = self.resources
        overlay: dict[str, Resource | None] = {}  # what changes: None removes
        acc = self._acc
        for name in removed:
            old = overlay[name] if name in overlay else current.get(name)
            if old is not None:
                acc ^= _entry_hash(name, old.version)
                overlay[name] = None
        for name, res in upserts.items():
            old = overlay[name] if name in overlay else current.get(name)
            if old is not None and old.version == res.version:
                continue
            if old is not None:
                acc ^= _entry_hash(name, old.version)
            acc ^= _entry_hash(name, res.version)
            overlay[name] = res
        if not overlay:
            return self
        changed = set(overlay)
        resources = current.with_changes(overlay)  # shares every shard it does not touch
        return TypeSnapshot(
            self.type_url,
            resources,
            _version_of(acc, len(resources)),
            prev_version=self.version,
            changed=frozenset(changed),
            _acc=acc,
        )

    def sotw_body(self) -> bytes:
        """Every resource's SotW entry, in name order; built once, shared by all streams."""
        if self._body is None:
            self._body = b"".join(self.resources[n].sotw_entry for n in sorted(self.resources))
        return self._body

    def delta_body(self) -> bytes:
        """Every resource's Delta entry, in name order; built once, shared by all streams."""
        if self._delta_body is None:
            self._delta_body = b"".join(self.resources[n].delta_entry for n in sorted(self.resources))
        return self._delta_body

    def subset_body(self, names: frozenset[str], delta: bool,
                    placeholder: Callable[[str, str], Resource | None]) -> tuple[bytes, int] | None:
        """The entries of ``names`` in name order (stand-ins for missing names), and their
        count; None if a name has neither. Built once per distinct subscription and shared:
        a fleet's first responses after a restart are one join, not one per stream."""
        key = (names, delta)
        hit = self._subsets.get(key)
        if hit is None:
            chosen = [self.resources.get(n) or placeholder(self.type_url, n) for n in sorted(names)]
            if any(r is None for r in chosen):
                return None
            hit = (b"".join(r.delta_entry if delta else r.sotw_entry for r in chosen if r is not None), len(chosen))
            if len(self._subsets) < _MAX_SUBSETS:
                self._subsets[key] = hit
        return hit


def _version_of(acc: int, count: int) -> str:
    return f"{acc:016x}-{count}"


@dataclass(frozen=True, slots=True)
class Snapshot:
    """What one node group is served: a TypeSnapshot per type URL."""

    types: Mapping[str, TypeSnapshot]
    # time.monotonic() of the registry change it carries (0: none), for push latency.
    changed_at: float = 0.0

    def get(self, type_url: str) -> TypeSnapshot:
        """The type's resources (an Istio kind under any of its versions); empty if not served."""
        ts = self.types.get(canonical(type_url))
        # Not cached: type URLs come from clients, and a cache keyed by them would grow unbounded.
        return ts if ts is not None else TypeSnapshot.empty(type_url)

    def serves(self, type_url: str) -> bool:
        return canonical(type_url) in self.types

    @property
    def version(self) -> str:
        h = hashlib.blake2b(digest_size=8)
        for url in sorted(self.types):
            h.update(f"{url}={self.types[url].version};".encode())
        return h.hexdigest()

