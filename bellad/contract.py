"""The MQTT topic contract: topic names and the payloads subscribers read.

Documented in ``docs/mqtt.md``; each JSON payload has a JSON Schema in
``docs/schemas/``. A change that breaks a subscriber bumps
:data:`SCHEMA_VERSION`.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass
from typing import Any

from bellad.events import Result, iso_time

SCHEMA_VERSION = 1
LISTENING_ON = frozenset({"on", "true", "1", "yes"})
LISTENING_OFF = frozenset({"off", "false", "0", "no"})


@dataclass(frozen=True)
class Topics:
    """Every topic of one device, under ``<prefix>/<site>``."""

    prefix: str
    site: str

    @property
    def base(self) -> str:
        return f"{self.prefix}/{self.site}"

    @property
    def availability(self) -> str:
        return f"{self.base}/availability"

    @property
    def transcript(self) -> str:
        return f"{self.base}/transcript"

    @property
    def speech(self) -> str:
        return f"{self.base}/speech"

    @property
    def state(self) -> str:
        return f"{self.base}/state"

    @property
    def stats(self) -> str:
        return f"{self.base}/stats"

    @property
    def listening_set(self) -> str:
        return f"{self.base}/listening/set"


def parse_listening(payload: bytes) -> bool | None:
    """``ON``/``OFF`` (also true/false, 1/0, yes/no); None when it is neither."""
    text = payload.decode("utf-8", "replace").strip().lower()
    if text in LISTENING_ON:
        return True
    if text in LISTENING_OFF:
        return False
    return None


def transcript_payload(result: Result, site: str, room: str) -> dict[str, Any]:
    """The ``transcript`` event, as queued (``published`` is added when sent)."""
    payload = result.to_dict()
    payload.pop("source", None)
    return {"schema_version": SCHEMA_VERSION, "site": site, "room": room, **payload}


def stamp_published(payload: bytes, queued_wall: float, now: float | None = None) -> bytes:
    """Add the ``published`` time and the time spent in the outbox to a queued transcript."""
    now = time.time() if now is None else now
    event = json.loads(payload)
    event["published"] = iso_time(now)
    event.setdefault("latency_ms", {})["outbox"] = round(max(0.0, now - queued_wall) * 1000, 1)
    return json.dumps(event, ensure_ascii=False, separators=(",", ":")).encode()


def percentile(values: list[float] | tuple[float, ...], q: float) -> float | None:
    """The ``q`` quantile (0..1) by linear interpolation; None when empty."""
    if not values:
        return None
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q
    low, high = math.floor(pos), math.ceil(pos)
    return ordered[low] + (ordered[high] - ordered[low]) * (pos - low)


def summary(values: list[float] | tuple[float, ...], scale: float = 1.0) -> dict[str, Any]:
    """Median and p95 of recent values, scaled and rounded (None when there are none)."""
    median, p95 = percentile(values, 0.5), percentile(values, 0.95)
    return {
        "median": None if median is None else round(median * scale, 3),
        "p95": None if p95 is None else round(p95 * scale, 3),
        "count": len(values),
    }
