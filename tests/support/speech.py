"""Real recordings joined into test inputs, with where each clip's speech is."""

from __future__ import annotations

import wave
from pathlib import Path

import numpy as np

from bellad.audio import read_audio

RATE = 16_000


def speech_span(samples: np.ndarray, rate: int = RATE) -> tuple[float, float]:
    """First and last 10 ms frame within 40 dB of the clip's loudest frame, in seconds."""
    frame = rate // 100
    usable = len(samples) - len(samples) % frame
    power = np.mean(np.square(samples[:usable].astype(np.float64)).reshape(-1, frame), axis=1)
    loud = np.nonzero(power > power.max() * 1e-4)[0]
    return loud[0] * frame / rate, (loud[-1] + 1) * frame / rate


def write_wav(path: Path, samples: np.ndarray, rate: int = RATE) -> Path:
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(samples.astype(np.int16).tobytes())
    return path


def join_clips(
    clips: list[Path], gap_s: float = 1.0, lead_s: float = 1.0
) -> tuple[np.ndarray, list[tuple[float, float]]]:
    """Clips at 16 kHz with ``gap_s`` of silence between; each clip's speech span in seconds."""
    parts = [np.zeros(int(lead_s * RATE), np.int16)]
    spans = []
    position = len(parts[0])
    gap = np.zeros(int(gap_s * RATE), np.int16)
    for clip in clips:
        samples = read_audio(clip)
        start, end = speech_span(samples)
        spans.append((position / RATE + start, position / RATE + end))
        parts += [samples, gap]
        position += len(samples) + len(gap)
    return np.concatenate(parts), spans


def cards(data: Path) -> list[Path]:
    """The five short spoken phrases (1-2 s each)."""
    return sorted((data / "audio" / "pocketsphinx" / "cards").glob("*.wav"))
