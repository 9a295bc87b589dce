"""Model-only time: the same audio through faster-whisper alone, in the benchmark process.

:class:`ModelTimer` loads the daemon's Whisper model twice: once as plain
``faster_whisper.WhisperModel`` (the model-only reference for the pipeline's
overhead) and once as bellad's :class:`~bellad.transcribe.WhisperTranscriber`,
whose encoder input can be padded or trimmed, to time both modes on the same
audio, interleaved so that drift in the machine's speed hits both alike.
It runs after the daemon has stopped, so nothing else competes for the cores;
each model's runs come in a pass of their own, so that the two do not evict
each other's weights from the caches between runs.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from bellad.config import TranscribeConfig
from bellad.events import SAMPLE_RATE, Samples
from bellad.transcribe import WhisperTranscriber

log = logging.getLogger(__name__)

LENGTHS_S = (1, 2, 5, 10, 20)


@dataclass(frozen=True)
class Timed:
    seconds: float
    text: str
    runs: tuple[float, ...] = ()  # each repeat's seconds, when there were repeats


@dataclass(frozen=True)
class LengthTiming:
    length_s: float
    padded_s: float
    trimmed_s: float


def speech_window(speech: Samples, length_s: float, index: int) -> Samples:
    """The ``index``-th window of ``length_s`` seconds, cut at an offset that varies with both."""
    n = round(length_s * SAMPLE_RATE)
    room = max(1, len(speech) - n)
    start = (index * 7 * SAMPLE_RATE + round(length_s * 1000)) % room
    return np.resize(speech[start:], n).astype(np.int16)


class ModelTimer:
    """Times transcriptions with the daemon's model and decoding options."""

    def __init__(self, whisper: Path, cfg: TranscribeConfig) -> None:
        from faster_whisper import WhisperModel

        self.cfg = cfg.model_copy(update={"model": str(whisper), "warmup": True})
        self.bellad = WhisperTranscriber(self.cfg, whisper)
        self.plain = WhisperModel(
            str(whisper),
            device=self.bellad.device,
            compute_type=self.bellad.compute_type,
            cpu_threads=self.bellad.threads,
            num_workers=1,
            local_files_only=True,
        )
        self.options: dict[str, Any] = self.bellad.options()
        self.model_only(np.zeros(SAMPLE_RATE, np.int16))  # warm, as the daemon is

    def model_only(self, audio: Samples, repeats: int = 1) -> Timed:
        """faster-whisper alone: ``WhisperModel.transcribe`` with the daemon's options.

        With ``repeats``, the median time of that many runs (the text of the first).
        """
        floats = audio.astype(np.float32) / 32768.0
        times, texts = [], []
        for _ in range(repeats):
            started = time.perf_counter()
            segments, _ = self.plain.transcribe(floats, **self.options)
            texts.append("".join(s.text for s in segments).strip())
            times.append(time.perf_counter() - started)
        return Timed(float(np.median(times)), texts[0], tuple(times))

    def with_encode(self, audio: Samples, encode: str) -> Timed:
        """bellad's transcriber with ``transcribe.encode`` set to ``encode``."""
        self.bellad.cfg = self.cfg.model_copy(update={"encode": encode})
        started = time.perf_counter()
        text = self.bellad.transcribe(audio).text
        return Timed(time.perf_counter() - started, text)

    def by_length(
        self, speech: Samples, lengths: tuple[float, ...] = LENGTHS_S, repeats: int = 3
    ) -> list[LengthTiming]:
        """Padded and trimmed times for windows of each length, cut at varied offsets."""
        out = []
        for length in lengths:
            for r in range(repeats):
                window = speech_window(speech, length, r)
                if r % 2:  # alternate the order, so neither mode always runs first
                    trimmed = self.with_encode(window, "trimmed")
                    padded = self.with_encode(window, "padded")
                else:
                    padded = self.with_encode(window, "padded")
                    trimmed = self.with_encode(window, "trimmed")
                out.append(LengthTiming(length, padded.seconds, trimmed.seconds))
            log.info("model time for %g s utterances measured (%d repeats)", length, repeats)
        return out
