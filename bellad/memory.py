"""Giving memory back to the system after one-off work: loading and warming up models.

Reading a model leaves the C heap holding freed scratch memory (parsing a
tokenizer's JSON, reading weights, the warm-up's buffers). glibc keeps it for
later allocations, so the daemon's resident memory stays that much higher all
its life. :func:`release_free_memory` asks glibc to return what is free
(``malloc_trim``); with another C library it does nothing.
"""

from __future__ import annotations

import ctypes
import logging

log = logging.getLogger(__name__)


def release_free_memory() -> bool:
    """Return the C heap's free memory to the system; True if some was released."""
    try:
        trim = ctypes.CDLL(None).malloc_trim
    except (AttributeError, OSError):
        return False  # not glibc
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    return bool(trim(0))
