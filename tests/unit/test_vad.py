"""The segmenter on synthetic frames: pre-roll, hangover, min and max length, cuts."""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np
import pytest

from bellad.config import VadConfig
from bellad.events import SAMPLE_RATE, AudioChunk, SpeechEnded, SpeechStarted, Utterance
from bellad.vad import Segmenter

FRAME = 480  # 30 ms
LOUD, QUIET = 3000, 200  # both "voiced" for the fake VAD; QUIET has less energy


def fake_vad(frame: bytes) -> bool:
    """Voiced when the frame's first sample is above 100: the test decides frame by frame."""
    return bool(abs(int(np.frombuffer(frame, dtype=np.int16)[0])) > 100)


def frames(*spec: tuple[int, int]) -> np.ndarray:
    """(amplitude, count of 30 ms frames) pairs to int16 samples."""
    return np.concatenate([np.full(n * FRAME, amp, dtype=np.int16) for amp, n in spec])


def run(audio: np.ndarray, cfg: VadConfig | None = None, chunk: int = FRAME, **kw: Any) -> list:
    seg = Segmenter(cfg or VadConfig(**kw), "test", relative=True, is_speech=fake_vad)
    events: list = []
    for i in range(0, len(audio), chunk):
        start = i / SAMPLE_RATE
        events += seg.feed(AudioChunk(audio[i : i + chunk], 100.0 + start, 1e9 + start, i))
    events += seg.flush()
    return events


def utterances(events: list) -> list[Utterance]:
    return [e for e in events if isinstance(e, Utterance)]


def test_one_utterance_with_pre_roll_and_hangover() -> None:
    audio = frames((0, 40), (LOUD, 40), (0, 60))  # 1.2 s silence, 1.2 s speech, 1.8 s silence
    events = run(audio)
    (utt,) = utterances(events)
    onset, offset = 40 * FRAME, 80 * FRAME
    assert utt.start_sample <= onset - 400 * SAMPLE_RATE // 1000  # at least the pre-roll
    assert utt.start_sample >= onset - (14 + 8) * FRAME  # not more than pre-roll + start window
    end = utt.start_sample + len(utt.audio)
    # it closes once no more than 15% of the last 600 ms (20 frames) are voiced: 17 silent frames
    assert end == offset + 17 * FRAME
    assert utt.speech_end_mono == pytest.approx(100.0 + offset / SAMPLE_RATE)
    assert utt.closed_mono == pytest.approx(100.0 + end / SAMPLE_RATE)
    assert [type(e) for e in events] == [SpeechStarted, Utterance, SpeechEnded]
    assert utt.start_s == utt.start_sample / SAMPLE_RATE
    assert not utt.cut and not utt.continued


def test_audio_is_exactly_the_input_slice() -> None:
    rng = np.random.default_rng(1)
    audio = frames((0, 30), (LOUD, 50), (0, 40))
    audio = audio + rng.integers(-50, 50, len(audio)).astype(np.int16)  # below the VAD's 100
    audio[30 * FRAME :: FRAME] = LOUD  # keep the first sample of each speech frame loud
    audio[: 30 * FRAME : FRAME] = 0
    (utt,) = utterances(run(audio))
    assert np.array_equal(utt.audio, audio[utt.start_sample : utt.start_sample + len(utt.audio)])


def test_onset_needs_enough_voiced_frames_in_the_window() -> None:
    # 4 voiced frames among 8 is under 0.6: no speech; 5 is enough
    sparse = frames((0, 20), *[(LOUD, 1), (0, 1)] * 4, (0, 40))
    assert run(sparse) == []
    dense = frames((0, 20), (LOUD, 5), (0, 3), (LOUD, 10), (0, 40))
    assert len(utterances(run(dense))) == 1


def test_a_pause_shorter_than_the_hangover_stays_inside_one_utterance() -> None:
    audio = frames((0, 20), (LOUD, 30), (0, 15), (LOUD, 30), (0, 40))  # 450 ms pause
    assert len(utterances(run(audio))) == 1


def test_a_pause_longer_than_the_hangover_splits() -> None:
    audio = frames((0, 20), (LOUD, 30), (0, 40), (LOUD, 30), (0, 40))  # 1.2 s pause
    utts = utterances(run(audio))
    assert len(utts) == 2
    assert utts[0].start_sample + len(utts[0].audio) <= utts[1].start_sample


def test_click_shorter_than_min_speech_is_dropped() -> None:
    seg_events = run(frames((0, 20), (LOUD, 6), (0, 40)), min_speech_ms=250)  # 180 ms
    assert utterances(seg_events) == []
    assert [type(e) for e in seg_events] == [SpeechStarted, SpeechEnded]


def test_min_speech_counts_voiced_frames() -> None:
    assert len(utterances(run(frames((0, 20), (LOUD, 9), (0, 40)), min_speech_ms=250))) == 1


