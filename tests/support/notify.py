"""A bound ``NOTIFY_SOCKET``: what a service manager would hear from bellad."""

from __future__ import annotations

import shutil
import socket
import tempfile
import threading
import time
from pathlib import Path
from types import TracebackType


class NotifySocket:
    """Records every sd_notify datagram with the time it arrived."""

    def __init__(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="bellad-notify-", dir="/tmp"))
        self.path = self.dir / "notify.sock"
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(self.path))
        self.sock.settimeout(0.2)
        self.messages: list[tuple[float, dict[str, str]]] = []
        self._lock = threading.Lock()
        self._closed = False
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        while not self._closed:
            try:
                data = self.sock.recv(4096)
            except TimeoutError:
                continue
            except OSError:
                return
            fields = dict(line.split("=", 1) for line in data.decode().splitlines() if "=" in line)
            with self._lock:
                self.messages.append((time.monotonic(), fields))

    def having(self, key: str, value: str | None = None) -> list[tuple[float, dict[str, str]]]:
        with self._lock:
            return [
                (t, m) for t, m in self.messages if key in m and (value is None or m[key] == value)
            ]

    def wait_for(
        self, key: str, value: str | None = None, count: int = 1, timeout: float = 60.0
    ) -> list[tuple[float, dict[str, str]]]:
        deadline = time.monotonic() + timeout
        while len(found := self.having(key, value)) < count:
            if time.monotonic() > deadline:
                raise AssertionError(f"no {count} x {key}={value} in {timeout} s: {self.messages}")
            time.sleep(0.02)
        return found

    @property
    def env(self) -> dict[str, str]:
        return {"NOTIFY_SOCKET": str(self.path)}

    def close(self) -> None:
        self._closed = True
        self.sock.close()
        self._thread.join(2)
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> NotifySocket:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
