"""What capturing alone costs: PyAudio reading the microphone with an empty callback.

``python -m bellad.benchmark.probe --device pulse --block-ms 30`` opens the
device as bellad's microphone does (16 kHz, mono, int16, a callback per
block) and does nothing with the audio, until SIGTERM. The benchmark runs it
beside the daemon while both hear the idle programme: its CPU time is the
floor that PortAudio, ALSA and the sound server's client library cost at that
block size, whatever bellad does with the audio.
"""

from __future__ import annotations

import argparse
import signal
import threading
from collections.abc import Sequence
from typing import Any


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bellad.benchmark.probe")
    parser.add_argument("--device", default="pulse", help="a part of the device's name")
    parser.add_argument("--block-ms", type=int, default=30)
    parser.add_argument("--rate", type=int, default=16_000)
    args = parser.parse_args(argv)

    import pyaudio

    pa = pyaudio.PyAudio()
    index = next(
        i
        for i in range(pa.get_device_count())
        if args.device in str(pa.get_device_info_by_index(i)["name"])
        and int(pa.get_device_info_by_index(i)["maxInputChannels"]) > 0
    )

    def on_block(data: bytes, count: int, info: Any, status: int) -> tuple[None, int]:
        return None, pyaudio.paContinue

    stream = pa.open(
        format=pyaudio.paInt16,
        channels=1,
        rate=args.rate,
        input=True,
        input_device_index=index,
        frames_per_buffer=args.rate * args.block_ms // 1000,
        stream_callback=on_block,
    )
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    print("capturing", flush=True)
    stop.wait()
    stream.close()
    pa.terminate()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
