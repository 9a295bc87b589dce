"""What a model folder of each kind holds, and how to tell the kinds apart.

A Whisper model is a CTranslate2 folder (``model.bin`` with its config,
tokenizer and vocabulary, the files faster-whisper itself downloads); a
sentiment model is an ONNX classifier with its tokenizer and config. Model
names are folder names in the models dir, so they are kept to a safe alphabet.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path
from typing import Literal

Kind = Literal["whisper", "sentiment"]
KINDS: tuple[Kind, ...] = ("whisper", "sentiment")

#: what a model may be called (a folder name in the models dir)
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")

# Each requirement is met by any one of its files (paths in the model folder).
LAYOUT: dict[Kind, tuple[tuple[str, ...], ...]] = {
    "whisper": (
        ("model.bin",),
        ("config.json",),
        ("tokenizer.json",),
        ("vocabulary.json", "vocabulary.txt"),
    ),
    "sentiment": (("model.onnx",), ("tokenizer.json",), ("config.json",)),
}
#: what a Whisper folder may hold (the files faster-whisper itself downloads)
WHISPER_FILES = (
    "config.json",
    "preprocessor_config.json",
    "model.bin",
    "tokenizer.json",
    "vocabulary.*",
)
#: what a sentiment folder may hold besides its ONNX model
SENTIMENT_EXTRAS = ("tokenizer.json", "config.json", "tokenizer_config.json")


def lacking(kind: Kind, paths: Iterable[str]) -> list[str]:
    """The files a ``kind`` model needs that ``paths`` lack (``a or b`` for alternatives)."""
    present = set(paths)
    return [" or ".join(files) for files in LAYOUT[kind] if present.isdisjoint(files)]


def missing_files(kind: Kind, folder: Path) -> list[str]:
    """The files a ``kind`` model needs that ``folder`` lacks (``a or b`` for alternatives)."""
    return lacking(kind, [f for files in LAYOUT[kind] for f in files if (folder / f).is_file()])


def detect_kind(folder: Path) -> Kind | None:
    """``whisper`` for a CTranslate2 Whisper folder, ``sentiment`` for an ONNX one."""
    if (folder / "model.bin").is_file():
        return "whisper"
    if find_onnx(folder) is not None:
        return "sentiment"
    return None


def find_onnx(folder: Path) -> Path | None:
    """The one ONNX model of ``folder`` (the quantized export preferred), if it is clear."""
    for preferred in ("model.onnx", "onnx/model_quantized.onnx"):
        if (folder / preferred).is_file():
            return folder / preferred
    found = sorted(folder.glob("*.onnx")) + sorted(folder.glob("onnx/*.onnx"))
    return found[0] if len(found) == 1 else None
