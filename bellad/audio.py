"""Audio sources and conditioning.

Every source yields :class:`~bellad.events.AudioChunk` of 16 kHz mono int16
samples. Whatever the input's rate and channel count, bellad does the mixdown
and resampling itself (:class:`Conditioner`), so a microphone, a file and raw
PCM on stdin go through the same code. The microphone lives in
:mod:`bellad.microphone`; files and stdin are here.
"""

from __future__ import annotations

import logging
import threading
import time
import wave
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO, Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt

from bellad.errors import AudioError
from bellad.events import SAMPLE_RATE, AudioChunk, Samples

log = logging.getLogger(__name__)


class AudioSource(Protocol):
    """Anything that yields conditioned audio until it ends or ``stop`` is set."""

    name: str
    relative: bool  # True when offsets from the start of the input mean something
    live: bool  # True when audio arrives in real time and cannot wait (a microphone)

    def chunks(self, stop: threading.Event) -> Iterator[AudioChunk]: ...


@runtime_checkable
class IdleAware(Protocol):
    """A live source that can hand over audio in batches while no utterance is open."""

    def set_idle(self, idle: bool) -> None: ...


def idle_batch_blocks(idle_batch_ms: int, block_ms: int) -> int:
    """Blocks handed over per wake-up while idle (``audio.idle_batch_ms``; at least one)."""
    return max(1, round(idle_batch_ms / block_ms))


