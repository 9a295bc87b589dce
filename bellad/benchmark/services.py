"""The real services the benchmark needs: a Mosquitto broker and a PulseAudio microphone.

Both run as child processes confined to a temporary folder, on 127.0.0.1 and
a free port (Mosquitto) or a private socket (PulseAudio), and are stopped with
the benchmark. :class:`SoundServer` gives PyAudio a real capture device: a
``module-pipe-source`` reading 16 kHz mono s16le from a FIFO, which
:class:`~bellad.benchmark.feeder.Feeder` fills in real time.
"""

from __future__ import annotations

import contextlib
import getpass
import logging
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

from bellad.errors import BelladError

log = logging.getLogger(__name__)


class ServiceError(BelladError):
    """A service the benchmark needs is missing or would not start."""

    exit_code = 69


def find_program(name: str, package: str, extra_dirs: tuple[str, ...] = ("/usr/sbin",)) -> str:
    """The path of ``name``, or a one-line error naming the Debian package."""
    found = shutil.which(name)
    for folder in extra_dirs:
        if found is None and os.access(Path(folder) / name, os.X_OK):
            found = str(Path(folder) / name)
    if found is None:
        raise ServiceError(
            f"the benchmark needs {name!r}: install it with  apt-get install {package}"
        )
    return found


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def wait_for(check: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise ServiceError(f"{what} did not come up within {timeout:.0f} s")
        time.sleep(0.02)


def _tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def stop_process(proc: subprocess.Popen[bytes] | None, timeout: float = 5.0) -> None:
    """SIGTERM and wait up to ``timeout`` for the exit, then SIGKILL; nothing if it is gone."""
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(10)


class Mosquitto:
    """A Mosquitto broker on 127.0.0.1 and a free port, anonymous, no persistence."""

    host = "127.0.0.1"

    def __init__(self, folder: Path) -> None:
        self.binary = find_program("mosquitto", "mosquitto")
        self.folder = folder
        self.port = free_port(self.host)
        self.log_path = folder / "mosquitto.log"
        self._proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Mosquitto:
        self.folder.mkdir(parents=True, exist_ok=True)
        conf = self.folder / "mosquitto.conf"
        # "user" names the current user, so a broker started as root does not switch
        # to the mosquitto user (which could not read this folder).
        conf.write_text(
            f"listener {self.port} {self.host}\nallow_anonymous true\npersistence false\n"
            f"user {getpass.getuser()}\nlog_dest stderr\nlog_type error\nlog_type warning\n"
        )
        with self.log_path.open("wb") as out:
            self._proc = subprocess.Popen(
                [self.binary, "-c", str(conf)],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        try:
            wait_for(self._listening, 10, f"mosquitto on port {self.port}")
        except ServiceError as exc:
            self.stop()
            raise ServiceError(f"{exc}:\n{_tail(self.log_path)}") from None
        return self

    def _listening(self) -> bool:
        if self._proc is not None and self._proc.poll() is not None:
            raise ServiceError(f"mosquitto exited at start:\n{_tail(self.log_path)}")
        with contextlib.suppress(OSError), socket.create_connection((self.host, self.port), 0.2):
            return True
        return False

    def stop(self) -> None:
        stop_process(self._proc)


_PULSE_SCRIPT = """\
load-module module-native-protocol-unix auth-anonymous=1 socket={socket}
load-module module-null-sink sink_name=bench_null rate=16000 channels=1
load-module module-pipe-source source_name=bench_mic file={fifo} format=s16le rate=16000 \
channels=1 source_properties=device.description=bellad-bench-microphone
set-default-source bench_mic
set-default-sink bench_null
# a permanent reader, so the FIFO is drained even while no client records
load-module module-loopback source=bench_mic sink=bench_null
"""


def pulseaudio_command(binary: str, script: Path, log_path: Path, *extra: str) -> list[str]:
    """A user-mode pulseaudio that loads only ``script``, stays up and never asks for real time."""
    return [
        binary,
        "--daemonize=no",
        "--system=no",
        "-n",
        "-F",
        str(script),
        "--exit-idle-time=-1",
        "--disallow-exit",
        "--use-pid-file=no",
        "--realtime=no",
        "--high-priority=no",
        f"--log-target=file:{log_path}",
        *extra,
    ]


def pulseaudio_env(home: Path, runtime: Path) -> dict[str, str]:
    """A private pulseaudio's environment: its own HOME and XDG folders, no D-Bus, no display."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("PULSE_", "XDG_", "DBUS_")) and k != "DISPLAY"
    }
    env.update(
        HOME=str(home),
        XDG_RUNTIME_DIR=str(runtime),
        XDG_CONFIG_HOME=str(home / ".config"),
        XDG_STATE_HOME=str(home / ".state"),
        XDG_CACHE_HOME=str(home / ".cache"),
        DBUS_SESSION_BUS_ADDRESS="disabled:",
    )
    return env


class SoundServer:
    """A user-mode PulseAudio daemon whose default source is a FIFO-fed microphone.

    Clients reach it through :attr:`env` (PyAudio opens the ALSA ``pulse``
    device, from Debian's ``libasound2-plugins``).
    """

    def __init__(self, folder: Path) -> None:
        self.binary = find_program("pulseaudio", "pulseaudio")
        if not any(Path("/usr/lib").glob("*/alsa-lib/libasound_module_pcm_pulse.so")):
            raise ServiceError(
                "PyAudio reaches PulseAudio through ALSA's pulse plugin: "
                "install it with  apt-get install libasound2-plugins"
            )
        self.folder = folder
        self.runtime = folder / "runtime"
        self.home = folder / "home"
        self.socket = self.runtime / "native"
        self.fifo = folder / "microphone.fifo"
        self.log_path = folder / "pulseaudio.log"
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def env(self) -> dict[str, str]:
        """What a client process needs to find this server."""
        return {
            "PULSE_SERVER": f"unix:{self.socket}",
            "PULSE_CLIENTCONFIG": str(self.folder / "client.conf"),
        }

    def start(self) -> SoundServer:
        for folder in (self.runtime, self.home):
            folder.mkdir(parents=True, mode=0o700, exist_ok=True)
        script = self.folder / "bench.pa"
        script.write_text(_PULSE_SCRIPT.format(socket=self.socket, fifo=self.fifo))
        (self.folder / "client.conf").write_text(
            f"autospawn = no\ncookie-file = {self.folder / 'cookie'}\n"
        )
        self._proc = subprocess.Popen(
            pulseaudio_command(self.binary, script, self.log_path),
            env=pulseaudio_env(self.home, self.runtime),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        try:
            wait_for(self._ready, 10, "pulseaudio")
        except ServiceError as exc:
            self.stop()
            raise ServiceError(f"{exc}:\n{_tail(self.log_path)}") from None
        return self

    def _ready(self) -> bool:
        if self._proc is not None and self._proc.poll() is not None:
            raise ServiceError(f"pulseaudio exited at start:\n{_tail(self.log_path)}")
        return self.socket.exists() and self.fifo.exists()

    def stop(self) -> None:
        stop_process(self._proc)
