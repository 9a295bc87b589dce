"""A throwaway Debian bookworm booted under systemd-nspawn, for system tests.

bellad's service unit, its hardening and its install script only show their
worth under a real systemd (PID 1 of the test machine is not systemd, and a
chroot does not apply a hardened unit). This harness

* builds once, and caches outside the repository, a minimal Debian root
  (``debootstrap --variant=minbase``) with systemd and everything
  ``scripts/install.sh`` needs already installed, so that a test's run of the
  install script is real but fast;
* gives every :class:`Container` a fresh copy of it (an overlay mount: the
  cached root is never written to);
* boots it with ``systemd-nspawn --boot``, waits for its systemd, runs
  commands inside (``nsenter`` into its namespaces) and always powers it off
  and cleans up.

Cache: ``$BELLAD_CONTAINER_CACHE``, else ``~/.cache/bellad-test``; delete it
to rebuild. ``$BELLAD_DEBIAN_MIRROR`` overrides the Debian mirror. pip's
settings (``PIP_*`` variables, such as ``PIP_CERT`` and ``PIP_FIND_LINKS``)
are passed to commands run inside, and the local files and directories they
name are bind-mounted read-only at the same paths; pip's cache is kept in the
harness cache between runs. Needs root, and the Debian packages debootstrap,
systemd-container and util-linux.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import io
import json
import os
import secrets
import shlex
import shutil
import signal
import subprocess
import tarfile
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

SUITE = "bookworm"
DEFAULT_MIRROR = "http://deb.debian.org/debian"
#: installed by debootstrap: enough to boot and to create a venv
BASE_PACKAGES = ("systemd", "dbus", "python3", "python3-venv")
#: installed through apt in a chroot afterwards: what scripts/install.sh needs
INSTALL_PACKAGES = (
    "python3-dev",
    "gcc",
    "pkg-config",
    "libportaudio2",
    "portaudio19-dev",
    "libsystemd-dev",
    "procps",
)
#: bump to rebuild cached images after a change to how they are built
IMAGE_REVISION = 1
#: PATH for commands run inside
CONTAINER_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

_COMPLETE_MARK = ".bellad-image-complete"
_TOOLS = {
    "debootstrap": "debootstrap",
    "systemd-nspawn": "systemd-container",
    "nsenter": "util-linux",
    "mount": "mount",
    "umount": "mount",
    "unshare": "util-linux",
    "chroot": "coreutils",
}


class ContainerError(RuntimeError):
    """The container could not be built, booted, used or cleaned up."""


@dataclass(frozen=True)
class Completed:
    """The outcome of a command run inside a container."""

    args: tuple[str, ...]
    returncode: int
    stdout: str
    stderr: str

    def check(self) -> Completed:
        """Return ``self`` if the command succeeded, else raise with its output."""
        if self.returncode != 0:
            raise ContainerError(
                f"command {shlex.join(self.args)!r} exited with {self.returncode}\n"
                f"--- stdout\n{self.stdout}\n--- stderr\n{self.stderr}"
            )
        return self


def tool(name: str) -> str:
    """Path of a host tool the harness needs, or an error naming its Debian package."""
    path = shutil.which(name, path=os.environ.get("PATH", "") + ":/usr/sbin:/sbin")
    if path is None:
        package = _TOOLS.get(name, name)
        raise ContainerError(f"{name} not found: install the Debian package {package}")
    return path


def require_root() -> None:
    """Fail unless running as root (debootstrap, mount and nspawn need it)."""
    if os.geteuid() != 0:
        raise ContainerError("container system tests need root (debootstrap, systemd-nspawn)")


def cache_dir() -> Path:
    """The harness cache: ``$BELLAD_CONTAINER_CACHE`` or ``~/.cache/bellad-test``."""
    configured = os.environ.get("BELLAD_CONTAINER_CACHE")
    path = Path(configured) if configured else Path.home() / ".cache" / "bellad-test"
    path.mkdir(parents=True, exist_ok=True)
    return path


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``path`` (builds by parallel test runs wait)."""
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _run_host(args: Sequence[str], *, what: str, timeout: float = 900) -> None:
    """Run a host command for an image build; raise with its output on failure."""
    proc = subprocess.run(
        list(args), capture_output=True, text=True, errors="replace", timeout=timeout, check=False
    )
    if proc.returncode != 0:
        raise ContainerError(
            f"{what} failed ({shlex.join(args)}: exit {proc.returncode})\n"
            f"{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}"
        )


