"""The catalog: the models ``bellad models pull`` knows, by name.

Each entry names the hub repository a model comes from and which of its files
to take (renamed where the repository's layout differs from bellad's). The
Whisper repositories are the ones faster-whisper itself uses.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from bellad.errors import ModelError
from bellad.modelstore.layout import WHISPER_FILES, Kind

DEFAULT_MODEL: dict[Kind, str] = {"whisper": "tiny.en", "sentiment": "distilbert-sst2"}


@dataclass(frozen=True)
class CatalogEntry:
    """A model ``bellad models pull`` knows: where it lives and which files to take."""

    name: str
    kind: Kind
    repo_id: str
    files: tuple[str, ...]  # globs on repository paths
    summary: str
    rename: Mapping[str, str] = field(default_factory=dict)  # repository path -> local name

    def local_name(self, repo_path: str) -> str:
        return self.rename.get(repo_path, repo_path)


def _whisper(name: str, repo_id: str, summary: str) -> CatalogEntry:
    return CatalogEntry(name, "whisper", repo_id, WHISPER_FILES, summary)


CATALOG: dict[str, CatalogEntry] = {
    e.name: e
    for e in (
        _whisper("tiny.en", "Systran/faster-whisper-tiny.en", "English, 39M params, 75 MB"),
        _whisper("tiny", "Systran/faster-whisper-tiny", "99 languages, 39M params, 75 MB"),
        _whisper("base.en", "Systran/faster-whisper-base.en", "English, 74M params, 145 MB"),
        _whisper("base", "Systran/faster-whisper-base", "99 languages, 74M params, 145 MB"),
        _whisper("small.en", "Systran/faster-whisper-small.en", "English, 244M params, 484 MB"),
        _whisper("small", "Systran/faster-whisper-small", "99 languages, 244M params, 484 MB"),
        _whisper(
            "distil-small.en", "Systran/faster-distil-whisper-small.en", "English, 166M, 332 MB"
        ),
        _whisper(
            "distil-medium.en", "Systran/faster-distil-whisper-medium.en", "English, 394M, 789 MB"
        ),
        _whisper(
            "distil-large-v2", "Systran/faster-distil-whisper-large-v2", "English, 756M, 1.5 GB"
        ),
        _whisper(
            "distil-large-v3", "Systran/faster-distil-whisper-large-v3", "English, 756M, 1.5 GB"
        ),
        _whisper(
            "distil-large-v3.5", "distil-whisper/distil-large-v3.5-ct2", "English, 756M, 1.5 GB"
        ),
        CatalogEntry(
            name="distilbert-sst2",
            kind="sentiment",
            repo_id="Xenova/distilbert-base-uncased-finetuned-sst-2-english",
            files=("onnx/model_quantized.onnx", "tokenizer.json", "config.json"),
            summary="DistilBERT SST-2, int8 ONNX, 68 MB",
            rename={"onnx/model_quantized.onnx": "model.onnx"},
        ),
    )
}


def catalog_entry(name: str) -> CatalogEntry:
    """The catalog entry for ``name``, or a :class:`ModelError` listing the known names."""
    entry = CATALOG.get(name)
    if entry is None:
        raise ModelError(
            f"bellad cannot pull a model named {name!r} (known: {', '.join(CATALOG)}): "
            f"copy its folder over and run  bellad models import PATH --name {name}"
        )
    return entry
