"""Pairing a daemon's transcription with the model alone: which timings may be used."""

from __future__ import annotations

from bellad.benchmark.modeltime import Timed
from bellad.benchmark.paired import PairedTiming


def test_a_timing_that_overlapped_a_daemon_transcription_is_recognised() -> None:
    timing = PairedTiming(Timed(0.25, "text"), began=100.0, ended=100.8)
    assert not timing.overlaps(98.0, 99.9)  # the daemon's run it is paired with, before it
    assert not timing.overlaps(100.8, 101.1)  # the next transcription starts as it ends
    assert timing.overlaps(100.5, 100.9)  # the next transcription started while timing
    assert timing.overlaps(99.0, 102.0)
