"""The microphone's logic through a fake PortAudio: device choice, reopen, overflow."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

import numpy as np
import pytest

from bellad.config import AudioConfig
from bellad.errors import AudioError
from bellad.events import AudioChunk
from bellad.microphone import (
    Callback,
    DeviceInfo,
    Microphone,
    PacedReader,
    choose_format,
    idle_read_blocks,
    is_quiet,
    select_device,
)
from tests.support import tools

USB = DeviceInfo(3, "USB PnP Sound Device: Audio (hw:1,0)", 2, 48_000)
PULSE = DeviceInfo(5, "pulse", 32, 44_100, is_default=True)


class FakeStream:
    def __init__(self) -> None:
        self.active = True
        self.closed = False
        self.reads: list[int] = []  # blocks per read, as the microphone sets them
        self.error: OSError | None = None
        self.idle_blocks = 1

    def is_active(self) -> bool:
        return self.active

    def set_read_blocks(self, blocks: int) -> None:
        self.reads.append(blocks)

    def close(self) -> None:
        self.closed = True
        self.active = False


class FakeBackend:
    """Devices and rates decided by the test; ``push`` plays PortAudio's thread."""

    def __init__(self, devices: list[DeviceInfo], rates: tuple[int, ...] = (48_000,)) -> None:
        self.listed = devices
        self.rates = rates
        self.fail_opens = 0
        self.opened: list[tuple[int, int, int, int]] = []
        self.resets = 0
        self.callback: Callback | None = None
        self.stream: FakeStream | None = None

    def devices(self) -> list[DeviceInfo]:
        return list(self.listed)

    def supports(self, index: int, rate: int, channels: int) -> bool:
        return rate in self.rates

    def open(self, index: int, rate: int, channels: int, frames: int, cb: Callback) -> FakeStream:
        if self.fail_opens:
            self.fail_opens -= 1
            raise OSError(-9996, "Invalid input device (no default output device)")
        self.opened.append((index, rate, channels, frames))
        self.callback = cb
        self.stream = FakeStream()
        return self.stream

    def reset(self) -> None:
        self.resets += 1

    def push(self, samples: np.ndarray, overflow: int = 0) -> None:
        assert self.callback is not None
        self.callback(samples.astype("<i2").tobytes(), overflow)


def test_select_device_by_index_name_and_default() -> None:
    devices = [USB, PULSE]
    assert select_device(devices, None) is PULSE
    assert select_device(devices, 3) is USB
    assert select_device(devices, "usb pnp") is USB
    assert select_device(devices, "pulse") is PULSE


def test_unknown_device_names_it_and_lists_the_others() -> None:
    with pytest.raises(AudioError) as info:
        select_device([USB, PULSE], "Blue Yeti")
    assert str(info.value) == (
        "audio.device = 'Blue Yeti': no capture device matches "
        "(found: 3 'USB PnP Sound Device: Audio (hw:1,0)', 5 'pulse')"
    )
    with pytest.raises(AudioError, match="no capture device found"):
        select_device([], None)


def test_format_prefers_16k_then_common_rates() -> None:
    assert choose_format(FakeBackend([USB], (16_000, 48_000)), USB, AudioConfig()) == (16_000, 1)
    assert choose_format(FakeBackend([USB], (44_100,)), USB, AudioConfig()) == (44_100, 1)
    assert choose_format(FakeBackend([USB], (48_000,)), USB, AudioConfig(channels=4)) == (48_000, 2)
    with pytest.raises(AudioError, match=r"audio.rate = 22050: device 'USB.*does not support it"):
        choose_format(FakeBackend([USB], (48_000,)), USB, AudioConfig(rate=22_050))


def collect(mic: Microphone, stop: threading.Event, out: list[AudioChunk]) -> threading.Thread:
    def run() -> None:
        for chunk in mic.chunks(stop):
            out.append(chunk)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def wait_until(predicate: Callable[[], bool]) -> None:
    tools.wait_until(predicate, 5.0, "the microphone's thread", interval=0.01)


def test_48k_stereo_device_yields_16k_mono() -> None:
    backend = FakeBackend([USB])
    mic = Microphone(AudioConfig(channels=2, block_ms=20), backend)
    stop, out = threading.Event(), []
    thread = collect(mic, stop, out)
    wait_until(lambda: backend.callback is not None)
    assert backend.opened == [(3, 48_000, 2, 960)]
    for _ in range(50):
        backend.push(np.full(960 * 2, 1000, np.int16))
    wait_until(lambda: sum(len(c.samples) for c in out) >= 15_000)
    stop.set()
    thread.join(2)
    assert mic.health == "stopped"
    assert backend.stream is not None and backend.stream.closed
    samples = np.concatenate([c.samples for c in out])
    assert abs(len(samples) - 16_000) < 400  # the resampler holds back a few samples
    assert np.median(samples) == 1000
    starts = [c.start_sample for c in out]
    assert starts == sorted(starts) and not any(c.gap for c in out)


