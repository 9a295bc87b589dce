"""release_free_memory gives freed C heap memory back to the system (glibc)."""

from __future__ import annotations

import ctypes
from pathlib import Path

import pytest

from bellad.memory import release_free_memory


def rss_kb() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def test_freed_heap_memory_goes_back() -> None:
    libc = ctypes.CDLL(None)
    if not hasattr(libc, "malloc_trim"):
        pytest.skip("not glibc")
    libc.malloc.restype = ctypes.c_void_p
    libc.malloc.argtypes = [ctypes.c_size_t]
    libc.free.argtypes = [ctypes.c_void_p]
    blocks = [libc.malloc(16 * 1024) for _ in range(4000)]  # 64 MB, under the mmap threshold
    for block in blocks:
        ctypes.memset(block, 1, 16 * 1024)
    keep = blocks.pop()  # a live block at the top: only trimming inside the heap helps
    for block in blocks:
        libc.free(block)
    before = rss_kb()
    assert release_free_memory()
    assert before - rss_kb() > 32 * 1024
    libc.free(keep)


def test_nothing_to_release_is_no_error() -> None:
    release_free_memory()
    assert isinstance(release_free_memory(), bool)
