"""Where events go: the sink protocol, and JSON lines on stdout.

A sink receives every event the pipeline produces, in order, on the
pipeline's delivery thread: speech start and end, and results. It picks what
it publishes. The MQTT sink lives in :mod:`bellad.mqtt`.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from typing import Any, Protocol, TextIO

from bellad.events import Event, Result

log = logging.getLogger(__name__)


class Sink(Protocol):
    """Receives events in order; must not block for long."""

    name: str

    def handle(self, event: Event) -> None: ...

    def close(self) -> None: ...


def to_json_line(payload: dict[str, Any]) -> str:
    """Compact JSON on one line, UTF-8 kept readable."""
    return json.dumps(payload, ensure_ascii=False, separators=(",", ":"))


class JsonLinesSink:
    """One JSON object per result on a text stream (stdout by default)."""

    name = "stdout"

    def __init__(self, stream: TextIO | None = None, extra: dict[str, Any] | None = None) -> None:
        self.stream = stream if stream is not None else sys.stdout
        self.extra = extra or {}

    def handle(self, event: Event) -> None:
        if isinstance(event, Result):
            payload = {**self.extra, **event.to_dict()}
            self.stream.write(to_json_line(payload) + "\n")
            self.stream.flush()

    def close(self) -> None:
        self.stream.flush()


def stdout_is_journal() -> bool:
    """True when stdout is connected to journald (``JOURNAL_STREAM`` names it)."""
    stream = os.environ.get("JOURNAL_STREAM", "")
    try:
        dev, ino = (int(x) for x in stream.split(":"))
        st = os.fstat(sys.stdout.fileno())
    except (ValueError, OSError):
        return False
    return (st.st_dev, st.st_ino) == (dev, ino)


def want_stdout(setting: str) -> bool:
    """``auto``: JSON lines on stdout unless stdout is the journal."""
    return setting == "on" or (setting == "auto" and not stdout_is_journal())
