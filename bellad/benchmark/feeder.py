"""Audio into the benchmark microphone in real time, with a record of when.

:class:`Feeder` writes 20 ms blocks of 16 kHz mono int16 into the sound
server's FIFO at the real rate, as a sound card's converter would deliver
them: block *b* is written when its last sample has been "spoken". Between
queued recordings it writes the background (silence or steady room noise), so
the device never stalls. Every block's write time is kept, so
:meth:`Feeder.time_of` says when any sample of the stream was heard: the true
time of an end of speech, against which the subscriber's receipt is measured.
"""

from __future__ import annotations

import bisect
import logging
import os
import select
import threading
import time
from pathlib import Path

import numpy as np

from bellad.events import SAMPLE_RATE, Samples

log = logging.getLogger(__name__)

BLOCK = SAMPLE_RATE // 50  # 20 ms
RESYNC_S = 0.2  # later than this, the clock restarts instead of bursting to catch up


class Feeder:
    """A real-time writer thread; ``play`` queues audio and says where it starts."""

    def __init__(self, fifo: Path) -> None:
        self.fifo = fifo
        self._background: Samples = np.zeros(BLOCK, np.int16)
        self._bg_pos = 0
        self._queue: list[Samples] = []
        self._queued = 0
        self._scheduled = 0  # samples handed to the writer so far
        self._ends: list[int] = []  # per block: the stream index after its last sample
        self._walls: list[float] = []  # per block: time.time() when it was written
        self.max_late_s = 0.0
        self.resyncs = 0
        self._cond = threading.Condition()
        self._stop = threading.Event()
        self._fd: int | None = None
        self._thread: threading.Thread | None = None
        self.error: BaseException | None = None

    def start(self, timeout: float = 5.0) -> Feeder:
        deadline = time.monotonic() + timeout
        while self._fd is None:
            try:
                self._fd = os.open(self.fifo, os.O_WRONLY | os.O_NONBLOCK | os.O_CLOEXEC)
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.02)
        self._thread = threading.Thread(target=self._run, name="bench-feeder", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    # -- what is written --------------------------------------------------------------

    def set_background(self, samples: Samples | None) -> None:
        """Loop ``samples`` whenever nothing is queued (None: digital silence)."""
        with self._cond:
            self._background = samples if samples is not None else np.zeros(BLOCK, np.int16)
            self._bg_pos = 0

    def play(self, samples: Samples) -> int:
        """Queue ``samples`` after what is queued; returns the stream index of the first."""
        with self._cond:
            start = self._scheduled + self._queued
            self._queue.append(np.asarray(samples, dtype=np.int16))
            self._queued += len(samples)
            return start

    @property
    def position(self) -> int:
        """Samples written so far."""
        with self._cond:
            return self._ends[-1] if self._ends else 0

    def wait_written(self, index: int, timeout: float) -> bool:
        """Wait until the stream index ``index`` has been written."""
        with self._cond:
            return self._cond.wait_for(
                lambda: self.error is not None or bool(self._ends and self._ends[-1] >= index),
                timeout,
            )

    def time_of(self, index: int) -> float | None:
        """When the sample boundary at ``index`` was heard (``time.time()``); None if not yet."""
        with self._cond:
            b = bisect.bisect_left(self._ends, index)
            if b >= len(self._ends):
                return None
            return self._walls[b] - (self._ends[b] - index) / SAMPLE_RATE

    def index_at(self, wall: float) -> int:
        """The stream index heard at ``wall`` (the inverse of :meth:`time_of`)."""
        with self._cond:
            b = bisect.bisect_left(self._walls, wall)
            b = min(b, len(self._walls) - 1)
            return max(0, self._ends[b] - round((self._walls[b] - wall) * SAMPLE_RATE))

    # -- writer thread ----------------------------------------------------------------

    def _next_block(self) -> Samples:
        with self._cond:
            parts: list[Samples] = []
            need = BLOCK
            while need and self._queue:
                head = self._queue[0]
                take = head[:need]
                parts.append(take)
                need -= len(take)
                self._queued -= len(take)
                if len(take) == len(head):
                    self._queue.pop(0)
                else:
                    self._queue[0] = head[len(take) :]
            while need:
                bg = self._background
                take = bg[self._bg_pos : self._bg_pos + need]
                parts.append(take)
                need -= len(take)
                self._bg_pos = (self._bg_pos + len(take)) % len(bg)
            self._scheduled += BLOCK
            return np.concatenate(parts) if len(parts) > 1 else parts[0]

    def _run(self) -> None:
        try:
            due = time.monotonic() + BLOCK / SAMPLE_RATE
            while not self._stop.is_set():
                wait = due - time.monotonic()
                if wait > 0:
                    self._stop.wait(wait)
                late = time.monotonic() - due
                if late > RESYNC_S:
                    self.resyncs += 1
                    due = time.monotonic()
                self.max_late_s = max(self.max_late_s, late)
                self._write(self._next_block().astype("<i2").tobytes())
                with self._cond:
                    self._ends.append(self._scheduled)
                    self._walls.append(time.time())
                    self._cond.notify_all()
                due += BLOCK / SAMPLE_RATE
        except OSError as exc:  # the sound server went away
            self.error = exc
            log.error("feeder stopped: %s", exc)
            with self._cond:
                self._cond.notify_all()

    def _write(self, data: bytes) -> None:
        assert self._fd is not None
        while not self._stop.is_set():
            try:
                os.write(self._fd, data)  # 640 bytes: under PIPE_BUF, all or nothing
                return
            except BlockingIOError:
                select.select([], [self._fd], [], 0.05)
