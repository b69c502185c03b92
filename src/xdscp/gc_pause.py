"""Parse a large document without the garbage collector walking the whole heap meanwhile.

Parsing a registry document of 100,000 services allocates about a million containers.
Every few hundred allocations start a collection, and the full ones walk every object
the process holds: about a second per read, more than the parse itself. What a parse
allocates is acyclic and freed by reference counting, so the collector is paused for
the parse and resumed after it, with no work lost.
"""

from __future__ import annotations

import gc
import threading
from collections.abc import Iterator
from contextlib import contextmanager

_lock = threading.Lock()
_paused = 0  # parses under way (they may overlap, in threads)
_was_enabled = False


@contextmanager
def gc_paused() -> Iterator[None]:
    global _paused, _was_enabled
    with _lock:
        if _paused == 0:
            _was_enabled = gc.isenabled()
            gc.disable()
        _paused += 1
    try:
        yield
    finally:
        with _lock:
            _paused -= 1
            if _paused == 0 and _was_enabled:
                gc.enable()
