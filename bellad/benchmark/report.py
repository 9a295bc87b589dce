"""The benchmark's outputs: a table on stdout, ``bench.json``, and ``bench.png``.

The PNG (latency per stage, CPU over time, real-time factor by length) needs
matplotlib, from the ``bench`` extra; without it the table and the JSON are
still written and the log says why there is no picture.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from bellad.benchmark.figures import lookup
from bellad.benchmark.modeltime import LENGTHS_S

log = logging.getLogger(__name__)

STAGES = ("detection", "queue", "transcribe", "sentiment", "publish", "felt")


def _num(value: Any, digits: int = 1) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _row(label: str, median: Any, p95: Any, target: str = "", digits: int = 1) -> str:
    return f"  {label:<52} {_num(median, digits):>9} {_num(p95, digits):>9}   {target}"


def _verdict(data: dict[str, Any], key: str) -> str:
    for target in data["targets"]:
        if target["key"] == key:
            met = {True: "meets", False: "MISSES", None: "not measured"}[target["met"]]
            return f"<= {target['limit']:g} {target['unit']}: {met}"
    return ""


def table(data: dict[str, Any]) -> str:
    """The figures beside their targets, as plain text."""
    f, meta = data["figures"], data["meta"]
    lat = f["latency"]

    def q(key: str, digits: int = 1, target: str = "", label: str = "") -> str:
        stats = lookup(f, key) or {}
        return _row(label or key, stats.get("median"), stats.get("p95"), target, digits)

    idle = f["idle"]
    lines = [
        f"bellad bench: {meta['source']} input, {meta['cores']} cores ({meta['cpu']}), "
        f"load average {meta['load_average_at_start'][0]:.2f} at start, "
        f"{meta['duration_s']:.0f} s",
        f"  models: {meta['models']['whisper']} | {meta['models']['sentiment']}",
        *(f"  note: {note}" for note in meta.get("model_notes", [])),
        "",
        f"  {'figure':<52} {'median':>9} {'p95':>9}   target",
        "  Idle (whole daemon, CPU time from /proc, % of one core)",
    ]
    for name in ("silence", "noise"):
        part = idle[name]
        label = (
            f"    {name}: {part['window_s']:.0f} s window, {_num(part['cpu_s_per_hour'])} "
            f"CPU s/h, {part['speech_triggers']} triggers"
        )
        lines.append(_row(label, part["cpu_percent"], None, "", 3))
        if part.get("capture_alone_percent") is not None:
            floor = "      capture alone: bellad's capture, no processing, same device"
            lines.append(_row(floor, part["capture_alone_percent"], None, "", 3))
    lines.append(
        _row(
            "    worst of the two", idle["cpu_percent"], None, _verdict(data, "idle.cpu_percent"), 3
        )
    )
    lines += [
        f"  Latency, file paced in real time, ms "
        f"({lat['clips'] - lat['clips_without_result']} of {lat['clips']} clips)",
        q("latency.felt_ms", label="    felt: true end of speech -> subscriber"),
        q("latency.detection_ms", label="    detection: true end -> VAD decision"),
        q("latency.hangover_reported_ms", label="      of which bellad's reported hangover"),
        q("latency.queue_ms", label="    queue"),
        q("latency.transcribe_ms", label="    transcription"),
        q("latency.sentiment_ms", label="    sentiment"),
        q("latency.publish_ms", label="    publish: hand-off + outbox + network"),
        q(
            "latency.model_only_ms",
            label=f"    model only: same audio alone, x{lat['model_only_repeats']}, "
            f"{lat.get('model_only_paired', '0')} paired",
        ),
        q(
            "latency.overhead_ms",
            label="    overhead: (decision -> subscriber) - model only",
            target=_verdict(data, "latency.overhead_ms.p95"),
        ),
        q(
            "latency.model_only_noise_ms",
            label="      noise floor: one model-only run - its median",
        ),
        q("latency.overhead_ratio", 3, label="    ratio: (decision -> subscriber) / model only"),
        q(
            "latency.overhead_quiet_ms",
            label=f"      when the rest of the machine was quiet "
            f"({(lookup(f, 'latency.overhead_quiet_ms') or {}).get('count', 0)} utterances)",
        ),
        q(
            "latency.others_cores_while_transcribing",
            2,
            label="      cores other processes used while bellad transcribed",
        ),
        q(
            "latency.beyond_transcription_ms",
            label="    decision -> subscriber, minus transcription",
        ),
        q("latency.transcription_minus_model_ms", label="    transcription in bellad - model only"),
        f"    same text as model only: {lat['same_text_as_model_only']}",
        f"  Latency through the {meta['source']} input, ms "
        f"({f['microphone_latency']['clips']} shortest clips)",
        q("microphone_latency.felt_ms", label="    felt: true end of speech -> subscriber"),
        q("microphone_latency.detection_ms", label="    detection: true end -> VAD decision"),
        q("microphone_latency.after_close_ms", label="    decision -> subscriber"),
        "  Real-time factor by utterance length (model, same run)",
    ]
    for n in LENGTHS_S:
        r = f["rtf"][f"{n}s"]
        lines.append(q(f"rtf.{n}s.padded", 4, label=f"    {n:>2} s padded"))
        lines.append(
            _row(
                f"    {n:>2} s trimmed (speed-up x{_num(r['trimmed_speedup'], 2)})",
                r["trimmed"]["median"],
                r["trimmed"]["p95"],
                "",
                4,
            )
        )
    lines += [
        q("trimmed.speedup_1_10s", 2, label="  Trimmed speed-up, 1-10 s windows (x)"),
        q("trimmed.speedup_utterances", 2, label="  Trimmed speed-up, the clips' utterances (x)"),
    ]
    c = f["continuous"]
    lines += [
        f"  Continuous speech: {c['speech_s']:.0f} s, {c['utterances']} utterances "
        f"({c['cut_by_length']} cut at max length), deepest backlog {c['backlog_max']}, "
        f"{c['dropped']} dropped, busy {_num((c['busy_fraction'] or 0) * 100)}% of the time",
        q("continuous.after_close_ms", label="    decision -> subscriber, ms"),
        f"  Capture overruns (audio lost at the device) in the live run: {f['capture_overruns']}",
        "  Clips the VAD closes with pink room noise between them (offline, daemon's [vad]): "
        + ", ".join(
            f"{level} dBFS {v['closed']}/{v['clips']}" for level, v in f["vad_in_noise"].items()
        ),
        _row(
            "  Peak resident memory, MB",
            f["memory"]["peak_rss_mb"],
            None,
            _verdict(data, "memory.peak_rss_mb"),
        ),
        _row("    resident while idle, MB", f["memory"]["idle_rss_mb"], None),
        _row(
            "      of which mapped from files (libraries' code), MB",
            f["memory"]["idle_file_mb"],
            None,
        ),
        *_floor_rows(f["memory"]),
        *_allocator_rows(f["allocator"]),
        q(
            "ready.ready_s",
            2,
            label=f"  Start -> ready and online, s ({f['ready']['starts']} starts)",
            target=_verdict(data, "ready.ready_s.p95"),
        ),
        q("ready.ready_log_s", 2, label="    'ready' logged"),
        q("ready.online_s", 2, label="    'online' at the subscriber"),
    ]
    return "\n".join(lines)


def _floor_rows(memory: dict[str, Any]) -> list[str]:
    floor = memory["floor"]
    return [
        _row(
            f"    the libraries alone, same models, input and {floor['utterances']} utterances, "
            "C library's defaults: peak, MB",
            floor["peak_rss_mb"],
            None,
        ),
        _row(
            "    the file run's peak above the libraries alone, MB", memory["above_floor_mb"], None
        ),
    ]


def _allocator_rows(alloc: dict[str, Any]) -> list[str]:
    lengths = "/".join(f"{x:g}" for x in alloc["lengths_s"])
    labels = {
        "glibc": "C library's defaults (faster-whisper alone)",
        "held": "freed memory held (in a conversation)",
        "released": "held, the first after a quiet spell",
    }
    lines = [f"  Transcription ({lengths} s windows) by allocator policy, ms; page faults"]
    for policy, label in labels.items():
        part = alloc[policy]
        ratio = "" if policy == "glibc" else f" x{_num(part['ratio_to_glibc'], 2)}"
        faults = part["page_faults"]["median"]
        lines.append(
            _row(f"    {label}{ratio}", part["ms"]["median"], part["ms"]["p95"], f"{faults:.0f}")
        )
    return lines


def write_json(data: dict[str, Any], path: Path) -> Path:
    path.write_text(json.dumps(data, indent=1) + "\n", encoding="utf-8")
    return path


def plot(data: dict[str, Any], path: Path) -> Path | None:
    """Draw the PNG; None (and a log line) when matplotlib is not installed."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        log.warning("no bench.png: matplotlib is missing (pip install 'bellad[bench]')")
        return None
    series = data["series"]
    fig, (ax1, ax2, ax3) = plt.subplots(3, 1, figsize=(10, 12))
    samples = {
        k: series["latency_ms"].get(k, []) for k in (*STAGES, "handoff", "outbox", "network")
    }
    publish = [
        sum(x) for x in zip(samples["handoff"], samples["outbox"], samples["network"], strict=True)
    ]
    stages = {**{k: samples[k] for k in STAGES if k in samples}, "publish": publish}
    ax1.boxplot([stages[k] for k in STAGES], whis=(5, 95), showfliers=True)
    ax1.set_xticks(range(1, len(STAGES) + 1), list(STAGES))
    ax1.set_ylabel("ms")
    ax1.set_title("Latency per stage (whiskers 5-95 %)")
    ax1.grid(axis="y", alpha=0.3)
    if series["cpu_percent"]:
        t, cpu = zip(*series["cpu_percent"], strict=True)
        ax2.plot(t, cpu, lw=0.8)
    for n, (name, (a, b)) in enumerate(series["sections_s"].items()):
        ax2.axvspan(a, b, alpha=0.12, color=f"C{n + 1}", label=name)
    ax2.set_yscale("symlog", linthresh=1)
    ax2.set_xlabel("s since the programme began")
    ax2.set_ylabel("CPU, % of one core")
    ax2.set_title("The daemon's CPU over time (1 s bins)")
    ax2.legend(loc="upper left", fontsize="small")
    lengths = [f"{n} s" for n in LENGTHS_S]
    for offset, mode in ((-0.2, "padded"), (0.2, "trimmed")):
        med = [series["rtf"][f"{n}s"][mode]["median"] for n in LENGTHS_S]
        ax3.bar([i + offset for i in range(len(lengths))], med, width=0.4, label=mode)
    ax3.set_xticks(range(len(lengths)), lengths)
    ax3.set_ylabel("real-time factor (median)")
    ax3.set_title("Model time / audio length, by utterance length")
    ax3.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
