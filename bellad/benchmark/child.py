"""The benchmark's probes that need a process of their own: run one, read its answer."""

from __future__ import annotations

import json
import subprocess
from typing import Any


def run_child(command: list[str], what: str, timeout_s: float) -> dict[str, Any]:
    """Run ``command``; its last line of output is a JSON object, returned as a dict."""
    done = subprocess.run(command, capture_output=True, text=True, timeout=timeout_s)
    if done.returncode != 0:
        raise RuntimeError(
            f"{what} failed with status {done.returncode}: {done.stderr.strip()[-2000:]}"
        )
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result