def mixdown(frames: npt.NDArray[np.int16], channels: int) -> Samples:
    """Interleaved int16 samples of ``channels`` channels to mono (the mean)."""
    if channels == 1:
        return frames.reshape(-1)
    usable = len(frames) - len(frames) % channels
    wide = frames[:usable].reshape(-1, channels).astype(np.int32)
    return (wide.sum(axis=1) // channels).astype(np.int16)


class Conditioner:
    """Streams interleaved int16 audio at any rate to 16 kHz mono."""

    def __init__(self, rate: int, channels: int) -> None:
        if rate <= 0 or channels <= 0:
            raise ValueError("rate and channels must be positive")
        self.rate = rate
        self.channels = channels
        self._resampler = None
        if rate != SAMPLE_RATE:
            import soxr

            self._resampler = soxr.ResampleStream(rate, SAMPLE_RATE, 1, dtype="int16")

    def process(self, interleaved: npt.NDArray[np.int16], last: bool = False) -> Samples:
        """Condition one block; ``last=True`` flushes what the resampler holds."""
        mono = mixdown(interleaved, self.channels)
        if self._resampler is None:
            return mono
        out: Samples = self._resampler.resample_chunk(mono, last=last)
        return out


class ChunkClock:
    """Stamps consecutive chunks from a stream that started at ``start()``."""

    def __init__(self) -> None:
        self.mono0 = time.monotonic()
        self.wall0 = time.time()
        self.samples = 0

    def stamp(self, samples: Samples) -> AudioChunk:
        offset = self.samples / SAMPLE_RATE
        chunk = AudioChunk(samples, self.mono0 + offset, self.wall0 + offset, self.samples)
        self.samples += len(samples)
        return chunk

    def pace(self, stop: threading.Event) -> None:
        """Sleep until the audio stamped so far would have been heard in real time."""
        due = self.mono0 + self.samples / SAMPLE_RATE - time.monotonic()
        if due > 0:
            stop.wait(due)


class DecodedSource:
    """Decoded audio cut into blocks: as fast as it decodes, or paced in real time.

    Paced, it behaves as a microphone: a block comes once its last sample
    would have been heard, and while idle (:meth:`set_idle`) blocks come
    ``idle_batch_ms`` at a time.
    """

    relative = True
    name = ""

    def __init__(self, realtime: bool, block_ms: int, idle_batch_ms: int) -> None:
        self.realtime = realtime
        self.live = realtime
        self.block = SAMPLE_RATE * block_ms // 1000 if realtime else SAMPLE_RATE
        self._idle_batch = idle_batch_blocks(idle_batch_ms, block_ms)
        self._batch = 1

    def set_idle(self, idle: bool) -> None:
        self._batch = self._idle_batch if idle else 1

    def _decoded(self) -> Iterator[Samples]:
        raise NotImplementedError

    def chunks(self, stop: threading.Event) -> Iterator[AudioChunk]:
        clock = ChunkClock()
        blocks = _blocks(self._decoded(), clock, self.block, stop)
        if not self.realtime:
            yield from blocks
            return
        ready: list[AudioChunk] = []
        for chunk in blocks:
            ready.append(chunk)
            if len(ready) >= self._batch:
                clock.pace(stop)  # until the last block stamped so far is heard
                if stop.is_set():
                    return
                yield from ready
                ready = []
        if ready:
            clock.pace(stop)
            if not stop.is_set():
                yield from ready


class FileSource(DecodedSource):
    """An audio file (WAV, FLAC, MP3, anything FFmpeg decodes) at any rate and layout.

    16-bit PCM WAV, what recorders and ``arecord`` write, is read with the
    standard library; every other format through PyAV (FFmpeg), which is
    loaded only then: its codec libraries cost about 15 MB resident.
    """

    def __init__(
        self, path: Path, realtime: bool = False, block_ms: int = 30, idle_batch_ms: int = 0
    ) -> None:
        super().__init__(realtime, block_ms, idle_batch_ms)
        self.path = path
        self.name = str(path)
        self._wav = self._probe()

    def _probe(self) -> tuple[int, int] | None:
        """The rate and channels of a 16-bit PCM WAV; None for a file PyAV decodes."""
        if not self.path.is_file():
            raise AudioError(f"audio file {self.path}: no such file")
        wav = pcm16_wav_layout(self.path)
        if wav is not None:
            return wav
        import av

        try:
            with av.open(str(self.path)) as container:
                if not container.streams.audio:
                    raise AudioError(f"audio file {self.path}: holds no audio stream")
        except av.FFmpegError as exc:
            raise AudioError(f"audio file {self.path}: cannot decode it ({_reason(exc)})") from None
        return None

    def _decoded(self) -> Iterator[Samples]:
        return self._read_wav(*self._wav) if self._wav is not None else self._read_av()

    def _read_wav(self, rate: int, channels: int) -> Iterator[Samples]:
        conditioner = Conditioner(rate, channels)
        frame_bytes = 2 * channels
        with wave.open(str(self.path), "rb") as wav:
            while data := wav.readframes(max(1, rate // 10)):  # 100 ms at a time
                usable = len(data) - len(data) % frame_bytes  # a truncated file's last frame
                yield conditioner.process(np.frombuffer(data[:usable], "<i2").astype(np.int16))
        yield conditioner.process(np.zeros(0, np.int16), last=True)

    def _read_av(self) -> Iterator[Samples]:
        import av

        try:
            with av.open(str(self.path)) as container:
                stream = container.streams.audio[0]
                resampler = av.AudioResampler(format="s16", layout=stream.layout, rate=stream.rate)
                conditioner = Conditioner(stream.rate, stream.layout.nb_channels)
                for frame in container.decode(stream):
                    for packed in resampler.resample(frame):
                        yield conditioner.process(
                            packed.to_ndarray().reshape(-1).astype(np.int16, copy=False)
                        )
                yield conditioner.process(np.zeros(0, np.int16), last=True)
        except av.FFmpegError as exc:
            raise AudioError(f"audio file {self.path}: cannot decode it ({_reason(exc)})") from None


def pcm16_wav_layout(path: Path) -> tuple[int, int] | None:
    """(rate, channels) when ``path`` is a 16-bit PCM WAV the standard library reads, else None."""
    try:
        with wave.open(str(path), "rb") as wav:
            rate, channels = wav.getframerate(), wav.getnchannels()
            if wav.getsampwidth() == 2 and rate > 0 and channels > 0:
                return rate, channels
    except (wave.Error, EOFError):
        pass  # not a WAV, or one the standard library does not read (float, extensible)
    return None


class RawSource(DecodedSource):
    """Raw s16le PCM from a byte stream (stdin), at a given rate and channel count."""

    def __init__(
        self,
        stream: BinaryIO,
        rate: int,
        channels: int,
        name: str = "-",
        realtime: bool = False,
        block_ms: int = 30,
        idle_batch_ms: int = 0,
    ) -> None:
        super().__init__(realtime, block_ms, idle_batch_ms)
        self.stream = stream
        self.rate = rate
        self.channels = channels
        self.name = name

    def _decoded(self) -> Iterator[Samples]:
        conditioner = Conditioner(self.rate, self.channels)
        frame_bytes = 2 * self.channels
        want = max(frame_bytes, (self.rate // 10) * frame_bytes)  # 100 ms reads
        carry = b""
        while True:
            data = self.stream.read(want)
            if not data:
                break
            data = carry + data
            usable = len(data) - len(data) % frame_bytes
            carry = data[usable:]
            yield conditioner.process(np.frombuffer(data[:usable], dtype="<i2").astype(np.int16))
        if carry:
            log.warning("%s: ignored %d trailing bytes (not a whole frame)", self.name, len(carry))
        yield conditioner.process(np.zeros(0, np.int16), last=True)


def _blocks(
    decoded: Iterator[Samples], clock: ChunkClock, block: int, stop: threading.Event
) -> Iterator[AudioChunk]:
    """Re-cut decoded audio into stamped blocks of ``block`` samples (the last may be short)."""
    pending: list[Samples] = []
    held = 0
    for samples in decoded:
        if stop.is_set():
            return
        pending.append(samples)
        held += len(samples)
        if held < block:
            continue
        joined = np.concatenate(pending)
        cut = len(joined) - len(joined) % block
        for i in range(0, cut, block):
            yield clock.stamp(joined[i : i + block])
        pending, held = [joined[cut:]], len(joined) - cut
    if held:
        yield clock.stamp(np.concatenate(pending))


def _reason(exc: Exception) -> str:
    text = getattr(exc, "strerror", None) or str(exc)
    return text.split(": '", 1)[0]


def read_audio(path: Path) -> Samples:
    """A whole file, conditioned to 16 kHz mono (for tests, benchmarks, warm-up)."""
    source = FileSource(path)
    parts = [chunk.samples for chunk in source.chunks(threading.Event())]
    return np.concatenate(parts) if parts else np.zeros(0, np.int16)
