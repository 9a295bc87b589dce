"""``bellad bench --wer DIR``: word error rate with the padded and the trimmed encoder input.

``DIR`` holds pairs of recordings and reference texts (``x.wav`` and
``x.txt``; any format FFmpeg decodes). Each recording goes through bellad's
own segmenter and hallucination guard, as in the daemon, and every utterance
is transcribed both ways with the same model and options; the texts are
normalised (lower case, no punctuation) and scored with ``jiwer`` (the
``bench`` extra) over the whole set.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bellad.audio import FileSource
from bellad.benchmark.clips import AUDIO_SUFFIXES
from bellad.config import Config
from bellad.errors import AudioError, MissingDependencyError
from bellad.events import Utterance
from bellad.transcribe import WhisperTranscriber, judge, normalize
from bellad.vad import Segmenter

log = logging.getLogger(__name__)

MODES = ("padded", "trimmed")


@dataclass(frozen=True)
class Pair:
    audio: Path
    reference: str


def find_pairs(folder: Path) -> list[Pair]:
    """Every recording under ``folder`` with a ``.txt`` of the same name beside it."""
    pairs = []
    for path in sorted(folder.rglob("*")):
        text = path.with_suffix(".txt")
        if path.suffix.lower() in AUDIO_SUFFIXES and path.suffix != ".raw" and text.is_file():
            reference = text.read_text(encoding="utf-8").strip()
            if normalize(reference):
                pairs.append(Pair(path, reference))
    if not pairs:
        raise AudioError(f"{folder}: no pairs of a recording and its .txt reference")
    return pairs


def utterances(path: Path, cfg: Config) -> list[Utterance]:
    """The recording cut into utterances by bellad's segmenter, as the daemon would."""
    source = FileSource(path)
    segmenter = Segmenter(cfg.vad, source.name, source.relative)
    events: list[Any] = []
    for chunk in source.chunks(threading.Event()):
        events += segmenter.feed(chunk)
    events += segmenter.flush()
    return [e for e in events if isinstance(e, Utterance)]


def score(references: list[str], hypotheses: list[str]) -> dict[str, Any]:
    try:
        import jiwer
    except ImportError:
        raise MissingDependencyError("jiwer", "bench", "bellad bench --wer") from None
    refs = [normalize(r) for r in references]
    hyps = [normalize(h) for h in hypotheses]
    words = jiwer.process_words(refs, hyps)
    return {
        "wer": round(words.wer, 4),
        "substitutions": words.substitutions,
        "deletions": words.deletions,
        "insertions": words.insertions,
        "reference_words": sum(len(r.split()) for r in refs),
    }


def measure_wer(folder: Path, whisper: Path, cfg: Config) -> dict[str, Any]:
    """Transcribe every pair both ways; WER and transcription time per mode."""
    pairs = find_pairs(folder)
    base = cfg.transcribe.model_copy(update={"model": str(whisper), "warmup": True})
    transcriber = WhisperTranscriber(base, whisper)
    texts: dict[str, list[str]] = {mode: [] for mode in MODES}
    seconds = dict.fromkeys(MODES, 0.0)
    files = []
    for pair in pairs:
        row: dict[str, Any] = {"audio": str(pair.audio), "reference": pair.reference}
        pieces = utterances(pair.audio, cfg)
        for mode in MODES:
            transcriber.cfg = base.model_copy(update={"encode": mode})
            kept = []
            for utt in pieces:
                started = time.perf_counter()
                transcript = transcriber.transcribe(utt.audio)
                seconds[mode] += time.perf_counter() - started
                reasons = judge(transcript, utt.rms_dbfs, cfg.transcribe.guard)
                if not reasons or (cfg.transcribe.guard.action == "flag" and reasons != ("empty",)):
                    kept.append(transcript.text)
            row[mode] = " ".join(kept)
            texts[mode].append(row[mode])
        files.append(row)
        log.info("%s: %d utterance(s)", pair.audio.name, len(pieces))
    references = [p.reference for p in pairs]
    result: dict[str, Any] = {"model": str(whisper), "pairs": len(pairs), "files": files}
    for mode in MODES:
        result[mode] = score(references, texts[mode]) | {"seconds": round(seconds[mode], 2)}
    result["trimmed_speedup"] = round(seconds["padded"] / max(seconds["trimmed"], 1e-9), 2)
    return result


def wer_table(result: dict[str, Any]) -> str:
    lines = [
        f"bellad bench --wer: {result['pairs']} recordings, model {result['model']}",
        f"  {'mode':<8} {'WER':>7} {'subst':>6} {'del':>5} {'ins':>5} {'words':>6} {'time s':>8}",
    ]
    for mode in MODES:
        r = result[mode]
        lines.append(
            f"  {mode:<8} {r['wer'] * 100:6.1f}% {r['substitutions']:>6} {r['deletions']:>5} "
            f"{r['insertions']:>5} {r['reference_words']:>6} {r['seconds']:>8.2f}"
        )
    lines.append(f"  trimmed is x{result['trimmed_speedup']:.2f} as fast")
    return "\n".join(lines)
