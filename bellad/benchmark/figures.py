"""Every figure of a benchmark run, each with its target where it has one.

:func:`measure` runs the whole benchmark (services, the daemon's main run and
its starts, then the model-only timings) and returns one JSON-ready dict.
:data:`TARGETS` states the targets and :data:`REQUIRED` every figure a run
must produce (the smoke test checks them).
"""

from __future__ import annotations

import contextlib
import logging
import os
import platform
import time
from dataclasses import asdict, dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

from bellad.benchmark import allocator, analysis, floor
from bellad.benchmark.clips import (
    QUIET_ROOM_DBFS,
    Clip,
    compose_latency,
    compose_live,
    room_noise,
    speech_stream,
)
from bellad.benchmark.modeltime import LENGTHS_S, ModelTimer
from bellad.benchmark.paired import PairedTimer
from bellad.benchmark.runner import LEAD_IN_S, Bench, ProgrammeRun, Settings
from bellad.config import SentimentConfig, ServiceConfig, TranscribeConfig, VadConfig
from bellad.memory import hold_freed_memory, release_free_memory
from bellad.sentiment import find_onnx

log = logging.getLogger(__name__)

QUIET = 0.1  # cores the rest of the machine may use for an utterance to count as "quiet"


@dataclass(frozen=True)
class Target:
    key: str  # dotted path into "figures"
    label: str
    limit: float
    unit: str


TARGETS = (
    Target("idle.cpu_percent", "idle CPU, worst of silence and room noise", 0.5, "% of a core"),
    Target(
        "latency.overhead_ms.p95", "pipeline overhead beyond hangover and model, p95", 20.0, "ms"
    ),
    Target("memory.peak_rss_mb", "peak resident memory", 250.0, "MB"),
    Target("ready.ready_s.p95", "start to ready, p95", 3.0, "s"),
)

REQUIRED = (
    "idle.cpu_percent",
    "idle.silence.cpu_percent",
    "idle.silence.cpu_s_per_hour",
    "idle.silence.window_s",
    "idle.noise.cpu_percent",
    "idle.noise.cpu_s_per_hour",
    "idle.noise.window_s",
    *(
        f"latency.{stage}_ms.{q}"
        for stage in (
            "felt",
            "detection",
            "hangover_reported",
            "queue",
            "transcribe",
            "sentiment",
            "publish",
            "model_only",
            "overhead",
        )
        for q in ("median", "p95")
    ),
    "latency.overhead_ratio.median",
    "microphone_latency.felt_ms.median",
    "microphone_latency.detection_ms.median",
    "latency.overhead_ratio.p95",
    "latency.beyond_transcription_ms.p95",
    *(f"rtf.{n}s.{mode}.median" for n in LENGTHS_S for mode in ("padded", "trimmed")),
    *(f"rtf.{n}s.trimmed_speedup" for n in LENGTHS_S),
    "trimmed.speedup_1_10s.median",
    "trimmed.speedup_utterances.median",
    "continuous.utterances",
    "continuous.backlog_max",
    "continuous.dropped",
    "continuous.after_close_ms.p95",
    "capture_overruns",
    "memory.peak_rss_mb",
    "memory.idle_rss_mb",
    "memory.idle_file_mb",
    "memory.floor.peak_rss_mb",
    "memory.above_floor_mb",
    *(f"allocator.{p}.ms.median" for p in allocator.POLICIES),
    "allocator.held.ratio_to_glibc",
    "allocator.released.ratio_to_glibc",
    "ready.ready_s.median",
    "ready.ready_s.p95",
    "ready.ready_log_s.median",
    "ready.online_s.median",
)


def lookup(data: dict[str, Any], key: str) -> Any:
    for part in key.split("."):
        if not isinstance(data, dict) or part not in data:
            return None
        data = data[part]
    return data


