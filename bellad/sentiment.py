"""Sentiment of a transcript with any sequence-classification ONNX model.

A model folder holds ``model.onnx`` (or one ``*.onnx`` file, also under
``onnx/``), ``tokenizer.json`` for the tokenizers library, and ``config.json``
whose ``id2label`` names the classes, the layout of the usual DistilBERT SST-2
export. The built-in model goes through this same code. The valence maps the
class probabilities onto [-1, 1]: P(positive) - P(negative), neutral classes
counting zero.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from bellad.errors import ModelError
from bellad.events import Sentiment
from bellad.memory import release_free_memory

if TYPE_CHECKING:  # the benchmark's memory floor opens sessions here without pydantic
    from bellad.config import SentimentConfig

log = logging.getLogger(__name__)


class SentimentScorer(Protocol):
    """Text to sentiment: a fake in unit tests, ONNX in the daemon."""

    name: str

    def score(self, text: str) -> Sentiment: ...


def label_valences(labels: list[str]) -> list[float]:
    """+1 for a positive class, -1 for a negative one, 0 for others, judged by name.

    A binary model with anonymous labels (``LABEL_0``/``LABEL_1``) is read as
    negative/positive, the SST-2 convention.
    """
    out = []
    for i, label in enumerate(labels):
        low = label.lower()
        if "neg" in low:
            out.append(-1.0)
        elif "pos" in low:
            out.append(1.0)
        elif len(labels) == 2 and low in (f"label_{i}", str(i)):
            out.append(-1.0 if i == 0 else 1.0)
        else:
            out.append(0.0)
    return out


def softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max()
    exp = np.exp(shifted)
    return exp / exp.sum()


def find_onnx(model_dir: Path) -> Path:
    """The model's ``.onnx`` file: ``model.onnx``, else the only one there is."""
    preferred = model_dir / "model.onnx"
    if preferred.is_file():
        return preferred
    found = sorted(model_dir.glob("*.onnx")) + sorted(model_dir.glob("onnx/*.onnx"))
    quantized = [p for p in found if "quant" in p.name]
    if len(found) == 1 or quantized:
        return (quantized or found)[0]
    raise ModelError(f"sentiment model in {model_dir}: no single .onnx file found")


def open_session(onnx: Path, threads: int) -> Any:
    """An onnxruntime CPU session as bellad runs one: ``threads`` per operator, no spinning."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(str(onnx), options, providers=["CPUExecutionProvider"])


def open_tokenizer(path: Path, max_length: int) -> Any:
    """The model's tokenizer, one text at a time: no padding, cut at ``max_length`` tokens."""
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(path))
    tokenizer.no_padding()
    tokenizer.enable_truncation(max_length)
    return tokenizer


def model_feeds(encoding: Any, inputs: set[str]) -> dict[str, np.ndarray]:
    """A tokenized text as the session's inputs, those of ``inputs`` it takes."""
    columns = {
        "input_ids": encoding.ids,
        "attention_mask": encoding.attention_mask,
        "token_type_ids": encoding.type_ids,  # BERT-style models
    }
    return {k: np.array([v], dtype=np.int64) for k, v in columns.items() if k in inputs}


class OnnxSentiment:
    """An onnxruntime session with its tokenizer and labels, loaded once."""

    def __init__(self, cfg: SentimentConfig, model_dir: Path, name: str | None = None) -> None:
        self.name = name or cfg.model
        try:
            self.labels = self._labels(model_dir / "config.json")
            self.tokenizer = open_tokenizer(model_dir / "tokenizer.json", cfg.max_length)
            self.session = open_session(find_onnx(model_dir), cfg.threads)
        except ModelError:
            raise
        except Exception as exc:  # onnxruntime and tokenizers raise their own types
            raise ModelError(
                f"sentiment model {self.name!r} in {model_dir} cannot be loaded: "
                f"{str(exc).splitlines()[0]}"
            ) from None
        self.inputs = {i.name for i in self.session.get_inputs()}
        self.valences = np.array(label_valences(self.labels))
        release_free_memory()  # the tokenizer's and the session's scratch memory
        log.info("loaded sentiment model %s (%s)", self.name, ", ".join(self.labels))

    @staticmethod
    def _labels(config: Path) -> list[str]:
        try:
            id2label: dict[str, Any] = json.loads(config.read_text())["id2label"]
        except (OSError, ValueError, KeyError) as exc:
            raise ModelError(f"sentiment model {config}: no readable id2label ({exc})") from None
        return [str(id2label[k]) for k in sorted(id2label, key=int)]

    def score(self, text: str) -> Sentiment:
        feeds = model_feeds(self.tokenizer.encode(text), self.inputs)
        logits = self.session.run(None, feeds)[0][0]
        probs = softmax(np.asarray(logits, dtype=np.float64))
        best = int(np.argmax(probs))
        return Sentiment(
            label=self.labels[best],
            score=float(probs[best]),
            valence=float(np.clip(probs @ self.valences, -1.0, 1.0)),
        )
