"""The cyclic garbage collector paused while a reader or a builder makes tens of thousands of
objects that hold no reference cycles (Positions, stored rows): reference counting frees them as
before, but the collector's passes over so many new objects cost as much as making them."""

from __future__ import annotations

import gc
import threading
from collections.abc import Iterator
from contextlib import contextmanager

_LOCK = threading.Lock()
_holders = 0
_was_enabled = False


@contextmanager
def without_cycle_collection() -> Iterator[None]:
    """The collector off while this runs: threads inside at once share one pause (the last out
    starts it again, if it ran before the first came in)."""
    global _holders, _was_enabled
    with _LOCK:
        if _holders == 0:
            _was_enabled = gc.isenabled()
            gc.disable()
        _holders += 1
    try:
        yield
    finally:
        with _LOCK:
            _holders -= 1
            if _holders == 0 and _was_enabled:
                gc.enable()
