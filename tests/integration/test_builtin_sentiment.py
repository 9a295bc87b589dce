"""The built-in sentiment model: ONNX equals its PyTorch definition, size, labels, sense.

The equivalence test rebuilds the PyTorch module that ``scripts/train_sentiment.py``
defines, loads it with the weights stored in the shipped ``model.onnx`` and checks
that both give the same logits, one sentence at a time and as a padded batch.
It needs torch (the ``train`` extra, installed by ``make test``).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from bellad.config import SentimentConfig
from bellad.modelstore import builtin_sentiment_dir
from bellad.sentiment import OnnxSentiment
from tests.support.cli import run_bellad

BUILTIN = builtin_sentiment_dir()

REPO = Path(__file__).resolve().parents[2]
MAX_BYTES = 5 * 1000 * 1000

SENTENCES = [
    "a gorgeous , witty , seductive movie .",
    "the acting is terrible and the plot makes no sense .",
    "I don't think I have ever been so bored in my life.",
    "It's a wonderful film, warm and funny.",
    "not bad at all",
    "not good",
    "an utterly forgettable , pointless exercise .",
    "the weather is nice today",
    "ok",
    "?",
    "This is the best thing I have heard all week!",
    "I'm really disappointed with the service.",
    "the kids loved every minute of it and so did we",
    "a mess from start to finish",
    "Thank you so much, that was very helpful.",
    "Turn off the lights in the kitchen please.",
    "it 's a charming and often affecting journey .",
    "unwatchable , unfunny and self-indulgent",
    "Café Müller’s pastries weren't great.",
    "one of the year 's most intriguing explorations of alienation .",
]
POSITIVE = [
    "This is a wonderful, beautiful and moving film.",
    "I love it, it's great fun!",
    "a smart , funny and touching comedy .",
]
NEGATIVE = [
    "This was boring, stupid and a complete waste of time.",
    "I hate it, it's awful.",
    "a dull , lifeless and badly acted mess .",
]


@pytest.fixture(scope="module")
def scorer() -> OnnxSentiment:
    return OnnxSentiment(SentimentConfig(threads=1), BUILTIN, name="builtin")


@pytest.fixture(scope="module")
def trainer() -> Any:
    """``scripts/train_sentiment.py`` as a module.

    It imports torch, which ``make test`` installs (the ``train`` extra): a
    missing torch fails these tests rather than skipping them.
    """
    sys.path.insert(0, str(REPO / "scripts"))
    import train_sentiment

    return train_sentiment


def onnx_logits(scorer: OnnxSentiment, ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
    feeds = {"input_ids": ids, "attention_mask": mask}
    return np.asarray(scorer.session.run(["logits"], feeds)[0])


def test_onnx_equals_torch_one_at_a_time(scorer: OnnxSentiment, trainer: Any) -> None:
    import torch

    model = trainer.load_onnx_as_torch(BUILTIN / "model.onnx")
    for text in SENTENCES:
        ids = np.array([scorer.tokenizer.encode(text).ids], dtype=np.int64)
        mask = np.ones_like(ids)
        with torch.no_grad():
            expected = model(torch.from_numpy(ids), torch.from_numpy(mask)).numpy()
        np.testing.assert_allclose(onnx_logits(scorer, ids, mask), expected, atol=1e-4, rtol=0)


def test_onnx_equals_torch_padded_batch(scorer: OnnxSentiment, trainer: Any) -> None:
    import torch

    model = trainer.load_onnx_as_torch(BUILTIN / "model.onnx")
    ids, mask = trainer.pad_batch([scorer.tokenizer.encode(t).ids for t in SENTENCES])
    with torch.no_grad():
        expected = model(ids, mask).numpy()
    got = onnx_logits(scorer, ids.numpy(), mask.numpy())
    np.testing.assert_allclose(got, expected, atol=1e-4, rtol=0)
    singles = [
        onnx_logits(
            scorer,
            ids[i : i + 1, : int(mask[i].sum())].numpy(),
            mask[i : i + 1, : int(mask[i].sum())].numpy(),
        )
        for i in range(len(SENTENCES))
    ]
    np.testing.assert_allclose(got, np.concatenate(singles), atol=1e-5, rtol=0)


def test_interface(scorer: OnnxSentiment) -> None:
    inputs = {i.name: i for i in scorer.session.get_inputs()}
    assert set(inputs) == {"input_ids", "attention_mask"}
    for i in inputs.values():
        assert i.type == "tensor(int64)"
        assert len(i.shape) == 2 and all(isinstance(d, str) for d in i.shape)
    (out,) = scorer.session.get_outputs()
    assert out.name == "logits" and out.type == "tensor(float)"
    for length in (1, 2, 3, 200):
        ids = np.full((3, length), 5, dtype=np.int64)
        assert onnx_logits(scorer, ids, np.ones_like(ids)).shape == (3, 2)


def test_folder_at_most_5_mb() -> None:
    files = [p for p in BUILTIN.rglob("*") if p.is_file()]
    assert {"model.onnx", "tokenizer.json", "config.json", "MODEL_CARD.md"} <= {
        p.name for p in files
    }
    assert sum(p.stat().st_size for p in files) <= MAX_BYTES


def test_labels_come_from_config(scorer: OnnxSentiment) -> None:
    config = json.loads((BUILTIN / "config.json").read_text())
    assert config["id2label"] == {"0": "NEGATIVE", "1": "POSITIVE"}
    assert config["label2id"] == {"NEGATIVE": 0, "POSITIVE": 1}
    assert scorer.labels == ["NEGATIVE", "POSITIVE"]


@pytest.mark.parametrize("text", POSITIVE)
def test_clearly_positive(scorer: OnnxSentiment, text: str) -> None:
    result = scorer.score(text)
    assert result.label == "POSITIVE" and result.valence > 0.5


@pytest.mark.parametrize("text", NEGATIVE)
def test_clearly_negative(scorer: OnnxSentiment, text: str) -> None:
    result = scorer.score(text)
    assert result.label == "NEGATIVE" and result.valence < -0.5


def test_transcribe_scores_with_the_builtin_model(
    scorer: OnnxSentiment, data: Path, make_config: Callable[..., Path]
) -> None:
    """``sentiment.model = "builtin"`` through the daemon's code path, as a fresh install runs."""
    config = make_config({"sentiment": {"model": "builtin"}})
    jfk = data / "audio" / "jfk" / "jfk.wav"
    done = run_bellad("--config", str(config), "transcribe", str(jfk), timeout=300)
    assert done.returncode == 0, done.stderr
    events = [json.loads(line) for line in done.stdout.splitlines() if line.strip()]
    assert events
    for event in events:
        assert event["models"]["sentiment"] == "builtin"
        expected = scorer.score(event["text"])
        assert event["sentiment"]["label"] == expected.label
        assert event["sentiment"]["score"] == pytest.approx(expected.score, abs=1e-3)
