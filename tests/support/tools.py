"""Small helpers shared by the broker and sound-server support: required programs,
free ports, polling, file ownership for daemons that drop root, and log tails."""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import socket
import stat
import subprocess
import time
from collections.abc import Callable
from pathlib import Path


class MissingProgram(RuntimeError):
    """A program the system tests run is not installed; the message names the package."""


def require_program(name: str, package: str, *, path: str | None = None) -> str:
    """The full path of ``name`` (or ``path`` when given and executable).

    Raises :class:`MissingProgram` naming the Debian package to install.
    """
    if path is not None:
        if os.access(path, os.X_OK):
            return path
        found = None
    else:
        found = shutil.which(name, path=f"{os.environ.get('PATH', '')}:/usr/sbin:/sbin")
    if found is None:
        raise MissingProgram(
            f"{path or name} not found: the system tests need it; "
            f"install the Debian package {package!r} (apt-get install {package})"
        )
    return found


def free_ports(count: int, host: str = "127.0.0.1") -> list[int]:
    """``count`` distinct TCP ports on ``host`` that are free now (the kernel picks them;
    all are held at once, so none is handed out twice)."""
    with contextlib.ExitStack() as stack:
        socks = [stack.enter_context(socket.socket()) for _ in range(count)]
        for sock in socks:
            sock.bind((host, 0))
        return [int(sock.getsockname()[1]) for sock in socks]


def port_open(host: str, port: int, timeout: float = 0.2) -> bool:
    """Whether a TCP connection to ``host:port`` is accepted."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def wait_until(
    check: Callable[[], bool], timeout: float, what: str, interval: float = 0.02
) -> None:
    """Poll ``check`` until it is true; raise :class:`TimeoutError` naming ``what``."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() >= deadline:
            raise TimeoutError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(interval)


def tail(path: Path, lines: int = 30) -> str:
    """The last ``lines`` lines of a text file, or a note that it is missing."""
    try:
        text = path.read_text(errors="replace")
    except OSError as exc:
        return f"({path}: {exc.strerror})"
    return "\n".join(text.splitlines()[-lines:])


def daemon_user(name: str) -> pwd.struct_passwd | None:
    """The account a daemon started as root switches to; None when we are not root."""
    if os.geteuid() != 0:
        return None
    try:
        return pwd.getpwnam(name)
    except KeyError as exc:
        raise MissingProgram(
            f"user {name!r} not found: it comes with the Debian package that ships the daemon"
        ) from exc


def give_to(path: Path, user: pwd.struct_passwd | None, mode: int) -> Path:
    """Set ``path``'s mode and, when ``user`` is given, make it theirs."""
    if user is not None:
        os.chown(path, user.pw_uid, user.pw_gid)
    path.chmod(mode)
    return path


def check_reachable(path: Path, user: pwd.struct_passwd | None) -> None:
    """Raise if ``user`` cannot walk down to ``path`` (e.g. under a 0700 pytest temp dir)."""
    if user is None:
        return
    for parent in reversed(path.resolve().parents):
        info = parent.stat()
        if info.st_uid == user.pw_uid or info.st_mode & stat.S_IXOTH:
            continue
        if info.st_gid == user.pw_gid and info.st_mode & stat.S_IXGRP:
            continue
        raise PermissionError(
            f"{parent} is not searchable by user {user.pw_name!r}, which the daemon runs as: "
            "put its folder elsewhere (the default temp folder works)"
        )


def stop_process(
    proc: subprocess.Popen[bytes] | None, sig: int = signal.SIGTERM, timeout: float = 5.0
) -> None:
    """Send ``sig`` and wait up to ``timeout`` for the exit, then SIGKILL; nothing if gone."""
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(sig)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5.0)


def remove_tree(path: Path) -> None:
    """Remove a folder and everything in it; a folder already gone is fine."""
    with contextlib.suppress(FileNotFoundError):
        shutil.rmtree(path)
