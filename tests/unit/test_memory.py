"""The C heap: freed memory held for reuse, and given back to the system (glibc)."""

from __future__ import annotations

import ctypes
import subprocess
import sys
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


CHILD_SETUP = """
import ctypes, resource, sys
from pathlib import Path
from bellad.memory import hold_freed_memory, map_new_blocks, release_free_memory
if sys.argv[1] == "held":
    assert hold_freed_memory()
libc = ctypes.CDLL(None)
libc.malloc.restype = ctypes.c_void_p
libc.malloc.argtypes = [ctypes.c_size_t]
libc.free.argtypes = [ctypes.c_void_p]
size = 64 * 1024 * 1024  # above glibc's largest mmap threshold, like an encoder's scores
"""


def in_child(script: str, policy: str) -> list[int]:
    """Run ``script`` in a fresh interpreter (the allocator's options are process-wide)."""
    if not hasattr(ctypes.CDLL(None), "mallopt"):
        pytest.skip("not glibc")
    done = subprocess.run(
        [sys.executable, "-c", CHILD_SETUP + script, policy],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    return [int(x) for x in done.stdout.split()]


FAULTS_AFTER_REUSE = """

def touch():
    block = libc.malloc(size)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    ctypes.memset(block, 1, size)
    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
    libc.free(block)
    return faults

touch()
again = touch()
release_free_memory()
print(again, touch())
"""


@pytest.mark.parametrize("policy", ["default", "held"])
def test_held_memory_is_reused_without_faults_until_released(policy: str) -> None:
    again, after_release = in_child(FAULTS_AFTER_REUSE, policy)
    pages = 64 * 1024 * 1024 // 4096
    if policy == "held":
        assert again < pages // 100  # the freed block came back as it was
    else:
        assert again > pages // 2  # glibc's default: a fresh mapping, faulted in again
    assert after_release > pages // 2  # given back: the pages are faulted in anew


MAPPED_WHILE_ON = """

def rss_kb():
    line = next(x for x in Path("/proc/self/status").read_text().splitlines() if "VmRSS" in x)
    return int(line.split()[1])

def kept_after_free(on):
    map_new_blocks(on)
    before = rss_kb()
    block = libc.malloc(size)
    ctypes.memset(block, 1, size)
    libc.free(block)
    map_new_blocks(False)
    return rss_kb() - before

print(kept_after_free(True), kept_after_free(False))
"""


@pytest.mark.parametrize("policy", ["held", "default"])
def test_new_blocks_are_mapped_only_while_asked_when_memory_is_held(policy: str) -> None:
    mapped, off = in_child(MAPPED_WHILE_ON, policy)
    assert mapped < 8 * 1024  # its own mapping, unmapped when freed: the heap did not grow
    if policy == "held":
        assert off > 56 * 1024  # the heap grew for it and keeps it
    else:
        assert off < 8 * 1024  # glibc's defaults untouched: mapped all the same
