"""bellad's side of the systemd protocols: readiness, watchdog and journal logging.

Under systemd (``Type=notify``), bellad tells the service manager when it is
ready, what it is doing (``STATUS=``, shown by ``systemctl status``), that it
is still alive (``WATCHDOG=1``), and when it reloads or stops. It logs to the
journal with structured fields when its stderr is connected to journald.

The Python package ``systemd-python`` is optional (``pip install
'bellad[systemd]'``) and imported only when needed: outside systemd bellad
runs without it, and under systemd a missing package is reported as a
:class:`~bellad.errors.MissingDependencyError`.
"""

from __future__ import annotations

import importlib
import logging
import os
import re
import sys
import time
from collections.abc import Callable, Mapping
from types import ModuleType
from typing import Any, Protocol

from bellad.errors import ConfigError, MissingDependencyError

#: the logger configured by :func:`setup_logging`; bellad's modules log below it
LOGGER_NAME = "bellad"
#: ``SYSLOG_IDENTIFIER=`` of journal entries (``journalctl -t bellad``)
SYSLOG_IDENTIFIER = "bellad"

_PACKAGE = "systemd-python"
_EXTRA = "systemd"
_FORMAT_WITH_TIME = "%(asctime)s %(levelname)s %(name)s: %(message)s"
_FORMAT_UNDER_JOURNALD = "%(levelname)s %(name)s: %(message)s"
# journal field names: upper-case letters, digits and "_", at most 64 characters
_FIELD_CHARS = re.compile(r"[^A-Z0-9_]+")
_MAX_FIELD_NAME = 64
# marks the handlers installed by setup_logging, so that a second call replaces them
_HANDLER_MARK = "_bellad_systemd_handler"

log = logging.getLogger(__name__)


def _import_systemd(module: str, purpose: str) -> ModuleType:
    """Import ``systemd.<module>`` or explain which package is missing."""
    try:
        return importlib.import_module(f"systemd.{module}")
    except ImportError as exc:
        raise MissingDependencyError(_PACKAGE, _EXTRA, purpose) from exc


def _one_line(text: str) -> str:
    """Flatten ``text`` for a ``KEY=value`` notification line."""
    return " ".join(text.split())


class Notifier(Protocol):
    """What bellad tells its service manager (see ``sd_notify(3)``)."""

    def ready(self, status: str) -> None:
        """Start-up (or a reload) is complete; ``status`` describes the state."""

    def status(self, text: str) -> None:
        """Update the one-line status shown by ``systemctl status``."""

    def watchdog(self) -> None:
        """Keep-alive ping; see :func:`watchdog_interval` for how often."""

    def stopping(self, status: str) -> None:
        """bellad has begun to shut down."""

    def reloading(self, status: str) -> None:
        """bellad has begun to reload its configuration; call :meth:`ready` when done."""


class NullNotifier:
    """A :class:`Notifier` that does nothing: bellad is not run by systemd."""

    def ready(self, status: str) -> None:
        """Do nothing."""

    def status(self, text: str) -> None:
        """Do nothing."""

    def watchdog(self) -> None:
        """Do nothing."""

    def stopping(self, status: str) -> None:
        """Do nothing."""

    def reloading(self, status: str) -> None:
        """Do nothing."""