def image_key(packages: Sequence[str] = INSTALL_PACKAGES) -> str:
    """The cache key of an image: suite, mirror, packages and build revision."""
    mirror = os.environ.get("BELLAD_DEBIAN_MIRROR", DEFAULT_MIRROR)
    spec = json.dumps([SUITE, mirror, BASE_PACKAGES, sorted(packages), IMAGE_REVISION])
    return hashlib.sha256(spec.encode()).hexdigest()[:12]


def base_image(packages: Sequence[str] = INSTALL_PACKAGES) -> Path:
    """The cached Debian root, built on first use (debootstrap, then chroot apt).

    The returned directory must not be modified: containers use it as the
    read-only lower layer of an overlay.
    """
    require_root()
    images = cache_dir() / "images"
    images.mkdir(exist_ok=True)
    dest = images / f"{SUITE}-{image_key(packages)}"
    if (dest / _COMPLETE_MARK).exists():
        return dest
    with _locked(cache_dir() / ".lock"):
        if (dest / _COMPLETE_MARK).exists():
            return dest
        build = images / f".build-{dest.name}-{os.getpid()}"
        shutil.rmtree(dest, ignore_errors=True)
        shutil.rmtree(build, ignore_errors=True)
        try:
            _build_image(build, packages)
            build.rename(dest)
        finally:
            shutil.rmtree(build, ignore_errors=True)
    return dest


def _build_image(root: Path, packages: Sequence[str]) -> None:
    mirror = os.environ.get("BELLAD_DEBIAN_MIRROR", DEFAULT_MIRROR)
    _run_host(
        [
            tool("debootstrap"),
            "--variant=minbase",
            f"--include={','.join(BASE_PACKAGES)}",
            SUITE,
            str(root),
            mirror,
        ],
        what="debootstrap",
    )
    # apt in a chroot, with /proc mounted in a private mount namespace that
    # disappears with the command, whatever happens to it
    apt = (
        'set -e; mount -t proc proc "$1/proc"; '
        'exec chroot "$1" /usr/bin/env -i DEBIAN_FRONTEND=noninteractive '
        f"PATH={CONTAINER_PATH} sh -c "
        + shlex.quote(
            "apt-get update -q && apt-get install -y -q --no-install-recommends "
            + shlex.join(packages)
            + " && apt-get clean"
        )
    )
    _run_host(
        [tool("unshare"), "--mount", "--propagation=private", "sh", "-c", apt, "sh", str(root)],
        what="apt-get install in the image",
    )
    # debootstrap leaves no /etc/hosts: name resolution of localhost needs one
    (root / "etc" / "hosts").write_text("127.0.0.1 localhost\n::1 localhost ip6-localhost\n")
    (root / "etc" / "hostname").write_text("bellad-test\n")
    (root / _COMPLETE_MARK).write_text(f"{SUITE} {shlex.join(packages)}\n")


