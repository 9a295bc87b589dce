"""``bellad transcribe``: the daemon's pipeline over files or raw PCM on stdin.

Each input runs through its own segmenter and the same loaded models, and
every utterance is printed as one JSON line on stdout (with the input's name
and offsets in seconds from its start). A bad input is reported on stderr,
naming it, and the others are still transcribed.
"""

from __future__ import annotations

import logging
import signal
import sys
import threading
from collections.abc import Sequence
from types import FrameType

from bellad.audio import AudioSource, FileSource, RawSource
from bellad.config import Config
from bellad.errors import AudioError
from bellad.memory import hold_freed_memory
from bellad.pipeline import Pipeline
from bellad.service import load_sentiment, load_transcriber
from bellad.sinks import JsonLinesSink
from bellad.vad import Segmenter

log = logging.getLogger(__name__)


def open_input(spec: str, rate: int, channels: int, realtime: bool, block_ms: int) -> AudioSource:
    """``-`` is raw s16le PCM on stdin; anything else a file FFmpeg can decode."""
    from pathlib import Path

    if spec == "-":
        return RawSource(sys.stdin.buffer, rate, channels, "-", realtime, block_ms)
    return FileSource(Path(spec), realtime=realtime, block_ms=block_ms)


def transcribe_inputs(
    cfg: Config, inputs: Sequence[str], rate: int, channels: int, realtime: bool
) -> int:
    """Transcribe every input in turn; return how many failed."""
    failures = 0
    sources: list[AudioSource] = []
    for spec in inputs:
        try:
            sources.append(open_input(spec, rate, channels, realtime, cfg.audio.block_ms))
        except AudioError as exc:
            print(f"bellad: error: {exc}", file=sys.stderr)
            failures += 1
    if not sources:
        return failures
    if cfg.service.hold_memory:
        hold_freed_memory()  # as the daemon does: see bellad.memory
    transcriber = load_transcriber(cfg)
    sentiment = load_sentiment(cfg)
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    for source in sources:
        if stop.is_set():
            break
        pipeline = Pipeline(
            source,
            Segmenter(cfg.vad, source.name, source.relative),
            transcriber,
            sentiment,
            [JsonLinesSink(sys.stdout)],
            cfg.pipeline,
            cfg.transcribe.guard,
            site=cfg.service.site,
        )
        pipeline.start()
        while not pipeline.wait(0.2):
            if stop.is_set():
                pipeline.stop()
        if pipeline.source_error is not None:
            print(f"bellad: error: {pipeline.source_error}", file=sys.stderr)
            failures += 1
    return failures
