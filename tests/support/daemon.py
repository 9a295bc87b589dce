"""Run ``bellad run`` as a real subprocess and watch what it logs."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import TracebackType


class DaemonProcess:
    """``bellad --config CONFIG run`` with stdout and stderr captured to files."""

    def __init__(self, config: Path, workdir: Path, env: dict[str, str] | None = None) -> None:
        self.config = config
        self.workdir = workdir
        self.env = {**os.environ, **(env or {})}
        self.proc: subprocess.Popen[bytes] | None = None
        self.runs = 0

    @property
    def stderr_path(self) -> Path:
        return self.workdir / f"daemon-{self.runs}.err"

    @property
    def stdout_path(self) -> Path:
        return self.workdir / f"daemon-{self.runs}.out"

    def start(self, *args: str) -> DaemonProcess:
        self.runs += 1
        with self.stdout_path.open("wb") as out, self.stderr_path.open("wb") as err:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "bellad", "--config", str(self.config), *args, "run"],
                stdout=out,
                stderr=err,
                env=self.env,
            )
        return self

    @property
    def log(self) -> str:
        return self.stderr_path.read_text(errors="replace") if self.stderr_path.exists() else ""

    @property
    def out(self) -> str:
        return self.stdout_path.read_text(errors="replace") if self.stdout_path.exists() else ""

    def wait_log(self, pattern: str, count: int = 1, timeout: float = 30.0) -> list[str]:
        """Wait until ``pattern`` (a regex) matched ``count`` log lines; fail if it exits."""
        deadline = time.monotonic() + timeout
        while True:
            found = re.findall(f".*{pattern}.*", self.log)
            if len(found) >= count:
                return found
            if self.proc is not None and self.proc.poll() is not None:
                raise AssertionError(
                    f"bellad exited ({self.proc.returncode}) before {pattern!r}:\n{self.log}"
                )
            if time.monotonic() > deadline:
                raise AssertionError(f"no {count} x {pattern!r} in {timeout} s:\n{self.log}")
            time.sleep(0.05)

    def signal(self, sig: signal.Signals) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    def wait(self, timeout: float = 60.0) -> int:
        assert self.proc is not None
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"bellad still running after {timeout} s:\n{self.log}") from None

    def stop(self, timeout: float = 60.0) -> int:
        """SIGTERM and wait for the exit status."""
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else 0
        self.signal(signal.SIGTERM)
        return self.wait(timeout)

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def __enter__(self) -> DaemonProcess:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.kill()
