"""The daemon's lifecycle: build the stages from config, run, reload, stop.

:class:`Daemon` loads the models (once), opens the audio source, starts the
pipeline, and then supervises it from the main thread: it reports readiness
once the models are warm and audio flows, keeps a one-line status current,
and stops cleanly on SIGTERM or SIGINT (the utterance in flight is finished
and delivered). Signal handlers only set flags; all work happens in the loop.
"""

from __future__ import annotations

import logging
import signal
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from types import FrameType

from bellad.audio import AudioSource, FileSource
from bellad.config import Config
from bellad.errors import BelladError
from bellad.events import AudioChunk
from bellad.microphone import Microphone
from bellad.mqtt import MqttSink
from bellad.pipeline import Pipeline
from bellad.sentiment import OnnxSentiment, SentimentScorer
from bellad.sinks import JsonLinesSink, Sink, want_stdout
from bellad.transcribe import Transcriber, WhisperTranscriber
from bellad.vad import Segmenter

log = logging.getLogger(__name__)

BUILTIN_SENTIMENT = Path(__file__).resolve().parent / "data" / "sentiment"


def resolve_model(spec: str, kind: str, models_dir: Path) -> Path:
    """A model folder from a name installed under ``models_dir``, a path, or ``builtin``."""
    from bellad.modelstore import resolve_model as resolve

    return resolve(spec, kind, models_dir)  # type: ignore[arg-type]


def load_transcriber(cfg: Config) -> Transcriber:
    path = resolve_model(cfg.transcribe.model, "whisper", cfg.models_dir)
    return WhisperTranscriber(cfg.transcribe, path, name=_model_name(cfg.transcribe.model))


def load_sentiment(cfg: Config) -> SentimentScorer | None:
    if not cfg.sentiment.enabled:
        return None
    path = resolve_model(cfg.sentiment.model, "sentiment", cfg.models_dir)
    return OnnxSentiment(cfg.sentiment, path, name=_model_name(cfg.sentiment.model))


def _model_name(spec: str) -> str:
    return Path(spec).name if "/" in spec else spec


def build_source(cfg: Config) -> AudioSource:
    audio = cfg.audio
    if audio.source == "file":
        assert audio.file is not None  # the config validator guarantees it
        if audio.loop:
            return LoopingFile(audio.file, audio.realtime, audio.block_ms)
        return FileSource(audio.file, realtime=audio.realtime, block_ms=audio.block_ms)
    return Microphone(audio)


class LoopingFile:
    """A file source that starts over at its end (demos, soak tests)."""

    relative = False

    def __init__(self, path: Path, realtime: bool, block_ms: int) -> None:
        self.inner = FileSource(path, realtime=realtime, block_ms=block_ms)
        self.name = self.inner.name

    def chunks(self, stop: threading.Event) -> Iterator[AudioChunk]:
        offset = 0
        while not stop.is_set():
            for chunk in self.inner.chunks(stop):
                yield replace(chunk, start_sample=offset)
                offset += len(chunk.samples)


def build_sinks(cfg: Config) -> list[Sink]:
    sinks: list[Sink] = []
    if want_stdout(cfg.output.stdout):
        sinks.append(JsonLinesSink(extra={"site": cfg.service.site}))
    if cfg.mqtt.enabled:
        sinks.append(MqttSink(cfg.mqtt, cfg.service.site))
    return sinks


class Daemon:
    """``bellad run``: one daemon from one config file."""

    def __init__(self, config_path: Path, cfg: Config) -> None:
        self.config_path = config_path
        self.cfg = cfg
        self.started = time.monotonic()
        self._stop = threading.Event()
        self._reload = threading.Event()
        self.pipeline: Pipeline | None = None

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        if signum == signal.SIGHUP:
            self._reload.set()
        else:
            self._stop.set()

    def run(self) -> int:
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(sig, self._on_signal)
        cfg = self.cfg
        transcriber = load_transcriber(cfg)
        sentiment = load_sentiment(cfg)
        source = build_source(cfg)
        segmenter = Segmenter(cfg.vad, source.name, source.relative)
        self.pipeline = Pipeline(
            source,
            segmenter,
            transcriber,
            sentiment,
            build_sinks(cfg),
            cfg.pipeline,
            cfg.transcribe.guard,
            site=cfg.service.site,
        )
        self.pipeline.start()
        return self._supervise(self.pipeline)

    def _supervise(self, pipeline: Pipeline) -> int:
        ready = False
        while not self._stop.wait(0.5):
            if not ready and pipeline.last_audio > self.started:
                ready = True
                log.info("ready: listening on %s", pipeline.source.name)
            if self._reload.is_set():
                self._reload.clear()
                log.info("reload requested (SIGHUP): not supported yet, ignored")
            if not pipeline.capturing:
                break  # the source ended (a file without loop) or failed
        log.info("stopping: finishing the utterance in flight")
        pipeline.stop()
        if not pipeline.wait(self.cfg.service.shutdown_timeout_s):
            log.warning(
                "stages still busy after %.0f s: exiting", self.cfg.service.shutdown_timeout_s
            )
        if pipeline.source_error is not None:
            err = pipeline.source_error
            print(f"bellad: error: {err}", file=sys.stderr)
            return err.exit_code if isinstance(err, BelladError) else 1
        return 0
