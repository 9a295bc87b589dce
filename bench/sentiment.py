"""Benchmark of the built-in sentiment model: held-out accuracy and time per sentence.

Usage, from the repository root::

    python -m bench.sentiment [--model DIR] [--passes N]

The model is loaded from ``bellad/data/sentiment/`` through the daemon's own
code (``bellad.sentiment.OnnxSentiment``) with one onnxruntime thread
(``intra_op_num_threads=1``, ``inter_op_num_threads=1``). The held-out SST-2
sentences are recomputed from ``$BELLAD_DATA_DIR/sst2/train.tsv`` by
``scripts/sst2_split.py``, the module the training script uses. Each sentence
is scored one at a time (batch 1, tokenizer included), ``--passes`` times; the
times are per call. Exits 1 when a target is missed. Needs no torch.
"""

from __future__ import annotations

import argparse
import logging
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "scripts"))
import sst2_split  # noqa: E402  (scripts/ is no package)

from bellad.config import SentimentConfig  # noqa: E402
from bellad.modelstore import builtin_sentiment_dir  # noqa: E402
from bellad.sentiment import OnnxSentiment  # noqa: E402

BUILTIN = builtin_sentiment_dir()

log = logging.getLogger(__name__)

TARGET_ACCURACY = 0.83
GOAL_ACCURACY = 0.85
TARGET_MEDIAN_MS = 1.0
MAX_SIZE_MB = 5.0
LABELS = {0: "NEGATIVE", 1: "POSITIVE"}


@dataclass(frozen=True)
class Figures:
    """What the benchmark measures."""

    sentences: int
    accuracy: float
    median_ms: float
    p95_ms: float
    size_mb: float


def folder_mb(folder: Path) -> float:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()) / 1e6


def measure(model_dir: Path, examples: list[sst2_split.Example], passes: int = 3) -> Figures:
    """Score every example ``passes`` times at batch 1 on one thread; accuracy from pass 1."""
    scorer = OnnxSentiment(SentimentConfig(threads=1), model_dir, name="builtin")
    for example in examples[:50]:  # warm-up: allocations, caches
        scorer.score(example.text)
    times, correct = [], 0
    for n in range(passes):
        for example in examples:
            start = time.perf_counter()
            result = scorer.score(example.text)
            times.append(time.perf_counter() - start)
            if n == 0:
                correct += result.label == LABELS[example.label]
    quantiles = statistics.quantiles(times, n=20)
    return Figures(
        sentences=len(examples),
        accuracy=correct / len(examples),
        median_ms=statistics.median(times) * 1e3,
        p95_ms=quantiles[18] * 1e3,
        size_mb=folder_mb(model_dir),
    )


def report(fig: Figures) -> bool:
    """Print the figures beside their targets; True when every target is met."""
    checks = [
        (
            f"accuracy on {fig.sentences} held-out sentences",
            f"{fig.accuracy:.2%}",
            f">= {TARGET_ACCURACY:.0%} (goal {GOAL_ACCURACY:.0%})",
            fig.accuracy >= TARGET_ACCURACY,
        ),
        (
            "median time per sentence",
            f"{fig.median_ms:.3f} ms",
            f"<= {TARGET_MEDIAN_MS} ms",
            fig.median_ms <= TARGET_MEDIAN_MS,
        ),
        ("p95 time per sentence", f"{fig.p95_ms:.3f} ms", "(reported)", True),
        (
            "model folder size",
            f"{fig.size_mb:.2f} MB",
            f"<= {MAX_SIZE_MB} MB",
            fig.size_mb <= MAX_SIZE_MB,
        ),
    ]
    for name, value, target, ok in checks:
        print(f"{name:<40} {value:>12}   {target:<24} {'ok' if ok else 'MISSED'}")
    return all(ok for *_, ok in checks)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=BUILTIN, help="model folder")
    parser.add_argument("--passes", type=int, default=3, help="timed passes over the sentences")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    split = sst2_split.heldout_split()
    fig = measure(args.model, split.heldout, args.passes)
    print(f"built-in sentiment model: {args.model}")
    print("batch 1, tokenizer included, onnxruntime intra_op_num_threads=1 inter_op_num_threads=1")
    return 0 if report(fig) else 1


if __name__ == "__main__":
    sys.exit(main())
