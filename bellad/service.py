"""The daemon's lifecycle: build the stages from config, run, reload, stop.

:class:`Daemon` loads the models once, opens the audio source, starts the
pipeline and the sinks, then supervises them from the main thread:

* ``READY=1`` once the models are loaded and warm and the source delivers audio;
* ``STATUS=`` a one-line summary, kept current;
* ``WATCHDOG=1`` only while capture delivers audio and no inference hangs, so a
  wedged microphone or a hung model gets the service restarted;
* SIGTERM/SIGINT: ``STOPPING=1``, finish the utterance in flight, flush, exit;
* SIGHUP: ``RELOADING=1``, re-read the config, apply what can change live, keep
  the old config (and say why) when the new one is invalid, then ``READY=1``.

Signal handlers only set flags; all work happens in the supervising loop.
"""

from __future__ import annotations

import json
import logging
import signal
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from types import FrameType
from typing import Any

from bellad import __version__
from bellad.audio import AudioSource, FileSource
from bellad.config import Config, load_config
from bellad.contract import SCHEMA_VERSION, summary
from bellad.errors import BelladError
from bellad.events import AudioChunk, iso_time
from bellad.memory import hold_freed_memory
from bellad.microphone import Microphone
from bellad.modelstore import resolve_model
from bellad.outbox import Outbox
from bellad.pipeline import Pipeline
from bellad.publish import MqttSink
from bellad.reload import ReloadRecord, effective, plan_reload
from bellad.sentiment import OnnxSentiment, SentimentScorer
from bellad.sinks import JsonLinesSink, Sink, want_stdout
from bellad.stats import ProcessSampler, peak_rss_mb, rss_mb, soc_temperature_c
from bellad.systemd import Notifier, make_notifier, watchdog_interval
from bellad.transcribe import Transcriber, WhisperTranscriber
from bellad.vad import Segmenter

log = logging.getLogger(__name__)

READY_POLL_S = 0.05  # until ready, look for the first audio this often (then every tick)


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
            return LoopingFile(audio.file, audio.realtime, audio.block_ms, audio.idle_batch_ms)
        return FileSource(audio.file, audio.realtime, audio.block_ms, audio.idle_batch_ms)
    return Microphone(audio)


class LoopingFile:
    """A file source that starts over at its end (demos, soak tests, containers)."""

    relative = False

    def __init__(self, path: Path, realtime: bool, block_ms: int, idle_batch_ms: int) -> None:
        self.inner = FileSource(path, realtime, block_ms, idle_batch_ms)
        self.name = self.inner.name
        self.live = realtime

    def set_idle(self, idle: bool) -> None:
        self.inner.set_idle(idle)

    def chunks(self, stop: threading.Event) -> Iterator[AudioChunk]:
        offset = 0
        while not stop.is_set():
            for chunk in self.inner.chunks(stop):
                yield replace(chunk, start_sample=offset)
                offset += len(chunk.samples)


