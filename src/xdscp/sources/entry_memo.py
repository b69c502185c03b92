"""What validating a document's entries gave last time, kept by each entry's exact form.

A registry document of 100,000 services re-read because one instance changed should
cost about what that one service costs: the entries that read exactly as before give
back the object they gave before (same identity, so the registry and translation skip
them too), and only the others are parsed and validated.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class EntryMemo(Generic[T]):
    """Results by entry key. Holds the entries of the last read committed (``commit``),
    so its size follows the document, not its history."""

    def __init__(self) -> None:
        self._committed: dict[str, T] = {}
        self._reading: dict[str, T] = {}

    def get(self, key: str, make: Callable[[], T]) -> T:
        """What ``make()`` gave for ``key`` in the last read committed or in this one, or
        ``make()`` now; what it raises is not remembered."""
        if key in self._reading:
            return self._reading[key]
        result = self._committed[key] if key in self._committed else make()
        self._reading[key] = result
        return result

    def commit(self) -> None:
        """This read is in force: keep its entries, forget the rest."""
        self._committed, self._reading = self._reading, {}

    def discard(self) -> None:
        """This read was rejected: the last committed one stays."""
        self._reading = {}
