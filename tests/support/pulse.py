"""A real PulseAudio sound server whose capture device is fed from a FIFO.

:class:`PulseServer` runs ``pulseaudio`` as a user-mode daemon (not ``--system``)
confined to a temp folder: its own ``HOME``, ``XDG_*`` folders and native-protocol
socket. The default source is a ``module-pipe-source`` reading 16 kHz mono s16le from
a FIFO, which a :class:`~tests.support.feeder.PipeFeeder` fills in real time. Clients
find it through :attr:`PulseServer.env` (``PULSE_SERVER`` and a client config);
PyAudio sees it as the ALSA ``pulse`` device (package ``libasound2-plugins``).

Running as root works: pulseaudio only warns. But left alone it would read and write
root's ``~/.config/pulse``, try D-Bus, and raise itself to real-time priority, so the
daemon gets private ``HOME``/``XDG_CONFIG_HOME``, no D-Bus address, and
``--realtime=no --high-priority=no``; clients get a cookie file in the temp folder
(libpulse otherwise creates one in ``~/.config/pulse``).
"""

from __future__ import annotations

import os
import subprocess
import tempfile
from pathlib import Path
from types import TracebackType

from bellad.benchmark.services import pulseaudio_command, pulseaudio_env
from tests.support.feeder import RATE, PipeFeeder
from tests.support.signals import chirp, find_exact
from tests.support.tools import (
    MissingProgram,
    remove_tree,
    require_program,
    stop_process,
    tail,
    wait_until,
)

__all__ = ["PipeFeeder", "PulseServer", "chirp", "find_exact"]

SOURCE = "bellad_mic"
SINK = "bellad_null"

_SCRIPT = """\
# bellad test sound server: a FIFO-fed microphone, nothing else.
load-module module-native-protocol-unix auth-anonymous=1 socket={socket}
load-module module-null-sink sink_name={sink} rate={rate} channels=1
load-module module-pipe-source source_name={source} file={fifo} format=s16le rate={rate} \
channels=1 source_properties=device.description=bellad-test-microphone
set-default-source {source}
set-default-sink {sink}
# A permanent reader keeps the pipe source running, so the FIFO is always drained and a
# client that starts recording gets fresh audio, not a FIFO full of stale blocks.
load-module module-loopback source={source} sink={sink} source_dont_move=true \
sink_dont_move=true
"""


def require_alsa_pulse_plugin() -> None:
    """PyAudio reaches PulseAudio through ALSA's ``pulse`` plugin."""
    if not any(Path("/usr/lib").glob("*/alsa-lib/libasound_module_pcm_pulse.so")):
        raise MissingProgram(
            "ALSA's pulse plugin not found: PyAudio needs it to reach PulseAudio; "
            "install the Debian package 'libasound2-plugins' (apt-get install libasound2-plugins)"
        )


class PulseServer:
    """One ``pulseaudio`` daemon in its own temp folder, with a running feeder."""

    def __init__(self, *, base_dir: Path | None = None, rate: int = RATE) -> None:
        self.binary = require_program("pulseaudio", "pulseaudio")
        self.pactl_binary = require_program("pactl", "pulseaudio-utils")
        self.rate = rate
        self.dir = Path(tempfile.mkdtemp(prefix="bellad-pulse-", dir=base_dir))
        self.runtime_dir = self.dir / "runtime"
        self.home = self.dir / "home"
        self.socket = self.runtime_dir / "native"
        self.fifo = self.dir / "microphone.fifo"
        self.script = self.dir / "bellad.pa"
        self.log_path = self.dir / "pulseaudio.log"
        self.client_conf = self.dir / "client.conf"
        self.source = SOURCE
        self._proc: subprocess.Popen[bytes] | None = None
        self._feeder: PipeFeeder | None = None
        for folder in (self.runtime_dir, self.home):
            folder.mkdir(mode=0o700)
        self.script.write_text(
            _SCRIPT.format(socket=self.socket, fifo=self.fifo, source=SOURCE, sink=SINK, rate=rate)
        )
        self.client_conf.write_text(f"autospawn = no\ncookie-file = {self.dir / 'cookie'}\n")

    @property
    def server(self) -> str:
        """The ``PULSE_SERVER`` string."""
        return f"unix:{self.socket}"

    @property
    def env(self) -> dict[str, str]:
        """Variables that point a PulseAudio client (a subprocess, or this process before
        PyAudio starts) at this server."""
        return {"PULSE_SERVER": self.server, "PULSE_CLIENTCONFIG": str(self.client_conf)}

    @property
    def feeder(self) -> PipeFeeder:
        """The feeder writing into the microphone FIFO (started with the server)."""
        if self._feeder is None:
            raise RuntimeError("no feeder: start the server with feeder=True")
        return self._feeder

    # -- process -----------------------------------------------------------------------
    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self, *, feeder: bool = True, timeout: float = 10.0) -> PulseServer:
        """Start the daemon, wait until the source exists, and (by default) the feeder."""
        self._proc = subprocess.Popen(
            pulseaudio_command(
                self.binary, self.script, self.log_path, "--log-level=info", "--log-time=yes"
            ),
            env=pulseaudio_env(self.home, self.runtime_dir),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        try:
            self.wait_ready(timeout)
            if feeder:
                self._feeder = PipeFeeder(self.fifo, rate=self.rate).start()
        except BaseException:
            self.stop()
            raise
        return self

    def wait_ready(self, timeout: float = 10.0) -> None:
        """Wait until the server answers and lists its FIFO source."""

        def ready() -> bool:
            if not self.running:
                raise RuntimeError(self._failure("pulseaudio exited at start"))
            if not (self.socket.exists() and self.fifo.exists()):
                return False
            done = self._pactl("list", "short", "sources", check=False)
            return done.returncode == 0 and SOURCE in done.stdout

        try:
            wait_until(ready, timeout, f"pulseaudio source {SOURCE}", interval=0.05)
        except TimeoutError as exc:
            raise RuntimeError(self._failure(str(exc))) from exc

    def _pactl(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [self.pactl_binary, *args],
            env={**os.environ, **self.env},
            capture_output=True,
            text=True,
            timeout=10,
            check=check,
        )

    def pactl(self, *args: str) -> str:
        """Run ``pactl`` against this server; its stdout."""
        return self._pactl(*args).stdout

    def stop(self) -> None:
        """Stop the feeder, then the daemon (SIGTERM, SIGKILL if it hangs)."""
        if self._feeder is not None:
            self._feeder.stop()
            self._feeder = None
        stop_process(self._proc)

    def close(self) -> None:
        """Stop everything and remove the temp folder."""
        try:
            self.stop()
        finally:
            remove_tree(self.dir)

    def __enter__(self) -> PulseServer:
        return self if self.running else self.start()

    def __exit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def _failure(self, what: str) -> str:
        code = self._proc.poll() if self._proc else None
        return f"{what} (exit status {code})\n--- {self.log_path}\n{tail(self.log_path)}"

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"<PulseServer {self.server} {state}>"
