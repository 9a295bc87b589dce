"""bellad.systemd: sd_notify messages, the watchdog interval and journal logging.

The notification tests bind a real AF_UNIX datagram socket, point
``$NOTIFY_SOCKET`` at it and read what ``systemd.daemon.notify()`` sends,
verbatim. Journal logging is tested up to the handler's sender (the host has
no journald); tests/system/test_container.py checks it against a real one.
"""

from __future__ import annotations

import importlib
import logging
import os
import re
import socket
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from bellad import systemd as bsd
from bellad.errors import ConfigError, MissingDependencyError


@pytest.fixture
def notify_socket(monkeypatch: pytest.MonkeyPatch) -> Iterator[socket.socket]:
    """A bound AF_UNIX datagram socket, announced in ``$NOTIFY_SOCKET``."""
    # a short directory: socket paths are limited to 107 bytes
    directory = Path(tempfile.mkdtemp(prefix="bellad-notify-"))
    path = directory / "notify"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    try:
        sock.bind(str(path))
        sock.settimeout(5)
        monkeypatch.setenv("NOTIFY_SOCKET", str(path))
        yield sock
    finally:
        sock.close()
        path.unlink(missing_ok=True)
        directory.rmdir()


def received(sock: socket.socket) -> str:
    """The next datagram on ``sock``, as text."""
    return sock.recv(4096).decode()


@pytest.fixture
def clean_bellad_logger() -> Iterator[logging.Logger]:
    """Restore the ``bellad`` logger (and check the root logger is left alone)."""
    logger = logging.getLogger(bsd.LOGGER_NAME)
    root = logging.getLogger()
    saved = (list(logger.handlers), logger.level, logger.propagate)
    root_saved = (list(root.handlers), root.level)
    try:
        yield logger
    finally:
        for handler in logger.handlers:
            if handler not in saved[0]:
                handler.close()
        logger.handlers[:] = saved[0]
        logger.setLevel(saved[1])
        logger.propagate = saved[2]
        assert (list(root.handlers), root.level) == root_saved, "the root logger was changed"


