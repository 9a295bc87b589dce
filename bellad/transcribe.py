"""Transcription with faster-whisper (CTranslate2), and the hallucination guard.

The model is loaded once at start from a local folder and warmed up with one
inference. Decoding options suit short live utterances: greedy or a small
beam, one temperature unless configured, no conditioning on previous text, no
timestamps unless asked. faster-whisper's own no-speech skipping is turned
off so that :func:`judge` alone decides what is dropped or flagged, and says
why.

Whisper's encoder is trained on 30-second windows: faster-whisper pads every
input's features to 30 s, so a 2-second command pays for a 30-second encoder
pass. With ``transcribe.encode = "trimmed"`` the encoder sees only the
utterance, rounded up to whole seconds (:func:`trimmed_frames`); decoding,
its options and the text path are faster-whisper's own either way. The padded
window stays the default: what trimming does to accuracy depends on the
model's weights (measure it with ``bellad bench --wer``).
"""

from __future__ import annotations

import logging
import os
import re
import time
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from bellad.config import GuardConfig, TranscribeConfig
from bellad.encoder_input import trimmable_model_class, trimmed_frames
from bellad.errors import ModelError
from bellad.events import SAMPLE_RATE, Samples, Transcript
from bellad.memory import map_new_blocks, release_free_memory

log = logging.getLogger(__name__)


class Transcriber(Protocol):
    """Speech to text: a fake in unit tests, Whisper in the daemon."""

    name: str

    def transcribe(self, audio: Samples) -> Transcript: ...


def choose_device(wanted: str, cuda_devices: int) -> str:
    """``auto`` means CUDA when a CUDA device is present."""
    if wanted == "auto":
        return "cuda" if cuda_devices > 0 else "cpu"
    return wanted


def choose_compute_type(wanted: str, device: str) -> str:
    """int8 on the CPU, int8 weights with float16 activations on CUDA."""
    if wanted != "auto":
        return wanted
    return "int8_float16" if device == "cuda" else "int8"


def choose_threads(wanted: int, cores: int | None) -> int:
    """0 means one thread per core, at most 4 (more does not pay on small boards)."""
    return wanted if wanted > 0 else max(1, min(4, cores or 1))


@dataclass(frozen=True, slots=True)
class Decoded:
    """The parts of faster-whisper's output the guard and the event need."""

    text: str
    language: str
    language_probability: float
    avg_logprob: float
    no_speech_prob: float
    tokens: int


