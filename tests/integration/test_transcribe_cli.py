"""``bellad transcribe`` on real speech, through the real code path and generated models."""

from __future__ import annotations

import itertools
import json
import resource
import subprocess
import sys
import wave
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from bellad.audio import read_audio
from bellad.config import WHISPER_LANGUAGES

LJ_RATE = 22_050


def bellad(
    *args: str, stdin: bytes | None = None, timeout: float = 300
) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-m", "bellad", *args],
        input=stdin,
        capture_output=True,
        timeout=timeout,
        check=False,
    )


def json_lines(out: bytes) -> list[dict[str, Any]]:
    return [json.loads(line) for line in out.decode().splitlines() if line.strip()]


def speech_span(samples: np.ndarray, rate: int) -> tuple[float, float]:
    """First and last 10 ms frame within 40 dB of the clip's loudest frame, in seconds."""
    frame = rate // 100
    usable = len(samples) - len(samples) % frame
    power = np.mean(np.square(samples[:usable].astype(np.float64)).reshape(-1, frame), axis=1)
    loud = np.nonzero(power > power.max() * 1e-4)[0]
    return loud[0] * frame / rate, (loud[-1] + 1) * frame / rate


def read_wav(path: Path) -> np.ndarray:
    with wave.open(str(path)) as w:
        assert w.getframerate() == LJ_RATE and w.getnchannels() == 1
        return np.frombuffer(w.readframes(w.getnframes()), dtype=np.int16)


@pytest.fixture(scope="module")
def lj_joined(
    data: Path, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, list[tuple[float, float]]]:
    """The 32 LJ Speech clips at 22.05 kHz joined with 1 s of silence; each clip's speech span."""
    clips = sorted((data / "audio" / "ljspeech").glob("LJ001-*.wav"))
    assert len(clips) == 32
    silence = np.zeros(LJ_RATE, np.int16)
    parts, spans, position = [silence], [], LJ_RATE
    for clip in clips:
        samples = read_wav(clip)
        start, end = speech_span(samples, LJ_RATE)
        spans.append((position / LJ_RATE + start, position / LJ_RATE + end))
        parts += [samples, silence]
        position += len(samples) + LJ_RATE
    path = tmp_path_factory.mktemp("lj") / "lj_joined.wav"
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(LJ_RATE)
        w.writeframes(np.concatenate(parts).tobytes())
    return path, spans


def test_32_lj_speech_clips_give_32_whole_utterances(
    lj_joined: tuple[Path, list[tuple[float, float]]], make_config: Callable[..., Path]
) -> None:
    path, spans = lj_joined
    proc = bellad("--config", str(make_config()), "transcribe", str(path))
    assert proc.returncode == 0, proc.stderr.decode()
    events = json_lines(proc.stdout)
    assert len(events) == 32, [(e["offset_start_s"], e["offset_end_s"]) for e in events]
    for event, (start, end) in zip(events, spans, strict=True):
        assert event["offset_start_s"] <= start, (event, start)  # no clipped onset
        assert event["offset_end_s"] >= end, (event, end)  # nothing cut at the end
        assert event["source"] == str(path)
        assert event["text"]
    for before, after in itertools.pairwise(events):
        assert before["offset_end_s"] <= after["offset_start_s"]  # no overlap, no merge


def test_utterance_event_fields(data: Path, make_config: Callable[..., Path]) -> None:
    jfk = data / "audio" / "jfk" / "jfk.wav"
    proc = bellad("--config", str(make_config()), "transcribe", str(jfk))
    assert proc.returncode == 0, proc.stderr.decode()
    events = json_lines(proc.stdout)
    assert events
    first, last = events[0], events[-1]
    start, end = speech_span(read_audio(jfk), 16_000)
    assert first["offset_start_s"] <= start and last["offset_end_s"] >= end
    assert last["offset_end_s"] <= 11.0 + 1e-6
    for event in events:
        assert event["language"] == "en"
        assert 0.0 <= event["language_probability"] <= 1.0
        assert set(event["confidence"]) == {"avg_logprob", "no_speech_prob", "compression_ratio"}
        assert event["sentiment"]["label"] in ("NEGATIVE", "POSITIVE")
        assert -1.0 <= event["sentiment"]["valence"] <= 1.0
        assert set(event["latency_ms"]) == {"hangover", "queue", "transcribe", "sentiment"}
        assert event["audio_s"] == pytest.approx(
            event["offset_end_s"] - event["offset_start_s"], abs=0.002
        )
        assert len(event["id"]) == 32
    assert len({e["id"] for e in events}) == len(events)


