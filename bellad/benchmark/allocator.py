"""What holding freed memory is worth: the same transcriptions under three allocator policies.

:func:`bellad.memory.hold_freed_memory` changes how the whole process
allocates, so each policy needs a process of its own:

* ``glibc``: the C library's defaults (what faster-whisper alone gets);
* ``held``: bellad's setting, in a conversation (another transcription came
  just before);
* ``released``: bellad's setting after a quiet spell, when the daemon has
  given its free memory back (the first command after a while).

:func:`compare` runs one child per policy (``python -m
bellad.benchmark.allocator``), one at a time so that a small device holds one
model at once, in rounds whose order rotates so that drift in the machine's
speed hits every policy alike. Each child loads the daemon's Whisper model
as the daemon does (warm-up, then the memory given back), transcribes once
untimed, then times every window of speech, counting page faults.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from bellad.benchmark.child import run_child
from bellad.benchmark.modeltime import speech_window
from bellad.config import TranscribeConfig
from bellad.events import Samples

POLICIES = ("glibc", "held", "released")


def compare(
    whisper: Path,
    cfg: TranscribeConfig,
    speech: Samples,
    lengths: Sequence[float] = (2, 5),
    repeats: int = 3,
    rounds: int = 2,
) -> dict[str, Any]:
    """Per policy: every timed run's milliseconds and page faults, over ``rounds`` rounds."""
    runs: dict[str, list[float]] = {p: [] for p in POLICIES}
    faults: dict[str, list[int]] = {p: [] for p in POLICIES}
    with tempfile.TemporaryDirectory(prefix="bellad-alloc-") as tmp:
        audio = Path(tmp) / "speech.s16"
        speech.astype("<i2").tofile(audio)
        for r in range(rounds):
            for policy in POLICIES[r % 3 :] + POLICIES[: r % 3]:
                out = _child(whisper, cfg, policy, audio, lengths, repeats)
                runs[policy] += out["ms"]
                faults[policy] += out["faults"]
    return {"ms": runs, "faults": faults, "lengths_s": list(lengths), "rounds": rounds}


def _child(
    whisper: Path,
    cfg: TranscribeConfig,
    policy: str,
    audio: Path,
    lengths: Sequence[float],
    repeats: int,
) -> dict[str, Any]:
    command = [
        sys.executable,
        "-m",
        "bellad.benchmark.allocator",
        "--model",
        str(whisper),
        "--policy",
        policy,
        "--audio",
        str(audio),
        "--lengths",
        ",".join(f"{x:g}" for x in lengths),
        "--repeats",
        str(repeats),
        "--transcribe",
        cfg.model_dump_json(),
    ]
    return run_child(command, f"the allocator probe ({policy})", timeout_s=600)


def _measure(args: argparse.Namespace) -> dict[str, Any]:
    from bellad.memory import hold_freed_memory, release_free_memory
    from bellad.transcribe import WhisperTranscriber

    if args.policy != "glibc" and not hold_freed_memory():
        raise SystemExit("the C library does not take glibc's malloc options")
    cfg = TranscribeConfig.model_validate_json(args.transcribe)
    cfg = cfg.model_copy(update={"model": str(args.model), "warmup": True})
    transcriber = WhisperTranscriber(cfg, args.model)  # warms up, then gives memory back
    speech = np.fromfile(args.audio, dtype="<i2")
    lengths = [float(x) for x in args.lengths.split(",")]
    cuts = [speech_window(speech, x, r) for x in lengths for r in range(args.repeats)]
    transcriber.transcribe(cuts[0])  # the conversation's previous utterance
    ms, faults = [], []
    for window in cuts:
        if args.policy == "released":
            release_free_memory()  # as after a quiet spell
        before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        started = time.perf_counter()
        transcriber.transcribe(window)
        ms.append(round((time.perf_counter() - started) * 1000, 2))
        faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
    return {"policy": args.policy, "ms": ms, "faults": faults}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bellad.benchmark.allocator")
    parser.add_argument("--model", type=Path, required=True, help="the Whisper model's folder")
    parser.add_argument("--policy", choices=POLICIES, required=True)
    parser.add_argument("--audio", type=Path, required=True, help="speech, raw s16le, 16 kHz")
    parser.add_argument("--lengths", default="2,5", help="window lengths in seconds")
    parser.add_argument("--repeats", type=int, default=3, help="windows of each length")
    parser.add_argument("--transcribe", default="{}", help="the [transcribe] section, JSON")
    print(json.dumps(_measure(parser.parse_args(argv))), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