class WhisperTranscriber:
    """A faster-whisper model loaded once; ``transcribe`` is thread-confined to one caller."""

    def __init__(self, cfg: TranscribeConfig, model_dir: Path, name: str | None = None) -> None:
        import ctranslate2

        self.cfg = cfg
        self.name = name or cfg.model
        self.device = choose_device(cfg.device, ctranslate2.get_cuda_device_count())
        self.compute_type = choose_compute_type(cfg.compute_type, self.device)
        self.threads = choose_threads(cfg.threads, os.cpu_count())
        started = time.monotonic()
        try:
            self.model = trimmable_model_class()(
                str(model_dir),
                device=self.device,
                compute_type=self.compute_type,
                cpu_threads=self.threads,
                num_workers=1,
                local_files_only=True,
            )
        except (RuntimeError, ValueError, OSError) as exc:
            raise ModelError(
                f"whisper model {self.name!r} in {model_dir} cannot be loaded: {exc}; "
                f"check it with  bellad models verify {self.name}"
            ) from None
        self.english_only = not self.model.model.is_multilingual
        log.info(
            "loaded whisper model %s (%s, %s, %d threads, %s encoder input) in %.2f s",
            self.name,
            self.device,
            self.compute_type,
            self.threads,
            cfg.encode,
            time.monotonic() - started,
        )
        if cfg.warmup:
            self.warm_up()
        release_free_memory()  # the loader's and the warm-up's scratch memory

    def warm_up(self) -> None:
        """One inference on a second of quiet noise, so the first utterance pays no set-up."""
        started = time.monotonic()
        noise = np.random.default_rng(0).normal(0, 30, SAMPLE_RATE).astype(np.int16)
        self._decode(noise)
        log.info("whisper warm-up took %.2f s", time.monotonic() - started)

    def options(self) -> dict[str, Any]:
        """The keyword arguments given to ``WhisperModel.transcribe``."""
        cfg, guard = self.cfg, self.cfg.guard
        fallback = len(cfg.temperature) > 1
        return {
            "language": None if cfg.language == "auto" else cfg.language,
            "task": "transcribe",
            "beam_size": cfg.beam_size,
            "best_of": cfg.best_of,
            "temperature": list(cfg.temperature),
            "compression_ratio_threshold": guard.compression_ratio_threshold if fallback else None,
            "log_prob_threshold": guard.log_prob_threshold if fallback else None,
            "no_speech_threshold": None,
            "condition_on_previous_text": cfg.condition_on_previous_text,
            "without_timestamps": not cfg.timestamps,
            "word_timestamps": False,
            "initial_prompt": cfg.initial_prompt,
            "hotwords": cfg.hotwords,
            "max_new_tokens": cfg.max_new_tokens,
            "vad_filter": False,
        }

    def encode_frames(self, samples: int) -> int | None:
        """The encoder's input length for audio of ``samples``; None means the padded window."""
        return trimmed_frames(samples) if self.cfg.encode == "trimmed" else None

    def _decode(self, audio: Samples) -> Decoded:
        map_new_blocks(True)  # until the encoder runs: see bellad.memory
        try:
            floats = audio.astype(np.float32) / 32768.0
            self.model.encode_frames = self.encode_frames(len(audio))
            segments, info = self.model.transcribe(floats, **self.options())
            segments = list(segments)
        finally:
            map_new_blocks(False)
        tokens = sum(len(s.tokens) for s in segments)
        weight = max(tokens, 1)
        avg_logprob = (
            sum(s.avg_logprob * max(len(s.tokens), 1) for s in segments) / weight
            if segments
            else 0.0
        )
        return Decoded(
            text="".join(s.text for s in segments).strip(),
            language=info.language,
            language_probability=float(info.language_probability),
            avg_logprob=float(avg_logprob),
            no_speech_prob=max((float(s.no_speech_prob) for s in segments), default=1.0),
            tokens=tokens,
        )

    def transcribe(self, audio: Samples) -> Transcript:
        decoded = self._decode(audio)
        return Transcript(
            text=decoded.text,
            language=decoded.language,
            language_probability=decoded.language_probability,
            avg_logprob=decoded.avg_logprob,
            no_speech_prob=decoded.no_speech_prob,
            compression_ratio=compression_ratio(decoded.text),
            tokens=decoded.tokens,
        )


def compression_ratio(text: str) -> float:
    """How well the text compresses: repetitive hallucinations compress very well."""
    data = text.encode("utf-8")
    return len(data) / len(zlib.compress(data)) if data else 0.0


_PUNCT = re.compile(r"[^\w\s']+")


def normalize(text: str) -> str:
    """Lower case, no punctuation, single spaces: for matching phantom phrases."""
    return " ".join(_PUNCT.sub(" ", text.lower()).split())


def judge(transcript: Transcript, rms_dbfs: float, guard: GuardConfig) -> tuple[str, ...]:
    """The reasons to distrust a transcript; empty when it looks like real speech."""
    reasons: list[str] = []
    if not transcript.text.strip():
        return ("empty",)
    if not guard.enabled:
        return ()
    if transcript.no_speech_prob > guard.no_speech_threshold:
        reasons.append("no_speech")
    if transcript.avg_logprob < guard.log_prob_threshold:
        reasons.append("low_logprob")
    if transcript.compression_ratio > guard.compression_ratio_threshold:
        reasons.append("repetitive")
    phantoms = {normalize(p) for p in guard.phantom_phrases}
    if normalize(transcript.text) in phantoms and rms_dbfs < guard.phantom_max_dbfs:
        reasons.append("phantom")
    return tuple(reasons)
