"""Run the daemon through a programme and collect what happened.

:meth:`Bench.play` plays one :class:`~bellad.benchmark.clips.Programme` into a
freshly started daemon in real time, either through the PulseAudio microphone
(the feeder plays it once the daemon is ready) or as a file the daemon paces
in real time itself (after a lead-in of silence that covers its start). Each
run records the daemon's log, its CPU and memory from /proc, and every MQTT
message with the time it arrived. :meth:`Bench.time_starts` only times starts.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import tempfile
import time
import wave
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bellad.benchmark.clips import Programme, room_noise
from bellad.benchmark.daemon import DaemonRun, ProcSample, ProcSampler, Received, Subscriber
from bellad.benchmark.feeder import Feeder
from bellad.benchmark.services import Mosquitto, ServiceError, SoundServer
from bellad.config import AudioConfig
from bellad.events import SAMPLE_RATE, Samples

log = logging.getLogger(__name__)

SITE = "bench"
READY_TIMEOUT_S = 90.0
LEAD_IN_S = 4.0  # file source: silence the daemon plays while it becomes ready


@dataclass
class Settings:
    """How long each part lasts, and what the daemon runs with."""

    idle_s: float = 30.0
    gap_s: float = 1.0
    continuous_s: float = 20.0
    mic_clips: int = 8  # the shortest clips, spaced, also heard through the microphone
    starts: int = 5
    source: str = "auto"  # "pulse", "file" or "auto" (pulse when PulseAudio is installed)
    daemon: dict[str, Any] = field(default_factory=dict)  # extra config, by section


@dataclass
class StartRecord:
    """One start of the daemon: seconds from spawn to each sign of readiness."""

    ready_log_s: float
    online_s: float | None
    via: str

    @property
    def ready_s(self) -> float:
        """Ready to serve a person: warm, hearing audio, and connected to the broker."""
        return max(self.ready_log_s, self.online_s if self.online_s is not None else float("inf"))


@dataclass
class ProgrammeRun:
    """Everything one run produced, for the analysis."""

    via: str
    programme: Programme
    samples: list[ProcSample]
    transcripts: list[Received]
    speech: list[Received]
    time_of: Callable[[int], float]  # programme index -> wall time it was heard
    index_of: Callable[[float, dict[str, Any]], int]  # (wall, payload) -> programme index
    log_lines: list[tuple[float, str]]
    returncode: int
    probe: list[ProcSample] = field(default_factory=list)  # capture alone, beside the daemon
    machine: list[ProcSample] = field(default_factory=list)  # every process's CPU time
    feeder_max_late_s: float = 0.0
    feeder_resyncs: int = 0


def choose_source(wanted: str) -> str:
    if wanted != "auto":
        return wanted
    try:
        SoundServer(Path(tempfile.gettempdir()))
    except ServiceError as exc:
        log.warning("no PulseAudio microphone (%s): feeding a file in real time instead", exc)
        return "file"
    return "pulse"


def daemon_config(
    folder: Path,
    broker: Mosquitto,
    models: tuple[Path, Path],
    audio_file: Path | None,
    extra: dict[str, Any],
) -> dict[str, Any]:
    """The daemon's config: defaults, but for the site, state, models, input and broker."""
    audio: dict[str, Any] = {"source": "microphone", "device": "pulse"}
    if audio_file is not None:
        audio = {"source": "file", "file": str(audio_file), "realtime": True}
    whisper, sentiment = models
    config: dict[str, Any] = {
        "service": {"site": SITE, "state_dir": str(folder / "state")},
        "audio": audio,
        "transcribe": {"model": str(whisper)},
        "sentiment": {"model": str(sentiment)},
        "output": {"stdout": "off"},  # as under systemd: the journal gets no JSON lines
        "mqtt": {"host": broker.host, "port": broker.port},
    }
    for section, values in extra.items():
        config.setdefault(section, {}).update(values)
    return config


