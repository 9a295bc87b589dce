"""The daemon under test, a subscriber that times what arrives, and /proc sampling.

:class:`DaemonRun` starts ``bellad run`` as a child process with its own
config, timestamps each log line as it arrives on stderr, and samples the
process's CPU time and resident memory from ``/proc`` in a background thread.
:class:`Subscriber` is a paho MQTT client that keeps every message with the
wall-clock and monotonic times it was received.
"""

from __future__ import annotations

import json
import logging
import os
import re
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bellad.benchmark.services import stop_process
from bellad.stats import status_mb

log = logging.getLogger(__name__)

READY_LINE = re.compile(r"ready: listening on")
CLOCK_TICK = os.sysconf("SC_CLK_TCK")


def toml_text(data: dict[str, Any], prefix: str = "") -> str:
    """A nested dict of strings, numbers and booleans as TOML (enough for a config)."""
    plain = {k: v for k, v in data.items() if not isinstance(v, dict)}
    lines = [f"[{prefix}]"] if prefix and plain else []
    for key, value in plain.items():
        shown = json.dumps(value) if not isinstance(value, bool) else str(value).lower()
        lines.append(f"{key} = {shown}")
    text = "\n".join(lines) + ("\n\n" if lines else "")
    for key, value in data.items():
        if isinstance(value, dict):
            text += toml_text(value, f"{prefix}.{key}" if prefix else key)
    return text


@dataclass(frozen=True, slots=True)
class Received:
    topic: str
    payload: bytes
    wall: float
    mono: float

    def json(self) -> Any:
        return json.loads(self.payload)


class Subscriber:
    """Subscribes to ``topic`` on the broker and keeps every message it receives."""

    def __init__(self, host: str, port: int, topic: str) -> None:
        import paho.mqtt.client as paho

        self.topic = topic
        self.messages: list[Received] = []
        self.listeners: list[Callable[[Received], None]] = []  # called on paho's thread
        self._cond = threading.Condition()
        self._subscribed = threading.Event()
        self.client = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id="bellad-bench-sub")
        self.client.on_message = self._on_message
        self.client.on_subscribe = lambda *args: self._subscribed.set()
        self.client.on_connect = lambda client, *args: client.subscribe(topic, qos=1)
        self.client.connect(host, port, keepalive=30)
        self.client.loop_start()
        if not self._subscribed.wait(10):
            raise RuntimeError(f"the benchmark subscriber could not subscribe on {host}:{port}")

    def _on_message(self, client: Any, userdata: Any, message: Any) -> None:
        got = Received(message.topic, bytes(message.payload), time.time(), time.monotonic())
        with self._cond:
            self.messages.append(got)
            self._cond.notify_all()
        for listener in list(self.listeners):
            listener(got)

    def since(self, mono: float, suffix: str = "") -> list[Received]:
        with self._cond:
            return [m for m in self.messages if m.mono >= mono and m.topic.endswith(suffix)]

    def wait_count(self, suffix: str, count: int, since: float, timeout: float) -> bool:
        with self._cond:
            return self._cond.wait_for(lambda: len(self.since(since, suffix)) >= count, timeout)

    def stop(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@dataclass(frozen=True, slots=True)
class ProcSample:
    mono: float
    wall: float
    cpu_s: float  # user + system time of the whole process, every thread
    rss_mb: float
    peak_rss_mb: float  # VmHWM
    file_mb: float  # of rss_mb, pages mapped from files (RssFile): libraries' code and data


def read_machine() -> tuple[float, float, float, float]:
    """(CPU seconds every process of the machine has used, 0, 0, 0), from /proc/stat.

    Busy is user, nice, system, irq, softirq and steal (time a hypervisor gave
    to another machine); idle and iowait are not.
    """
    fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(x) for x in fields[:8])
    return (user + nice + system + irq + softirq + steal) / CLOCK_TICK, 0.0, 0.0, 0.0


def read_proc(pid: int) -> tuple[float, float, float, float] | None:
    """(CPU seconds, RSS MB, peak RSS MB, file-backed RSS MB) of a process (0: the machine).

    None once the process is gone.
    """
    if pid == 0:
        return read_machine()
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[1].split()
    cpu = (int(fields[11]) + int(fields[12])) / CLOCK_TICK
    mem = status_mb(status)
    return cpu, mem.get("VmRSS", 0.0), mem.get("VmHWM", 0.0), mem.get("RssFile", 0.0)


