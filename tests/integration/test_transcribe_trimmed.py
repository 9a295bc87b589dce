"""The trimmed encoder mode with the generated tiny model: it runs, produces text,
respects the decoding options, and leaves the padded default as faster-whisper has it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from bellad.audio import read_audio
from bellad.config import TranscribeConfig
from bellad.events import Samples
from bellad.transcribe import WhisperTranscriber


@pytest.fixture(scope="module")
def jfk(data: Path) -> Samples:
    return read_audio(data / "audio" / "jfk" / "jfk.wav")


@pytest.fixture
def encoder_inputs(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[int]]:
    """The number of mel frames of every encoder call, as faster-whisper makes them."""
    from faster_whisper import WhisperModel

    seen: list[int] = []
    original = WhisperModel.encode

    def spy(self: Any, features: Any) -> Any:
        seen.append(int(features.shape[-1]))
        return original(self, features)

    monkeypatch.setattr(WhisperModel, "encode", spy)
    yield seen


def transcriber(test_models: Any, **options: Any) -> WhisperTranscriber:
    cfg = TranscribeConfig(
        model=str(test_models.whisper), device="cpu", threads=2, warmup=False, **options
    )
    return WhisperTranscriber(cfg, test_models.whisper)


def test_padded_default_encodes_the_30_second_window(
    test_models: Any, jfk: Samples, encoder_inputs: list[int]
) -> None:
    whisper = transcriber(test_models)
    assert whisper.encode_frames(len(jfk[:32_000])) is None
    whisper.transcribe(jfk[:32_000])
    assert encoder_inputs == [3000]


def test_padded_default_matches_faster_whisper_alone(test_models: Any, jfk: Samples) -> None:
    from faster_whisper import WhisperModel

    whisper = transcriber(test_models)
    plain = WhisperModel(
        str(test_models.whisper),
        device="cpu",
        compute_type="int8",
        cpu_threads=2,
        local_files_only=True,
    )
    audio = jfk[: 5 * 16_000]
    segments, _ = plain.transcribe(audio.astype(np.float32) / 32768.0, **whisper.options())
    expected = list(segments)
    got = whisper.transcribe(audio)
    assert got.text == "".join(s.text for s in expected).strip()
    assert got.tokens == sum(len(s.tokens) for s in expected)


@pytest.mark.parametrize(("seconds", "frames"), [(1.0, 100), (2.3, 300), (7.5, 800)])
def test_trimmed_encodes_the_utterance_in_whole_seconds(
    test_models: Any, jfk: Samples, encoder_inputs: list[int], seconds: float, frames: int
) -> None:
    whisper = transcriber(test_models, encode="trimmed")
    result = whisper.transcribe(jfk[: round(seconds * 16_000)])
    assert encoder_inputs == [frames]
    assert result.text.strip()
    assert result.tokens > 0
    assert result.language == "en"


def test_trimmed_respects_decoding_options(test_models: Any, jfk: Samples) -> None:
    audio = jfk[: 3 * 16_000]
    capped = transcriber(test_models, encode="trimmed", max_new_tokens=2).transcribe(audio)
    assert 0 < capped.tokens <= 2
    beam = transcriber(test_models, encode="trimmed", beam_size=3).transcribe(audio)
    assert beam.text.strip()
    stamped = transcriber(test_models, encode="trimmed", timestamps=True).transcribe(audio)
    assert stamped.text.strip()


def test_trimmed_is_deterministic_and_differs_from_padded_only_in_the_encoder(
    test_models: Any, jfk: Samples, encoder_inputs: list[int]
) -> None:
    audio = jfk[: 2 * 16_000]
    trimmed = transcriber(test_models, encode="trimmed")
    first, second = trimmed.transcribe(audio), trimmed.transcribe(audio)
    assert first == second
    padded = transcriber(test_models).transcribe(audio)
    assert padded.text.strip()
    assert encoder_inputs == [200, 200, 3000]


def test_trimmed_works_with_language_detection(test_models: Any, jfk: Samples) -> None:
    cfg = TranscribeConfig(
        model=str(test_models.whisper_multilingual),
        device="cpu",
        threads=2,
        warmup=True,
        language="auto",
        encode="trimmed",
    )
    whisper = WhisperTranscriber(cfg, test_models.whisper_multilingual)
    result = whisper.transcribe(jfk[: 3 * 16_000])
    assert result.text.strip()
    assert 0.0 < result.language_probability <= 1.0
