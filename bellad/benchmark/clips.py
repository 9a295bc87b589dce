"""The recordings, where their speech ends, and the programme the daemon hears.

A folder of recordings is read through its ``manifest.tsv`` (``path``,
``sample_rate``, ``channels``, ... columns; ``.raw`` files are s16le at the
stated rate) or, without one, every audio file under it. Each clip's true end
of speech is found from its energy alone, independently of the daemon's VAD:
the end of the last 10 ms frame louder than both 35 dB below the clip's loud
frames (95th percentile) and 10 dB above its noise floor (10th percentile).

A :class:`Programme` is one stream of 16 kHz audio with named sections (idle
silence, idle room noise, clips spaced by room noise, continuous speech) and
a :class:`Mark` for every clip placed in it.
"""

from __future__ import annotations

import csv
import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from bellad.audio import Conditioner, mixdown, read_audio
from bellad.events import SAMPLE_RATE, Samples

log = logging.getLogger(__name__)

AUDIO_SUFFIXES = (".wav", ".flac", ".mp3", ".ogg", ".opus", ".m4a", ".raw")
FRAME = SAMPLE_RATE // 100  # 10 ms
# Steady pink noise for the idle figure: a room with a fan, 35-40 dB under the speech.
ROOM_NOISE_DBFS = -55.0
# Between the clips of the latency parts: a quiet room. Right after speech, webrtcvad at
# aggressiveness 2 keeps hearing speech in pink noise from about -60 dBFS up, so utterances
# run on to the length limit (see vad_in_noise); the latency is measured where they end.
QUIET_ROOM_DBFS = -70.0


@dataclass(frozen=True)
class Clip:
    """One recording, conditioned to 16 kHz mono."""

    name: str
    audio: Samples
    speech_end: int  # sample index where its speech ends
    reference: str = ""

    @property
    def duration_s(self) -> float:
        return len(self.audio) / SAMPLE_RATE


def speech_end(audio: Samples) -> int:
    """The index after the last sample of speech, judged by energy (see the module doc)."""
    usable = len(audio) - len(audio) % FRAME
    if usable == 0:
        return len(audio)
    frames = audio[:usable].reshape(-1, FRAME).astype(np.float64)
    db = 10 * np.log10(np.mean(frames**2, axis=1) / 32768.0**2 + 1e-12)
    threshold = max(np.percentile(db, 95) - 35.0, np.percentile(db, 10) + 10.0)
    loud = np.nonzero(db > threshold)[0]
    return int((loud[-1] + 1) * FRAME) if len(loud) else len(audio)


def _read_raw(path: Path, rate: int, channels: int) -> Samples:
    data = np.fromfile(path, dtype="<i2").astype(np.int16)
    if rate == SAMPLE_RATE:
        return mixdown(data, channels)
    return Conditioner(rate, channels).process(data, last=True)


def load_clips(folder: Path, limit: int | None = None) -> list[Clip]:
    """The recordings in ``folder`` (manifest order, else sorted by path)."""
    manifest = folder / "manifest.tsv"
    rows: list[dict[str, str]]
    if manifest.is_file():
        with manifest.open(newline="", encoding="utf-8") as f:
            rows = list(csv.DictReader(f, delimiter="\t"))
    else:
        rows = [
            {"path": str(p.relative_to(folder))}
            for p in sorted(folder.rglob("*"))
            if p.suffix.lower() in AUDIO_SUFFIXES and p.suffix.lower() != ".raw"
        ]
    if not rows:
        from bellad.errors import AudioError

        raise AudioError(f"{folder}: no recordings (no manifest.tsv and no audio files)")
    clips = []
    for row in rows[:limit]:
        path = folder / row["path"]
        if path.suffix.lower() == ".raw":
            audio = _read_raw(
                path, int(row.get("sample_rate") or SAMPLE_RATE), int(row.get("channels") or 1)
            )
        else:
            audio = read_audio(path)
        clips.append(Clip(row["path"], audio, speech_end(audio), row.get("reference_text", "")))
    return clips


