"""One shared frozenset per distinct subscription, whatever the number of streams.

A thousand Envoys in one fleet subscribe to the same thousand cluster names. Kept per
stream, those names cost about 90 KiB each (the set and its strings); pooled, they
cost that once. Entries are weak: a subscription no stream holds any more is freed.
"""

from __future__ import annotations

from collections.abc import Iterable
from weakref import WeakValueDictionary

EMPTY: frozenset[str] = frozenset()


class NamesPool:
    """Canonical frozensets of resource names, looked up by a digest or by content."""

    def __init__(self) -> None:
        self._by_digest: WeakValueDictionary[bytes, frozenset[str]] = WeakValueDictionary()
        self._by_content: WeakValueDictionary[tuple[int, int], frozenset[str]] = WeakValueDictionary()

    def by_digest(self, digest: bytes, names: Iterable[str]) -> frozenset[str]:
        """The set for a request whose names list has this digest; ``names`` is read only
        the first time (so a repeated subscription costs no set building at all)."""
        found = self._by_digest.get(digest)
        if found is None:
            found = self.canonical(frozenset(names))
            self._by_digest[digest] = found
        return found

    def canonical(self, names: frozenset[str]) -> frozenset[str]:
        """The pooled set equal to ``names`` (``names`` itself when it is the first)."""
        if not names:
            return EMPTY
        key = (hash(names), len(names))
        found = self._by_content.get(key)
        if found is None:
            self._by_content[key] = names
            return names
        if found is names or found == names:
            return found
        return names  # a hash collision: correct, only not shared
