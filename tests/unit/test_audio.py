"""Mixdown, resampling and the file and raw sources."""

from __future__ import annotations

import io
import threading
import wave
from pathlib import Path

import numpy as np
import pytest

from bellad.audio import Conditioner, FileSource, RawSource, mixdown, read_audio
from bellad.errors import AudioError
from bellad.events import SAMPLE_RATE, AudioChunk


def tone(freq: float, rate: int, seconds: float, amp: float = 10_000) -> np.ndarray:
    t = np.arange(int(rate * seconds)) / rate
    return (np.sin(2 * np.pi * freq * t) * amp).astype(np.int16)


def dominant_freq(samples: np.ndarray, rate: int = SAMPLE_RATE) -> float:
    spectrum = np.abs(np.fft.rfft(samples.astype(np.float64)))
    return float(np.fft.rfftfreq(len(samples), 1 / rate)[int(np.argmax(spectrum))])


def test_mixdown_averages_channels() -> None:
    stereo = np.array([100, 300, -200, 200, 32767, 32767], dtype=np.int16)
    assert mixdown(stereo, 2).tolist() == [200, 0, 32767]


def test_mixdown_of_mono_is_identity() -> None:
    mono = np.arange(10, dtype=np.int16)
    assert mixdown(mono, 1) is not None
    assert np.array_equal(mixdown(mono, 1), mono)


def test_mixdown_cancels_opposite_channels() -> None:
    left = tone(440, SAMPLE_RATE, 0.1)
    interleaved = np.stack([left, -left], axis=1).reshape(-1)
    assert np.abs(mixdown(interleaved, 2)).max() <= 1


@pytest.mark.parametrize("rate", [8000, 22050, 44100, 48000])
def test_resampling_keeps_duration_and_pitch(rate: int) -> None:
    conditioner = Conditioner(rate, 1)
    source = tone(1000, rate, 2.0)
    out = np.concatenate(
        [conditioner.process(source[i : i + 1234]) for i in range(0, len(source), 1234)]
        + [conditioner.process(np.zeros(0, np.int16), last=True)]
    )
    assert abs(len(out) - 2 * SAMPLE_RATE) <= 2
    assert dominant_freq(out) == pytest.approx(1000, abs=2)


def test_resampling_a_stereo_stream() -> None:
    rate = 48_000
    left, right = tone(500, rate, 1.0), tone(500, rate, 1.0)
    interleaved = np.stack([left, right], axis=1).reshape(-1)
    conditioner = Conditioner(rate, 2)
    out = np.concatenate(
        [conditioner.process(interleaved), conditioner.process(np.zeros(0, np.int16), last=True)]
    )
    assert abs(len(out) - SAMPLE_RATE) <= 2
    assert dominant_freq(out) == pytest.approx(500, abs=2)
    assert np.abs(out).max() == pytest.approx(10_000, rel=0.05)


