"""Voice-activity segmentation: a stream of audio chunks in, utterances out.

The stream is cut into ``frame_ms`` frames, each judged voiced or not by a
``is_speech(frame) -> bool`` callable (webrtcvad by default). Speech starts
when at least ``start_ratio`` of the frames in the last ``start_window_ms`` are
voiced; the utterance then begins ``pre_roll_ms`` before that window, so first
words are not clipped. It ends when no more than ``end_ratio`` of the frames in
the last ``hangover_ms`` are voiced. An utterance with less than
``min_speech_ms`` of voiced frames is dropped as a click. One that reaches
``max_utterance_s`` is cut at its quietest frame within the last
``cut_search_ms``; the rest opens the next utterance, so nothing is lost
between the pieces.
"""

from __future__ import annotations

import logging
import math
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from bellad.config import VadConfig
from bellad.events import SAMPLE_RATE, AudioChunk, Samples, SpeechEnded, SpeechStarted, Utterance

log = logging.getLogger(__name__)

VadFn = Callable[[bytes], bool]
SegmentEvent = SpeechStarted | SpeechEnded | Utterance


def webrtc_vad(aggressiveness: int) -> VadFn:
    """webrtcvad's judgement of one 16 kHz int16 frame."""
    import webrtcvad

    vad = webrtcvad.Vad(aggressiveness)

    def is_speech(frame: bytes) -> bool:
        return bool(vad.is_speech(frame, SAMPLE_RATE))

    return is_speech


@dataclass(slots=True)
class Frame:
    samples: Samples
    sample: int  # index of its first sample in the stream
    mono: float
    wall: float
    voiced: bool

    @property
    def end_mono(self) -> float:
        return self.mono + len(self.samples) / SAMPLE_RATE


