"""``transcribe.encode``: the key, its validation, and the trimmed encoder length."""

from __future__ import annotations

import pytest

from bellad.config import TranscribeConfig, parse_config
from bellad.encoder_input import FRAMES_PER_SECOND, WINDOW_FRAMES, trimmed_frames
from bellad.errors import ConfigError


def test_padded_is_the_default() -> None:
    assert TranscribeConfig().encode == "padded"
    assert parse_config({}).transcribe.encode == "padded"


def test_trimmed_is_accepted() -> None:
    assert parse_config({"transcribe": {"encode": "trimmed"}}).transcribe.encode == "trimmed"


@pytest.mark.parametrize("value", ["trim", "", 30, True])
def test_other_values_are_refused_naming_the_key(value: object) -> None:
    with pytest.raises(ConfigError, match=r"transcribe\.encode"):
        parse_config({"transcribe": {"encode": value}})


@pytest.mark.parametrize(
    ("seconds", "frames"),
    [(0.0, 100), (0.2, 100), (1.0, 100), (1.01, 200), (2.5, 300), (10.0, 1000), (29.9, 3000)],
)
def test_trimmed_frames_round_up_to_whole_seconds(seconds: float, frames: int) -> None:
    assert trimmed_frames(round(seconds * 16_000)) == frames


def test_trimmed_frames_never_exceed_the_window() -> None:
    assert trimmed_frames(45 * 16_000) == WINDOW_FRAMES


def test_trimmed_frames_suit_the_encoder_stride() -> None:
    for samples in range(0, 31 * 16_000, 3_331):
        frames = trimmed_frames(samples)
        assert frames % 2 == 0  # the second convolution has stride 2
        assert frames % FRAMES_PER_SECOND == 0
        assert frames * 160 >= min(samples, 30 * 16_000)  # never cuts the audio