class ListeningStore:
    """The privacy mute, persisted in the state directory so it survives restarts."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def load(self) -> bool:
        try:
            return bool(json.loads(self.path.read_text())["listening"])
        except FileNotFoundError:
            return True
        except (OSError, ValueError, KeyError, TypeError) as exc:
            log.warning("%s: unreadable (%s): listening", self.path, exc)
            return True

    def save(self, on: bool) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"listening": on, "changed": iso_time(time.time())}))
        tmp.replace(self.path)


class Daemon:
    """``bellad run``: one daemon from one config file. It is the sinks' :class:`Control`."""

    def __init__(self, config_path: Path, cfg: Config, notifier: Notifier | None = None) -> None:
        self.config_path = config_path
        self.cfg = cfg
        self.notifier = notifier if notifier is not None else make_notifier()
        self.started_mono = time.monotonic()
        self.started_wall = time.time()
        self.store = ListeningStore(cfg.service.state_dir / "listening.json")
        self.reloads = ReloadRecord(cfg.service.state_dir / "reload.json")
        self.sampler = ProcessSampler()
        self.pipeline: Pipeline | None = None
        self.transcriber: Transcriber | None = None
        self.sentiment: SentimentScorer | None = None
        self.source: AudioSource | None = None
        self.outbox: Outbox | None = None
        self.mqtt: MqttSink | None = None
        self._stop = threading.Event()
        self._reload = threading.Event()
        self._ready = False
        self._status = ""

    # -- Control (called by the MQTT sink) -----------------------------------

    @property
    def listening(self) -> bool:
        return self.pipeline.listening if self.pipeline else self.store.load()

    def set_listening(self, on: bool) -> None:
        if self.pipeline is not None:
            self.pipeline.set_listening(on)
        self.store.save(on)

    def state_payload(self) -> dict[str, Any]:
        listening = self.listening
        return {
            "schema_version": SCHEMA_VERSION,
            "site": self.cfg.service.site,
            "room": self.cfg.service.room,
            "state": "listening" if listening else "muted",
            "listening": listening,
            "version": __version__,
            "models": dict(self.pipeline.models) if self.pipeline else {},
            "started": iso_time(self.started_wall),
            "uptime_s": round(time.monotonic() - self.started_mono, 1),
        }

    def stats_payload(self) -> dict[str, Any]:
        assert self.pipeline is not None
        stats = self.pipeline.stats()
        source = self.source
        return {
            "schema_version": SCHEMA_VERSION,
            "site": self.cfg.service.site,
            "time": iso_time(time.time()),
            "uptime_s": round(time.monotonic() - self.started_mono, 1),
            "utterances": stats.utterances,
            "guarded": stats.guarded,
            "errors": stats.errors,
            "rtf": summary(stats.rtfs),
            "latency_ms": summary(stats.latencies_s, 1000),
            "backlog": {"depth": stats.backlog, "dropped": stats.backlog_dropped},
            "capture": {
                "health": getattr(source, "health", "ok"),
                "dropped_blocks": getattr(source, "dropped_blocks", 0),
                "overflows": getattr(source, "overflows", 0),
                "reopens": getattr(source, "reopens", 0),
            },
            "outbox": {
                "depth": self.outbox.depth if self.outbox else 0,
                "dropped": self.outbox.dropped if self.outbox else 0,
                "oldest_s": self.outbox.oldest_age_s() if self.outbox else None,
            },
            "process": {
                "cpu_percent": round(self.sampler.cpu_percent(), 2),
                "rss_mb": _round(rss_mb()),
                "peak_rss_mb": _round(peak_rss_mb()),
            },
            "soc_temp_c": soc_temperature_c(),
        }

    # -- lifecycle -----------------------------------------------------------

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        (self._reload if signum == signal.SIGHUP else self._stop).set()

    def run(self) -> int:
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(sig, self._on_signal)
        if self.cfg.service.hold_memory and hold_freed_memory():  # before the models load
            log.debug("freed memory is held for reuse until a quiet spell")
        self.notifier.status("loading models")
        pipeline = self._build()
        pipeline.start()
        if self.mqtt is not None:
            self.mqtt.start()
        self.notifier.status("waiting for audio")
        return self._supervise(pipeline)

    def _build(self) -> Pipeline:
        cfg = self.cfg
        self.transcriber = transcriber = load_transcriber(cfg)
        self.sentiment = sentiment = load_sentiment(cfg)
        self.source = build_source(cfg)
        sinks: list[Sink] = []
        if want_stdout(cfg.output.stdout):
            sinks.append(JsonLinesSink(extra={"site": cfg.service.site}))
        if cfg.mqtt.enabled:
            box = cfg.mqtt.outbox
            self.outbox = Outbox(
                cfg.service.state_dir / "outbox.sqlite", box.max_messages, box.max_age_h
            )
            self.mqtt = MqttSink(cfg.mqtt, cfg.service, self, self.outbox)
            sinks.append(self.mqtt)
        self.pipeline = Pipeline(
            self.source,
            Segmenter(cfg.vad, self.source.name, self.source.relative),
            transcriber,
            sentiment,
            sinks,
            cfg.pipeline,
            cfg.transcribe.guard,
            site=cfg.service.site,
        )
        if not self.store.load():
            self.pipeline.set_listening(False)
        return self.pipeline

    def _supervise(self, pipeline: Pipeline) -> int:
        interval = watchdog_interval()  # half of WatchdogSec, when systemd armed one
        tick = min(0.5, interval) if interval else 0.5
        last_ping = 0.0
        while not self._stop.wait(tick if self._ready else READY_POLL_S):
            if not pipeline.capturing:
                break  # the source ended (a file without loop) or failed
            if self._reload.is_set():
                self._reload.clear()
                self._do_reload()
            if not self._ready and pipeline.last_audio > 0:  # warm, and audio flows
                self._ready = True
                log.info("ready: listening on %s", pipeline.source.name)
                self.notifier.ready(self.status_line())
            elif self._ready:
                self._update_status()
            now = time.monotonic()
            if interval and self._ready and now - last_ping >= 0.9 * interval and self.healthy():
                self.notifier.watchdog()
                last_ping = now
        return self._shutdown(pipeline)

    def healthy(self) -> bool:
        """Capture delivers audio (or awaits a missing device) and no inference hangs."""
        pipeline = self.pipeline
        assert pipeline is not None
        now = time.monotonic()
        absent = getattr(self.source, "health", "") == "absent"
        capture_ok = absent or now - pipeline.last_audio < self.cfg.audio.stall_timeout_s
        busy = pipeline.busy_since
        inference_ok = busy is None or now - busy < self.cfg.service.inference_timeout_s
        return capture_ok and inference_ok and pipeline.alive

    def status_line(self) -> str:
        pipeline = self.pipeline
        assert pipeline is not None
        stats = pipeline.stats()
        parts = ["listening" if pipeline.listening else "muted"]
        health = getattr(self.source, "health", "ok")
        if health not in ("ok", "starting"):
            parts[0] += f" (microphone {health})"
        last = f", last {stats.last_latency_s:.2f} s" if stats.last_latency_s is not None else ""
        parts.append(f"{stats.utterances} utterances{last}")
        if self.mqtt is not None and self.outbox is not None:
            link = self.mqtt.link
            broker = "broker connected" if link.connected.is_set() else f"broker {link.state}"
            parts.append(broker)
            parts.append(f"outbox {self.outbox.depth}")
        return "; ".join(parts)

    def _update_status(self) -> None:
        line = self.status_line()
        if line != self._status:
            self._status = line
            self.notifier.status(line)

    def _do_reload(self) -> None:
        self.notifier.reloading("reloading the config")
        ok, message = self._reload_config()
        (log.info if ok else log.error)("reload: %s", message)
        self.reloads.record(ok, message)
        self.notifier.ready(self.status_line())

    def _reload_config(self) -> tuple[bool, str]:
        """Apply what can change live; (False, why) when the new config is refused."""
        try:
            new = load_config(self.config_path)
        except BelladError as exc:
            return False, f"keeping the running config: {exc}"
        plan = plan_reload(self.cfg, new)
        said = []
        if plan.live:
            self.cfg = effective(self.cfg, new)
            self._apply_live()
            said.append(f"applied {', '.join(plan.live)}")
        if plan.restart:
            said.append(
                f"{', '.join(plan.restart)} changed: restart bellad to apply "
                "(systemctl restart bellad)"
            )
        return True, "; ".join(said) or "nothing changed"

    def _apply_live(self) -> None:
        cfg, pipeline = self.cfg, self.pipeline
        assert pipeline is not None
        pipeline.reconfigure(
            Segmenter(cfg.vad, pipeline.source.name, pipeline.source.relative),
            cfg.transcribe.guard,
            cfg.pipeline,
        )
        if isinstance(self.transcriber, WhisperTranscriber):
            self.transcriber.cfg = cfg.transcribe  # decoding options are read per utterance
        if isinstance(self.sentiment, OnnxSentiment):
            self.sentiment.tokenizer.enable_truncation(cfg.sentiment.max_length)
        if self.mqtt is not None:
            self.mqtt.reconfigure(cfg.mqtt.stats_interval_s, cfg.service.room)

    def _shutdown(self, pipeline: Pipeline) -> int:
        self.notifier.stopping("finishing the utterance in flight")
        log.info("stopping: finishing the utterance in flight")
        pipeline.stop()
        timeout = self.cfg.service.shutdown_timeout_s + self.cfg.mqtt.flush_timeout_s
        if not pipeline.wait(timeout):
            log.warning("stages still busy after %.0f s: exiting", timeout)
        if pipeline.source_error is not None:
            err = pipeline.source_error
            log.error("stopped: %s", err)
            return err.exit_code if isinstance(err, BelladError) else 1
        return 0


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 1)