class Segmenter:
    """Turns audio chunks into speech events and utterances; not thread-safe."""

    def __init__(
        self, cfg: VadConfig, source: str, relative: bool, is_speech: VadFn | None = None
    ) -> None:
        self.cfg = cfg
        self.source = source
        self.relative = relative
        self.is_speech = is_speech if is_speech is not None else webrtc_vad(cfg.aggressiveness)
        self.frame_len = SAMPLE_RATE * cfg.frame_ms // 1000
        self.start_frames = max(1, cfg.start_window_ms // cfg.frame_ms)
        self.start_need = max(1, math.ceil(cfg.start_ratio * self.start_frames))
        self.end_frames = max(1, cfg.hangover_ms // cfg.frame_ms)
        self.end_allow = math.floor(cfg.end_ratio * self.end_frames)
        self.pre_frames = math.ceil(cfg.pre_roll_ms / cfg.frame_ms)
        self.max_frames = int(cfg.max_utterance_s * 1000) // cfg.frame_ms
        self.min_voiced = cfg.min_speech_ms // cfg.frame_ms
        self.cut_frames = cfg.cut_search_ms // cfg.frame_ms
        self.dropped_short = 0
        self.cuts = 0
        self._carry = np.zeros(0, np.int16)
        self._carry_sample = 0
        self._reset()

    def _reset(self) -> None:
        self._history: deque[Frame] = deque(maxlen=self.pre_frames + self.start_frames)
        self._window: deque[bool] = deque(maxlen=self.start_frames)
        self._tail: deque[bool] = deque(maxlen=self.end_frames)
        self._frames: list[Frame] = []
        self._voiced = 0
        self._last_voiced: Frame | None = None
        self._continued = False

    @property
    def active(self) -> bool:
        """True while an utterance is open."""
        return bool(self._frames)

    def feed(self, chunk: AudioChunk) -> list[SegmentEvent]:
        """Consume one chunk; return the events it completes, in order."""
        events: list[SegmentEvent] = []
        if chunk.gap:
            events += self.flush()
        samples = chunk.samples
        if len(self._carry):
            samples = np.concatenate([self._carry, samples])
            first = self._carry_sample
        else:
            first = chunk.start_sample
        usable = len(samples) - len(samples) % self.frame_len
        for i in range(0, usable, self.frame_len):
            offset = (first + i - chunk.start_sample) / SAMPLE_RATE
            frame_samples = samples[i : i + self.frame_len]
            voiced = self.is_speech(frame_samples.tobytes())
            frame = Frame(
                frame_samples,
                first + i,
                chunk.start_mono + offset,
                chunk.start_wall + offset,
                voiced,
            )
            events += self._step(frame)
        self._carry = samples[usable:]
        self._carry_sample = first + usable
        return events

    def _step(self, frame: Frame) -> list[SegmentEvent]:
        if not self._frames:
            return self._step_idle(frame)
        self._frames.append(frame)
        self._tail.append(frame.voiced)
        if frame.voiced:
            self._voiced += 1
            self._last_voiced = frame
        if len(self._tail) == self.end_frames and sum(self._tail) <= self.end_allow:
            return self._close(frame)
        if len(self._frames) >= self.max_frames:
            return self._cut(frame)
        return []

    def _step_idle(self, frame: Frame) -> list[SegmentEvent]:
        self._history.append(frame)
        self._window.append(frame.voiced)
        if sum(self._window) < self.start_need:
            return []
        self._frames = list(self._history)
        window = self._frames[-self.start_frames :]
        self._voiced = sum(f.voiced for f in window)
        self._last_voiced = frame if frame.voiced else next(f for f in window[::-1] if f.voiced)
        self._tail.extend(f.voiced for f in window)
        self._history.clear()
        self._window.clear()
        onset = next(f for f in window if f.voiced)
        return [SpeechStarted(self.source, frame.end_mono, self._wall(frame), self._offset(onset))]

    def _close(self, last: Frame) -> list[SegmentEvent]:
        events: list[SegmentEvent] = []
        if self._continued or self._voiced >= self.min_voiced:
            events.append(self._utterance(self._frames, last.end_mono, cut=False))
        else:
            self.dropped_short += 1
            log.debug("dropped a %d ms click", self._voiced * self.cfg.frame_ms)
        end = SpeechEnded(self.source, last.end_mono, self._wall(last), self._end_offset(last))
        self._reset()
        return [*events, end]

    def _cut(self, last: Frame) -> list[SegmentEvent]:
        """Split at the quietest recent frame; the rest opens the next utterance."""
        region = self._frames[-self.cut_frames - 1 : -1]  # the rest keeps at least one frame
        energies = [float(np.mean(np.square(f.samples, dtype=np.float32))) for f in region]
        quietest = len(energies) - 1 - int(np.argmin(energies[::-1]))  # latest of equals
        split = len(self._frames) - 1 - len(region) + quietest + 1
        piece, rest = self._frames[:split], self._frames[split:]
        self.cuts += 1
        utterance = self._utterance(piece, last.end_mono, cut=True)
        self._frames = rest
        self._voiced = sum(f.voiced for f in rest)
        self._continued = True
        return [utterance]

    def _utterance(self, frames: list[Frame], closed: float, cut: bool) -> Utterance:
        voiced_end = self._last_voiced if self._last_voiced is not None else frames[-1]
        speech_end = min(voiced_end.end_mono, frames[-1].end_mono)
        return Utterance(
            audio=np.concatenate([f.samples for f in frames]),
            source=self.source,
            start_mono=frames[0].mono,
            start_wall=frames[0].wall,
            start_sample=frames[0].sample,
            speech_end_mono=frames[-1].end_mono if cut else speech_end,
            closed_mono=closed,
            relative=self.relative,
            cut=cut,
            continued=self._continued,
        )

    def flush(self) -> list[SegmentEvent]:
        """End of input (or a gap): close an open utterance, forget partial frames."""
        events: list[SegmentEvent] = []
        if self._frames:
            if len(self._carry):  # the input's last, partial frame belongs to the utterance
                last = self._frames[-1]
                self._frames.append(
                    Frame(
                        self._carry,
                        self._carry_sample,
                        last.end_mono,
                        self._wall(last),
                        last.voiced,
                    )
                )
            events = self._close(self._frames[-1])
        self._reset()
        self._carry = np.zeros(0, np.int16)
        return events

    def discard(self) -> list[SegmentEvent]:
        """Forget everything heard so far (privacy mute); close the speech state."""
        events: list[SegmentEvent] = []
        if self._frames:
            last = self._frames[-1]
            events.append(SpeechEnded(self.source, last.end_mono, self._wall(last), None))
        self._reset()
        self._carry = np.zeros(0, np.int16)
        return events

    def _offset(self, frame: Frame) -> float | None:
        return frame.sample / SAMPLE_RATE if self.relative else None

    def _end_offset(self, frame: Frame) -> float | None:
        return (frame.sample + len(frame.samples)) / SAMPLE_RATE if self.relative else None

    @staticmethod
    def _wall(frame: Frame) -> float:
        return frame.wall + len(frame.samples) / SAMPLE_RATE