def test_raw_pcm_on_stdin(data: Path, make_config: Callable[..., Path]) -> None:
    raw = (data / "audio" / "pocketsphinx" / "goforward.raw").read_bytes()
    proc = bellad("--config", str(make_config()), "transcribe", "--rate", "16000", "-", stdin=raw)
    assert proc.returncode == 0, proc.stderr.decode()
    events = json_lines(proc.stdout)
    assert len(events) == 1
    samples = np.frombuffer(raw, dtype="<i2")
    start, end = speech_span(samples, 16_000)
    assert events[0]["offset_start_s"] <= start
    assert events[0]["offset_end_s"] >= end
    assert events[0]["source"] == "-"


def test_several_files_and_a_bad_one(
    data: Path, tmp_path: Path, make_config: Callable[..., Path]
) -> None:
    corrupt = tmp_path / "corrupt.wav"
    corrupt.write_bytes(b"RIFF\x24\x00\x00\x00WAVEfmt this is not audio at all")
    cards = sorted((data / "audio" / "pocketsphinx" / "cards").glob("*.wav"))[:2]
    proc = bellad(
        "--config", str(make_config()), "transcribe", str(cards[0]), str(corrupt), str(cards[1])
    )
    assert proc.returncode != 0
    stderr = proc.stderr.decode()
    assert f"bellad: error: audio file {corrupt}: cannot decode it" in stderr
    assert "Traceback" not in stderr
    sources = {e["source"] for e in json_lines(proc.stdout)}
    assert sources == {str(cards[0]), str(cards[1])}  # the good files are still transcribed


def test_language_detection_with_a_multilingual_model(
    data: Path, make_config: Callable[..., Path], test_models: Any
) -> None:
    config = make_config(
        {"transcribe": {"model": str(test_models.whisper_multilingual), "language": "auto"}}
    )
    clip = data / "audio" / "pocketsphinx" / "goforward.raw"
    proc = bellad("--config", str(config), "transcribe", "-", stdin=clip.read_bytes())
    assert proc.returncode == 0, proc.stderr.decode()
    (event,) = json_lines(proc.stdout)
    assert event["language"] in WHISPER_LANGUAGES  # detected (random weights pick any)
    assert 0.0 < event["language_probability"] < 1.0


def test_a_fixed_language_is_used_as_given(
    data: Path, make_config: Callable[..., Path], test_models: Any
) -> None:
    config = make_config(
        {"transcribe": {"model": str(test_models.whisper_multilingual), "language": "de"}}
    )
    clip = data / "audio" / "pocketsphinx" / "goforward.raw"
    proc = bellad("--config", str(config), "transcribe", "-", stdin=clip.read_bytes())
    assert proc.returncode == 0, proc.stderr.decode()
    (event,) = json_lines(proc.stdout)
    assert (event["language"], event["language_probability"]) == ("de", 1.0)


def test_held_memory_spares_each_transcription_its_page_faults(
    data: Path, make_config: Callable[..., Path]
) -> None:
    """``service.hold_memory`` reaches the allocator: counted page faults, not timings."""
    jfk = data / "audio" / "jfk" / "jfk.wav"
    faults = {}
    for hold in (True, False):
        config = make_config({"service": {"hold_memory": hold}}, name=f"hold-{hold}.toml")
        before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_minflt
        proc = bellad("--config", str(config), "transcribe", *[str(jfk)] * 4)
        faults[hold] = resource.getrusage(resource.RUSAGE_CHILDREN).ru_minflt - before
        assert proc.returncode == 0, proc.stderr.decode()
        assert len(json_lines(proc.stdout)) >= 4
    # glibc's default maps each encoder layer's 54 MB of scores afresh: ~77,000 faults
    # a transcription of the tiny model; held, only the first after loading faults them
    # (about 75,000 against 750,000 for the whole command here)
    assert faults[False] > 4 * faults[True], faults
