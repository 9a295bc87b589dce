"""How the process allocates and gives back memory (glibc's malloc; elsewhere nothing).

Three calls:

* :func:`hold_freed_memory`, once at start: large blocks come from the heap
  and what is freed stays there for the next allocation. glibc's default puts
  every block above its mmap threshold (at most 32 MB) into a mapping of its
  own and unmaps it when freed, and trims the heap as soon as its free top
  grows past twice that threshold. Whisper's encoder, with input padded to 30
  seconds, allocates a 54 MB attention score matrix in each layer, and a
  second one for its softmax; with the default every one of them, and much
  of the rest of a transcription's working memory, is faulted in afresh,
  page by page, each time: about 77,000 page faults per transcription of the
  tiny model, 110-190 ms of its ~450 ms of CPU time spent in the kernel.
  Held, a transcription soon after another faults nothing, and one after a
  release faults its working memory in once (about 22,000 pages). Threads
  started afterwards share the one heap, so what one frees another reuses,
  instead of each thread's arena keeping its own (glibc makes up to eight
  per core).
* :func:`map_new_blocks`, around the start of each transcription: a heap
  that serves blocks of every size fragments, so the blocks of varying sizes
  a transcription makes before its encoder runs may not grow it.
* :func:`release_free_memory`, after one-off work (loading and warming up
  models) and once nothing has been said for a while: returns what is free
  to the system (``malloc_trim``), so an idle daemon holds no more than it
  needs.
"""

from __future__ import annotations

import ctypes
import functools
import logging
from typing import Any

log = logging.getLogger(__name__)

M_TRIM_THRESHOLD = -1  # glibc's mallopt parameters (malloc.h)
M_MMAP_THRESHOLD = -3
M_MMAP_MAX = -4
M_ARENA_MAX = -8
#: Free memory at the top of the heap that glibc may keep before trimming it:
#: all of it, since :func:`release_free_memory` decides when it goes back.
TRIM_NEVER = 2**31 - 1
#: While :func:`map_new_blocks` is on, blocks from this size up that no free
#: room in the heap can take get a mapping of their own.
MAP_FROM = 256 * 1024
MAPPINGS_MAX = 65_536  # glibc's default number of such mappings

_held = False


@functools.cache
def _libc_function(name: str, *argtypes: type) -> Any:
    try:
        func = getattr(ctypes.CDLL(None), name)
    except (AttributeError, OSError):
        return None  # not glibc
    func.argtypes = list(argtypes)
    func.restype = ctypes.c_int
    return func


def _mallopt(param: int, value: int) -> bool:
    mallopt = _libc_function("mallopt", ctypes.c_int, ctypes.c_int)
    return mallopt is not None and bool(mallopt(param, value))


def hold_freed_memory() -> bool:
    """Serve large blocks from the heap and keep freed ones; True if the C library obliged."""
    global _held
    _held = all(
        _mallopt(param, value)
        for param, value in (
            (M_MMAP_MAX, 0),
            (M_MMAP_THRESHOLD, MAP_FROM),
            (M_TRIM_THRESHOLD, TRIM_NEVER),
            (M_ARENA_MAX, 1),
        )
    )
    if not _held:
        log.debug("the C library does not take glibc's malloc options")
    return _held


def map_new_blocks(on: bool) -> None:
    """While memory is held: large blocks the heap has no free room for get mappings (on).

    Off (the held state), they extend the heap, and stay in it when freed. On,
    the heap does not grow for them: for the blocks of varying sizes that
    come before the encoder (the features of audio of any length), which
    would otherwise settle in the middle of the room the encoder's fixed-size
    blocks are freed into, and split it. Nothing when memory is not held.
    """
    if _held:
        _mallopt(M_MMAP_MAX, MAPPINGS_MAX if on else 0)


def release_free_memory() -> bool:
    """Return the C heap's free memory to the system; True if some was released."""
    trim = _libc_function("malloc_trim", ctypes.c_size_t)
    return False if trim is None else bool(trim(0))
