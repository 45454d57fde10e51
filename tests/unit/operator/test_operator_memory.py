"""Free heap memory goes back to the system: glibc's malloc_trim, called for real."""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import platform
import weakref

import pytest

from kubetune.handlers.memory import release_free_memory

pytestmark = pytest.mark.unit


def _rss_kib() -> int:
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmRSS:"))


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="malloc_trim is glibc's")
def test_memory_freed_inside_the_heap_goes_back_to_the_system() -> None:
    """64 MiB in 64 KiB blocks (below glibc's mmap threshold: they come from the heap), every other one freed with
    a live one between them, as a burst's objects are freed around the few that stay: the heap cannot shrink from
    its top, and only a trim returns the free pages."""
    libc = ctypes.CDLL(ctypes.util.find_library("c"))
    libc.malloc.restype = ctypes.c_void_p
    libc.free.argtypes = [ctypes.c_void_p]
    libc.memset.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_size_t]
    block = 64 * 1024
    blocks = [libc.malloc(block) for _ in range(1024)]
    for pointer in blocks:
        libc.memset(pointer, 1, block)  # touched: resident
    for pointer in blocks[::2]:
        libc.free(pointer)
    before = _rss_kib()
    assert release_free_memory() is True
    returned = before - _rss_kib()
    for pointer in blocks[1::2]:
        libc.free(pointer)
    assert returned > 24 * 1024, f"only {returned} KiB of 32 MiB free went back"


def test_giving_memory_back_first_collects_what_only_a_full_collection_frees() -> None:
    """Reference cycles that outlived the young generations, and (not observable from Python) the interpreter's free
    lists of tuples, lists, dicts and floats: a full collection empties both before the trim."""

    class Node:
        pass

    gc.collect()
    gc.disable()
    try:
        cycle = Node()
        cycle.self = cycle  # type: ignore[attr-defined]
        alive = weakref.ref(cycle)
        del cycle
        assert alive() is not None
        release_free_memory()
        assert alive() is None
    finally:
        gc.enable()
