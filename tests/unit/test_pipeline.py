"""The pipeline's threading and policies, with fakes passed in through the constructor."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import numpy as np
import pytest

from bellad.config import GuardConfig, PipelineConfig, VadConfig
from bellad.events import (
    AudioChunk,
    Event,
    Result,
    Samples,
    Sentiment,
    SpeechEnded,
    SpeechStarted,
    Transcript,
)
from bellad.pipeline import Pipeline
from bellad.vad import Segmenter
from tests.support import tools

FRAME = 480


def fake_vad(frame: bytes) -> bool:
    return bool(abs(int(np.frombuffer(frame, dtype=np.int16)[0])) > 100)


def speech_pattern(n: int, speech_frames: int = 30, silence_frames: int = 40) -> Samples:
    """``n`` utterances; each one's amplitude encodes its number (1000, 1001, ...)."""
    parts = [np.zeros(silence_frames * FRAME, np.int16)]
    for i in range(n):
        parts.append(np.full(speech_frames * FRAME, 1000 + i, np.int16))
        parts.append(np.zeros(silence_frames * FRAME, np.int16))
    return np.concatenate(parts)


class ListSource:
    """Yields prepared audio in 30 ms chunks; can hold back the end until released."""

    relative = True
    live = True
    name = "fake"

    def __init__(self, audio: Samples, hold: threading.Event | None = None) -> None:
        self.audio = audio
        self.hold = hold

    def chunks(self, stop: threading.Event) -> Iterator[AudioChunk]:
        for i in range(0, len(self.audio), FRAME):
            if stop.is_set():
                return
            yield AudioChunk(self.audio[i : i + FRAME], i / 16000, i / 16000, i)
        while self.hold is not None and not stop.is_set():
            stop.wait(0.01)


class FakeTranscriber:
    """Names the utterance by its amplitude; can be slowed down or made to fail."""

    name = "fake-whisper"

    def __init__(
        self, delay: float = 0.0, failures: int = 0, gate: threading.Event | None = None
    ) -> None:
        self.delay = delay
        self.failures = failures
        self.gate = gate
        self.calls = 0
        self.started = threading.Event()

    def transcribe(self, audio: Samples) -> Transcript:
        self.calls += 1
        self.started.set()
        if self.gate is not None:
            assert self.gate.wait(10), "the test never opened the gate"
        time.sleep(self.delay)
        if self.failures:
            self.failures -= 1
            raise RuntimeError("out of memory")
        number = int(np.max(audio)) - 1000
        return Transcript(f"utterance {number}", "en", 1.0, -0.2, 0.01, 1.2, 3)


class FakeSentiment:
    name = "fake-sentiment"

    def score(self, text: str) -> Sentiment:
        return Sentiment("POSITIVE", 0.9, 0.8)


class ListSink:
    name = "list"

    def __init__(self) -> None:
        self.events: list[Event] = []
        self.closed = False

    def handle(self, event: Event) -> None:
        self.events.append(event)

    def close(self) -> None:
        self.closed = True

    def texts(self) -> list[str]:
        return [e.transcript.text for e in self.events if isinstance(e, Result)]


def make(
    source: ListSource, transcriber: FakeTranscriber, sink: ListSink, **pipeline: object
) -> Pipeline:
    return Pipeline(
        source,
        Segmenter(VadConfig(), source.name, True, is_speech=fake_vad),
        transcriber,
        FakeSentiment(),
        [sink],
        PipelineConfig(**pipeline),  # type: ignore[arg-type]
        GuardConfig(),
    )


def test_every_utterance_is_delivered_in_order_then_sinks_close() -> None:
    sink = ListSink()
    pipeline = make(ListSource(speech_pattern(5)), FakeTranscriber(), sink)
    pipeline.start()
    assert pipeline.wait(10)
    assert sink.texts() == [f"utterance {i}" for i in range(5)]
    kinds = [type(e) for e in sink.events]
    assert kinds.count(SpeechStarted) == kinds.count(SpeechEnded) == 5
    assert sink.closed
    result = next(e for e in sink.events if isinstance(e, Result))
    assert set(result.timings) == {"hangover", "queue", "transcribe", "sentiment"}
    assert result.sentiment == Sentiment("POSITIVE", 0.9, 0.8)
    assert result.models == {"whisper": "fake-whisper", "sentiment": "fake-sentiment"}
    stats = pipeline.stats()
    assert stats.utterances == 5 and stats.backlog_dropped == 0


def test_backlog_drops_the_oldest_when_full() -> None:
    sink = ListSink()
    slow = FakeTranscriber(delay=0.3)
    pipeline = make(ListSource(speech_pattern(8)), slow, sink, max_backlog=2)
    pipeline.start()
    assert pipeline.wait(20)
    texts = sink.texts()
    assert pipeline.stats().backlog_dropped == 8 - len(texts) > 0
    assert texts[-1] == "utterance 7"  # the newest survives
    assert texts == sorted(texts)


def test_backlog_drop_newest_keeps_the_first() -> None:
    sink = ListSink()
    gate = threading.Event()  # nothing is transcribed until all eight have been segmented
    pipeline = make(
        ListSource(speech_pattern(8), hold=threading.Event()),
        FakeTranscriber(gate=gate),
        sink,
        max_backlog=2,
        overflow="drop_newest",
    )
    pipeline.start()
    # one utterance in the transcriber (or not yet taken), two waiting: five or six dropped
    tools.wait_until(lambda: pipeline.stats().backlog_dropped >= 5, 10, "the drops", 0.01)
    time.sleep(0.1)
    gate.set()
    pipeline.stop()
    assert pipeline.wait(20)
    texts = sink.texts()
    assert texts[:2] == ["utterance 0", "utterance 1"]
    assert "utterance 7" not in texts
    assert pipeline.stats().backlog_dropped == 8 - len(texts)


