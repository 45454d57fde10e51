"""Gives the heap's free pages back to the system while the operator is idle.

A burst of runs grows the heap by tens of MiB (their objects in the watch cache, every reconcile's models and
JSON); when they are gone, glibc keeps most of the freed memory for reuse instead of returning it, because a few
long-lived objects allocated during the burst sit between the free ones. `malloc_trim(0)` returns every free page,
wherever it lies in the heap (glibc >= 2.8). Python's own small-object allocator keeps its 1 MiB arenas until
every object in one is gone, so the operator image runs with `PYTHONMALLOC=malloc`: small objects then come from
glibc too, and trimming reaches them. It also turns off glibc's per-thread cache and fast bins, which keep freed
small chunks apart instead of merging them with their free neighbours, and fixes glibc's mmap threshold at 128 KiB:
left to itself glibc raises it to the largest buffer freed so far (a LIST's response of a few MiB), and serves the
later ones from the heap, where small long-lived objects then settle in the space they leave (docs/benchmarks.md
measures each).

Before trimming, a full garbage collection: Python keeps freed tuples, lists, dicts and floats on free lists for
reuse instead of giving them to malloc, and only a collection of the oldest generation empties them; a burst can
leave thousands there, each one keeping its page resident, and the oldest generation is collected rarely on its own.

Called from the resync thread when the work queue is idle: trimming walks the heap under malloc's locks, and a full
collection holds the interpreter for tens of milliseconds, which would stall the workers while they are busy.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import logging
from functools import cache
from typing import Any

log = logging.getLogger(__name__)


@cache
def _malloc_trim() -> Any:
    """glibc's malloc_trim, or None (musl, macOS: nothing to call, and nothing is lost but the trim)."""
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    return getattr(ctypes.CDLL(name), "malloc_trim", None)


def release_free_memory() -> bool:
    """True when the C library returned memory to the system."""
    gc.collect()
    trim = _malloc_trim()
    return bool(trim(0)) if trim is not None else False