def verdicts(figures: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    for target in TARGETS:
        value = lookup(figures, target.key)
        met = None if value is None else bool(value <= target.limit)
        out.append(asdict(target) | {"value": value, "met": met})
    return out


def stage_figures(run: ProgrammeRun, section: str) -> dict[str, Any]:
    """Felt latency and its stages for the clips of ``section``."""
    found, missing = analysis.closing_utterances(run, section)
    stages: dict[str, list[float]] = {}
    for utt in found:
        for key, value in utt.stages().items():
            stages.setdefault(key, []).append(value)
    stages["publish"] = [
        h + o + n
        for h, o, n in zip(
            stages.get("handoff", []),
            stages.get("outbox", []),
            stages.get("network", []),
            strict=True,
        )
    ]
    out: dict[str, Any] = {f"{k}_ms": analysis.stat(v) for k, v in stages.items()}
    return out | {
        "clips": len(found) + missing,
        "clips_without_result": missing,
        "_found": found,
        "_samples": stages,
    }


def latency_figures(
    run: ProgrammeRun, timer: ModelTimer, repeats: int, paired: PairedTimer | None = None
) -> dict[str, Any]:
    """Stages, and the model-only and trimmed times of exactly the same audio.

    The model-only time of an utterance is the one ``paired`` took seconds
    after the daemon's run when it overlapped none of the daemon's
    transcriptions; otherwise it is timed now, after the daemon has stopped.
    """
    out = stage_figures(run, "latency")
    found = out["_found"]
    audio = run.programme.audio
    pieces = [audio[utt.start_index : utt.end_index] for utt in found]
    busy = [analysis.transcription_span(m.json()) for m in run.transcripts]
    alone, n_paired = [], 0
    for utt, piece in zip(found, pieces, strict=True):
        timing = paired.results.get(utt.payload["id"]) if paired is not None else None
        if timing is not None and not any(timing.overlaps(a, b) for a, b in busy):
            alone.append(timing.timed)
            n_paired += 1
        else:
            alone.append(timer.model_only(piece, repeats))
    trimmed = [timer.with_encode(piece, "trimmed").seconds for piece in pieces]
    model_ms = [a.seconds * 1000 for a in alone]
    after = [utt.stages()["after_close"] for utt in found]
    transcribe = out["_samples"].get("transcribe", [])
    loads = [analysis.transcription_load(run, utt) for utt in found]
    overhead = [a - m for a, m in zip(after, model_ms, strict=True)]
    quiet = [
        o for o, load in zip(overhead, loads, strict=True) if load is not None and load < QUIET
    ]
    return out | {
        "others_cores_while_transcribing": analysis.stat([x for x in loads if x is not None], 2),
        "overhead_quiet_ms": analysis.stat(quiet),
        "model_only_ms": analysis.stat(model_ms),
        "overhead_ms": analysis.stat(overhead),
        "overhead_ratio": analysis.stat([a / m for a, m in zip(after, model_ms, strict=True)], 3),
        "beyond_transcription_ms": analysis.stat(
            [a - t for a, t in zip(after, transcribe, strict=True)]
        ),
        "transcription_minus_model_ms": analysis.stat(
            [t - m for t, m in zip(transcribe, model_ms, strict=True)]
        ),
        "model_only_repeats": repeats,
        "model_only_paired": f"{n_paired}/{len(found)}",
        "model_only_noise_ms": analysis.stat(
            [(r - a.seconds) * 1000 for a in alone for r in a.runs] if repeats > 1 else []
        ),
        "same_text_as_model_only": (
            f"{sum(a.text == u.payload['text'] for a, u in zip(alone, found, strict=True))}"
            f"/{len(found)}"
        ),
        "_trimmed_speedups": [a.seconds / t for a, t in zip(alone, trimmed, strict=True)],
    }


def public(data: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in data.items() if not k.startswith("_")}


def rtf_figures(timer: ModelTimer, clips: list[Clip], repeats: int) -> dict[str, Any]:
    timings = timer.by_length(speech_stream(clips), LENGTHS_S, repeats)
    out: dict[str, Any] = {}
    for length in LENGTHS_S:
        rows = [t for t in timings if t.length_s == length]
        speedup = analysis.stat([t.padded_s / t.trimmed_s for t in rows], 2)
        out[f"{length}s"] = {
            "padded": analysis.stat([t.padded_s / length for t in rows], 4),
            "trimmed": analysis.stat([t.trimmed_s / length for t in rows], 4),
            "padded_ms": analysis.stat([t.padded_s * 1000 for t in rows]),
            "trimmed_ms": analysis.stat([t.trimmed_s * 1000 for t in rows]),
            "trimmed_speedup": speedup["median"],
        }
    short = [t.padded_s / t.trimmed_s for t in timings if t.length_s <= 10]
    return out | {"_speedup_1_10s": short}


def allocator_figures(raw: dict[str, Any]) -> dict[str, Any]:
    """Each policy's times and page faults; its ratio to glibc's defaults, window by window."""
    glibc = raw["ms"]["glibc"]
    out: dict[str, Any] = {"lengths_s": raw["lengths_s"], "rounds": raw["rounds"]}
    for policy in allocator.POLICIES:
        ms = raw["ms"][policy]
        out[policy] = {
            "ms": analysis.stat(ms),
            "page_faults": analysis.stat(raw["faults"][policy], 0),
            "ratio_to_glibc": analysis.stat([m / g for m, g in zip(ms, glibc, strict=True)], 3)[
                "median"
            ],
        }
    return out


def environment() -> dict[str, Any]:
    versions: dict[str, str | None] = {}
    for package in ("bellad", "faster-whisper", "ctranslate2", "onnxruntime", "paho-mqtt"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = None
    cpu = ""
    with contextlib.suppress(OSError, StopIteration):
        cpu = next(
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        )
    return {
        "host": platform.node(),
        "machine": platform.machine(),
        "cpu": cpu,
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
        "versions": versions,
    }


def measure(
    folder: Path,
    clips: list[Clip],
    models: dict[str, Any],
    settings: Settings,
    repeats: int,
) -> dict[str, Any]:
    """Run the benchmark; the result is what ``bench.json`` holds."""
    started = time.time()
    env = environment()
    # the model-only runs below allocate as the daemon does (bellad.memory); what that is
    # worth against the C library's defaults is measured apart, in allocator_figures
    if ServiceConfig.model_validate(settings.daemon.get("service", {})).hold_memory:
        hold_freed_memory()
    noise, quiet = room_noise(10.0), room_noise(10.0, QUIET_ROOM_DBFS)
    spaced = sorted(clips, key=lambda c: c.duration_s)[: settings.mic_clips]
    with Bench(folder, models["whisper"], models["sentiment"], settings) as bench:
        via = bench.source
        live = bench.play(
            compose_live(
                clips,
                spaced,
                idle_s=settings.idle_s,
                gap_s=settings.gap_s,
                continuous_s=settings.continuous_s,
                noise=noise,
                gap=quiet,
                lead_in_s=LEAD_IN_S if via == "file" else 0.0,
            ),
            via,
        )
        transcribe_cfg = TranscribeConfig.model_validate(settings.daemon.get("transcribe", {}))
        timer = ModelTimer(models["whisper"], transcribe_cfg)  # loaded before the file run
        latency_prog = compose_latency(clips, gap_s=settings.gap_s, gap=quiet, lead_in_s=LEAD_IN_S)
        paired = PairedTimer(timer, latency_prog.audio, repeats).start()
        try:
            timed = bench.play(latency_prog, "file", listener=paired.offer)
        finally:
            paired.stop()
        bench.time_starts(max(0, settings.starts - 1))
        starts = [s for s in bench.starts if s.via == via]
    log.info("timing the model alone (the daemon has stopped)")
    latency = latency_figures(timed, timer, repeats, paired)
    mic = stage_figures(live, "mic_latency")
    rtf = rtf_figures(timer, clips, repeats)
    libraries = {
        "device": timer.bellad.device,
        "compute_type": timer.bellad.compute_type,
        "threads": timer.bellad.threads,
        "encode": transcribe_cfg.encode,
        "options": timer.options,
    }
    log.info("timing the model under each allocator policy")
    del timer, paired  # one model in memory at a time: the probes load their own
    release_free_memory()
    alloc = allocator_figures(
        allocator.compare(
            models["whisper"],
            transcribe_cfg,
            speech_stream(clips),
            repeats=repeats,
            rounds=2 if repeats > 1 else 1,
        )
    )
    log.info("measuring the memory of the libraries alone")
    memory_floor = floor.measure(
        models["whisper"],
        find_onnx(models["sentiment"]),
        libraries,
        SentimentConfig.model_validate(settings.daemon.get("sentiment", {})),
        [timed.programme.audio[u.start_index : u.end_index] for u in latency["_found"]],
    )
    silence = analysis.idle_cost(live, "idle_silence", settings.idle_s)
    quiet_room = analysis.idle_cost(live, "idle_noise", settings.idle_s)
    worst = [x["cpu_percent"] for x in (silence, quiet_room) if x["cpu_percent"] is not None]
    memory = analysis.peak_memory(live)
    memory[f"peak_rss_mb_{via}_run"] = memory["peak_rss_mb"]
    memory["peak_rss_mb_file_run"] = analysis.peak_memory(timed)["peak_rss_mb"]
    memory["peak_rss_mb"] = max(memory["peak_rss_mb"], memory["peak_rss_mb_file_run"])
    memory["floor"] = memory_floor
    memory["above_floor_mb"] = round(
        memory["peak_rss_mb_file_run"] - memory_floor["peak_rss_mb"], 1
    )
    figures: dict[str, Any] = {
        "idle": {
            "cpu_percent": max(worst) if worst else None,
            "silence": silence,
            "noise": quiet_room,
        },
        "latency": public(latency),
        "microphone_latency": public(mic),
        "rtf": public(rtf),
        "trimmed": {
            "speedup_1_10s": analysis.stat(rtf["_speedup_1_10s"], 2),
            "speedup_utterances": analysis.stat(latency["_trimmed_speedups"], 2),
        },
        "continuous": analysis.continuous(live, analysis.count_lines(live, r"backlog full")),
        "capture_overruns": analysis.capture_overruns(live),
        "vad_in_noise": analysis.vad_in_noise(
            clips, VadConfig.model_validate(settings.daemon.get("vad", {})), settings.gap_s
        ),
        "memory": memory,
        "allocator": alloc,
        "ready": {
            "starts": len(starts),
            "ready_s": analysis.stat(analysis.finite([s.ready_s for s in starts]), 2),
            "ready_log_s": analysis.stat([s.ready_log_s for s in starts], 2),
            "online_s": analysis.stat([s.online_s for s in starts if s.online_s is not None], 2),
            "never_online": sum(1 for s in starts if s.online_s is None),
        },
    }
    return {
        "meta": env
        | {
            "started": started,
            "duration_s": round(time.time() - started, 1),
            "source": via,
            "models": {k: str(v) for k, v in models.items() if k != "notes"},
            "model_notes": models.get("notes", []),
            "settings": asdict(settings) | {"repeats": repeats, "clips": len(clips)},
            "daemon_exit_status": [live.returncode, timed.returncode],
            "feeder_max_late_ms": round(live.feeder_max_late_s * 1000, 1),
            "feeder_resyncs": live.feeder_resyncs,
            "load_average_at_end": [round(x, 2) for x in os.getloadavg()],
        },
        "targets": verdicts(figures),
        "figures": figures,
        "series": {
            "cpu_percent": analysis.cpu_timeline(live),
            "memory_mb": analysis.memory_timeline(live),
            "sections_s": {
                name: [
                    round(live.time_of(a) - live.time_of(0), 2),
                    round(live.time_of(b) - live.time_of(0), 2),
                ]
                for name, (a, b) in live.programme.sections.items()
            },
            "latency_ms": {k: [round(x, 1) for x in v] for k, v in latency["_samples"].items()},
            "rtf": {k: v for k, v in rtf.items() if not k.startswith("_")},
        },
    }
