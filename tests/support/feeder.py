"""Real-time audio into a PulseAudio pipe source.

``module-pipe-source`` has no clock of its own: it hands on exactly what arrives in
its FIFO, when it arrives. A reader of the source (PyAudio, bellad's microphone)
therefore sees time pass only while someone writes, so :class:`PipeFeeder` writes
20 ms blocks at the real rate from a background thread, silence whenever nothing is
queued, and nothing at all while paused (a stalled device).
"""

from __future__ import annotations

import os
import select
import threading
import time
from pathlib import Path
from types import TracebackType

import numpy as np
import numpy.typing as npt

from tests.support.tools import wait_until

RATE = 16000
BYTES_PER_SAMPLE = 2


class PipeFeeder:
    """Writes int16 mono audio at ``rate`` into ``fifo`` in ``block_s`` blocks.

    Queued audio is written back to back, so separate :meth:`feed` calls made before
    the queue runs dry come out contiguous; silence fills the gaps between them.
    """

    def __init__(self, fifo: Path, *, rate: int = RATE, block_s: float = 0.02) -> None:
        self.fifo = fifo
        self.rate = rate
        self.block_bytes = round(rate * block_s) * BYTES_PER_SAMPLE
        self._silence = bytes(self.block_bytes)
        self._queue = bytearray()
        self._in_flight = 0
        self._written = 0
        self._paused = False
        self._idle = False
        self._stopping = False
        self._restart_clock = False
        self._cond = threading.Condition()
        self._fd: int | None = None
        self._thread: threading.Thread | None = None
        self.error: BaseException | None = None

    # -- control -----------------------------------------------------------------------
    def start(self, timeout: float = 5.0) -> PipeFeeder:
        """Open the FIFO (its reader, the sound server, must have it open) and begin."""

        def opened() -> bool:
            try:
                self._fd = os.open(self.fifo, os.O_WRONLY | os.O_NONBLOCK | os.O_CLOEXEC)
            except (FileNotFoundError, OSError):
                return False
            return True

        wait_until(opened, timeout, f"a reader on {self.fifo}")
        self._thread = threading.Thread(target=self._run, name="pipe-feeder", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop writing and close the FIFO; what is still queued is dropped."""
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(5.0)
            self._thread = None
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def pause(self, timeout: float = 2.0) -> None:
        """Stop writing entirely (readers block, as on a stalled device); returns once
        the writer is idle. Queued audio waits for :meth:`resume`."""
        with self._cond:
            self._paused = True
            self._cond.notify_all()
            if not self._cond.wait_for(lambda: self._idle or self._thread is None, timeout):
                raise TimeoutError("the feeder did not pause")

    def resume(self) -> None:
        """Write again, from now on at the real rate (no burst to catch up)."""
        with self._cond:
            self._paused = False
            self._restart_clock = True
            self._cond.notify_all()

    @property
    def paused(self) -> bool:
        return self._paused

    # -- audio -------------------------------------------------------------------------
    def feed(self, samples: npt.NDArray[np.int16] | bytes) -> None:
        """Queue int16 mono samples (a numpy array, or little-endian bytes)."""
        self.check()
        if isinstance(samples, bytes | bytearray):
            data = bytes(samples)
            if len(data) % BYTES_PER_SAMPLE:
                raise ValueError("int16 audio must have an even number of bytes")
        else:
            array = np.asarray(samples)
            if array.dtype.kind != "i" or array.dtype.itemsize != BYTES_PER_SAMPLE:
                raise TypeError(f"feed int16 samples, not {array.dtype}")
            data = array.astype("<i2", copy=False).reshape(-1).tobytes()
        with self._cond:
            self._queue += data
            self._cond.notify_all()

    def feed_silence(self, seconds: float) -> None:
        """Queue ``seconds`` of digital silence."""
        self.feed(bytes(round(seconds * self.rate) * BYTES_PER_SAMPLE))

    def clear(self) -> None:
        """Drop whatever is queued and not yet written."""
        with self._cond:
            self._queue.clear()
            self._cond.notify_all()

    @property
    def pending_s(self) -> float:
        """Seconds of queued audio not yet written."""
        with self._cond:
            return (len(self._queue) + self._in_flight) / BYTES_PER_SAMPLE / self.rate

    @property
    def written_samples(self) -> int:
        """Samples written since start, silence included."""
        with self._cond:
            return self._written // BYTES_PER_SAMPLE

    def wait_drained(self, timeout: float | None = None) -> None:
        """Wait until everything queued is in the FIFO (by default, up to the queued
        duration plus 5 s)."""
        limit = self.pending_s + 5.0 if timeout is None else timeout
        with self._cond:
            done = self._cond.wait_for(
                lambda: self.error is not None or not (self._queue or self._in_flight), limit
            )
        self.check()
        if not done:
            state = " (paused)" if self._paused else ""
            raise TimeoutError(f"feeder not drained after {limit:g} s{state}")

    def check(self) -> None:
        """Raise if the writer thread died (the sound server went away)."""
        if self.error is not None:
            raise RuntimeError(f"the feeder stopped: {self.error}") from self.error

    # -- writer thread -----------------------------------------------------------------
    def _run(self) -> None:
        try:
            self._loop()
        except OSError as exc:  # the sound server went away
            with self._cond:
                self.error = exc
                self._cond.notify_all()

    def _next_block(self) -> bytes | None:
        """The next block to write, or None to stop; waits while paused."""
        with self._cond:
            self._idle = True
            self._cond.notify_all()
            self._cond.wait_for(lambda: self._stopping or not self._paused)
            self._idle = False
            if self._stopping:
                return None
            if not self._queue:
                return self._silence
            block = bytes(self._queue[: self.block_bytes])
            del self._queue[: self.block_bytes]
            self._in_flight = len(block)
            return block

    def _loop(self) -> None:
        due = time.monotonic()
        while (block := self._next_block()) is not None:
            with self._cond:
                if self._restart_clock:
                    self._restart_clock = False
                    due = time.monotonic()
            self._write(block)
            with self._cond:
                self._written += len(block)
                self._in_flight = 0
                self._cond.notify_all()
            due += len(block) / BYTES_PER_SAMPLE / self.rate
            late = time.monotonic() - due
            if late > 0.1:  # the FIFO was full or we were starved: do not burst
                due = time.monotonic()
            elif late < 0:
                with self._cond:
                    self._cond.wait_for(lambda: self._stopping or self._paused, -late)

    def _write(self, block: bytes) -> None:
        assert self._fd is not None
        while not self._stopping:
            try:
                os.write(self._fd, block)  # < PIPE_BUF: all or nothing
                return
            except BlockingIOError:
                select.select([], [self._fd], [], 0.05)

    def __enter__(self) -> PipeFeeder:
        return self.start()

    def __exit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
