"""What capturing alone costs: bellad's PyAudio capture with an empty callback.

``python -m bellad.benchmark.probe --device pulse --block-ms 30`` opens the
device as bellad's microphone does (16 kHz, mono, int16, its capture thread
reading as it does while nobody speaks) and does nothing with the audio, until
SIGTERM.
The benchmark runs it beside the daemon while both hear the idle programme:
its CPU time is the floor that PortAudio, ALSA and the sound server's client
library cost at that block size, whatever bellad does with the audio.
"""

from __future__ import annotations

import argparse
import signal
import threading
from collections.abc import Sequence


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bellad.benchmark.probe")
    parser.add_argument("--device", default="pulse", help="a part of the device's name")
    parser.add_argument("--block-ms", type=int, default=30)
    parser.add_argument("--idle-batch-ms", type=int, default=120)
    parser.add_argument("--rate", type=int, default=16_000)
    args = parser.parse_args(argv)

    from bellad.audio import idle_batch_blocks
    from bellad.microphone import PyAudioBackend, select_device

    backend = PyAudioBackend()
    device = select_device(backend.devices(), args.device)
    frames = args.rate * args.block_ms // 1000
    stream = backend.open(device.index, args.rate, 1, frames, lambda data, overflow: None)
    # the benchmark runs it while the daemon hears no speech: it reads as the daemon then
    # does (the reader never waits for more blocks than the device's buffer allows)
    stream.set_read_blocks(idle_batch_blocks(args.idle_batch_ms, args.block_ms))
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    print("capturing", flush=True)
    stop.wait()
    stream.close()
    backend.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
