"""Keeping the daemon's resident memory down: it lives for months beside other programs.

Reading a model leaves the C heap holding freed scratch memory (parsing a
tokenizer's JSON, reading weights, the warm-up's buffers). glibc keeps it for
later allocations, so the daemon's resident memory stays that much higher all
its life. :func:`release_free_memory` asks glibc to return what is free
(``malloc_trim``); with another C library it does nothing.

:func:`bound_inference_caches` keeps oneDNN (which CTranslate2 uses on x86
for Whisper's convolutions) from caching a compiled primitive, with its
scratch memory, for every input shape it has seen.
"""

from __future__ import annotations

import ctypes
import logging
import os

log = logging.getLogger(__name__)

ONEDNN_CACHE = "ONEDNN_PRIMITIVE_CACHE_CAPACITY"


def bound_inference_caches() -> None:
    """Turn oneDNN's primitive cache off unless the environment already sets it.

    By default oneDNN keeps up to 1,024 primitives, each holding its scratchpad
    (megabytes for a 30-second window). A daemon with one warm model gains no
    speed from them (measured: the same transcription time) and keeps 10-25 MB
    more resident, growing with each new utterance length. oneDNN reads the
    variable when it first builds a primitive, so this runs before a model loads.
    """
    os.environ.setdefault(ONEDNN_CACHE, "0")


def release_free_memory() -> bool:
    """Return the C heap's free memory to the system; True if some was released."""
    try:
        trim = ctypes.CDLL(None).malloc_trim
    except (AttributeError, OSError):
        return False  # not glibc
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    return bool(trim(0))
