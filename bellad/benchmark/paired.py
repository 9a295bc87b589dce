"""The model alone on each utterance, timed right after the daemon's own run of it.

A shared machine's speed drifts over minutes (another tenant's work, the
host's own), by as much as the overhead being measured. So the model-only
reference for each utterance is timed in the quiet gap after the daemon's
result arrives, before the next clip is transcribed: the two runs of the same
audio are seconds apart, not minutes. A timing that overlapped one of the
daemon's transcriptions is not used (the analysis times that utterance again
after the daemon has stopped).
"""

from __future__ import annotations

import queue
import threading
import time
from dataclasses import dataclass
from typing import Any

from bellad.benchmark.daemon import Received
from bellad.benchmark.modeltime import ModelTimer, Timed
from bellad.events import SAMPLE_RATE, Samples


@dataclass(frozen=True)
class PairedTiming:
    timed: Timed
    began: float  # wall clock
    ended: float

    def overlaps(self, start: float, end: float) -> bool:
        return self.began < end and start < self.ended


class PairedTimer:
    """Takes each transcript as the subscriber receives it and times the same audio alone."""

    def __init__(self, timer: ModelTimer, audio: Samples, repeats: int) -> None:
        self.timer = timer
        self.audio = audio
        self.repeats = repeats
        self.results: dict[str, PairedTiming] = {}
        self._queue: queue.SimpleQueue[dict[str, Any] | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="bench-paired", daemon=True)

    def start(self) -> PairedTimer:
        self._thread.start()
        return self

    def offer(self, message: Received) -> None:
        """The subscriber's thread: hand a transcript over, never wait."""
        if message.topic.endswith("/transcript"):
            self._queue.put(message.json())

    def stop(self) -> None:
        self._queue.put(None)
        self._thread.join()

    def _run(self) -> None:
        while (event := self._queue.get()) is not None:
            if not self._queue.empty():  # behind: the next clip may already be transcribed
                continue
            if event.get("offset_start_s") is None or event.get("offset_end_s") is None:
                continue
            start = round(event["offset_start_s"] * SAMPLE_RATE)
            end = round(event["offset_end_s"] * SAMPLE_RATE)
            began = time.time()
            timed = self.timer.model_only(self.audio[start:end], self.repeats)
            self.results[event["id"]] = PairedTiming(timed, began, time.time())
