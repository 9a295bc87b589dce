"""Backend choice and the hallucination guard, without loading a model."""

from __future__ import annotations

import pytest

from bellad.config import GuardConfig
from bellad.events import Transcript
from bellad.transcribe import (
    choose_compute_type,
    choose_device,
    choose_threads,
    compression_ratio,
    judge,
    normalize,
)


def transcript(text: str = "turn on the kitchen light", **kw: float) -> Transcript:
    values = {"avg_logprob": -0.3, "no_speech_prob": 0.05, "compression_ratio": 1.1} | kw
    return Transcript(text, "en", 1.0, tokens=6, **values)  # type: ignore[arg-type]


def test_device_and_compute_type() -> None:
    assert choose_device("auto", 0) == "cpu"
    assert choose_device("auto", 1) == "cuda"
    assert choose_device("cpu", 2) == "cpu"
    assert choose_compute_type("auto", "cpu") == "int8"
    assert choose_compute_type("auto", "cuda") == "int8_float16"
    assert choose_compute_type("float32", "cpu") == "float32"


def test_threads() -> None:
    assert choose_threads(0, 2) == 2
    assert choose_threads(0, 8) == 4
    assert choose_threads(0, None) == 1
    assert choose_threads(3, 8) == 3


def test_compression_ratio_spots_repetition() -> None:
    assert compression_ratio("") == 0.0
    assert compression_ratio("turn on the light") < 1.5
    assert compression_ratio("thank you " * 30) > 2.4


def test_normalize() -> None:
    assert normalize("  Thank you for watching!! ") == "thank you for watching"


def test_a_plain_transcript_passes() -> None:
    assert judge(transcript(), -20.0, GuardConfig()) == ()


@pytest.mark.parametrize(
    ("kw", "reason"),
    [
        ({"no_speech_prob": 0.9}, "no_speech"),
        ({"avg_logprob": -1.5}, "low_logprob"),
        ({"compression_ratio": 3.0}, "repetitive"),
    ],
)
def test_each_threshold(kw: dict[str, float], reason: str) -> None:
    assert judge(transcript(**kw), -20.0, GuardConfig()) == (reason,)


def test_phantom_only_on_quiet_audio() -> None:
    phantom = transcript("Thank you for watching.")
    assert judge(phantom, -50.0, GuardConfig()) == ("phantom",)
    assert judge(phantom, -20.0, GuardConfig()) == ()  # someone really said it, loudly


def test_empty_text_is_always_distrusted() -> None:
    assert judge(transcript("  "), -20.0, GuardConfig(enabled=False)) == ("empty",)


def test_disabled_guard_trusts_everything_else() -> None:
    bad = transcript(no_speech_prob=0.99, avg_logprob=-3.0, compression_ratio=9.0)
    assert judge(bad, -60.0, GuardConfig(enabled=False)) == ()
