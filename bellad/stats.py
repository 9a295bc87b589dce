"""What the process costs: CPU, memory, SoC temperature.

Read from ``/proc`` and ``/sys`` without extra packages; anything unreadable
(another OS, a board without a thermal zone) is reported as None.
"""

from __future__ import annotations

import os
import resource
import time
from pathlib import Path

THERMAL = Path("/sys/class/thermal")


class ProcessSampler:
    """CPU use of this process between two samples, as % of one core."""

    def __init__(self) -> None:
        self._last = (time.monotonic(), _cpu_seconds())

    def cpu_percent(self) -> float:
        now, cpu = time.monotonic(), _cpu_seconds()
        then, cpu_then = self._last
        self._last = (now, cpu)
        return 100.0 * (cpu - cpu_then) / max(now - then, 1e-6)


def _cpu_seconds() -> float:
    times = os.times()
    return times.user + times.system


def rss_mb() -> float | None:
    """Resident memory now, in MB."""
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return pages * os.sysconf("SC_PAGE_SIZE") / 1e6


def peak_rss_mb() -> float:
    """The most resident memory this program has used since it started, in MB.

    The kernel's high-water mark of the process's memory (``VmHWM``), not
    ``getrusage``'s ``ru_maxrss``: that one carries over exec, so a process
    started by fork and exec reports the peak of its parent when the parent
    was the bigger (a daemon started by a benchmark, a probe by its runner).
    Linux reports both in KiB.
    """
    try:
        return status_mb(Path("/proc/self/status").read_text())["VmHWM"]
    except (OSError, KeyError):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 1e6


def status_mb(status: str) -> dict[str, float]:
    """The sizes a ``/proc/PID/status`` text gives (``VmRSS``, ``VmHWM``, ``RssFile``...), in MB."""
    sizes = {}
    for line in status.splitlines():
        key, _, value = line.partition(":")
        number, _, unit = value.strip().partition(" ")
        if unit == "kB" and number.isdigit():
            sizes[key] = int(number) * 1024 / 1e6
    return sizes


def soc_temperature_c(root: Path = THERMAL) -> float | None:
    """The SoC or CPU temperature in °C, where the kernel exposes one."""
    zones = sorted(root.glob("thermal_zone*"))
    preferred = [
        z
        for z in zones
        if _zone_type(z)
        in ("cpu-thermal", "soc_thermal", "cpu_thermal", "x86_pkg_temp", "cpu", "soc")
    ]
    for zone in preferred + zones:
        try:
            return int((zone / "temp").read_text()) / 1000.0
        except (OSError, ValueError):
            continue
    return None


def _zone_type(zone: Path) -> str:
    try:
        return (zone / "type").read_text().strip().lower()
    except OSError:
        return ""
