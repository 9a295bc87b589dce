"""What the process reports of its own memory."""

from __future__ import annotations

import subprocess
import sys

import numpy as np

from bellad.stats import peak_rss_mb, rss_mb

CHILD = "from bellad.stats import peak_rss_mb; print(peak_rss_mb())"


def test_peak_is_the_programs_own_not_its_parents() -> None:
    # A process started by fork and exec inherits its parent's peak in
    # getrusage's ru_maxrss; the daemon started by the benchmark, and the
    # benchmark's probes, would report their launcher's size as their own.
    ballast = np.ones(300 * 10**6, np.uint8)  # every page touched
    assert peak_rss_mb() >= 300
    child = subprocess.run(
        [sys.executable, "-c", CHILD], capture_output=True, text=True, check=True
    )
    del ballast
    child_peak = float(child.stdout)
    assert 5 < child_peak < 150, child_peak  # an interpreter and numpy-free bellad.stats


def test_peak_is_at_least_what_is_resident() -> None:
    now = rss_mb()
    assert now is not None
    assert peak_rss_mb() >= now
