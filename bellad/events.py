"""Typed events that flow between the stages.

Capture produces :class:`AudioChunk`; the segmenter turns chunks into
:class:`SpeechStarted`, :class:`SpeechEnded` and :class:`Utterance`; the
inference worker turns an utterance into a :class:`Result`. Everything is a
frozen dataclass; derived values are properties.
"""

from __future__ import annotations

import math
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np
import numpy.typing as npt

SAMPLE_RATE = 16_000
"""Every stage after capture works on 16 kHz mono int16 samples."""

Samples = npt.NDArray[np.int16]


def iso_time(wall: float) -> str:
    """Wall-clock seconds as an ISO 8601 UTC timestamp with milliseconds."""
    return (
        datetime.fromtimestamp(wall, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    )


def new_id() -> str:
    """A unique id for an utterance (used by subscribers to de-duplicate)."""
    return uuid.uuid4().hex


@dataclass(frozen=True, slots=True)
class AudioChunk:
    """A block of conditioned audio as it left the source."""

    samples: Samples
    start_mono: float
    start_wall: float
    start_sample: int  # samples since the stream started, at SAMPLE_RATE
    gap: bool = False  # the audio before this chunk is missing (device reopened)

    @property
    def duration_s(self) -> float:
        return len(self.samples) / SAMPLE_RATE


@dataclass(frozen=True, slots=True)
class SpeechStarted:
    """The segmenter opened: someone started speaking."""

    source: str
    at_mono: float
    at_wall: float
    offset_s: float | None


@dataclass(frozen=True, slots=True)
class SpeechEnded:
    """The segmenter closed (after its hangover)."""

    source: str
    at_mono: float
    at_wall: float
    offset_s: float | None


@dataclass(frozen=True, slots=True)
class Utterance:
    """One stretch of speech, pre-roll and hangover included."""

    audio: Samples
    source: str
    start_mono: float
    start_wall: float
    start_sample: int
    speech_end_mono: float  # end of the last voiced frame: the true end of speech
    closed_mono: float  # when the segmenter decided the utterance was over
    relative: bool  # True for files and stdin: offsets from the input's start mean something
    cut: bool = False  # ended by the length limit; speech goes on in the next utterance
    continued: bool = False  # begins where a cut utterance ended
    id: str = field(default_factory=new_id)

    @property
    def duration_s(self) -> float:
        return len(self.audio) / SAMPLE_RATE

    @property
    def end_mono(self) -> float:
        return self.start_mono + self.duration_s

    @property
    def end_wall(self) -> float:
        return self.start_wall + self.duration_s

    @property
    def start_s(self) -> float | None:
        return self.start_sample / SAMPLE_RATE if self.relative else None

    @property
    def end_s(self) -> float | None:
        return (self.start_sample + len(self.audio)) / SAMPLE_RATE if self.relative else None

    @property
    def rms_dbfs(self) -> float:
        """Level of the whole utterance in dB relative to full scale."""
        if len(self.audio) == 0:
            return -math.inf
        rms = float(np.sqrt(np.mean(np.square(self.audio, dtype=np.float64))))
        return 20 * math.log10(rms / 32768) if rms > 0 else -math.inf


@dataclass(frozen=True, slots=True)
class Transcript:
    """What Whisper heard, with the figures that say how sure it is."""

    text: str
    language: str
    language_probability: float
    avg_logprob: float
    no_speech_prob: float
    compression_ratio: float
    tokens: int
    flags: tuple[str, ...] = ()  # hallucination-guard findings when it only flags


@dataclass(frozen=True, slots=True)
class Sentiment:
    """A sentiment classification of the transcript."""

    label: str
    score: float  # probability of ``label``
    valence: float  # -1 (negative) .. +1 (positive)


@dataclass(frozen=True, slots=True)
class Result:
    """The outcome of one utterance, ready for the sinks."""

    utterance: Utterance
    transcript: Transcript
    sentiment: Sentiment | None
    timings: dict[str, float]  # stage -> seconds
    models: dict[str, str]  # role -> model name

    @property
    def latency_s(self) -> float:
        """From the true end of speech to the result being ready."""
        return sum(
            self.timings.get(k, 0.0) for k in ("hangover", "queue", "transcribe", "sentiment")
        )

    def to_dict(self) -> dict[str, Any]:
        """The JSON form shared by the stdout and MQTT sinks."""
        utt, tr = self.utterance, self.transcript
        return {
            "id": utt.id,
            "source": utt.source,
            "start": iso_time(utt.start_wall),
            "end": iso_time(utt.end_wall),
            "offset_start_s": _round(utt.start_s),
            "offset_end_s": _round(utt.end_s),
            "audio_s": round(utt.duration_s, 3),
            "cut": utt.cut,
            "continued": utt.continued,
            "text": tr.text,
            "language": tr.language,
            "language_probability": round(tr.language_probability, 4),
            "confidence": {
                "avg_logprob": round(tr.avg_logprob, 4),
                "no_speech_prob": round(tr.no_speech_prob, 4),
                "compression_ratio": round(tr.compression_ratio, 3),
            },
            "flags": list(tr.flags),
            "sentiment": None
            if self.sentiment is None
            else {
                "label": self.sentiment.label,
                "score": round(self.sentiment.score, 4),
                "valence": round(self.sentiment.valence, 4),
            },
            "latency_ms": {k: round(v * 1000, 1) for k, v in self.timings.items()},
            "models": dict(self.models),
        }


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


Event = SpeechStarted | SpeechEnded | Utterance | Result