def test_overflow_is_counted_not_fatal(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, "bellad.microphone")
    backend = FakeBackend([PULSE], (16_000,))
    mic = Microphone(AudioConfig(), backend)
    stop, out = threading.Event(), []
    thread = collect(mic, stop, out)
    wait_until(lambda: backend.callback is not None)
    backend.push(np.zeros(480, np.int16), overflow=1)
    assert backend.callback is not None
    backend.callback(b"", 1)  # the capture thread's report of a block lost to an overrun
    backend.push(np.zeros(480, np.int16))
    wait_until(lambda: len(out) == 2)
    stop.set()
    thread.join(2)
    assert mic.overflows == 2
    said = [r.getMessage() for r in caplog.records]
    warned = [m for m in said if "overran" in m]  # the first is told, the next within a minute not
    assert (
        len(warned) == 1 and "'pulse' overran" in warned[0] and "(1 overruns so far)" in warned[0]
    )
    assert "microphone 'pulse': 2 overruns in all" in said


def test_capture_never_waits_on_a_slow_consumer() -> None:
    backend = FakeBackend([PULSE], (16_000,))
    mic = Microphone(AudioConfig(queue_s=0.3, block_ms=30), backend)  # 10 blocks
    mic._open()
    started = time.monotonic()
    for _ in range(1000):  # nobody reads
        backend.push(np.zeros(480, np.int16))
    assert time.monotonic() - started < 1.0
    assert mic.dropped_blocks == 990
    for _ in range(20):  # pieces of two blocks, as the capture thread reads while idle
        backend.push(np.zeros(960, np.int16))
    assert mic.dropped_blocks == 990 + 10 + 20


def test_a_stalled_device_is_reopened_and_the_gap_marked() -> None:
    backend = FakeBackend([PULSE], (16_000,))
    mic = Microphone(AudioConfig(stall_timeout_s=0.3), backend)
    stop, out = threading.Event(), []
    thread = collect(mic, stop, out)
    wait_until(lambda: backend.callback is not None)
    backend.push(np.zeros(480, np.int16))
    wait_until(lambda: len(out) == 1)
    wait_until(lambda: len(backend.opened) == 2)  # silence for 0.3 s: closed and reopened
    assert backend.resets == 1
    backend.push(np.zeros(480, np.int16))
    wait_until(lambda: len(out) == 2)
    stop.set()
    thread.join(2)
    assert out[1].gap and not out[0].gap
    assert mic.reopens == 1


def test_a_device_that_fails_to_open_is_retried_with_backoff() -> None:
    backend = FakeBackend([PULSE], (16_000,))
    backend.fail_opens = 3
    mic = Microphone(AudioConfig(reopen_min_s=0.05, reopen_max_s=0.2), backend)
    stop, out = threading.Event(), []
    thread = collect(mic, stop, out)
    wait_until(lambda: mic.health == "absent")
    assert "cannot open it" in mic.problem
    wait_until(lambda: backend.callback is not None)
    backend.push(np.zeros(480, np.int16))
    wait_until(lambda: len(out) == 1)
    assert mic.health == "ok"
    stop.set()
    thread.join(2)
    assert not thread.is_alive()


def test_stop_interrupts_the_backoff() -> None:
    backend = FakeBackend([PULSE], (16_000,))
    backend.fail_opens = 10**6
    mic = Microphone(AudioConfig(reopen_min_s=30, reopen_max_s=60), backend)
    stop, out = threading.Event(), []
    thread = collect(mic, stop, out)
    wait_until(lambda: mic.health == "absent")
    started = time.monotonic()
    stop.set()
    thread.join(5)
    assert not thread.is_alive() and time.monotonic() - started < 2


def test_a_missing_device_at_start_is_an_error() -> None:
    with pytest.raises(AudioError, match=r"audio\.device = 'Yeti'"):
        Microphone(AudioConfig(device="Yeti"), FakeBackend([PULSE]))


