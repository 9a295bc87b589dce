"""A real Mosquitto broker for tests, on 127.0.0.1 and free ports, with its own config.

Started as root, Mosquitto switches to the ``mosquitto`` user, so everything it reads
or writes (key, password and ACL files, persistence and log folders) is handed to that
user, and its folder lives where that user can reach it (not under pytest's 0700
``tmp_path``).
"""

from __future__ import annotations

import re
import signal
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

from tests.support.mqtt_clients import Endpoint, Message, Subscriber, try_connect
from tests.support.tls import CertificateAuthority, KeyPair
from tests.support.tools import (
    check_reachable,
    daemon_user,
    free_ports,
    give_to,
    port_open,
    remove_tree,
    require_program,
    stop_process,
    tail,
    wait_until,
)

__all__ = ["BrokerConfig", "BrokerError", "Message", "Mosquitto", "Subscriber"]

MOSQUITTO = "/usr/sbin/mosquitto"


class BrokerError(RuntimeError):
    """The broker would not start or stop; the message ends with its log."""


@dataclass(frozen=True)
class BrokerConfig:
    """What the broker offers. ``users`` maps names to passwords (a password file) and
    turns anonymous access off unless ``allow_anonymous`` says otherwise."""

    users: dict[str, str] = field(default_factory=dict)
    allow_anonymous: bool | None = None
    tls: bool = False
    require_certificate: bool = False
    acl: str | None = None
    persistence: bool = False
    extra: str = ""

    @property
    def anonymous(self) -> bool:
        return not self.users if self.allow_anonymous is None else self.allow_anonymous