class ProcSampler:
    """Samples a process's CPU time and memory from /proc in a background thread.

    Process id 0 samples the whole machine's CPU time instead.
    """

    def __init__(self, pid: int, every: float = 0.25) -> None:
        self.pid = pid
        self.samples: list[ProcSample] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(every,), daemon=True)
        self._thread.start()

    def _run(self, every: float) -> None:
        while not self._stop.is_set():
            self.sample()
            self._stop.wait(every)

    def sample(self) -> ProcSample | None:
        got = read_proc(self.pid)
        if got is None:
            return None
        sample = ProcSample(time.monotonic(), time.time(), *got)
        with self._lock:
            self.samples.append(sample)
        return sample

    def stop(self) -> list[ProcSample]:
        self._stop.set()
        self._thread.join(10)
        with self._lock:
            return list(self.samples)


class DaemonRun:
    """One ``bellad run`` child process; see the module docstring."""

    def __init__(self, config: dict[str, Any], folder: Path, env: dict[str, str], name: str):
        self.folder = folder
        self.name = name
        folder.mkdir(parents=True, exist_ok=True)
        self.config_path = folder / f"{name}.toml"
        self.config_path.write_text(toml_text(config))
        self.log_path = folder / f"{name}.log"
        self.env = {**os.environ, **env}
        self.lines: list[tuple[float, str]] = []
        self.proc: subprocess.Popen[bytes] | None = None
        self.sampler: ProcSampler | None = None
        self.spawned_mono = 0.0
        self.spawned_wall = 0.0
        self.ready_mono: float | None = None
        self.returncode: int | None = None
        self._lock = threading.Lock()
        self._reader: threading.Thread | None = None

    def start(self, sample_every: float = 0.25) -> DaemonRun:
        self.spawned_wall, self.spawned_mono = time.time(), time.monotonic()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "bellad", "--config", str(self.config_path), "run"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            env=self.env,
        )
        self.sampler = ProcSampler(self.proc.pid, sample_every)
        self._reader = threading.Thread(target=self._read_log, daemon=True)
        self._reader.start()
        return self

    @property
    def samples(self) -> list[ProcSample]:
        return list(self.sampler.samples) if self.sampler is not None else []

    def _read_log(self) -> None:
        assert self.proc is not None and self.proc.stderr is not None
        with self.log_path.open("w", encoding="utf-8") as out:
            for raw in self.proc.stderr:
                now = time.monotonic()
                line = raw.decode("utf-8", "replace").rstrip("\n")
                out.write(f"{now - self.spawned_mono:9.3f} {line}\n")
                with self._lock:
                    self.lines.append((now, line))
                    if self.ready_mono is None and READY_LINE.search(line):
                        self.ready_mono = now

    def sample(self) -> ProcSample | None:
        assert self.sampler is not None
        return self.sampler.sample()

    def wait_ready(self, timeout: float) -> float:
        """Seconds from spawn to the ``ready`` log line; raises if it exits or times out."""
        deadline = time.monotonic() + timeout
        while self.ready_mono is None:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"bellad exited ({self.proc.returncode}):\n{self.log_tail()}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"bellad not ready after {timeout:.0f} s:\n{self.log_tail()}")
            time.sleep(0.01)
        return self.ready_mono - self.spawned_mono

    def count_lines(self, pattern: str) -> int:
        with self._lock:
            return sum(1 for _, line in self.lines if re.search(pattern, line))

    def log_tail(self, lines: int = 20) -> str:
        with self._lock:
            return "\n".join(line for _, line in self.lines[-lines:])

    def stop(self, timeout: float = 60.0) -> int:
        """SIGTERM, then wait for the exit status (SIGKILL after ``timeout``)."""
        assert self.proc is not None and self.sampler is not None
        self.sample()
        stop_process(self.proc, timeout)
        self.sampler.stop()
        if self._reader is not None:
            self._reader.join(10)
        self.returncode = self.proc.returncode
        return self.returncode

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        if self.sampler is not None:
            self.sampler.stop()