class SystemdNotifier:
    """A :class:`Notifier` that sends ``sd_notify`` messages to ``$NOTIFY_SOCKET``.

    ``send`` defaults to ``systemd.daemon.notify``; it takes the message
    (newline-separated ``KEY=value`` lines) and returns whether it was sent.
    """

    def __init__(self, send: Callable[[str], bool] | None = None) -> None:
        if send is None:
            daemon = _import_systemd("daemon", "Running under systemd (sd_notify)")
            send = daemon.notify
        self._send = send
        self._warned = False

    def _notify(self, *lines: str) -> None:
        message = "\n".join(lines)
        if not self._send(message) and not self._warned:
            # not fatal: systemd will time out or kill bellad and say so
            self._warned = True
            log.warning("could not send %r to the service manager", message)

    def ready(self, status: str) -> None:
        """Send ``READY=1`` with a status line."""
        self._notify("READY=1", f"STATUS={_one_line(status)}")

    def status(self, text: str) -> None:
        """Send ``STATUS=``."""
        self._notify(f"STATUS={_one_line(text)}")

    def watchdog(self) -> None:
        """Send ``WATCHDOG=1``."""
        self._notify("WATCHDOG=1")

    def stopping(self, status: str) -> None:
        """Send ``STOPPING=1`` with a status line."""
        self._notify("STOPPING=1", f"STATUS={_one_line(status)}")

    def reloading(self, status: str) -> None:
        """Send ``RELOADING=1`` with ``MONOTONIC_USEC=`` and a status line.

        systemd 253 and later (``Type=notify-reload``) require the timestamp;
        older versions ignore it.
        """
        usec = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        self._notify("RELOADING=1", f"MONOTONIC_USEC={usec}", f"STATUS={_one_line(status)}")


def make_notifier(environ: Mapping[str, str] | None = None) -> Notifier:
    """Return a systemd-backed notifier under systemd, else a no-op one.

    Raises :class:`~bellad.errors.MissingDependencyError` when
    ``$NOTIFY_SOCKET`` is set but systemd-python is not installed.
    """
    env = os.environ if environ is None else environ
    if env.get("NOTIFY_SOCKET"):
        return SystemdNotifier()
    return NullNotifier()


def watchdog_interval(
    environ: Mapping[str, str] | None = None, pid: int | None = None
) -> float | None:
    """Seconds between watchdog pings, or ``None`` when no watchdog is armed.

    systemd sets ``$WATCHDOG_USEC`` (from ``WatchdogSec=``) and
    ``$WATCHDOG_PID``; the variables are meant for us only when the pid is
    ours (``pid``, default: this process). bellad pings at half the timeout,
    as ``sd_watchdog_enabled(3)`` recommends.
    """
    env = os.environ if environ is None else environ
    usec_text = env.get("WATCHDOG_USEC")
    if not usec_text:
        return None
    pid_text = env.get("WATCHDOG_PID")
    if pid_text:
        try:
            watchdog_pid = int(pid_text)
        except ValueError:
            log.warning("ignoring the watchdog: WATCHDOG_PID=%r is not a number", pid_text)
            return None
        if watchdog_pid != (os.getpid() if pid is None else pid):
            return None
    try:
        usec = int(usec_text)
    except ValueError:
        log.warning("ignoring the watchdog: WATCHDOG_USEC=%r is not a number", usec_text)
        return None
    if usec <= 0:
        return None
    return usec / 2 / 1_000_000


def stderr_is_journal(environ: Mapping[str, str] | None = None, fd: int = 2) -> bool:
    """Whether ``fd`` (stderr) is connected to journald.

    systemd sets ``$JOURNAL_STREAM`` to ``DEVICE:INODE`` of the stream it
    connects to stdout/stderr; it only counts if ``fd`` is still that stream.
    """
    env = os.environ if environ is None else environ
    value = env.get("JOURNAL_STREAM", "")
    device, sep, inode = value.partition(":")
    if not sep:
        return False
    try:
        expected = (int(device), int(inode))
        st = os.fstat(fd)
    except (ValueError, OSError):
        return False
    return (st.st_dev, st.st_ino) == expected