def test_idle_batches_blocks_and_loses_none() -> None:
    backend = FakeBackend([PULSE], (16_000,))
    mic = Microphone(AudioConfig(block_ms=30, idle_batch_ms=120), backend)
    stop, out = threading.Event(), []
    thread = collect(mic, stop, out)
    wait_until(lambda: backend.callback is not None)
    block = 0
    for idle in (True, False, True, False):
        mic.set_idle(idle)
        assert mic._batch == (4 if idle else 1)
        for _ in range(10):
            backend.push(np.full(480, block, np.int16))
            block += 1
    wait_until(lambda: len(out) == 40)
    stop.set()
    thread.join(2)
    assert [int(c.samples[0]) for c in out] == list(range(40))
    assert mic.dropped_blocks == 0 and not any(c.gap for c in out)
    assert backend.stream is not None and backend.stream.reads == [1, 1, 1, 1, 1]
    assert Microphone(AudioConfig(idle_batch_ms=0), FakeBackend([PULSE]))._idle_batch == 1
    backend.stream.idle_blocks = 4  # a stream that reads up to four blocks at a time while idle
    mic._stream = backend.stream
    mic.set_idle(True)
    assert mic._batch == 1 and backend.stream.reads[-1] == 4  # one read of 120 ms: one piece
    backend.stream.idle_blocks = 3  # a smaller device buffer: 90 ms a read, both handed over
    mic.set_idle(True)
    assert mic._batch == 1 and backend.stream.reads[-1] == 3
    mic.set_idle(False)
    assert mic._batch == 1 and backend.stream.reads[-1] == 1


def test_quiet_means_every_sample_within_511() -> None:
    def s16(*samples: int) -> bytes:
        return np.array(samples, "<i2").tobytes()

    assert is_quiet(b"") and is_quiet(s16(0, 0, 0))
    assert is_quiet(s16(511, -512, 3, -1, 256, -257))  # peaks below -36 dBFS
    assert not is_quiet(s16(0, 512, 0)) and not is_quiet(s16(0, 0, -513))
    assert not is_quiet(s16(*([0] * 999), 20_000))  # one loud sample anywhere
    assert not is_quiet(s16(-32768, 0)) and not is_quiet(s16(32767))


def test_quiet_audio_waits_for_a_larger_batch_and_sound_wakes_at_once() -> None:
    backend = FakeBackend([PULSE], (16_000,))
    cfg = AudioConfig(block_ms=30, idle_batch_ms=120, quiet_batch_ms=480)
    mic = Microphone(cfg, backend)
    stop, out = threading.Event(), []
    thread = collect(mic, stop, out)
    wait_until(lambda: backend.callback is not None)
    mic.set_idle(True)
    assert (mic._batch, mic._quiet_batch) == (4, 16)  # one block a read (the fake stream)
    assert mic._wait_s >= 0.96  # the thread's timeout leaves the quiet batch time to gather
    quiet = np.full(480, 300, np.int16)
    backend.push(quiet)  # the first audio of a stream comes at once: the device delivers
    wait_until(lambda: len(out) == 1)
    for _ in range(8):  # twice the idle batch, quiet: the thread is not woken for it
        backend.push(quiet)
    time.sleep(0.2)
    assert len(out) == 1
    backend.push(np.full(480, 3000, np.int16))  # a sound: everything waiting, at once
    wait_until(lambda: len(out) == 10)
    assert [int(c.samples[0]) for c in out] == [300] * 9 + [3000]
    for _ in range(16):  # a whole quiet batch wakes the thread by itself
        backend.push(quiet)
    wait_until(lambda: len(out) == 26)
    mic.set_idle(False)  # speech: quiet or not, every block at once
    backend.push(quiet)
    wait_until(lambda: len(out) == 27)
    stop.set()
    thread.join(2)
    assert mic.dropped_blocks == 0 and not any(c.gap for c in out)
    assert Microphone(cfg.model_copy(update={"quiet_batch_ms": 0}), backend)._quiet_blocks == 1


def test_idle_reads_never_gather_more_than_the_batch() -> None:
    backend = FakeBackend([PULSE], (16_000,))
    mic = Microphone(AudioConfig(block_ms=30, idle_batch_ms=60), backend)
    mic._open()
    assert backend.stream is not None
    backend.stream.idle_blocks = 4
    mic.set_idle(True)  # 60 ms asked: two blocks a read, each read handed over at once
    assert backend.stream.reads[-1] == 2 and mic._batch == 1
    mic._close()


def test_idle_reads_leave_a_device_period_of_margin() -> None:
    frames = 480  # 30-ms blocks at 16 kHz; periods of two blocks
    assert idle_read_blocks(6 * frames, frames) == 4  # three periods: 180 ms, 60 of margin
    assert idle_read_blocks(20 * frames, frames) == PacedReader.IDLE_BLOCKS == 4
    assert idle_read_blocks(5 * frames, frames) == 3
    assert idle_read_blocks(3 * frames, frames) == 1  # a small buffer: every block as it comes
    assert idle_read_blocks(frames, frames) == 1


def test_without_batching_the_capture_reads_each_block_even_when_idle() -> None:
    backend = FakeBackend([PULSE], (16_000,))
    mic = Microphone(AudioConfig(idle_batch_ms=0), backend)
    mic._open()
    mic.set_idle(True)
    assert backend.stream is not None and backend.stream.reads == [1, 1]
    mic._close()


