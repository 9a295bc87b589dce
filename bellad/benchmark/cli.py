"""``bellad bench``: the benchmark's command line (see :mod:`bellad.benchmark`)."""

from __future__ import annotations

import logging
import shutil
import tempfile
import tomllib
from pathlib import Path
from typing import Any

import click

from bellad.errors import BelladError, ConfigError, ModelError

log = logging.getLogger(__name__)

QUICK = {"idle_s": 1.0, "gap_s": 1.0, "continuous_s": 2.0, "starts": 1, "repeats": 1, "clips": 2}


def default_audio_dir() -> Path:
    from bellad.testmodels import default_data_dir

    return default_data_dir() / "audio"


def default_out_dir() -> Path:
    return Path("bench/out") if Path("bench").is_dir() else Path("bellad-bench")


def parse_sets(pairs: tuple[str, ...]) -> dict[str, Any]:
    """``section.key=value`` pairs (values in TOML syntax) as nested config sections."""
    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or "." not in key:
            raise ConfigError(f"--set {pair!r}: expected section.key=value")
        try:
            parsed = tomllib.loads(f"v = {value}")["v"]
        except tomllib.TOMLDecodeError:
            parsed = value  # a bare word is a string
        *sections, leaf = key.split(".")
        node = out
        for section in sections:
            node = node.setdefault(section, {})
        node[leaf] = parsed
    return out


def resolve_models(whisper: str | None, sentiment: str, models_dir: Path) -> dict[str, Any]:
    """The model folders: given ones, else the generated tiny-architecture test models."""
    from bellad.modelstore import resolve_model
    from bellad.testmodels import ensure_test_models

    notes = []
    generated = None
    if whisper is None:
        generated = ensure_test_models()
        whisper_dir = generated.whisper
        notes.append("Whisper: the generated tiny-architecture model (random weights)")
    else:
        whisper_dir = resolve_model(whisper, "whisper", models_dir)
    try:
        sentiment_dir = resolve_model(sentiment, "sentiment", models_dir)
    except ModelError as exc:
        if sentiment != "builtin":
            raise
        generated = generated or ensure_test_models()
        sentiment_dir = generated.sentiment
        notes.append(f"sentiment: the generated test model, not the built-in one ({exc})")
    return {"whisper": whisper_dir, "sentiment": sentiment_dir, "notes": notes}


@click.command()
@click.option(
    "--audio",
    "audio_dir",
    type=click.Path(path_type=Path, file_okay=False),
    help="Recordings (with a manifest.tsv, or any audio files) "
    "[default: $BELLAD_DATA_DIR/audio, else ../shared/data/audio beside the checkout].",
)
@click.option(
    "--model",
    "whisper",
    help="Whisper model: an installed name or a folder "
    "[default: the generated tiny-architecture model with random weights].",
)
@click.option(
    "--sentiment",
    default="builtin",
    show_default=True,
    help="Sentiment model: builtin, an installed name or a folder.",
)
@click.option(
    "--out",
    "out_dir",
    type=click.Path(path_type=Path, file_okay=False),
    help="Where bench.json, bench.png and the logs go [default: bench/out in a "
    "checkout, else ./bellad-bench].",
)
@click.option(
    "--source",
    type=click.Choice(["auto", "pulse", "file"]),
    default="auto",
    show_default=True,
    help="Feed a PulseAudio microphone, or a file paced in real time.",
)
@click.option(
    "--idle-s",
    type=click.FloatRange(1, 3600),
    default=30.0,
    show_default=True,
    help="Seconds measured for each idle case (silence, room noise).",
)
@click.option(
    "--gap-s",
    type=click.FloatRange(0.5, 30),
    default=1.0,
    show_default=True,
    help="Room noise before each clip in the latency part.",
)
@click.option(
    "--continuous-s",
    type=click.FloatRange(0, 3600),
    default=20.0,
    show_default=True,
    help="Seconds of continuous speech.",
)
@click.option(
    "--starts",
    type=click.IntRange(1, 50),
    default=5,
    show_default=True,
    help="Daemon starts timed to ready.",
)
@click.option(
    "--repeats",
    type=click.IntRange(1, 50),
    default=3,
    show_default=True,
    help="Repeats of each utterance length for the real-time factor.",
)
@click.option("--clips", type=click.IntRange(1), default=None, help="Use only the first N clips.")
@click.option(
    "--set",
    "sets",
    multiple=True,
    metavar="SECTION.KEY=VALUE",
    help="Daemon config for the runs, e.g. --set transcribe.encode=trimmed.",
)
@click.option("--quick", is_flag=True, help="A smoke run of a few seconds: tiny windows, 2 clips.")
@click.option("--no-plot", is_flag=True, help="Do not draw bench.png.")
@click.option(
    "--wer",
    "wer_dir",
    type=click.Path(path_type=Path, file_okay=False, exists=True),
    help="Measure word error rates on pairs of recordings and .txt references instead.",
)
@click.pass_obj
def bench(app: Any, **opts: Any) -> None:
    """Measure latency, idle cost, memory and start time of the real daemon.

    Figures are printed beside their targets and written to bench.json (and a
    picture, bench.png). See docs/benchmarks.md.
    """
    from bellad.benchmark import report

    out: Path = opts["out_dir"] or default_out_dir()
    out.mkdir(parents=True, exist_ok=True)
    models_dir = app.models_dir if app is not None else Path(tempfile.gettempdir())
    models = resolve_models(opts["whisper"], opts["sentiment"], models_dir)
    daemon = parse_sets(opts["sets"])
    if opts["wer_dir"] is not None:
        _wer(opts["wer_dir"], models["whisper"], daemon, out)
        return
    if opts["quick"]:
        opts |= QUICK
    from bellad.benchmark.clips import load_clips
    from bellad.benchmark.figures import measure
    from bellad.benchmark.runner import Settings

    audio_dir = opts["audio_dir"] or default_audio_dir()
    clips = load_clips(audio_dir)
    if opts["quick"]:
        clips = sorted(clips, key=lambda c: c.duration_s)
    clips = clips[: opts["clips"]]
    settings = Settings(
        idle_s=opts["idle_s"],
        gap_s=opts["gap_s"],
        continuous_s=opts["continuous_s"],
        starts=opts["starts"],
        source=opts["source"],
        daemon=daemon,
    )
    work = Path(tempfile.mkdtemp(prefix="bellad-bench-"))
    try:
        data = measure(work, clips, models, settings, opts["repeats"])
    finally:
        logs = out / "logs"
        shutil.rmtree(logs, ignore_errors=True)
        if (work / "runs").is_dir():
            shutil.copytree(work / "runs", logs, ignore=shutil.ignore_patterns("*.wav"))
        shutil.rmtree(work, ignore_errors=True)
    data["meta"]["audio_dir"] = str(audio_dir)
    report.write_json(data, out / "bench.json")
    if not opts["no_plot"]:
        report.plot(data, out / "bench.png")
    click.echo(report.table(data))
    click.echo(
        f"\nwritten: {out / 'bench.json'}" + ("" if opts["no_plot"] else f", {out / 'bench.png'}")
    )


def _wer(folder: Path, whisper: Path, daemon: dict[str, Any], out: Path) -> None:
    from bellad.benchmark import report
    from bellad.benchmark.wer import measure_wer, wer_table
    from bellad.config import parse_config

    try:
        cfg = parse_config(daemon, source="--set")
    except BelladError:
        raise
    result = measure_wer(folder, whisper, cfg)
    report.write_json(result, out / "wer.json")
    click.echo(wer_table(result))
    click.echo(f"\nwritten: {out / 'wer.json'}")