def test_long_speech_is_cut_into_contiguous_pieces() -> None:
    audio = frames((0, 20), (LOUD, 1000), (0, 40))  # 30 s of speech
    utts = utterances(run(audio, max_utterance_s=10, cut_search_ms=1500))
    assert len(utts) == 4
    for before, after in itertools.pairwise(utts):
        assert before.start_sample + len(before.audio) == after.start_sample  # nothing lost
        assert before.cut and after.continued
        assert before.duration_s <= 10
    assert not utts[-1].cut
    joined = np.concatenate([u.audio for u in utts])
    first = utts[0].start_sample
    assert np.array_equal(joined, audio[first : first + len(joined)])


def test_cut_lands_after_the_quietest_recent_frame() -> None:
    # max 10 s = 333 frames; search the last 1.5 s (50 frames); a quiet frame at 300
    quiet_at = 300
    audio = frames((0, 20), (LOUD, quiet_at - 20 + 14), (QUIET, 1), (LOUD, 400), (0, 40))
    utts = utterances(run(audio, max_utterance_s=10, cut_search_ms=1500))
    first = utts[0]
    assert first.cut
    end_frame = (first.start_sample + len(first.audio)) // FRAME
    assert end_frame == quiet_at + 15  # right after the quiet frame (20 silent + offsets)
    assert first.audio[-1] == QUIET


def test_chunk_size_does_not_change_the_result() -> None:
    audio = frames((0, 33), (LOUD, 47), (0, 50), (LOUD, 20), (0, 40))
    reference = [(u.start_sample, len(u.audio)) for u in utterances(run(audio, chunk=FRAME))]
    for chunk in (7, 160, 1000, 16000):
        assert [(u.start_sample, len(u.audio)) for u in utterances(run(audio, chunk=chunk))] == (
            reference
        )


def test_flush_closes_open_speech_at_end_of_input() -> None:
    events = run(frames((0, 20), (LOUD, 30)))
    (utt,) = utterances(events)
    assert utt.start_sample + len(utt.audio) == 50 * FRAME
    assert isinstance(events[-1], SpeechEnded)


def test_flush_keeps_a_trailing_partial_frame() -> None:
    audio = frames((0, 20), (LOUD, 30))
    audio = np.concatenate([audio, np.full(100, LOUD, np.int16)])  # 100 samples past a frame
    (utt,) = utterances(run(audio))
    assert utt.start_sample + len(utt.audio) == len(audio)


def test_a_gap_closes_the_open_utterance() -> None:
    seg = Segmenter(VadConfig(), "test", relative=False, is_speech=fake_vad)
    speech = frames((0, 20), (LOUD, 30))
    events = seg.feed(AudioChunk(speech, 0.0, 0.0, 0))
    events += seg.feed(AudioChunk(frames((LOUD, 10)), 9.0, 9.0, len(speech), gap=True))
    (utt,) = utterances(events)
    assert len(utt.audio) == len(speech) - utt.start_sample
    assert utt.start_s is None  # a microphone has no input-relative offsets
    assert seg.active  # the new audio opens the next utterance once voiced enough


def test_discard_forgets_open_speech() -> None:
    seg = Segmenter(VadConfig(), "test", relative=True, is_speech=fake_vad)
    events = seg.feed(AudioChunk(frames((0, 20), (LOUD, 30)), 0.0, 0.0, 0))
    assert isinstance(events[0], SpeechStarted)
    assert [type(e) for e in seg.discard()] == [SpeechEnded]
    assert not seg.active
    assert utterances(seg.flush()) == []


def test_speech_started_reports_the_onset() -> None:
    events = run(frames((0, 40), (LOUD, 40), (0, 60)))
    started = events[0]
    assert isinstance(started, SpeechStarted)
    assert started.offset_s == pytest.approx(40 * FRAME / SAMPLE_RATE)
    ended = events[-1]
    assert isinstance(ended, SpeechEnded)
    assert ended.at_mono > started.at_mono


@pytest.mark.parametrize("frame_ms", [10, 20, 30])
def test_every_frame_length(frame_ms: int) -> None:
    audio = frames((0, 40), (LOUD, 40), (0, 60))
    assert len(utterances(run(audio, frame_ms=frame_ms))) == 1


def test_webrtcvad_on_a_synthetic_vowel() -> None:
    t = np.arange(SAMPLE_RATE) / SAMPLE_RATE
    vowel = sum(np.sin(2 * np.pi * f * t) / (i + 1) for i, f in enumerate((140, 280, 700, 1200)))
    speech = (vowel / np.abs(vowel).max() * 8000).astype(np.int16)
    silence = np.zeros(SAMPLE_RATE, np.int16)
    seg = Segmenter(VadConfig(aggressiveness=1), "test", relative=True)
    events = seg.feed(AudioChunk(np.concatenate([silence, speech, silence]), 0.0, 0.0, 0))
    (utt,) = utterances(events + seg.flush())
    assert utt.start_s is not None and utt.start_s < 1.0
    assert utt.end_s is not None and utt.end_s > 2.0