def journal_fields(record: logging.LogRecord) -> dict[str, str]:
    """bellad's structured journal fields for a log record.

    Taken from ``extra={...}``: ``site`` -> ``BELLAD_SITE``, ``utterance_id``
    -> ``BELLAD_UTTERANCE_ID``, and ``timings`` (stage name -> seconds) ->
    ``BELLAD_<STAGE>_MS`` in whole milliseconds, e.g. ``{"asr": 0.8123}`` ->
    ``BELLAD_ASR_MS=812``. Timings that are not numbers are left out.
    """
    fields: dict[str, str] = {}
    site = getattr(record, "site", None)
    if site is not None:
        fields["BELLAD_SITE"] = str(site)
    utterance_id = getattr(record, "utterance_id", None)
    if utterance_id is not None:
        fields["BELLAD_UTTERANCE_ID"] = str(utterance_id)
    timings = getattr(record, "timings", None)
    if isinstance(timings, Mapping):
        for stage, seconds in timings.items():
            if isinstance(seconds, bool) or not isinstance(seconds, int | float):
                continue
            stage_name = _FIELD_CHARS.sub("_", str(stage).upper()).strip("_")
            if not stage_name:
                continue
            name = f"BELLAD_{stage_name}"[: _MAX_FIELD_NAME - 3] + "_MS"
            fields[name] = str(round(seconds * 1000))
    return fields


def _journal_handler_class() -> type[logging.Handler]:
    """Build the journal handler class (needs systemd-python)."""
    journal = _import_systemd("journal", "Logging to the systemd journal")

    class BelladJournalHandler(journal.JournalHandler):  # type: ignore[name-defined]
        """``JournalHandler`` that sends bellad's structured fields and no others."""

        def __init__(self) -> None:
            super().__init__(SYSLOG_IDENTIFIER=SYSLOG_IDENTIFIER)

        def emit(self, record: logging.LogRecord) -> None:
            try:
                fields: dict[str, Any] = {
                    "PRIORITY": str(self.map_priority(record.levelno)),
                    "SYSLOG_IDENTIFIER": SYSLOG_IDENTIFIER,
                    "LOGGER": record.name,
                    "THREAD_NAME": record.threadName,
                }
                fields.update(journal_fields(record))
                self.send(
                    self.format(record),
                    CODE_FILE=record.pathname,
                    CODE_LINE=record.lineno,
                    CODE_FUNC=record.funcName,
                    **fields,
                )
            except Exception:
                self.handleError(record)

    return BelladJournalHandler


def _level_number(level: str) -> int:
    number = logging.getLevelName(level.strip().upper())
    if not isinstance(number, int):
        raise ConfigError(
            f"unknown log level {level!r}: use one of debug, info, warning, error, critical"
        )
    return number


def setup_logging(level: str, *, force_journal: bool | None = None) -> None:
    """Configure the ``bellad`` logger (never the root logger).

    With ``force_journal=None``, bellad logs to the journal when its stderr
    is connected to journald (see :func:`stderr_is_journal`), else to stderr
    as ``time LEVEL logger: message``. ``True`` forces the journal (note that
    the journal handler silently drops everything when journald is not
    running), ``False`` forces stderr. Under journald without systemd-python,
    bellad logs to stderr without the time (journald adds it).

    Calling it again replaces the handlers installed by the previous call.
    """
    number = _level_number(level)
    under_journald = stderr_is_journal()
    use_journal = under_journald if force_journal is None else force_journal

    handler: logging.Handler
    if use_journal:
        try:
            handler = _journal_handler_class()()
        except MissingDependencyError:
            if force_journal:
                raise
            handler = logging.StreamHandler(sys.stderr)
            handler.setFormatter(logging.Formatter(_FORMAT_UNDER_JOURNALD))
        else:
            handler.setFormatter(logging.Formatter("%(message)s"))
    else:
        handler = logging.StreamHandler(sys.stderr)
        fmt = _FORMAT_UNDER_JOURNALD if under_journald else _FORMAT_WITH_TIME
        handler.setFormatter(logging.Formatter(fmt))
    setattr(handler, _HANDLER_MARK, True)

    logger = logging.getLogger(LOGGER_NAME)
    for old in list(logger.handlers):
        if getattr(old, _HANDLER_MARK, False):
            logger.removeHandler(old)
            old.close()
    logger.addHandler(handler)
    logger.setLevel(number)
