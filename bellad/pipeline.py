"""The pipeline: capture -> segmentation -> inference -> sinks, joined by bounded queues.

Three threads, plus a microphone's capture thread (:mod:`bellad.microphone`):

* **listen** iterates the audio source and feeds the segmenter. Speech events
  go to the delivery queue; utterances to the backlog.
* **infer** takes utterances from the backlog: Whisper, the hallucination
  guard, sentiment. It never runs on the capture thread. Once nothing has
  come for :data:`RELEASE_AFTER_S` after an inference (the conversation is
  over), it gives the C heap's freed scratch memory back to the system
  (:mod:`bellad.memory`), so that through the long quiet hours the daemon
  holds only what it needs.
* **deliver** hands every event, in order, to each sink.

Backlog policy: at most ``pipeline.max_backlog`` utterances wait for
transcription. When live speech (a microphone, or input paced in real time)
arrives faster than it is transcribed and the backlog is full, ``overflow``
drops the oldest waiting utterance (default) or the new one; each drop is
counted and logged. Capture never blocks. Input that is not live (a file read
as fast as it decodes) waits for room instead: nothing is dropped.

Stopping (SIGTERM, end of input) closes the utterance in flight, transcribes
what is in the backlog, delivers every result, then closes the sinks.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, replace

from tenacity import Retrying, stop_after_attempt, wait_exponential

from bellad.audio import AudioSource, IdleAware
from bellad.config import GuardConfig, PipelineConfig
from bellad.errors import BelladError
from bellad.events import Event, Result, Utterance
from bellad.memory import release_free_memory
from bellad.queues import BoundedQueue
from bellad.sentiment import SentimentScorer
from bellad.sinks import Sink
from bellad.transcribe import Transcriber, judge
from bellad.vad import Segmenter

log = logging.getLogger(__name__)

EVENT_QUEUE = (
    10_000  # speech events and results awaiting delivery: small, never dropped in practice
)
#: idle this long after an inference, the infer thread returns freed memory to
#: the system: a transcription's working memory, held for the next one
#: (:func:`bellad.memory.hold_freed_memory`; about 100 MB with the tiny model). Not
#: after every utterance: the next transcription faults those pages back in
#: (about 20 ms with the tiny model here), which only the first utterance after
#: a quiet spell should pay, not each one of a conversation.
RELEASE_AFTER_S = 30.0


@dataclass(frozen=True, slots=True)
class PipelineStats:
    """A snapshot of the counters, for logs, status lines and the stats topic."""

    utterances: int  # results delivered to the sinks
    guarded: int  # dropped by the hallucination guard
    backlog: int  # utterances waiting now
    backlog_dropped: int
    muted_dropped: int
    errors: int
    last_latency_s: float | None
    latencies_s: tuple[float, ...]  # recent end-of-speech -> result latencies
    rtfs: tuple[float, ...]  # recent transcription real-time factors


class Pipeline:
    """Owns the stage threads; build it, ``start()``, then ``stop()`` or ``wait()``."""

    def __init__(
        self,
        source: AudioSource,
        segmenter: Segmenter,
        transcriber: Transcriber,
        sentiment: SentimentScorer | None,
        sinks: Sequence[Sink],
        cfg: PipelineConfig,
        guard: GuardConfig,
        site: str = "",
    ) -> None:
        self.source = source
        self.segmenter = segmenter
        self.transcriber = transcriber
        self.sentiment = sentiment
        self.sinks = list(sinks)
        self.guard = guard
        self.site = site
        self.backlog: BoundedQueue[Utterance] = BoundedQueue(cfg.max_backlog, cfg.overflow)
        self.events: BoundedQueue[Event] = BoundedQueue(EVENT_QUEUE, "drop_oldest")
        self.models = {"whisper": transcriber.name}
        if sentiment is not None:
            self.models["sentiment"] = sentiment.name
        self.last_audio = 0.0  # when capture last delivered audio (0: not yet)
        self.busy_since: float | None = None  # when the inference in progress began
        self.source_error: Exception | None = None
        self._next_segmenter: Segmenter | None = None
        self._listening = threading.Event()
        self._listening.set()
        self._stop = threading.Event()
        self._abandon = threading.Event()  # set when nothing consumes the backlog any more
        self._counts = {"utterances": 0, "guarded": 0, "muted": 0, "errors": 0}
        self._latencies: deque[float] = deque(maxlen=200)
        self._rtfs: deque[float] = deque(maxlen=200)
        self._threads = [
            threading.Thread(target=self._run_listen, name="bellad-listen", daemon=True),
            threading.Thread(target=self._run_infer, name="bellad-infer", daemon=True),
            threading.Thread(target=self._run_deliver, name="bellad-deliver", daemon=True),
        ]

    # -- control -------------------------------------------------------------

    def start(self) -> None:
        for thread in self._threads:
            thread.start()

    def stop(self) -> None:
        """Stop capturing; what was heard is still transcribed and delivered."""
        self._stop.set()

    def wait(self, timeout: float | None = None) -> bool:
        """Wait for every stage to finish; False if ``timeout`` passed first."""
        deadline = None if timeout is None else time.monotonic() + timeout
        for thread in self._threads:
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            thread.join(left)
        return not any(t.is_alive() for t in self._threads)

    def reconfigure(self, segmenter: Segmenter, guard: GuardConfig, cfg: PipelineConfig) -> None:
        """Apply a reloaded config: the listen thread swaps the segmenter in between chunks."""
        self._next_segmenter = segmenter
        self.guard = guard
        self.backlog.maxsize = cfg.max_backlog
        self.backlog.overflow = cfg.overflow

    @property
    def alive(self) -> bool:
        """True while every stage thread runs."""
        return all(t.is_alive() for t in self._threads)

    @property
    def capturing(self) -> bool:
        """False once the source has ended or failed."""
        return self._threads[0].is_alive()

    @property
    def listening(self) -> bool:
        return self._listening.is_set()

    def set_listening(self, on: bool) -> None:
        """Privacy mute: off discards the audio, the open utterance and the backlog at once."""
        if on:
            self._listening.set()
        else:
            self._listening.clear()
            dropped = self.backlog.clear()
            self._counts["muted"] += len(dropped)
        log.info("listening %s", "on" if on else "off (muted)")

    def stats(self) -> PipelineStats:
        latencies = tuple(self._latencies)
        return PipelineStats(
            utterances=self._counts["utterances"],
            guarded=self._counts["guarded"],
            backlog=len(self.backlog),
            backlog_dropped=self.backlog.dropped,
            muted_dropped=self._counts["muted"],
            errors=self._counts["errors"],
            last_latency_s=latencies[-1] if latencies else None,
            latencies_s=latencies,
            rtfs=tuple(self._rtfs),
        )

    # -- listen --------------------------------------------------------------

    def _run_listen(self) -> None:
        was_listening = True
        idle = True  # no utterance open: a live source may hand over audio in batches
        set_idle = self.source.set_idle if isinstance(self.source, IdleAware) else None
        if set_idle is not None:
            set_idle(True)
        try:
            for chunk in self.source.chunks(self._stop):
                self.last_audio = time.monotonic()
                if self._next_segmenter is not None:
                    self._swap_segmenter()
                if self._listening.is_set():
                    was_listening = True
                    self._dispatch(self.segmenter.feed(chunk))
                elif was_listening:
                    self._dispatch(self.segmenter.discard())
                    was_listening = False
                if set_idle is not None and self.segmenter.active == idle:
                    idle = not idle
                    set_idle(idle)
        except BelladError as exc:  # a bad input: one line that names it
            self.source_error = exc
            log.error("%s", exc)
        except Exception as exc:  # anything else is a bug: keep the traceback
            self.source_error = exc
            log.exception("audio source %s failed: %s", self.source.name, exc)
        finally:
            if self._listening.is_set():
                self._dispatch(self.segmenter.flush())
            self.backlog.close()

    def _swap_segmenter(self) -> None:
        """Close what the old segmenter holds (nothing is lost), then use the new one."""
        new, self._next_segmenter = self._next_segmenter, None
        if new is not None:
            self._dispatch(self.segmenter.flush())
            self.segmenter = new

    def _dispatch(self, events: Sequence[Event]) -> None:
        for event in events:
            if isinstance(event, Utterance) and not self.source.live:
                self.backlog.put_wait(event, self._abandon)  # a file waits: nothing dropped
            elif isinstance(event, Utterance):
                dropped = self.backlog.put(event)
                if dropped is not None:
                    log.warning(
                        "backlog full (%d): dropped the %s utterance of %.1f s",
                        self.backlog.maxsize,
                        "new" if dropped is event else "oldest",
                        dropped.duration_s,
                    )
            else:
                self.events.put(event)

    # -- infer ---------------------------------------------------------------

    def _run_infer(self) -> None:
        release_pending = False
        try:
            while True:
                utterance = self.backlog.get(timeout=RELEASE_AFTER_S if release_pending else None)
                if utterance is None:
                    if self.backlog.closed:
                        break
                    if release_pending:
                        release_free_memory()
                        release_pending = False
                    continue
                release_pending = True
                result = self._infer_with_retry(utterance)
                if result is not None and self._listening.is_set():
                    self.events.put(result)
                elif result is not None:
                    self._counts["muted"] += 1
        finally:
            self._abandon.set()
            self.events.close()

    def _infer_with_retry(self, utterance: Utterance) -> Result | None:
        retrying = Retrying(
            stop=stop_after_attempt(3), wait=wait_exponential(multiplier=0.5, max=4), reraise=True
        )
        try:
            return retrying(self._infer, utterance)
        except Exception:
            self._counts["errors"] += 1
            log.exception("utterance %s: inference failed three times, dropped", utterance.id)
            return None
        finally:
            self.busy_since = None

    def _infer(self, utterance: Utterance) -> Result | None:
        started = self.busy_since = time.monotonic()
        transcript = self.transcriber.transcribe(utterance.audio)
        transcribed = time.monotonic()
        reasons = judge(transcript, utterance.rms_dbfs, self.guard)
        timings = {
            "hangover": max(0.0, utterance.closed_mono - utterance.speech_end_mono),
            "queue": max(0.0, started - utterance.closed_mono),
            "transcribe": transcribed - started,
        }
        self._rtfs.append((transcribed - started) / max(utterance.duration_s, 1e-3))
        if reasons and (self.guard.action == "drop" or reasons == ("empty",)):
            self._counts["guarded"] += 1
            log.info("utterance %s dropped by the guard: %s", utterance.id, ", ".join(reasons))
            return None
        if reasons:
            transcript = replace(transcript, flags=reasons)
        sentiment = None
        if self.sentiment is not None:
            sentiment = self.sentiment.score(transcript.text)
            timings["sentiment"] = time.monotonic() - transcribed
        result = Result(utterance, transcript, sentiment, timings, self.models)
        self._latencies.append(result.latency_s)
        self._counts["utterances"] += 1
        self._log_result(result)
        return result

    def _log_result(self, result: Result) -> None:
        t = result.timings
        log.info(
            "utterance %s: %.1f s, %d chars; hangover %.0f ms, queue %.0f ms, "
            "transcribe %.0f ms, sentiment %.0f ms",
            result.utterance.id,
            result.utterance.duration_s,
            len(result.transcript.text),
            t["hangover"] * 1000,
            t["queue"] * 1000,
            t["transcribe"] * 1000,
            t.get("sentiment", 0.0) * 1000,
            extra={"site": self.site, "utterance_id": result.utterance.id, "timings": t},
        )

    # -- deliver -------------------------------------------------------------

    def _run_deliver(self) -> None:
        while True:
            event = self.events.get()  # no timeout: closing the queue wakes it
            if event is None:
                break  # closed, and everything in it delivered
            for sink in self.sinks:
                try:
                    sink.handle(event)
                except Exception:
                    self._counts["errors"] += 1
                    log.exception("sink %s failed on %s", sink.name, type(event).__name__)
        for sink in self.sinks:
            try:
                sink.close()
            except Exception:
                log.exception("closing sink %s failed", sink.name)
