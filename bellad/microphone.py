"""The microphone: PyAudio capture that never waits on later stages.

A capture thread (:class:`PacedReader`) calls :meth:`Microphone._on_audio` with
each block (up to four at once while idle); it only stamps the audio and puts it into
a bounded queue (dropping the oldest piece when full, counted), so capture
never waits on VAD or inference. :meth:`Microphone.chunks`, on the pipeline's
thread, conditions the audio to 16 kHz mono. While nobody speaks
(:meth:`Microphone.set_idle`), the capture thread wakes that thread once per
``idle_batch_ms`` of audio instead of once per block: the same audio, a
fraction of the thread switches; while the room is also quiet (:func:`is_quiet`),
once per ``quiet_batch_ms``. A device that fails to open, reports an
error, or stops delivering audio is closed and reopened with exponential
backoff and jitter; the daemon keeps running meanwhile and
:attr:`Microphone.health` says why.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Literal, Protocol

import numpy as np
from tenacity import Retrying, retry_if_exception_type, stop_when_event_set, wait_exponential_jitter

from bellad.audio import Conditioner, idle_batch_blocks
from bellad.config import AudioConfig
from bellad.errors import AudioError, MissingDependencyError
from bellad.events import SAMPLE_RATE, AudioChunk
from bellad.queues import BoundedQueue

log = logging.getLogger(__name__)

OVERRUN_LOG_S = 60.0  # at most one overrun warning a minute

Health = Literal["starting", "ok", "stalled", "absent", "stopped"]
Callback = Callable[[bytes, int], None]  # (interleaved s16le block, overflow flag)


@dataclass(frozen=True, slots=True)
class DeviceInfo:
    """A capture device as the audio backend reports it."""

    index: int
    name: str
    channels: int
    default_rate: int
    is_default: bool = False


class Stream(Protocol):
    error: OSError | None  # why the stream stopped, when it failed

    @property
    def idle_blocks(self) -> int: ...  # the most blocks one read may gather while idle

    def is_active(self) -> bool: ...
    def set_read_blocks(self, blocks: int) -> None: ...  # blocks to wait for before a read
    def close(self) -> None: ...


class AudioBackend(Protocol):
    """The small part of PortAudio bellad needs (a fake in unit tests)."""

    def devices(self) -> list[DeviceInfo]: ...
    def supports(self, index: int, rate: int, channels: int) -> bool: ...
    def open(self, index: int, rate: int, channels: int, frames: int, cb: Callback) -> Stream: ...
    def reset(self) -> None: ...


class PyAudioBackend:
    """:class:`AudioBackend` over PyAudio; ``reset`` re-enumerates devices."""

    def __init__(self) -> None:
        try:
            import pyaudio
        except ImportError:
            raise MissingDependencyError("pyaudio", "", "Capturing from a microphone") from None
        self._pyaudio = pyaudio
        self._pa: Any = pyaudio.PyAudio()
        unload_alsa_plugins()

    def devices(self) -> list[DeviceInfo]:
        try:
            default = int(self._pa.get_default_input_device_info()["index"])
        except OSError:
            default = -1
        found = []
        for i in range(self._pa.get_device_count()):
            info = self._pa.get_device_info_by_index(i)
            if int(info["maxInputChannels"]) > 0:
                found.append(
                    DeviceInfo(
                        i,
                        str(info["name"]),
                        int(info["maxInputChannels"]),
                        int(info["defaultSampleRate"]),
                        i == default,
                    )
                )
        return found

    def supports(self, index: int, rate: int, channels: int) -> bool:
        try:
            return bool(
                self._pa.is_format_supported(
                    rate,
                    input_device=index,
                    input_channels=channels,
                    input_format=self._pyaudio.paInt16,
                )
            )
        except ValueError:
            return False

    def open(self, index: int, rate: int, channels: int, frames: int, cb: Callback) -> Stream:
        period = frames * PacedReader.PERIOD_BLOCKS
        stream = self._pa.open(
            format=self._pyaudio.paInt16,
            channels=channels,
            rate=rate,
            input=True,
            input_device_index=index,
            frames_per_buffer=period,
        )
        # PortAudio reports a capture buffer's latency as its size less one period
        buffered = round(stream.get_input_latency() * rate) + period
        idle = idle_read_blocks(buffered, frames)
        return PacedReader(stream, frames, rate, cb, self._pyaudio.paInputOverflowed, idle)

    def reset(self) -> None:
        self._pa.terminate()
        self._pa = self._pyaudio.PyAudio()
        unload_alsa_plugins()

    def close(self) -> None:
        self._pa.terminate()


QUIET_HIGH_BYTES = bytes((0x00, 0x01, 0xFE, 0xFF))  # of little-endian int16 within +-511


def is_quiet(data: bytes) -> bool:
    """True when every sample of s16le ``data`` lies within +-511: peaks below -36 dBFS.

    It tests the samples' high bytes only, in two passes of C over the bytes
    (a slice, a strip), cheap enough for the capture thread where numpy's
    calls are not. A quiet room's noise is well below (-55 dBFS is about -44
    at its peaks); speech, a knock, a door are above.
    """
    return not data[1::2].strip(QUIET_HIGH_BYTES)


def unload_alsa_plugins() -> None:
    """Let ALSA unload the plugins that listing the devices loaded and no stream uses.

    PortAudio lists devices by opening every PCM the ALSA configuration
    names; with Debian's libasound2-plugins that loads the a52 encoder's plugin
    and libavcodec behind it, about 110 libraries and 10 MB resident that
    capture never uses. ALSA keeps them until its global configuration is
    freed, as PortAudio does when it terminates: then every plugin no open PCM
    holds is unloaded, and the next open reads the configuration afresh.
    """
    with contextlib.suppress(OSError, AttributeError):  # no ALSA (another platform)
        ctypes.CDLL("libasound.so.2").snd_config_update_free_global()


def idle_read_blocks(buffered: int, frames: int) -> int:
    """Blocks a read may wait for while idle, from the device's buffer (frames).

    A device period is left as margin for a late wake-up, and at most
    :attr:`PacedReader.IDLE_BLOCKS` (120 ms of 30-ms blocks) are gathered.
    """
    margin = PacedReader.PERIOD_BLOCKS
    return max(1, min(PacedReader.IDLE_BLOCKS, buffered // frames - margin))


class PacedReader:
    """Reads an open PyAudio stream on its own thread, whole blocks at a time, never blocking.

    A read is made only once the blocks are there (``get_read_available``);
    otherwise the thread sleeps until they should be, from the frames still
    missing. This costs a fraction of PortAudio's callback thread, which wakes
    several times per block through ALSA and the sound server's client library,
    and unlike a blocking read it cannot hang when a device stops delivering
    audio: the microphone sees no blocks, calls it stalled and closes it.

    Each wake-up costs about the same whatever it reads, so while idle (nobody
    speaks) the thread waits for several blocks and reads them at once. The
    device is opened with a period of ``PERIOD_BLOCKS`` blocks; PortAudio's
    buffer holds three periods (180 ms of 30-ms blocks), so four blocks a read
    leave a period's margin for a late wake-up (:func:`idle_read_blocks`). A
    read hands over every whole block that is there, as one piece; an overrun
    is reported, a device error ends the thread.
    """

    MIN_WAIT_S = 0.002
    PERIOD_BLOCKS = 2
    IDLE_BLOCKS = 4

    def __init__(
        self,
        stream: Any,
        frames: int,
        rate: int,
        cb: Callback,
        overflow: int,
        idle_blocks: int = IDLE_BLOCKS,
    ) -> None:
        self._stream = stream
        self._frames = frames
        self._rate = rate
        self._cb = cb
        self._overflow = overflow  # PortAudio's paInputOverflowed
        self._idle_blocks = idle_blocks
        self._stop = threading.Event()
        self._want = frames  # frames to wait for before reading
        self.error: OSError | None = None
        self._thread = threading.Thread(target=self._run, name="bellad-capture", daemon=True)
        self._thread.start()

    @property
    def idle_blocks(self) -> int:
        """The most blocks a read may wait for while idle."""
        return self._idle_blocks

    def _run(self) -> None:
        frames, stream, stop = self._frames, self._stream, self._stop
        try:
            while not stop.is_set():
                available = stream.get_read_available()
                if available >= self._want:
                    whole = available - available % frames
                    try:
                        data = stream.read(whole, exception_on_overflow=True)
                    except OSError as exc:
                        if exc.errno != self._overflow:
                            raise
                        self._cb(b"", 1)  # the device overran: what it held is lost, counted
                        continue
                    self._cb(data, 0)
                    available -= whole
                stop.wait(self.wait_s(available))  # what is left is less than a read
        except OSError as exc:
            self.error = exc  # the microphone reports it when it finds the stream stopped

    def wait_s(self, available: int) -> float:
        """How long to sleep when ``available`` frames are there: until the read is due."""
        return max(self.MIN_WAIT_S, (self._want - available) / self._rate)

    def is_active(self) -> bool:
        return self._thread.is_alive() and bool(self._stream.is_active())

    def set_read_blocks(self, blocks: int) -> None:
        self._want = self._frames * max(1, min(blocks, self._idle_blocks))

    def close(self) -> None:
        self._stop.set()
        if self._thread is not threading.current_thread():
            self._thread.join()
        self._stream.close()


def select_device(devices: list[DeviceInfo], wanted: int | str | None) -> DeviceInfo:
    """The device named by ``audio.device``: an index, a name substring, or the default."""
    if not devices:
        named = "audio.device" if wanted is None else f"audio.device = {wanted!r}"
        raise AudioError(f"{named}: no capture device found (is a microphone connected?)")
    if wanted is None:
        return next((d for d in devices if d.is_default), devices[0])
    if isinstance(wanted, int):
        for device in devices:
            if device.index == wanted:
                return device
    else:
        exact = [d for d in devices if d.name.lower() == wanted.lower()]
        partial = [d for d in devices if wanted.lower() in d.name.lower()]
        if exact or partial:
            return (exact or partial)[0]
    listed = ", ".join(f"{d.index} {d.name!r}" for d in devices)
    raise AudioError(f"audio.device = {wanted!r}: no capture device matches (found: {listed})")


def choose_format(backend: AudioBackend, device: DeviceInfo, cfg: AudioConfig) -> tuple[int, int]:
    """A (rate, channels) the device accepts: the configured ones first, then its own."""
    channels = min(cfg.channels, device.channels)
    rates = [cfg.rate] if cfg.rate else [SAMPLE_RATE, 48_000, 44_100, device.default_rate]
    for rate in rates:
        if backend.supports(device.index, rate, channels):
            return rate, channels
    if cfg.rate:
        raise AudioError(
            f"audio.rate = {cfg.rate}: device {device.name!r} does not support it "
            f"(its default rate is {device.default_rate})"
        )
    return device.default_rate, channels


class Microphone:
    """A PyAudio capture device, reopened with backoff when it fails."""

    relative = False
    live = True

    def __init__(self, cfg: AudioConfig, backend: AudioBackend | None = None) -> None:
        self.cfg = cfg
        self.backend = backend if backend is not None else PyAudioBackend()
        self.device = select_device(self.backend.devices(), cfg.device)  # fail fast at start
        self.name = f"microphone {self.device.name!r}"
        self.health: Health = "starting"
        self.problem = ""
        self.overflows = 0
        self.reopens = 0
        self.last_audio = 0.0
        self._stream: Stream | None = None
        self._conditioner: Conditioner | None = None
        self._rate = SAMPLE_RATE
        self._queue: BoundedQueue[tuple[bytes, float]] = BoundedQueue(1)
        self._idle_batch = idle_batch_blocks(cfg.idle_batch_ms, cfg.block_ms)
        self._quiet_blocks = idle_batch_blocks(cfg.quiet_batch_ms, cfg.block_ms)
        self._idle = False
        self._batch = 1  # pieces of audio per wake-up of the pipeline's thread (set_idle)
        self._quiet_batch = 1  # the same while the room is quiet
        self._opened = False  # a stream was opened and none of its audio handed over yet
        self._overflow_logged = -OVERRUN_LOG_S
        self.dropped_blocks = 0  # blocks dropped because the pipeline's thread fell behind
        self._block_bytes = 1
        longest = max(self._idle_batch, self._quiet_blocks)
        self._wait_s = max(0.25, 2 * longest * cfg.block_ms / 1000)

    def set_idle(self, idle: bool) -> None:
        """Batch blocks while idle (nobody speaks, or muted); hand each over at once otherwise.

        While idle, pieces are handed over once ``idle_batch_ms`` of audio has
        come, or ``quiet_batch_ms`` while every piece is quiet; a piece that is
        not wakes the pipeline's thread at once. With ``idle_batch_ms`` at a
        block or less, nothing is batched: the capture thread reads each block
        as it comes, idle or not.
        """
        self._idle = idle
        stream = self._stream
        per_read = min(stream.idle_blocks, self._idle_batch) if idle and stream is not None else 1
        self._batch = max(1, self._idle_batch // per_read) if idle else 1
        self._quiet_batch = max(self._batch, self._quiet_blocks // per_read) if idle else 1
        if stream is not None:
            stream.set_read_blocks(per_read)

    def _on_audio(self, data: bytes, overflow: int) -> None:
        """The capture thread: stamp and enqueue, nothing else (but a rare warning).

        While idle it also tells a quiet piece (:func:`is_quiet`, a few
        microseconds), which may wait for more before the pipeline's thread wakes.
        """
        if overflow:
            self.overflows += 1
            now = time.monotonic()
            if now - self._overflow_logged >= OVERRUN_LOG_S:
                self._overflow_logged = now
                log.warning(
                    "%s overran: audio was lost before bellad read it (%d overruns so far); "
                    "is the machine too busy?",
                    self.name,
                    self.overflows,
                )
        if data:
            wake_at = self._batch
            if self._opened:  # the first audio says the device delivers: no batch waits for it
                self._opened, wake_at = False, 1
            elif self._quiet_batch > wake_at and is_quiet(data):
                wake_at = self._quiet_batch
            lost = self._queue.put((data, time.monotonic()), wake_at=wake_at)
            if lost is not None:
                self.dropped_blocks += max(1, len(lost[0]) // self._block_bytes)

    def _open(self) -> None:
        if self.reopens:
            self.backend.reset()  # re-enumerate: a USB device may have come back
        self.device = select_device(self.backend.devices(), self.cfg.device)
        rate, channels = choose_format(self.backend, self.device, self.cfg)
        frames = rate * self.cfg.block_ms // 1000
        self._block_bytes = frames * channels * 2
        depth = max(2, int(self.cfg.queue_s * 1000 / self.cfg.block_ms))
        self._queue = BoundedQueue(depth, "drop_oldest")
        self._conditioner = Conditioner(rate, channels)
        self._rate = rate
        self._opened = True
        try:
            self._stream = self.backend.open(
                self.device.index, rate, channels, frames, self._on_audio
            )
        except OSError as exc:
            raise AudioError(f"{self.name}: cannot open it: {exc}") from None
        self.set_idle(self._idle)
        self.name = f"microphone {self.device.name!r}"
        log.info("capturing from %s at %d Hz, %d channel(s)", self.name, rate, channels)

    def _close(self) -> None:
        stream, self._stream = self._stream, None
        if stream is not None:
            try:
                stream.close()
            except OSError as exc:
                log.warning("closing %s failed: %s", self.name, exc)

    def _set_health(self, health: Health, problem: str = "") -> None:
        if health != self.health or problem != self.problem:
            if health in ("stalled", "absent"):
                log.warning("%s is %s: %s", self.name, health, problem)
            elif health == "ok" and self.health in ("stalled", "absent"):
                log.info("%s delivers audio again", self.name)
        self.health, self.problem = health, problem

    def _open_with_backoff(self, stop: threading.Event) -> None:
        retrying = Retrying(
            retry=retry_if_exception_type(AudioError),
            wait=wait_exponential_jitter(
                multiplier=self.cfg.reopen_min_s, max=self.cfg.reopen_max_s
            ),
            stop=stop_when_event_set(stop),
            sleep=stop.wait,  # type: ignore[arg-type]
            before_sleep=lambda state: self._set_health(
                "absent", str(state.outcome.exception() if state.outcome else "")
            ),
            reraise=True,
        )
        try:
            retrying(self._open)
        except AudioError:
            if not stop.is_set():
                raise

    def chunks(self, stop: threading.Event) -> Iterator[AudioChunk]:
        """Conditioned audio until ``stop`` is set; reopens the device as needed."""
        sample = 0
        gap = False
        try:
            while not stop.is_set():
                if self._stream is None:
                    self._open_with_backoff(stop)
                    if self._stream is None:
                        break
                    self.last_audio = time.monotonic()
                item = self._queue.get(timeout=self._wait_s)
                if item is None:
                    if not stop.is_set():  # stopping is no stall: no reopen on the way out
                        gap |= self._check_stall()
                    continue
                chunk = self._condition(item, sample, gap)
                sample += len(chunk.samples)
                gap = False
                self._set_health("ok")
                yield chunk
        finally:
            self._close()
            self.health = "stopped"
            if self.overflows:
                log.info("%s: %d overruns in all", self.name, self.overflows)

    def _condition(self, item: tuple[bytes, float], sample: int, gap: bool) -> AudioChunk:
        data, arrived = item
        assert self._conditioner is not None
        samples = self._conditioner.process(np.frombuffer(data, dtype="<i2").astype(np.int16))
        self.last_audio = arrived
        frames_in = len(data) // (2 * self._conditioner.channels)
        start_mono = arrived - frames_in / self._rate
        start_wall = time.time() - (time.monotonic() - start_mono)
        return AudioChunk(samples, start_mono, start_wall, sample, gap)

    def _check_stall(self) -> bool:
        """Reopen a stream that died or went silent; True when audio was lost."""
        stream = self._stream
        quiet = time.monotonic() - self.last_audio
        if stream is not None and stream.is_active() and quiet < self.cfg.stall_timeout_s:
            return False
        error = stream.error if stream is not None else None
        why = (
            f"the stream stopped{f': {error}' if error else ''}"
            if stream is not None and not stream.is_active()
            else (f"no audio for {quiet:.1f} s")
        )
        self._set_health("stalled", why)
        self._close()
        self.reopens += 1
        return True