def hide_systemd_python(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make ``import systemd.daemon`` / ``systemd.journal`` fail as if not installed."""
    for name in ("systemd", "systemd.daemon", "systemd.journal"):
        monkeypatch.setitem(sys.modules, name, None)


# notifications


def test_make_notifier_without_notify_socket_is_a_no_op(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    notifier = bsd.make_notifier()
    assert isinstance(notifier, bsd.NullNotifier)
    notifier.ready("ready")
    notifier.status("status")
    notifier.watchdog()
    notifier.reloading("reloading")
    notifier.stopping("stopping")


def test_make_notifier_under_systemd_uses_systemd_python(
    notify_socket: socket.socket,
) -> None:
    assert isinstance(bsd.make_notifier(), bsd.SystemdNotifier)


def test_ready_sends_ready_and_status(notify_socket: socket.socket) -> None:
    bsd.make_notifier().ready("listening on default, model small-int8")
    assert received(notify_socket) == "READY=1\nSTATUS=listening on default, model small-int8"


def test_status_sends_status(notify_socket: socket.socket) -> None:
    bsd.make_notifier().status("loading Whisper model")
    assert received(notify_socket) == "STATUS=loading Whisper model"


def test_status_is_flattened_to_one_line(notify_socket: socket.socket) -> None:
    bsd.make_notifier().status("broker down:\n  connection refused\n")
    assert received(notify_socket) == "STATUS=broker down: connection refused"


def test_watchdog_sends_watchdog(notify_socket: socket.socket) -> None:
    bsd.make_notifier().watchdog()
    assert received(notify_socket) == "WATCHDOG=1"


def test_stopping_sends_stopping_and_status(notify_socket: socket.socket) -> None:
    bsd.make_notifier().stopping("shutting down")
    assert received(notify_socket) == "STOPPING=1\nSTATUS=shutting down"


def test_reloading_sends_monotonic_timestamp(notify_socket: socket.socket) -> None:
    before = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    bsd.make_notifier().reloading("reloading configuration")
    after = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    match = re.fullmatch(
        r"RELOADING=1\nMONOTONIC_USEC=(\d+)\nSTATUS=reloading configuration",
        received(notify_socket),
    )
    assert match is not None
    assert before <= int(match.group(1)) <= after


def test_messages_arrive_in_order(notify_socket: socket.socket) -> None:
    notifier = bsd.make_notifier()
    notifier.status("loading")
    notifier.ready("ready")
    notifier.watchdog()
    assert [received(notify_socket) for _ in range(3)] == [
        "STATUS=loading",
        "READY=1\nSTATUS=ready",
        "WATCHDOG=1",
    ]


def test_missing_systemd_python_under_systemd_names_the_extra(
    notify_socket: socket.socket, monkeypatch: pytest.MonkeyPatch
) -> None:
    hide_systemd_python(monkeypatch)
    with pytest.raises(MissingDependencyError) as caught:
        bsd.make_notifier()
    assert caught.value.package == "systemd-python"
    assert caught.value.extra == "systemd"
    assert "Running under systemd (sd_notify)" in str(caught.value)
    assert "pip install 'bellad[systemd]'" in str(caught.value)


def test_missing_systemd_python_outside_systemd_is_fine(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    hide_systemd_python(monkeypatch)
    assert isinstance(bsd.make_notifier(), bsd.NullNotifier)


def test_failed_send_is_logged_once(caplog: pytest.LogCaptureFixture) -> None:
    sent: list[str] = []

    def refuse(message: str) -> bool:
        sent.append(message)
        return False

    notifier = bsd.SystemdNotifier(send=refuse)
    with caplog.at_level(logging.WARNING, logger="bellad.systemd"):
        notifier.watchdog()
        notifier.watchdog()
    assert sent == ["WATCHDOG=1", "WATCHDOG=1"]
    assert len(caplog.records) == 1
    assert "WATCHDOG=1" in caplog.records[0].getMessage()


# watchdog interval


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        ({}, None),
        ({"WATCHDOG_USEC": "30000000"}, 15.0),
        ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "4242"}, 15.0),
        ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "1"}, None),
        ({"WATCHDOG_USEC": "1"}, 0.0000005),
        ({"WATCHDOG_USEC": "0"}, None),
        ({"WATCHDOG_USEC": "-5"}, None),
        ({"WATCHDOG_USEC": ""}, None),
        ({"WATCHDOG_USEC": "30s"}, None),
        ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "me"}, None),
        ({"WATCHDOG_PID": "4242"}, None),
    ],
)
def test_watchdog_interval(environ: dict[str, str], expected: float | None) -> None:
    assert bsd.watchdog_interval(environ, pid=4242) == expected


def test_watchdog_interval_defaults_to_this_process(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WATCHDOG_USEC", "20000000")
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid()))
    assert bsd.watchdog_interval() == 10.0
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid() + 1))
    assert bsd.watchdog_interval() is None


# is stderr the journal?


def stream_id(fd: int) -> str:
    """``DEVICE:INODE`` of ``fd``, as systemd writes it into ``$JOURNAL_STREAM``."""
    st = os.fstat(fd)
    return f"{st.st_dev}:{st.st_ino}"


def test_stderr_is_journal_matches_device_and_inode(tmp_path: Path) -> None:
    with (tmp_path / "stream").open("w") as stream, (tmp_path / "other").open("w") as other:
        fd = stream.fileno()
        assert bsd.stderr_is_journal({"JOURNAL_STREAM": stream_id(fd)}, fd=fd)
        assert not bsd.stderr_is_journal({"JOURNAL_STREAM": stream_id(other.fileno())}, fd=fd)


@pytest.mark.parametrize("value", [None, "", "12", "a:b", "1:2:3", ":"])
def test_stderr_is_journal_rejects_other_values(value: str | None) -> None:
    environ = {} if value is None else {"JOURNAL_STREAM": value}
    assert not bsd.stderr_is_journal(environ)


def test_stderr_is_journal_with_closed_fd(tmp_path: Path) -> None:
    with (tmp_path / "stream").open("w") as stream:
        fd = stream.fileno()
        value = stream_id(fd)
    assert not bsd.stderr_is_journal({"JOURNAL_STREAM": value}, fd=fd)


# logging setup


def bellad_handlers(logger: logging.Logger) -> list[logging.Handler]:
    """The handlers installed by setup_logging."""
    return [h for h in logger.handlers if getattr(h, "_bellad_systemd_handler", False)]


def test_logs_to_stderr_with_time_outside_journald(
    clean_bellad_logger: logging.Logger,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.delenv("JOURNAL_STREAM", raising=False)
    bsd.setup_logging("info")
    (handler,) = bellad_handlers(clean_bellad_logger)
    assert type(handler) is logging.StreamHandler
    logging.getLogger("bellad.test").info("hello %s", "world")
    logging.getLogger("bellad.test").debug("not shown")
    err = capsys.readouterr().err
    assert re.fullmatch(
        r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} INFO bellad\.test: hello world\n", err
    ), err


def test_logs_to_journal_when_stderr_is_journal(
    clean_bellad_logger: logging.Logger, monkeypatch: pytest.MonkeyPatch
) -> None:
    journal = importlib.import_module("systemd.journal")
    monkeypatch.setenv("JOURNAL_STREAM", stream_id(2))
    bsd.setup_logging("debug")
    (handler,) = bellad_handlers(clean_bellad_logger)
    assert isinstance(handler, journal.JournalHandler)

    sent: list[tuple[str, dict[str, Any]]] = []

    def sender(message: str, **fields: Any) -> None:
        sent.append((message, fields))

    fake: Any = handler
    fake.send = sender
    logging.getLogger("bellad.pipeline").debug(
        "utterance %s done",
        "u-7",
        extra={"site": "kitchen", "utterance_id": "u-7", "timings": {"vad": 0.0204, "asr": 1.2}},
    )
    ((message, fields),) = sent
    assert message == "utterance u-7 done"
    assert fields["SYSLOG_IDENTIFIER"] == "bellad"
    assert fields["PRIORITY"] == "7"
    assert fields["LOGGER"] == "bellad.pipeline"
    assert fields["BELLAD_SITE"] == "kitchen"
    assert fields["BELLAD_UTTERANCE_ID"] == "u-7"
    assert fields["BELLAD_VAD_MS"] == "20"
    assert fields["BELLAD_ASR_MS"] == "1200"
    assert fields["CODE_FUNC"] == "test_logs_to_journal_when_stderr_is_journal"
    # only journal field names: no lower-case record attributes leak through
    assert all(re.fullmatch(r"[A-Z][A-Z0-9_]*", name) for name in fields)


def test_journal_handler_sends_exception_text(
    clean_bellad_logger: logging.Logger, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("JOURNAL_STREAM", stream_id(2))
    bsd.setup_logging("info")
    (handler,) = bellad_handlers(clean_bellad_logger)
    messages: list[str] = []
    fake: Any = handler
    fake.send = lambda message, **fields: messages.append(message)
    try:
        raise ValueError("bad frame")
    except ValueError:
        logging.getLogger("bellad.audio").exception("capture failed")
    (message,) = messages
    assert message.startswith("capture failed\nTraceback")
    assert "ValueError: bad frame" in message


def test_force_journal_false_under_journald_logs_without_time(
    clean_bellad_logger: logging.Logger,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("JOURNAL_STREAM", stream_id(2))
    bsd.setup_logging("warning", force_journal=False)
    (handler,) = bellad_handlers(clean_bellad_logger)
    assert type(handler) is logging.StreamHandler
    logging.getLogger("bellad").warning("broker unreachable")
    assert capsys.readouterr().err == "WARNING bellad: broker unreachable\n"


def test_force_journal_true_uses_journal_handler(
    clean_bellad_logger: logging.Logger, monkeypatch: pytest.MonkeyPatch
) -> None:
    journal = importlib.import_module("systemd.journal")
    monkeypatch.delenv("JOURNAL_STREAM", raising=False)
    bsd.setup_logging("info", force_journal=True)
    (handler,) = bellad_handlers(clean_bellad_logger)
    assert isinstance(handler, journal.JournalHandler)


def test_journald_without_systemd_python_falls_back_to_stderr(
    clean_bellad_logger: logging.Logger,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("JOURNAL_STREAM", stream_id(2))
    hide_systemd_python(monkeypatch)
    bsd.setup_logging("info")
    logging.getLogger("bellad").info("still logging")
    assert capsys.readouterr().err == "INFO bellad: still logging\n"


def test_force_journal_without_systemd_python_names_the_extra(
    clean_bellad_logger: logging.Logger, monkeypatch: pytest.MonkeyPatch
) -> None:
    hide_systemd_python(monkeypatch)
    with pytest.raises(MissingDependencyError) as caught:
        bsd.setup_logging("info", force_journal=True)
    assert caught.value.extra == "systemd"
    assert "Logging to the systemd journal" in str(caught.value)


def test_setup_logging_twice_replaces_its_handler(
    clean_bellad_logger: logging.Logger, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("JOURNAL_STREAM", raising=False)
    foreign = logging.NullHandler()
    clean_bellad_logger.addHandler(foreign)
    bsd.setup_logging("info")
    bsd.setup_logging("error")
    assert len(bellad_handlers(clean_bellad_logger)) == 1
    assert foreign in clean_bellad_logger.handlers
    assert clean_bellad_logger.level == logging.ERROR


@pytest.mark.parametrize(("level", "number"), [("debug", 10), ("INFO", 20), (" Warning ", 30)])
def test_setup_logging_accepts_level_names(
    clean_bellad_logger: logging.Logger,
    monkeypatch: pytest.MonkeyPatch,
    level: str,
    number: int,
) -> None:
    monkeypatch.delenv("JOURNAL_STREAM", raising=False)
    bsd.setup_logging(level)
    assert clean_bellad_logger.level == number


@pytest.mark.parametrize("level", ["loud", "", "15"])
def test_setup_logging_rejects_unknown_levels(
    clean_bellad_logger: logging.Logger, level: str
) -> None:
    with pytest.raises(ConfigError, match="unknown log level"):
        bsd.setup_logging(level)


# structured journal fields


def record(**extra: object) -> logging.LogRecord:
    """A log record carrying ``extra`` as logging's ``extra=`` would."""
    rec = logging.LogRecord("bellad.pipeline", logging.INFO, __file__, 1, "msg", None, None)
    rec.__dict__.update(extra)
    return rec


def test_journal_fields_maps_site_utterance_and_timings() -> None:
    fields = bsd.journal_fields(
        record(
            site="living-room",
            utterance_id="2f1c",
            timings={"vad": 0.0125, "asr": 0.8123, "sentiment": 0.004, "publish": 2},
        )
    )
    assert fields == {
        "BELLAD_SITE": "living-room",
        "BELLAD_UTTERANCE_ID": "2f1c",
        "BELLAD_VAD_MS": "12",
        "BELLAD_ASR_MS": "812",
        "BELLAD_SENTIMENT_MS": "4",
        "BELLAD_PUBLISH_MS": "2000",
    }


def test_journal_fields_without_extras_is_empty() -> None:
    assert bsd.journal_fields(record()) == {}


def test_journal_fields_stringifies_values() -> None:
    assert bsd.journal_fields(record(site=3, utterance_id=17)) == {
        "BELLAD_SITE": "3",
        "BELLAD_UTTERANCE_ID": "17",
    }


def test_journal_fields_sanitises_stage_names() -> None:
    fields = bsd.journal_fields(
        record(timings={"first-token": 0.1, "queue wait": 0.25, "ä": 1.0, "--": 1.0})
    )
    assert fields == {"BELLAD_FIRST_TOKEN_MS": "100", "BELLAD_QUEUE_WAIT_MS": "250"}


def test_journal_fields_skips_timings_that_are_not_numbers() -> None:
    fields = bsd.journal_fields(
        record(timings={"asr": "fast", "vad": None, "flag": True, "ok": 0.5})
    )
    assert fields == {"BELLAD_OK_MS": "500"}


def test_journal_fields_ignores_timings_that_are_not_a_mapping() -> None:
    assert bsd.journal_fields(record(timings=[("asr", 1.0)])) == {}


def test_journal_fields_names_fit_the_journal_limit() -> None:
    (name,) = bsd.journal_fields(record(timings={"x" * 100: 1.0}))
    assert len(name) <= 64
    assert name.startswith("BELLAD_X") and name.endswith("_MS")
