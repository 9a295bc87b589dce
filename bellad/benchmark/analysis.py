"""From what the main run recorded to the figures: idle cost, latency by stage, backlog.

Times, per utterance that closes a clip's speech (stamps in ms):

* ``T0`` the true end of speech, when the input's last voiced sample was heard;
* ``E`` bellad's end of speech (its VAD's last voiced frame) = ``end - hangover``;
* ``C`` the VAD's decision that the utterance is over = ``end`` in the payload;
* then ``queue``, ``transcribe``, ``sentiment`` as bellad reports them, the
  hand-off to the MQTT sink and the outbox (``published - outbox`` is when the
  result was appended), the time in the outbox, and the network to the
  subscriber's receipt ``R``.

The felt latency is ``R - T0``; *detection* is ``C - T0`` (capture, and the
hangover measured from the true end); the pipeline's overhead is
``(R - C) - model-only time``.
"""

from __future__ import annotations

import itertools
import math
import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from bellad.benchmark.clips import Clip, Mark, compose_latency, room_noise
from bellad.benchmark.daemon import ProcSample
from bellad.benchmark.runner import ProgrammeRun
from bellad.config import VadConfig
from bellad.contract import percentile
from bellad.events import SAMPLE_RATE, AudioChunk
from bellad.events import Utterance as VadUtterance
from bellad.vad import Segmenter

MATCH_TOLERANCE_S = 0.3  # how far an utterance's end may fall before its clip's speech end
NOISE_LEVELS = (-70.0, -60.0, -55.0, -50.0)  # dBFS of pink room noise between clips