class Mosquitto:
    """One ``mosquitto`` process and its folder; ports are fixed for its lifetime, so
    :meth:`restart` comes back where it was, with the same persisted state."""

    host = "127.0.0.1"

    def __init__(self, config: BrokerConfig | None = None, *, base_dir: Path | None = None) -> None:
        self.config = config or BrokerConfig()
        self.binary = require_program("mosquitto", "mosquitto", path=MOSQUITTO)
        self._user = daemon_user("mosquitto")
        self.dir = Path(tempfile.mkdtemp(prefix="bellad-mosquitto-", dir=base_dir))
        self._proc: subprocess.Popen[bytes] | None = None
        ports = free_ports(2 if self.config.tls else 1, self.host)
        self.port = ports[0]
        self.tls_port: int | None = ports[1] if self.config.tls else None
        self.ca: CertificateAuthority | None = None
        self.server: KeyPair | None = None
        self.conf_path = self.dir / "mosquitto.conf"
        try:
            give_to(self.dir, self._user, 0o700)
            check_reachable(self.dir, self._user)
            self._write_files()
        except BaseException:
            remove_tree(self.dir)
            raise

    # -- files -------------------------------------------------------------------------
    @property
    def log_path(self) -> Path:
        """Mosquitto's own log (``log_type all``)."""
        return self.dir / "log" / "mosquitto.log"

    @property
    def console_path(self) -> Path:
        """What the process printed on stdout/stderr (errors before the log opens)."""
        return self.dir / "console.log"

    @property
    def data_dir(self) -> Path:
        """Where the persistence file lives (kept across restarts)."""
        return self.dir / "data"

    def _own(self, path: Path, mode: int) -> Path:
        return give_to(path, self._user, mode)

    def _write_files(self) -> None:
        cfg = self.config
        self.log_path.parent.mkdir()
        self._own(self.log_path.parent, 0o700)
        self.log_path.touch()
        self._own(self.log_path, 0o600)
        lines = [
            "# bellad test broker",
            "per_listener_settings false",
            f"allow_anonymous {str(cfg.anonymous).lower()}",
            f"log_dest file {self.log_path}",
            "log_type all",
            "log_timestamp_format %Y-%m-%dT%H:%M:%S",
            "connection_messages true",
        ]
        if self._user is not None:
            lines.append(f"user {self._user.pw_name}")
        if cfg.users:
            lines.append(f"password_file {self._write_passwords(cfg.users)}")
        if cfg.acl is not None:
            acl = self.dir / "acl"
            acl.write_text(cfg.acl)
            lines.append(f"acl_file {self._own(acl, 0o600)}")
        if cfg.persistence:
            self.data_dir.mkdir()
            self._own(self.data_dir, 0o700)
            lines += [
                "persistence true",
                f"persistence_location {self.data_dir}/",
                # Save after every change, so a SIGKILL loses nothing acknowledged.
                "autosave_interval 1",
                "autosave_on_changes true",
            ]
        else:
            lines.append("persistence false")
        lines.append(f"listener {self.port} {self.host}")
        if self.tls_port is not None:
            lines += [f"listener {self.tls_port} {self.host}", *self._tls_lines()]
        lines.append(cfg.extra)
        self.conf_path.write_text("\n".join(lines) + "\n")
        self._own(self.conf_path, 0o600)

    def _write_passwords(self, users: dict[str, str]) -> Path:
        tool = require_program("mosquitto_passwd", "mosquitto")
        path = self.dir / "passwd"
        for n, (name, password) in enumerate(users.items()):
            create = ["-c"] if n == 0 else []
            subprocess.run(
                [tool, *create, "-b", str(path), name, password],
                check=True,
                capture_output=True,
                timeout=30,
            )
        return self._own(path, 0o600)

    def _tls_lines(self) -> list[str]:
        tls_dir = self.dir / "tls"
        self.ca = ca = CertificateAuthority.create(tls_dir, "bellad test CA")
        self.server = server = ca.server_cert()
        self._own(tls_dir, 0o755)
        self._own(server.key, 0o600)
        lines = [f"cafile {ca.cert}", f"certfile {server.cert}", f"keyfile {server.key}"]
        if self.config.require_certificate:
            lines += ["require_certificate true", "use_identity_as_username true"]
        return lines

    def client_cert(self, name: str) -> KeyPair:
        """A client certificate signed by the broker's CA; its CN is ``name``."""
        return self._need_ca().client_cert(name)

    def wrong_ca(self) -> CertificateAuthority:
        """A CA unrelated to the broker's, for proving that verification fails."""
        return CertificateAuthority.create(self.dir / "tls" / "wrong", "unrelated test CA")

    def _need_ca(self) -> CertificateAuthority:
        if self.ca is None:
            raise ValueError("this broker has no TLS listener (BrokerConfig(tls=True))")
        return self.ca

    # -- addresses ---------------------------------------------------------------------
    @property
    def url(self) -> str:
        return f"mqtt://{self.host}:{self.port}"

    @property
    def tls_url(self) -> str:
        return f"mqtts://localhost:{self._need_tls_port()}"

    def _need_tls_port(self) -> int:
        if self.tls_port is None:
            raise ValueError("this broker has no TLS listener (BrokerConfig(tls=True))")
        return self.tls_port

    def endpoint(
        self,
        user: str | None = None,
        *,
        password: str | None = None,
        tls: bool = False,
        ca: Path | None = None,
        client_cert: KeyPair | None = None,
    ) -> Endpoint:
        """How a client reaches this broker. ``user`` takes its password from the config
        unless ``password`` is given; ``tls`` uses the TLS port and (unless ``ca`` is
        given) the broker's CA, connecting to ``localhost`` to exercise the SAN."""
        if user is not None and password is None:
            password = self.config.users.get(user)
        if not tls:
            return Endpoint(self.host, self.port, user, password)
        return Endpoint(
            "localhost",
            self._need_tls_port(),
            user,
            password,
            ca or self._need_ca().cert,
            client_cert,
        )

    # -- process -----------------------------------------------------------------------
    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    def start(self, *, wait: bool = True, timeout: float = 10.0) -> Mosquitto:
        """Start the broker; by default wait until its listeners accept connections."""
        if self.running:
            raise BrokerError("broker already running")
        with self.console_path.open("ab") as console:
            self._proc = subprocess.Popen(
                [self.binary, "-c", str(self.conf_path)],
                stdin=subprocess.DEVNULL,
                stdout=console,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        if wait:
            self.wait_ready(timeout)
        return self

    def wait_ready(self, timeout: float = 10.0) -> None:
        """Wait until every listener accepts TCP connections."""
        ports = [p for p in (self.port, self.tls_port) if p is not None]

        def ready() -> bool:
            if not self.running:
                raise BrokerError(self._failure("mosquitto exited at start"))
            return all(port_open(self.host, p) for p in ports)

        try:
            wait_until(ready, timeout, f"mosquitto on ports {ports}")
        except TimeoutError as exc:
            raise BrokerError(self._failure(str(exc))) from exc

    def stop(self, timeout: float = 5.0) -> None:
        """SIGTERM (Mosquitto saves persistence and exits); SIGKILL if it hangs."""
        self._signal(signal.SIGTERM, timeout)

    def kill(self) -> None:
        """SIGKILL: a crash, nothing saved beyond what autosave wrote."""
        self._signal(signal.SIGKILL, 5.0)

    def restart(self, timeout: float = 10.0) -> None:
        """Stop it if running, start it again on the same ports and persistence."""
        if self.running:
            self.stop()
        self.start(timeout=timeout)

    def save(self, timeout: float = 5.0) -> None:
        """Have Mosquitto write its persistence file now (SIGUSR1); wait until written."""
        mark = self.log_offset()
        if self._proc is None or not self.running:
            raise BrokerError("broker not running")
        self._proc.send_signal(signal.SIGUSR1)
        self.wait_saved(after=mark, timeout=timeout)

    def wait_saved(self, *, after: int, timeout: float = 5.0) -> None:
        """Wait until a save of the persistence file that began past log offset ``after``
        is complete, so that a :meth:`kill` cannot cut it short.

        Mosquitto logs "Saving in-memory database" *before* writing; it is single-threaded,
        so once it has answered a new connection, the write is done.
        """
        self.wait_log("Saving in-memory database", after=after, timeout=timeout)
        outcome = try_connect(self.endpoint(), timeout=timeout)
        if outcome.reason is None:
            raise BrokerError(self._failure(f"broker did not answer after saving: {outcome}"))

    def _signal(self, sig: signal.Signals, timeout: float) -> None:
        stop_process(self._proc, sig, timeout)

    def close(self) -> None:
        """Stop the broker and remove its folder."""
        try:
            self.stop()
        finally:
            remove_tree(self.dir)

    def __enter__(self) -> Mosquitto:
        return self.start() if not self.running else self

    def __exit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    # -- log -----------------------------------------------------------------------------
    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace")

    def log_offset(self) -> int:
        """Where the log ends now; pass it to :meth:`wait_log` to look only at what follows."""
        return len(self.log_text())

    def wait_log(self, pattern: str, *, after: int = 0, timeout: float = 5.0) -> re.Match[str]:
        """Wait for a log line matching the regex ``pattern`` past offset ``after``."""
        regex = re.compile(pattern)
        found: list[re.Match[str]] = []

        def seen() -> bool:
            match = regex.search(self.log_text(), after)
            if match:
                found.append(match)
            return match is not None

        try:
            wait_until(seen, timeout, f"{pattern!r} in {self.log_path}")
        except TimeoutError as exc:
            raise AssertionError(self._failure(str(exc))) from exc
        return found[0]

    def _failure(self, what: str) -> str:
        code = self._proc.poll() if self._proc else None
        return (
            f"{what} (exit status {code}, pid {self.pid}, config {self.conf_path})\n"
            f"--- {self.console_path.name}\n{tail(self.console_path)}\n"
            f"--- {self.log_path.name}\n{tail(self.log_path)}"
        )

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"<Mosquitto {self.url} tls_port={self.tls_port} {state} dir={self.dir}>"
