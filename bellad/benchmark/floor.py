"""The floor under bellad's memory: the same work through its libraries alone.

Most of what the daemon holds is its libraries' and models': faster-whisper
with the Whisper model, onnxruntime with the sentiment model, the Python
interpreter under them. :func:`measure` runs the utterances of the
benchmark's file run through those libraries alone, in a bare child process
(``python -m bellad.benchmark.floor``) that loads none of bellad's stages, with
the C library's default allocator: each utterance transcribed by
faster-whisper's ``WhisperModel`` with the daemon's model, device, compute type,
threads, decoding options and encoder input (the padded window, faster-whisper's
own, or trimmed: :mod:`bellad.encoder_input`), its text scored by an
onnxruntime session of the daemon's sentiment model with the daemon's session
options. PyAV, which faster-whisper imports for files, is kept from
loading, as bellad keeps it (neither needs it for samples). The daemon's
peak less this one is what bellad itself adds: its config, capture, VAD,
MQTT client, outbox and threads, and how its heap is laid out.
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from bellad.benchmark.child import run_child
from bellad.encoder_input import trimmable_model_class, trimmed_frames
from bellad.events import SAMPLE_RATE, Samples
from bellad.sentiment import model_feeds, open_session, open_tokenizer
from bellad.stats import peak_rss_mb, rss_mb

if TYPE_CHECKING:  # the child must not load pydantic: it is part of what bellad adds
    from bellad.config import SentimentConfig


def measure(
    whisper: Path,
    sentiment_onnx: Path,
    model: dict[str, Any],
    sentiment: SentimentConfig,
    utterances: Sequence[Samples],
) -> dict[str, Any]:
    """Resident memory (MB) of the libraries alone: loaded and warm, and the peak.

    ``model`` holds ``device``, ``compute_type``, ``threads``, ``encode`` and
    the daemon's decoding ``options`` (:meth:`WhisperTranscriber.options`).
    """
    with tempfile.TemporaryDirectory(prefix="bellad-floor-") as tmp:
        audio = Path(tmp) / "utterances.s16"
        np.concatenate([np.asarray(u, np.int16) for u in utterances]).astype("<i2").tofile(audio)
        command = [
            sys.executable,
            "-m",
            "bellad.benchmark.floor",
            "--whisper",
            str(whisper),
            "--sentiment",
            str(sentiment_onnx),
            "--sentiment-threads",
            str(sentiment.threads),
            "--max-length",
            str(sentiment.max_length),
            "--model",
            json.dumps(model),
            "--audio",
            str(audio),
            "--lengths",
            ",".join(str(len(u)) for u in utterances),
        ]
        return run_child(command, "the memory floor probe", timeout_s=900)


def _run(args: argparse.Namespace) -> dict[str, Any]:
    # in the daemon's order: the Whisper model, then onnxruntime (imported
    # first, it leaves the heap laid out otherwise: a peak about 8 MB higher)
    model = json.loads(args.model)
    trimmed = model["encode"] == "trimmed"
    whisper = trimmable_model_class()(  # faster-whisper's, PyAV left unloaded
        str(args.whisper),
        device=model["device"],
        compute_type=model["compute_type"],
        cpu_threads=model["threads"],
        num_workers=1,
        local_files_only=True,
    )
    session = open_session(args.sentiment, args.sentiment_threads)
    inputs = {i.name for i in session.get_inputs()}
    tokenizer = open_tokenizer(args.sentiment.parent / "tokenizer.json", args.max_length)

    def transcribe_and_score(audio: Samples) -> None:
        whisper.encode_frames = trimmed_frames(len(audio)) if trimmed else None
        segments, _ = whisper.transcribe(audio.astype(np.float32) / 32768.0, **model["options"])
        encoding = tokenizer.encode("".join(s.text for s in segments).strip())
        session.run(None, model_feeds(encoding, inputs))

    transcribe_and_score(np.zeros(SAMPLE_RATE, np.int16))  # warm, as the daemon is
    loaded = rss_mb()
    speech = np.fromfile(args.audio, dtype="<i2")
    bounds = np.cumsum([0, *(int(n) for n in args.lengths.split(","))])
    for start, end in itertools.pairwise(bounds):
        transcribe_and_score(speech[start:end])
    return {
        "loaded_rss_mb": None if loaded is None else round(loaded, 1),
        "peak_rss_mb": round(peak_rss_mb(), 1),  # MB of 10^6 bytes, as the daemon's figures
        "utterances": len(bounds) - 1,
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bellad.benchmark.floor")
    parser.add_argument("--whisper", type=Path, required=True, help="the Whisper model's folder")
    parser.add_argument(
        "--sentiment", type=Path, required=True, help="the sentiment model's .onnx file"
    )
    parser.add_argument("--sentiment-threads", type=int, default=1)
    parser.add_argument("--max-length", type=int, default=128, help="tokens a text is cut to")
    parser.add_argument(
        "--model", required=True, help="JSON: device, compute_type, threads, encode, options"
    )
    parser.add_argument("--audio", type=Path, required=True, help="utterances, raw s16le, 16 kHz")
    parser.add_argument("--lengths", required=True, help="each utterance's samples, in order")
    print(json.dumps(_run(parser.parse_args(argv))), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
