"""The held-out split of SST-2 used to train and to benchmark bellad's built-in sentiment model.

The GLUE SST-2 training file mixes full sentences with the phrases of their parse
trees (``kids , spirit``, ``has so many flaws``...), each with its own label. A
fair held-out set needs whole sentences, and none of their phrases on the
training side, or a model would be scored on text it has already seen.

The method, shared by ``scripts/train_sentiment.py`` and ``bench/sentiment.py``
so both see exactly the same rows:

1. Rows are compared as whitespace-separated token sequences (the file is
   already tokenized, PTB style: ``it 's``, ``do n't``).
2. A *full sentence* is a row that is not a contiguous token sub-sequence of a
   longer row (nor a duplicate of a row kept before it). Rows are visited from
   the longest down; each kept sentence adds all its token n-grams to a set, and
   a row found in that set is a phrase of a sentence already kept. The data
   holds 6,885 such sentences.
3. The held-out sentences are the ``HELDOUT_SIZE`` full sentences with the
   smallest SHA-256 of ``SALT + text``: no random generator, no dependence on
   row order or on the Python version.
4. The training side is every row that is not a contiguous token sub-sequence
   of a held-out sentence. A phrase that occurs both inside a held-out sentence
   and inside a training sentence (``the film``) leaves the training side too:
   the held-out score never rests on a memorized label.

The same function, applied once more to the training side with another salt,
gives the development split used to compare architectures, so that the held-out
sentences are only ever scored, never tuned on.

This module needs only the standard library, so the benchmark runs without torch.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

REPO = Path(__file__).resolve().parent.parent
HELDOUT_SIZE = 1000
SALT = "bellad-sst2-heldout-v1"
DEV_SIZE = 1000
DEV_SALT = "bellad-sst2-dev-v1"


@dataclass(frozen=True)
class Example:
    """One labelled row: tokenized lowercase text, 1 = positive, 0 = negative."""

    text: str
    label: int


@dataclass(frozen=True)
class Split:
    """Training rows (phrases and sentences) and held-out full sentences."""

    train: list[Example]
    heldout: list[Example]


def data_dir() -> Path:
    """``$BELLAD_DATA_DIR``, else ``../shared/data`` beside the checkout."""
    return Path(os.environ.get("BELLAD_DATA_DIR", REPO.parent / "shared" / "data"))


def sst2_path() -> Path:
    """The GLUE SST-2 training file, ``sentence<TAB>label`` with a header line."""
    return data_dir() / "sst2" / "train.tsv"


def read_tsv(path: Path | None = None) -> list[Example]:
    """All rows of the file, whitespace normalized, in file order."""
    path = path or sst2_path()
    rows = []
    with path.open(encoding="utf-8") as f:
        header = f.readline().rstrip("\n").split("\t")
        if header != ["sentence", "label"]:
            raise ValueError(f"{path}: expected a 'sentence<TAB>label' header, got {header}")
        for n, line in enumerate(f, start=2):
            text, sep, label = line.rstrip("\n").rpartition("\t")
            if not sep or label not in ("0", "1"):
                raise ValueError(f"{path}:{n}: not 'sentence<TAB>0|1'")
            rows.append(Example(" ".join(text.split()), int(label)))
    log.info("read %d rows from %s", len(rows), path)
    return rows


def ngrams(text: str) -> Iterable[str]:
    """Every contiguous token sub-sequence of ``text``, itself included."""
    tokens = text.split()
    for start in range(len(tokens)):
        for end in range(start + 1, len(tokens) + 1):
            yield " ".join(tokens[start:end])


def full_sentences(rows: list[Example]) -> list[Example]:
    """Rows that are no contiguous token sub-sequence of a longer row, longest first."""
    order = sorted(rows, key=lambda r: (-len(r.text.split()), r.text, r.label))
    inside: set[str] = set()
    sentences = []
    for row in order:
        if row.text in inside:
            continue
        sentences.append(row)
        inside.update(ngrams(row.text))
    return sentences


def rank(text: str, salt: str) -> str:
    """A stable pseudo-random key for a sentence."""
    return hashlib.sha256((salt + text).encode("utf-8")).hexdigest()


def split(rows: list[Example], size: int = HELDOUT_SIZE, salt: str = SALT) -> Split:
    """Hold out ``size`` full sentences and remove every phrase inside them from training."""
    sentences = full_sentences(rows)
    if size >= len(sentences):
        raise ValueError(f"cannot hold out {size} of {len(sentences)} sentences")
    heldout = sorted(sentences, key=lambda r: rank(r.text, salt))[:size]
    inside: set[str] = set()
    for row in heldout:
        inside.update(ngrams(row.text))
    train = [r for r in rows if r.text not in inside]
    log.info(
        "%d full sentences; held out %d, removing %d rows from training, %d left",
        len(sentences),
        size,
        len(rows) - len(train),
        len(train),
    )
    return Split(train=train, heldout=heldout)


def heldout_split(path: Path | None = None) -> Split:
    """The benchmark's split: ``HELDOUT_SIZE`` sentences of the SST-2 file held out."""
    return split(read_tsv(path), HELDOUT_SIZE, SALT)