def write_wav(path: Path, audio: Samples) -> Path:
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(SAMPLE_RATE)
        out.writeframes(audio.astype("<i2").tobytes())
    return path


class Bench:
    """The services and the daemon runs of one benchmark."""

    def __init__(self, folder: Path, whisper: Path, sentiment: Path, settings: Settings):
        self.folder = folder
        self.whisper = whisper
        self.sentiment = sentiment
        self.settings = settings
        self.source = choose_source(settings.source)
        self.broker = Mosquitto(folder / "mosquitto")
        self.sound: SoundServer | None = None
        self.feeder: Feeder | None = None
        self.subscriber: Subscriber | None = None
        self.starts: list[StartRecord] = []
        self.machine = ProcSampler(0)
        self._runs = 0

    def __enter__(self) -> Bench:
        self.broker.start()
        if self.source == "pulse":
            self.sound = SoundServer(self.folder / "pulse").start()
            self.feeder = Feeder(self.sound.fifo).start()
        self.subscriber = Subscriber(self.broker.host, self.broker.port, f"bellad/{SITE}/#")
        return self

    def __exit__(self, *exc: object) -> None:
        self.machine.stop()
        if self.subscriber is not None:
            self.subscriber.stop()
        if self.feeder is not None:
            self.feeder.stop()
        if self.sound is not None:
            self.sound.stop()
        self.broker.stop()

    # -- daemon runs --------------------------------------------------------------------

    def _spawn(self, audio_file: Path | None) -> DaemonRun:
        """Start a daemon on the microphone, or on ``audio_file`` paced in real time."""
        self._runs += 1
        name = f"run{self._runs}"
        models = (self.whisper, self.sentiment)
        config = daemon_config(
            self.folder / name, self.broker, models, audio_file, self.settings.daemon
        )
        env = self.sound.env if self.sound is not None else {}
        return DaemonRun(config, self.folder / "runs", env, name).start()

    def _wait_started(self, run: DaemonRun, via: str) -> StartRecord:
        assert self.subscriber is not None
        ready = run.wait_ready(READY_TIMEOUT_S)
        self.subscriber.wait_count("/availability", 1, run.spawned_mono, 30)
        online = [
            m.mono - run.spawned_mono
            for m in self.subscriber.since(run.spawned_mono, "/availability")
            if m.payload == b"online"
        ]
        record = StartRecord(ready, online[0] if online else None, via)
        self.starts.append(record)
        log.info(
            "start %d (%s): ready logged after %.2f s, online after %s s",
            len(self.starts),
            via,
            ready,
            f"{record.online_s:.2f}" if record.online_s is not None else "never",
        )
        return record

    def time_starts(self, count: int) -> None:
        """Start and stop the daemon ``count`` times, timing only the start."""
        silence_file = None
        if self.source == "file":
            silence_file = write_wav(self.folder / "silence.wav", room_noise(30, -90))
        for _ in range(count):
            run = self._spawn(silence_file)
            try:
                self._wait_started(run, self.source)
            finally:
                run.stop()

    def play(
        self, prog: Programme, via: str, listener: Callable[[Received], None] | None = None
    ) -> ProgrammeRun:
        """Start a daemon and play ``prog`` into it in real time ("pulse" or "file").

        ``listener`` sees every message the subscriber receives meanwhile.
        """
        assert self.subscriber is not None
        if listener is not None:
            self.subscriber.listeners.append(listener)
        try:
            return self._play(prog, via)
        finally:
            if listener is not None:
                self.subscriber.listeners.remove(listener)

    def _play(self, prog: Programme, via: str) -> ProgrammeRun:
        audio = prog.audio
        seconds = len(audio) / SAMPLE_RATE
        audio_file = None
        if via == "file":
            audio_file = write_wav(self.folder / f"programme{self._runs + 1}.wav", audio)
        log.info("playing %.0f s of audio (%s) through %s", seconds, ", ".join(prog.sections), via)
        run = self._spawn(audio_file)
        try:
            self._wait_started(run, via)
            if via == "pulse":
                assert self.feeder is not None
                probe = self._start_probe()
                time.sleep(1.0)  # settle: the first status and stats messages are out
                first = self.feeder.play(audio)
                try:
                    if not self.feeder.wait_written(first + len(audio), seconds + 60):
                        raise RuntimeError("the feeder fell behind: the programme was not played")
                finally:
                    probe_samples = self._stop_probe(probe)
                time.sleep(1.0)
                rc = run.stop()
                time_of, index_of = self._feeder_clock(first)
                late, resyncs = self.feeder.max_late_s, self.feeder.resyncs
            else:
                assert run.proc is not None
                run.proc.wait(seconds + 120)  # the daemon ends with its input
                rc = run.stop()
                time_of, index_of = self._file_clock(run.spawned_mono)
                late, resyncs, probe_samples = 0.0, 0, []
        except BaseException:
            run.kill()
            raise
        assert self.subscriber is not None
        return ProgrammeRun(
            via=via,
            programme=prog,
            samples=list(run.samples),
            transcripts=self.subscriber.since(run.spawned_mono, "/transcript"),
            speech=self.subscriber.since(run.spawned_mono, "/speech"),
            time_of=time_of,
            index_of=index_of,
            log_lines=list(run.lines),
            returncode=rc,
            feeder_max_late_s=late,
            feeder_resyncs=resyncs,
            probe=probe_samples,
            machine=[m for m in self.machine.samples if m.wall >= run.spawned_wall],
        )

    def _start_probe(self) -> tuple[subprocess.Popen[bytes], ProcSampler]:
        """Capture alone (:mod:`bellad.benchmark.probe`) at the daemon's block size."""
        assert self.sound is not None
        audio = AudioConfig.model_validate(self.settings.daemon.get("audio", {}))
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "bellad.benchmark.probe",
                f"--block-ms={audio.block_ms}",
                f"--idle-batch-ms={audio.idle_batch_ms}",
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            env={**os.environ, **self.sound.env},
        )
        assert proc.stdout is not None
        proc.stdout.readline()  # "capturing": the stream is open
        return proc, ProcSampler(proc.pid)

    @staticmethod
    def _stop_probe(probe: tuple[subprocess.Popen[bytes], ProcSampler]) -> list[ProcSample]:
        proc, sampler = probe
        sampler.sample()
        proc.terminate()
        proc.wait(10)
        return sampler.stop()

    def _feeder_clock(
        self, first: int
    ) -> tuple[Callable[[int], float], Callable[[float, dict[str, Any]], int]]:
        """The feeder's record: when each sample of the programme was written."""
        feeder = self.feeder
        assert feeder is not None

        def time_of(index: int) -> float:
            heard = feeder.time_of(first + index)
            assert heard is not None
            return heard

        def index_of(wall: float, payload: dict[str, Any]) -> int:
            return feeder.index_at(wall) - first

        return time_of, index_of

    def _file_clock(
        self, since: float
    ) -> tuple[Callable[[int], float], Callable[[float, dict[str, Any]], int]]:
        """The daemon's own clock for a file: wall = start of the file + offset."""
        assert self.subscriber is not None
        from bellad.benchmark.analysis import parse_time

        origins = []
        for message in self.subscriber.since(since, "/transcript"):
            event = message.json()
            if event.get("offset_start_s") is not None:
                origins.append(parse_time(event["start"]) - event["offset_start_s"])
        if not origins:
            raise RuntimeError("no transcript arrived: the file's clock is unknown")
        wall0 = sorted(origins)[len(origins) // 2]

        def time_of(index: int) -> float:
            return wall0 + index / SAMPLE_RATE

        def index_of(wall: float, payload: dict[str, Any]) -> int:
            return round((wall - wall0) * SAMPLE_RATE)

        return time_of, index_of
