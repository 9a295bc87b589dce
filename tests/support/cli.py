"""Running the ``bellad`` command line as a user would: a child process, text output."""

from __future__ import annotations

import subprocess
import sys


def run_bellad(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """``python -m bellad ARGS`` with this interpreter; never raises on a non-zero exit."""
    return subprocess.run(
        [sys.executable, "-m", "bellad", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