OVERFLOWED = -9981  # PortAudio's paInputOverflowed


class FakePaStream:
    """A blocking PyAudio stream whose audio arrives when the test says."""

    def __init__(self) -> None:
        self.available = 0
        self.next_value = 0
        self.fail: OSError | None = None
        self.read_sizes: list[int] = []
        self.active = True
        self.closed = False
        self.lock = threading.Lock()

    def arrive(self, frames: int) -> None:
        with self.lock:
            self.available += frames

    def get_read_available(self) -> int:
        with self.lock:
            if self.fail is not None and self.fail.errno != OVERFLOWED:
                raise self.fail
            return self.available

    def read(self, frames: int, exception_on_overflow: bool = True) -> bytes:
        with self.lock:
            assert frames <= self.available, "a read that would block"
            self.available -= frames
            self.read_sizes.append(frames)
            if self.fail is not None:
                fail, self.fail = self.fail, None
                raise fail
            self.next_value += 1
            return np.full(frames, self.next_value, "<i2").tobytes()

    def is_active(self) -> bool:
        return self.active

    def close(self) -> None:
        self.closed = True


def test_paced_reader_reads_whole_blocks_only_once_they_are_there() -> None:
    pa, got = FakePaStream(), []
    reader = PacedReader(pa, 480, 16_000, lambda d, o: got.append((d, o)), OVERFLOWED)
    try:
        pa.arrive(200)  # part of a block: nothing is read, nothing blocks
        time.sleep(0.05)
        assert got == [] and pa.read_sizes == []
        pa.arrive(280 + 480 + 100)  # two blocks and a part: both blocks in one read
        wait_until(lambda: len(got) == 1)
        time.sleep(0.05)
        assert pa.read_sizes == [960] and pa.available == 100
        assert len(got[0][0]) == 1920 and not got[0][1]
        assert reader.is_active()
    finally:
        reader.close()
    assert pa.closed and not reader.is_active()


def test_paced_reader_waits_for_several_blocks_while_idle() -> None:
    pa, got = FakePaStream(), []
    reader = PacedReader(pa, 480, 16_000, lambda d, o: got.append((d, o)), OVERFLOWED)
    try:
        assert reader.idle_blocks == PacedReader.IDLE_BLOCKS == 4
        reader.set_read_blocks(4)
        pa.arrive(3 * 480)
        time.sleep(0.1)
        assert got == [] and pa.read_sizes == []
        pa.arrive(480)
        wait_until(lambda: len(got) == 1)
        reader.set_read_blocks(9)  # never more than the device's buffer allows
        pa.arrive(4 * 480)
        wait_until(lambda: len(got) == 2)
        reader.set_read_blocks(1)  # someone speaks: each block as soon as it is there
        pa.arrive(480)
        wait_until(lambda: len(got) == 3)
        assert pa.read_sizes == [4 * 480, 4 * 480, 480]
    finally:
        reader.close()


def test_paced_reader_counts_an_overrun_and_goes_on() -> None:
    pa, got = FakePaStream(), []
    reader = PacedReader(pa, 480, 16_000, lambda d, o: got.append((d, o)), OVERFLOWED)
    try:
        pa.fail = OSError(OVERFLOWED, "Input overflowed")
        pa.arrive(480)
        wait_until(lambda: len(got) == 1)
        pa.arrive(480)
        wait_until(lambda: len(got) == 2)
        assert got[0] == (b"", 1) and got[1][1] == 0 and len(got[1][0]) == 960
        assert reader.is_active() and reader.error is None
    finally:
        reader.close()


def test_paced_reader_stops_on_a_device_error_and_says_so() -> None:
    pa = FakePaStream()
    reader = PacedReader(pa, 480, 16_000, lambda d, o: None, OVERFLOWED)
    pa.fail = OSError(-9999, "Unanticipated host error")
    wait_until(lambda: not reader.is_active())
    assert reader.error is pa.fail
    reader.close()
    assert pa.closed


def test_paced_reader_sleeps_until_the_read_is_due() -> None:
    reader = PacedReader(FakePaStream(), 480, 16_000, lambda d, o: None, OVERFLOWED)
    try:
        assert reader.wait_s(0) == pytest.approx(0.030)
        assert reader.wait_s(320) == pytest.approx(0.010)
        assert reader.wait_s(479) == PacedReader.MIN_WAIT_S
        reader.set_read_blocks(4)
        assert reader.wait_s(0) == pytest.approx(0.120)
        assert reader.wait_s(3 * 480) == pytest.approx(0.030)
        reader.set_read_blocks(1)
        assert reader.wait_s(320) == pytest.approx(0.010)
    finally:
        reader.close()