def parse_time(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def stat(values: list[float], digits: int = 1) -> dict[str, Any]:
    """Median, p95, min, max and count (None when there are no values)."""
    if not values:
        return {"median": None, "p95": None, "min": None, "max": None, "count": 0}
    med, p95 = percentile(values, 0.5), percentile(values, 0.95)
    assert med is not None and p95 is not None
    return {
        "median": round(med, digits),
        "p95": round(p95, digits),
        "min": round(min(values), digits),
        "max": round(max(values), digits),
        "count": len(values),
    }


@dataclass(frozen=True)
class Utterance:
    """One transcript that closed a clip, with its stamps (wall seconds) and stages (ms)."""

    mark: Mark
    payload: dict[str, Any]
    true_end: float  # T0
    received: float  # R
    start_index: int  # programme indices of the utterance's audio
    end_index: int

    @property
    def ms(self) -> dict[str, float]:
        return {k: float(v) for k, v in self.payload["latency_ms"].items()}

    @property
    def close(self) -> float:  # C
        return parse_time(self.payload["end"])

    def stages(self) -> dict[str, float]:
        ms = self.ms
        published = parse_time(self.payload["published"])
        appended = published - ms.get("outbox", 0.0) / 1000
        result = self.close + (ms["queue"] + ms["transcribe"] + ms.get("sentiment", 0.0)) / 1000
        return {
            "felt": (self.received - self.true_end) * 1000,
            "detection": (self.close - self.true_end) * 1000,
            "hangover_reported": ms["hangover"],
            "capture_alignment": (self.close - self.true_end) * 1000 - ms["hangover"],
            "queue": ms["queue"],
            "transcribe": ms["transcribe"],
            "sentiment": ms.get("sentiment", 0.0),
            "handoff": (appended - result) * 1000,
            "outbox": ms.get("outbox", 0.0),
            "network": (self.received - published) * 1000,
            "after_close": (self.received - self.close) * 1000,
        }


def closing_utterances(run: ProgrammeRun, section: str) -> tuple[list[Utterance], int]:
    """The transcript that closed each clip of ``section``, and how many clips had none."""
    marks = [m for m in run.programme.marks if m.section == section]
    placed = []
    for message in run.transcripts:
        event = message.json()
        end = run.index_of(parse_time(event["end"]), event)
        start = end - round(event["audio_s"] * SAMPLE_RATE)
        placed.append((end, start, event, message))
    found, missing = [], 0
    tolerance = round(MATCH_TOLERANCE_S * SAMPLE_RATE)
    for i, mark in enumerate(marks):
        limit = marks[i + 1].start if i + 1 < len(marks) else run.programme.sections[section][1]
        low, high = mark.speech_end - tolerance, limit + tolerance
        hits = [p for p in placed if low <= p[0] <= high and not p[2]["cut"]]
        if not hits:
            missing += 1
            continue
        end, start, event, message = min(hits, key=lambda p: p[0])
        found.append(
            Utterance(mark, event, run.time_of(mark.speech_end), message.wall, max(0, start), end)
        )
    return found, missing


def cpu_between(samples: list[ProcSample], start: float, end: float) -> float | None:
    """CPU seconds the process used between two wall times (linear between samples)."""

    def at(wall: float) -> float | None:
        for before, after in itertools.pairwise(samples):
            if before.wall <= wall <= after.wall:
                span = after.wall - before.wall
                share = (wall - before.wall) / span if span > 0 else 0.0
                return before.cpu_s + share * (after.cpu_s - before.cpu_s)
        return None

    first, last = at(start), at(end)
    return None if first is None or last is None else last - first


def idle_cost(run: ProgrammeRun, section: str, window_s: float) -> dict[str, Any]:
    """CPU of the whole daemon over ``window_s`` inside an idle section (1 s margins)."""
    first, last = run.programme.sections[section]
    start = run.time_of(first) + 1.0
    end = min(start + window_s, run.time_of(last) - 0.5)
    used = cpu_between(run.samples, start, end)
    floor = cpu_between(run.probe, start, end) if run.probe else None
    triggers = [
        m
        for m in run.speech
        if m.payload == b"ON" and run.time_of(first) <= m.wall <= run.time_of(last)
    ]
    percent = None if used is None else 100 * used / (end - start)
    return {
        "window_s": round(end - start, 1),
        "cpu_s": None if used is None else round(used, 3),
        "cpu_percent": None if percent is None else round(percent, 3),
        "cpu_s_per_hour": None if percent is None else round(percent * 36, 1),
        "capture_alone_percent": None if floor is None else round(100 * floor / (end - start), 3),
        "speech_triggers": len(triggers),
    }


def cpu_timeline(run: ProgrammeRun, step_s: float = 1.0) -> list[tuple[float, float]]:
    """(seconds since the programme began, CPU % of one core) per ``step_s``."""
    origin = run.time_of(0)
    out = []
    samples = [s for s in run.samples if s.wall >= origin - step_s]
    t = origin
    while samples and t + step_s <= samples[-1].wall:
        used = cpu_between(samples, t, t + step_s)
        if used is not None:
            out.append((round(t - origin, 2), round(100 * used / step_s, 2)))
        t += step_s
    return out


def continuous(run: ProgrammeRun, log_drops: int) -> dict[str, Any]:
    """Continuous speech: utterances, the deepest backlog, drops, processing latency."""
    first, last = run.programme.sections["continuous"]
    begin, end = run.time_of(first), run.time_of(last)
    events = [m.json() | {"_received": m.wall} for m in run.transcripts]
    inside = [e for e in events if begin <= parse_time(e["end"]) <= end + 5]
    spans = [
        (parse_time(e["end"]), parse_time(e["end"]) + e["latency_ms"]["queue"] / 1000)
        for e in inside
    ]
    depth = max(  # utterances closed and still waiting when each inference began
        (sum(1 for close, began in spans if close <= t < began) for _, t in spans), default=0
    )
    speech_s = sum(m.duration_s for m in run.programme.marks if m.section == "continuous")
    heard_s = sum(e["audio_s"] for e in inside)
    busy_s = sum(e["latency_ms"]["transcribe"] / 1000 for e in inside)
    return {
        "speech_s": round(speech_s, 1),
        "utterances": len(inside),
        "transcribed_s": round(heard_s, 1),
        "cut_by_length": sum(1 for e in inside if e["cut"]),
        "backlog_max": depth,
        "dropped": log_drops,
        "busy_fraction": round(busy_s / speech_s, 3) if speech_s else None,
        "after_close_ms": stat([(e["_received"] - parse_time(e["end"])) * 1000 for e in inside]),
        "queue_ms": stat([float(e["latency_ms"]["queue"]) for e in inside]),
        "rtf": stat([e["latency_ms"]["transcribe"] / 1000 / e["audio_s"] for e in inside], 3),
    }


def count_lines(run: ProgrammeRun, pattern: str) -> int:
    return sum(1 for _, line in run.log_lines if re.search(pattern, line))


def capture_overruns(run: ProgrammeRun) -> int:
    """Times the device overran (audio lost before bellad read it), from the daemon's log."""
    counts = [int(m[1]) for _, line in run.log_lines if (m := re.search(r"(\d+) overruns", line))]
    return max(counts, default=0)


def peak_memory(run: ProgrammeRun) -> dict[str, Any]:
    speech = [
        a
        for name, (a, _) in run.programme.sections.items()
        if not name.startswith(("idle", "lead"))
    ]
    speech_from = run.time_of(min(speech)) if speech else float("inf")
    idle = [s for s in run.samples if s.wall <= speech_from]
    return {
        "peak_rss_mb": round(max(s.peak_rss_mb for s in run.samples), 1),
        "idle_rss_mb": round(idle[-1].rss_mb, 1) if idle else None,
        # code and data mapped from files: shared with other processes using
        # the same libraries, and the kernel can drop and re-read them
        "idle_file_mb": round(idle[-1].file_mb, 1) if idle else None,
    }


def finite(values: list[float]) -> list[float]:
    return [v for v in values if math.isfinite(v)]


def memory_timeline(run: ProgrammeRun, step_s: float = 1.0) -> list[tuple[float, float, float]]:
    """(seconds since the programme began, RSS MB, peak RSS MB), about every ``step_s``."""
    origin = run.time_of(0)
    out: list[tuple[float, float, float]] = []
    for sample in run.samples:
        t = round(sample.wall - origin, 2)
        if not out or t - out[-1][0] >= step_s:
            out.append((t, round(sample.rss_mb, 1), round(sample.peak_rss_mb, 1)))
    return out


def vad_in_noise(
    clips: list[Clip], cfg: VadConfig, gap_s: float, levels: tuple[float, ...] = NOISE_LEVELS
) -> dict[str, Any]:
    """How many clips bellad's segmenter closes when room noise fills the gaps, by level.

    The daemon's VAD settings over the latency programme, offline (no daemon):
    a clip counts as closed when an utterance that was not cut at the length
    limit ends after its speech and before the next clip.
    """
    out: dict[str, Any] = {}
    tolerance = round(MATCH_TOLERANCE_S * SAMPLE_RATE)
    for level in levels:
        prog = compose_latency(clips, gap_s=gap_s, gap=room_noise(10.0, level), lead_in_s=1.0)
        audio = prog.audio
        segmenter = Segmenter(cfg, "bench", relative=True)
        events: list[Any] = []
        step = SAMPLE_RATE * cfg.frame_ms // 1000
        for i in range(0, len(audio), step):
            events += segmenter.feed(AudioChunk(audio[i : i + step], 0.0, 0.0, i))
        events += segmenter.flush()
        ends = [
            (e.start_sample + len(e.audio), e.cut) for e in events if isinstance(e, VadUtterance)
        ]
        closed = 0
        for k, mark in enumerate(prog.marks):
            limit = prog.marks[k + 1].start if k + 1 < len(prog.marks) else len(audio)
            closed += any(
                mark.speech_end - tolerance <= end <= limit + tolerance and not cut
                for end, cut in ends
            )
        out[f"{level:g}"] = {
            "closed": closed,
            "clips": len(prog.marks),
            "cut_by_length": sum(cut for _, cut in ends),
        }
    return out


def others_cores(run: ProgrammeRun, start: float, end: float) -> float | None:
    """Cores' worth of CPU every process but the daemon used between two wall times."""
    machine = cpu_between(run.machine, start, end)
    daemon = cpu_between(run.samples, start, end)
    if machine is None or daemon is None or end <= start:
        return None
    return max(0.0, machine - daemon) / (end - start)


def transcription_span(event: dict[str, Any]) -> tuple[float, float]:
    """When the daemon transcribed a result: (start, end) wall times, from its stamps."""
    ms = event["latency_ms"]
    begin = parse_time(event["end"]) + ms["queue"] / 1000
    return begin, begin + ms["transcribe"] / 1000


def transcription_load(run: ProgrammeRun, utt: Utterance) -> float | None:
    """What the rest of the machine used while the daemon transcribed ``utt``."""
    return others_cores(run, *transcription_span(utt.payload))
