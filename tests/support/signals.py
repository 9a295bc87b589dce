"""Test signals and exact matching: audio that comes out of a device unchanged must be
found sample for sample."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from tests.support.feeder import RATE

Int16Array = npt.NDArray[np.int16]


def chirp(
    seconds: float = 1.0,
    *,
    rate: int = RATE,
    f0: float = 200.0,
    f1: float = 4000.0,
    amplitude: float = 0.5,
) -> Int16Array:
    """A linear sweep from ``f0`` to ``f1`` Hz as int16; no two stretches alike."""
    t = np.arange(round(seconds * rate)) / rate
    phase = 2 * np.pi * (f0 * t + (f1 - f0) * t**2 / (2 * seconds))
    return np.round(amplitude * 32767 * np.sin(phase + np.pi / 4)).astype(np.int16)


def find_exact(haystack: Int16Array, needle: Int16Array) -> int | None:
    """Where ``needle`` first occurs, bit-exact, in ``haystack``; None if nowhere."""
    n = len(needle)
    if n == 0 or len(haystack) < n:
        return None
    prefix = min(n, 16)
    windows = np.lib.stride_tricks.sliding_window_view(haystack, prefix)
    candidates = np.flatnonzero((windows == needle[:prefix]).all(axis=1))
    for start in candidates[candidates <= len(haystack) - n]:
        if np.array_equal(haystack[start : start + n], needle):
            return int(start)
    return None