def write_wav(path: Path, samples: np.ndarray, rate: int, channels: int) -> None:
    with wave.open(str(path), "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(samples.tobytes())


def test_file_source_converts_a_stereo_44k_wav(tmp_path: Path) -> None:
    rate = 44_100
    mono = tone(700, rate, 1.5)
    write_wav(tmp_path / "s.wav", np.stack([mono, mono], axis=1).reshape(-1), rate, 2)
    out = read_audio(tmp_path / "s.wav")
    assert abs(len(out) - int(1.5 * SAMPLE_RATE)) <= 2
    assert dominant_freq(out) == pytest.approx(700, abs=2)


def test_file_chunks_are_contiguous_and_stamped(tmp_path: Path) -> None:
    write_wav(tmp_path / "a.wav", tone(300, SAMPLE_RATE, 2.5), SAMPLE_RATE, 1)
    chunks = list(FileSource(tmp_path / "a.wav").chunks(threading.Event()))
    position = 0
    for chunk in chunks:
        assert chunk.start_sample == position
        assert chunk.start_mono == pytest.approx(chunks[0].start_mono + position / SAMPLE_RATE)
        position += len(chunk.samples)
    assert position == int(2.5 * SAMPLE_RATE)


def test_realtime_pacing_takes_real_time(tmp_path: Path) -> None:
    import time

    write_wav(tmp_path / "a.wav", tone(300, SAMPLE_RATE, 0.5), SAMPLE_RATE, 1)
    started = time.monotonic()
    chunks = list(FileSource(tmp_path / "a.wav", realtime=True).chunks(threading.Event()))
    assert time.monotonic() - started >= 0.45
    assert all(len(c.samples) == 480 for c in chunks[:-1])


def test_realtime_blocks_come_once_their_last_sample_is_heard(tmp_path: Path) -> None:
    import time

    write_wav(tmp_path / "a.wav", tone(300, SAMPLE_RATE, 0.3), SAMPLE_RATE, 1)
    for chunk in FileSource(tmp_path / "a.wav", realtime=True).chunks(threading.Event()):
        assert time.monotonic() >= chunk.start_mono + chunk.duration_s - 0.001


def test_idle_realtime_blocks_come_in_batches_none_early_none_lost(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import time

    from bellad import audio

    write_wav(tmp_path / "a.wav", tone(300, SAMPLE_RATE, 0.6), SAMPLE_RATE, 1)
    source = FileSource(tmp_path / "a.wav", realtime=True, block_ms=30, idle_batch_ms=90)
    received: list[AudioChunk] = []
    waits: list[int] = []  # how many blocks had come before each wait for real time
    pace = audio.ChunkClock.pace
    monkeypatch.setattr(
        audio.ChunkClock,
        "pace",
        lambda clock, stop: (waits.append(len(received)), pace(clock, stop)),
    )
    source.set_idle(True)
    for chunk in source.chunks(threading.Event()):
        assert time.monotonic() >= chunk.start_mono + chunk.duration_s - 0.001  # never early
        received.append(chunk)
        if len(received) == 9:
            source.set_idle(False)  # speech: every block as it comes
    assert [c.start_sample for c in received] == list(range(0, int(0.6 * SAMPLE_RATE), 480))
    assert waits == [0, 3, 6, *range(9, 20)]  # idle: one wait per three blocks; then each


def ffmpeg_copy(wav: Path, out: Path, codec: str) -> Path:
    """The same mono recording in another format or sample type, written through PyAV."""
    import av

    with wave.open(str(wav)) as w:
        rate, pcm = w.getframerate(), np.frombuffer(w.readframes(w.getnframes()), "<i2")
    with av.open(str(out), "w") as container:
        stream = container.add_stream(codec, rate=rate, layout="mono")
        frame = av.AudioFrame.from_ndarray(pcm.reshape(1, -1), format="s16", layout="mono")
        frame.rate = rate
        for packet in [*stream.encode(frame), *stream.encode(None)]:
            container.mux(packet)
    return out


@pytest.mark.parametrize(("name", "codec"), [("copy.flac", "flac"), ("float.wav", "pcm_f32le")])
def test_a_recording_reads_the_same_from_pcm_wav_and_through_ffmpeg(
    data: Path, tmp_path: Path, name: str, codec: str
) -> None:
    wav = data / "audio" / "jfk" / "jfk.wav"  # 16 kHz, so no resampler between the two
    other = ffmpeg_copy(wav, tmp_path / name, codec)
    direct, decoded = read_audio(wav), read_audio(other)
    assert len(direct) == 11 * SAMPLE_RATE
    np.testing.assert_array_equal(direct, decoded)  # lossless both ways


def test_only_formats_other_than_pcm_wav_load_ffmpeg(data: Path, tmp_path: Path) -> None:
    import subprocess
    import sys

    wav = data / "audio" / "ljspeech" / "LJ001-0002.wav"
    flac = ffmpeg_copy(wav, tmp_path / "copy.flac", "flac")
    script = (
        "import sys; from pathlib import Path; from bellad.audio import read_audio; "
        "read_audio(Path(sys.argv[1])); print('av' in sys.modules)"
    )
    loaded = {
        path.suffix: subprocess.run(
            [sys.executable, "-c", script, str(path)], capture_output=True, text=True, check=True
        ).stdout.strip()
        for path in (wav, flac)
    }
    assert loaded == {".wav": "False", ".flac": "True"}


def test_missing_and_corrupt_files_name_the_file(tmp_path: Path) -> None:
    with pytest.raises(AudioError, match=r"audio file .*nope.wav: no such file"):
        FileSource(tmp_path / "nope.wav")
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"RIFF\x24\x00\x00\x00WAVEfmt garbage that is not audio")
    with pytest.raises(AudioError, match=r"audio file .*bad.wav: cannot decode it"):
        FileSource(bad)


def test_raw_source_reads_stdin_pcm() -> None:
    rate = 8000
    pcm = tone(440, rate, 1.0)
    interleaved = np.stack([pcm, pcm], axis=1).reshape(-1)
    source = RawSource(io.BytesIO(interleaved.tobytes() + b"\x01"), rate, 2)
    out = np.concatenate([c.samples for c in source.chunks(threading.Event())])
    assert abs(len(out) - SAMPLE_RATE) <= 2
    assert dominant_freq(out) == pytest.approx(440, abs=2)