def room_noise(seconds: float, dbfs: float = ROOM_NOISE_DBFS, seed: int = 0) -> Samples:
    """Steady pink noise (1/f power above 30 Hz) at ``dbfs`` RMS; loops without a seam."""
    n = max(FRAME, round(seconds * SAMPLE_RATE))
    rng = np.random.default_rng(seed)
    spectrum = np.fft.rfft(rng.standard_normal(n))
    freqs = np.fft.rfftfreq(n, 1 / SAMPLE_RATE)
    spectrum *= np.where(freqs < 30, 0.0, 1 / np.sqrt(np.maximum(freqs, 30)))
    noise = np.fft.irfft(spectrum, n)
    noise *= 10 ** (dbfs / 20) * 32768 / np.sqrt(np.mean(noise**2))
    return np.clip(np.round(noise), -32768, 32767).astype(np.int16)


def silence(seconds: float) -> Samples:
    return np.zeros(round(seconds * SAMPLE_RATE), np.int16)


def tile(sound: Samples, seconds: float) -> Samples:
    n = round(seconds * SAMPLE_RATE)
    return np.resize(sound, n).astype(np.int16) if n else np.zeros(0, np.int16)


@dataclass(frozen=True)
class Mark:
    """A clip placed in a programme: indices from the programme's start."""

    clip: str
    section: str
    start: int
    speech_end: int
    end: int

    @property
    def duration_s(self) -> float:
        return (self.end - self.start) / SAMPLE_RATE


@dataclass
class Programme:
    """One stream of audio with named sections and the clips in it."""

    parts: list[Samples] = field(default_factory=list)
    length: int = 0
    sections: dict[str, tuple[int, int]] = field(default_factory=dict)
    marks: list[Mark] = field(default_factory=list)

    def add(self, audio: Samples, section: str) -> int:
        start = self.length
        self.parts.append(audio)
        self.length += len(audio)
        first, _ = self.sections.get(section, (start, start))
        self.sections[section] = (first, self.length)
        return start

    def add_clip(self, clip: Clip, section: str) -> Mark:
        start = self.add(clip.audio, section)
        mark = Mark(clip.name, section, start, start + clip.speech_end, start + len(clip.audio))
        self.marks.append(mark)
        return mark

    @property
    def audio(self) -> Samples:
        return np.concatenate(self.parts) if self.parts else np.zeros(0, np.int16)

    def seconds(self, section: str) -> float:
        first, last = self.sections[section]
        return (last - first) / SAMPLE_RATE


def _spaced(prog: Programme, clips: list[Clip], section: str, gap_s: float, gap: Samples) -> None:
    """Each clip after ``gap_s`` of room noise, then a tail for the last one to close."""
    for clip in clips:
        prog.add(tile(gap, gap_s), section)
        prog.add_clip(clip, section)
    prog.add(tile(gap, 3.0), section)


def compose_live(
    clips: list[Clip],
    spaced: list[Clip],
    *,
    idle_s: float,
    gap_s: float,
    continuous_s: float,
    noise: Samples,
    gap: Samples,
    lead_in_s: float = 0.0,
) -> Programme:
    """Idle silence, idle room ``noise``, ``spaced`` clips, then continuous speech.

    Each idle section has a second of margin on both sides of its measuring
    window. Continuous speech is ``clips`` back to back for ``continuous_s``.
    """
    prog = Programme()
    if lead_in_s:
        prog.add(silence(lead_in_s), "lead_in")
    prog.add(silence(idle_s + 2), "idle_silence")
    prog.add(tile(noise, idle_s + 2), "idle_noise")
    _spaced(prog, spaced, "mic_latency", gap_s, gap)
    heard = 0.0
    while heard < continuous_s:
        for clip in clips:
            prog.add_clip(clip, "continuous")
            heard += clip.duration_s
            if heard >= continuous_s:
                break
    prog.add(tile(gap, 4.0), "continuous")
    return prog


def compose_latency(
    clips: list[Clip], *, gap_s: float, gap: Samples, lead_in_s: float
) -> Programme:
    """Every clip after ``gap_s`` of the ``gap`` sound, for the latency by stage."""
    prog = Programme()
    prog.add(silence(lead_in_s), "lead_in")
    _spaced(prog, clips, "latency", gap_s, gap)
    return prog


def speech_stream(clips: list[Clip]) -> Samples:
    """Every clip's speech back to back: material for utterances of any length."""
    return np.concatenate([c.audio[: c.speech_end] for c in clips])