def pip_environment(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The host's ``PIP_*`` settings, to pass to commands run inside."""
    env = os.environ if environ is None else environ
    return {key: value for key, value in env.items() if key.startswith("PIP_")}


def pip_paths(environ: Mapping[str, str] | None = None) -> list[Path]:
    """Local files and directories named by ``PIP_*`` settings (cert, find-links...)."""
    paths: list[Path] = []
    for value in pip_environment(environ).values():
        for token in value.split():
            candidate = token.removeprefix("file://")
            if not candidate.startswith("/"):
                continue
            path = Path(candidate)
            if path.exists() and path not in paths:
                paths.append(path)
    return paths


class Container:
    """A booted, disposable copy of :func:`base_image`; use it as a context manager.

    ``binds_ro`` maps paths inside to host paths mounted read-only there
    (e.g. ``{"/src": checkout}``). Commands run as root inside, with a clean
    environment: ``PATH``, ``HOME=/root``, ``LANG=C.UTF-8`` and the host's
    ``PIP_*`` settings.
    """

    def __init__(self, image: Path, *, binds_ro: Mapping[str, Path] | None = None) -> None:
        self.image = image
        self.binds_ro = dict(binds_ro or {})
        self.machine = f"bellad-test-{secrets.token_hex(4)}"
        self.root: Path | None = None
        self.boot_seconds: float | None = None
        self._workdir: Path | None = None
        self._overlay = False
        self._nspawn: subprocess.Popen[bytes] | None = None
        self._console: io.BufferedWriter | None = None
        self._leader: int | None = None

    # lifecycle

    def __enter__(self) -> Container:
        try:
            self.start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def prepare(self) -> Path:
        """Make the fresh root without booting it, and return it (host path).

        For work on the root before the first boot, e.g. through a chroot;
        :meth:`start` then boots this root. :meth:`close` removes it either way.
        """
        require_root()
        if self.root is None:
            self._workdir = Path(tempfile.mkdtemp(prefix=f"{self.machine}-"))
            self.root = self._workdir / "root"
            self._make_root()
        return self.root

    def start(self, timeout: float = 90) -> None:
        """Make a fresh root (unless :meth:`prepare` made it), boot it, wait for its systemd."""
        started = time.monotonic()
        self.prepare()
        assert self._workdir is not None
        pip_cache = cache_dir() / "pip"
        pip_cache.mkdir(exist_ok=True)
        args = [
            tool("systemd-nspawn"),
            "--quiet",
            f"--directory={self.root}",
            f"--machine={self.machine}",
            "--boot",
            "--register=no",
            "--keep-unit",
            "--console=pipe",
            f"--bind={pip_cache}:/root/.cache/pip",
        ]
        for inside, host in self.binds_ro.items():
            args.append(f"--bind-ro={Path(host).resolve()}:{inside}")
        for path in pip_paths():
            args.append(f"--bind-ro={path}")
        self._console = (self._workdir / "console.log").open("wb")
        self._nspawn = subprocess.Popen(
            args,
            stdin=subprocess.DEVNULL,
            stdout=self._console,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = started + timeout
        self._leader = self._wait_for_leader(deadline)
        self._wait_until_running(deadline)
        self.boot_seconds = time.monotonic() - started

    def _make_root(self) -> None:
        assert self._workdir is not None and self.root is not None
        upper, work = self._workdir / "upper", self._workdir / "work"
        for path in (self.root, upper, work):
            path.mkdir()
        options = f"lowerdir={self.image},upperdir={upper},workdir={work}"
        proc = subprocess.run(
            [tool("mount"), "-t", "overlay", "overlay", "-o", options, str(self.root)],
            capture_output=True,
            text=True,
            check=False,
        )
        if proc.returncode == 0:
            self._overlay = True
            return
        # no overlayfs here: a full copy (slower, same result)
        self.root.rmdir()
        _run_host(
            ["cp", "-a", "--reflink=auto", str(self.image), str(self.root)],
            what="copying the image",
        )

    def _wait_for_leader(self, deadline: float) -> int:
        """The pid of the container's systemd (a child of systemd-nspawn)."""
        assert self._nspawn is not None
        pid = self._nspawn.pid
        while time.monotonic() < deadline:
            self._fail_if_exited("booting")
            with contextlib.suppress(OSError):
                children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
                for child in children:
                    if Path(f"/proc/{child}/comm").read_text().strip() == "systemd":
                        return int(child)
            time.sleep(0.05)
        raise ContainerError(f"systemd did not start in the container\n{self.console_log()}")

    def _wait_until_running(self, deadline: float) -> None:
        state = ""
        while time.monotonic() < deadline:
            self._fail_if_exited("booting")
            state = self.run(["systemctl", "is-system-running"], timeout=30).stdout.strip()
            if state in ("running", "degraded"):
                return
            time.sleep(0.1)
        raise ContainerError(
            f"the container's systemd did not finish starting up (state {state!r})\n"
            f"{self.console_log()}"
        )

    def _fail_if_exited(self, doing: str) -> None:
        if self._nspawn is not None and self._nspawn.poll() is not None:
            raise ContainerError(
                f"systemd-nspawn exited with {self._nspawn.returncode} while {doing}\n"
                f"{self.console_log()}"
            )

    @property
    def leader(self) -> int:
        """The host pid of the container's systemd, e.g. for ``nsenter --target``."""
        if self._leader is None:
            raise ContainerError("the container is not running")
        return self._leader

    def console_log(self) -> str:
        """What the container printed on its console (systemd-nspawn's output)."""
        if self._workdir is None:
            return ""
        with contextlib.suppress(OSError):
            return (self._workdir / "console.log").read_text(errors="replace")[-8000:]
        return ""

    def close(self, timeout: float = 30) -> None:
        """Power the container off (kill it if it does not stop) and remove its root."""
        try:
            self._stop(timeout)
        finally:
            try:
                self._remove_root()
            finally:
                if self._console is not None:
                    self._console.close()
                    self._console = None

    def _stop(self, timeout: float) -> None:
        proc = self._nspawn
        if proc is None:
            return
        try:
            if proc.poll() is None:
                # systemd-nspawn turns SIGTERM into an orderly shutdown of the container
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(timeout)
                except subprocess.TimeoutExpired:
                    if self._leader is not None:
                        with contextlib.suppress(ProcessLookupError):
                            os.kill(self._leader, signal.SIGKILL)
                    proc.kill()
                    proc.wait(10)
        finally:
            self._nspawn = None
            self._leader = None

    def _remove_root(self) -> None:
        workdir = self._workdir
        if workdir is None:
            return
        if self._overlay and self.root is not None:
            umount = tool("umount")
            if subprocess.run([umount, str(self.root)], check=False).returncode != 0:
                subprocess.run([umount, "--lazy", str(self.root)], check=False)
            self._overlay = False
        shutil.rmtree(workdir, ignore_errors=True)
        self._workdir = None
        self.root = None

    # commands

    def run(
        self,
        cmd: Sequence[str] | str,
        *,
        input: bytes | str | None = None,
        env: Mapping[str, str] | None = None,
        user: str | None = None,
        timeout: float = 300,
    ) -> Completed:
        """Run ``cmd`` inside (a string goes to ``sh -c``) and return its result.

        ``env`` adds to the clean environment; ``user`` runs it as that user.
        """
        if self._leader is None:
            raise ContainerError("the container is not running")
        argv = ["sh", "-c", cmd] if isinstance(cmd, str) else list(cmd)
        environment = {
            "PATH": CONTAINER_PATH,
            "HOME": "/root",
            "LANG": "C.UTF-8",
            **pip_environment(),
            **(env or {}),
        }
        if user is not None:
            argv = ["runuser", "-u", user, "--", *argv]
        full = [
            tool("nsenter"),
            f"--target={self._leader}",
            "--mount",
            "--uts",
            "--ipc",
            "--net",
            "--pid",
            "--cgroup",
            "--root",
            "--wd",
            "--",
            "/usr/bin/env",
            "-i",
            *(f"{key}={value}" for key, value in environment.items()),
            *argv,
        ]
        data = input.encode() if isinstance(input, str) else input
        try:
            proc = subprocess.run(
                full,
                input=data,
                stdin=None if data is not None else subprocess.DEVNULL,
                capture_output=True,
                timeout=timeout,
                check=False,
            )
        except subprocess.TimeoutExpired as exc:
            raise ContainerError(f"command {argv!r} timed out after {timeout} s") from exc
        return Completed(
            args=tuple(argv),
            returncode=proc.returncode,
            stdout=proc.stdout.decode(errors="replace"),
            stderr=proc.stderr.decode(errors="replace"),
        )

    def check(
        self,
        cmd: Sequence[str] | str,
        *,
        input: bytes | str | None = None,
        env: Mapping[str, str] | None = None,
        user: str | None = None,
        timeout: float = 300,
    ) -> Completed:
        """:meth:`run` that raises :class:`ContainerError` when ``cmd`` fails."""
        return self.run(cmd, input=input, env=env, user=user, timeout=timeout).check()

    def write_file(self, path: str, data: bytes | str, mode: int = 0o644) -> None:
        """Create or replace the file ``path`` inside (and its parent directories)."""
        script = 'umask 022; mkdir -p "$(dirname "$1")" && cat > "$1" && chmod "$2" "$1"'
        self.check(["sh", "-c", script, "sh", path, format(mode, "o")], input=data)

    def copy_in(self, source: Path, dest: str) -> None:
        """Copy a host file or directory tree to ``dest`` inside."""
        if source.is_dir():
            buffer = io.BytesIO()
            with tarfile.open(fileobj=buffer, mode="w") as tar:
                tar.add(source, arcname=".")
            self.check(["mkdir", "-p", dest])
            self.check(["tar", "-x", "-f", "-", "-C", dest], input=buffer.getvalue())
        else:
            self.write_file(dest, source.read_bytes(), source.stat().st_mode & 0o7777)

    def journal(self, unit: str, lines: int = 200) -> str:
        """The last ``lines`` journal lines of ``unit`` (for failure messages)."""
        result = self.run(["journalctl", "--no-pager", "-o", "cat", "-n", str(lines), "-u", unit])
        return result.stdout + result.stderr