def test_stop_finishes_the_utterance_in_flight() -> None:
    sink = ListSink()
    transcriber = FakeTranscriber(delay=0.5)
    hold = threading.Event()
    pipeline = make(ListSource(speech_pattern(1), hold), transcriber, sink)
    pipeline.start()
    assert transcriber.started.wait(10)
    pipeline.stop()  # mid-inference
    assert pipeline.wait(10)
    assert sink.texts() == ["utterance 0"]


def test_freed_memory_goes_back_once_idle_after_an_inference(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    sink = ListSink()
    released: list[int] = []  # results delivered at each release
    monkeypatch.setattr(
        "bellad.pipeline.release_free_memory", lambda: released.append(len(sink.texts()))
    )
    monkeypatch.setattr("bellad.pipeline.RELEASE_AFTER_S", 0.05)
    pipeline = make(ListSource(speech_pattern(2), hold=threading.Event()), FakeTranscriber(), sink)
    pipeline.start()
    tools.wait_until(lambda: len(sink.texts()) == 2, 10, "both results", 0.01)
    time.sleep(1.5)  # idle: a release after the last result, then none while nothing comes
    pipeline.stop()
    assert pipeline.wait(10)
    assert released and released[-1] == 2
    assert len(released) <= 2  # at most once per inference, never on every idle timeout


def test_stop_during_speech_closes_and_transcribes_it() -> None:
    sink = ListSink()
    audio = np.concatenate([np.zeros(20 * FRAME, np.int16), np.full(60 * FRAME, 1000, np.int16)])
    pipeline = make(ListSource(audio, hold=threading.Event()), FakeTranscriber(), sink)
    pipeline.start()
    time.sleep(0.3)
    pipeline.stop()
    assert pipeline.wait(10)
    assert sink.texts() == ["utterance 0"]


def test_a_failing_inference_is_retried() -> None:
    sink = ListSink()
    transcriber = FakeTranscriber(failures=2)
    pipeline = make(ListSource(speech_pattern(1)), transcriber, sink)
    pipeline.start()
    assert pipeline.wait(20)
    assert sink.texts() == ["utterance 0"]
    assert transcriber.calls == 3


def test_an_inference_that_keeps_failing_is_logged_and_dropped(
    caplog: pytest.LogCaptureFixture,
) -> None:
    sink = ListSink()
    pipeline = make(ListSource(speech_pattern(2)), FakeTranscriber(failures=3), sink)
    pipeline.start()
    assert pipeline.wait(30)
    assert sink.texts() == ["utterance 1"]
    assert pipeline.stats().errors == 1
    assert "inference failed three times" in caplog.text


def test_mute_discards_audio_and_results() -> None:
    sink = ListSink()
    pipeline = make(ListSource(speech_pattern(3)), FakeTranscriber(), sink)
    pipeline.set_listening(False)
    pipeline.start()
    assert pipeline.wait(10)
    assert sink.texts() == []
    assert not any(isinstance(e, SpeechStarted) for e in sink.events)


class BrokenSink(ListSink):
    name = "broken"

    def handle(self, event: Event) -> None:
        raise OSError("disk full")


def test_a_failing_sink_does_not_stop_the_others(caplog: pytest.LogCaptureFixture) -> None:
    good = ListSink()
    pipeline = Pipeline(
        ListSource(speech_pattern(2)),
        Segmenter(VadConfig(), "fake", True, is_speech=fake_vad),
        FakeTranscriber(),
        None,
        [BrokenSink(), good],
        PipelineConfig(),
        GuardConfig(),
    )
    pipeline.start()
    assert pipeline.wait(10)
    assert good.texts() == ["utterance 0", "utterance 1"]
    assert "sink broken failed" in caplog.text


def test_a_file_that_is_not_live_waits_instead_of_dropping() -> None:
    sink = ListSink()
    source = ListSource(speech_pattern(8))
    source.live = False
    pipeline = make(source, FakeTranscriber(delay=0.1), sink, max_backlog=1)
    pipeline.start()
    assert pipeline.wait(20)
    assert sink.texts() == [f"utterance {i}" for i in range(8)]
    assert pipeline.stats().backlog_dropped == 0


class IdleAwareSource(ListSource):
    """Records what the pipeline tells it about batching."""

    def __init__(self, audio: Samples) -> None:
        super().__init__(audio)
        self.idle: list[bool] = []

    def set_idle(self, idle: bool) -> None:
        self.idle.append(idle)


def test_a_live_source_batches_only_while_no_utterance_is_open() -> None:
    source = IdleAwareSource(speech_pattern(3))
    pipeline = make(source, FakeTranscriber(), ListSink())
    pipeline.start()
    assert pipeline.wait(10)
    assert source.idle == [True, False, True, False, True, False, True]
    muted = IdleAwareSource(speech_pattern(3))
    pipeline = make(muted, FakeTranscriber(), ListSink())
    pipeline.set_listening(False)
    pipeline.start()
    assert pipeline.wait(10)
    assert muted.idle == [True]  # muted: batched all along
