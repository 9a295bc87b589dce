"""The generated test models load and run in faster-whisper and onnxruntime, offline."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from bellad import testmodels
from bellad.testmodels import TestModels, default_data_dir, ensure_test_models

DATA_DIR = default_data_dir()
JFK = DATA_DIR / "audio" / "jfk" / "jfk.wav"
GREEDY = {
    "beam_size": 1,
    "temperature": 0,
    "condition_on_previous_text": False,
    "without_timestamps": True,
}


@pytest.fixture(scope="module")
def models() -> TestModels:
    return ensure_test_models()


@pytest.fixture(autouse=True)
def offline(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Fail any attempt to fetch a model or tokenizer from the hub."""
    import faster_whisper.transcribe
    import tokenizers

    def refuse(*args: Any, **kwargs: Any) -> None:
        raise AssertionError(f"tried to download: {args} {kwargs}")

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(faster_whisper.transcribe, "download_model", refuse)
    monkeypatch.setattr(tokenizers.Tokenizer, "from_pretrained", refuse)
    yield


def _whisper(path: Path) -> Any:
    from faster_whisper import WhisperModel

    return WhisperModel(
        str(path), device="cpu", compute_type="int8", cpu_threads=2, local_files_only=True
    )


def _transcribe(model: Any, audio: Any, **options: Any) -> tuple[list[Any], Any, float]:
    started = time.perf_counter()
    segments, info = model.transcribe(audio, **options)
    segments = list(segments)
    return segments, info, time.perf_counter() - started


def _text_tokens(segments: list[Any], eot: int) -> int:
    return sum(1 for s in segments for t in s.tokens if t < eot)


def test_whisper_transcribes_jfk_to_a_short_text_quickly(models: TestModels) -> None:
    model = _whisper(models.whisper)
    assert not model.model.is_multilingual
    segments, info, seconds = _transcribe(model, str(JFK), **GREEDY)
    text = "".join(s.text for s in segments).strip()
    assert text
    assert 3 <= _text_tokens(segments, 50256) <= 20
    assert info.language == "en"
    assert seconds < 1.0
    again, _, _ = _transcribe(model, str(JFK), **GREEDY)
    assert [s.text for s in again] == [s.text for s in segments]  # deterministic


@pytest.mark.parametrize("seconds", [2, 10])
def test_whisper_stops_by_itself(models: TestModels, seconds: int) -> None:
    from faster_whisper import decode_audio

    audio = decode_audio(str(JFK))[: seconds * 16000]
    segments, _, _ = _transcribe(_whisper(models.whisper), audio, **GREEDY)
    assert len(segments) == 1
    assert segments[0].text.strip()
    assert 3 <= _text_tokens(segments, 50256) <= 20


def test_whisper_works_with_default_options(models: TestModels) -> None:
    """Timestamps, beam search and temperature fallback: still short, non-empty text."""
    segments, _, _ = _transcribe(_whisper(models.whisper), str(JFK))
    assert "".join(s.text for s in segments).strip()
    assert _text_tokens(segments, 50256) <= 20


def test_multilingual_whisper_detects_a_language(models: TestModels) -> None:
    model = _whisper(models.whisper_multilingual)
    assert model.model.is_multilingual
    segments, info, _ = _transcribe(model, str(JFK), **GREEDY)
    assert info.language in model.supported_languages
    assert 0.0 < info.language_probability <= 1.0
    assert info.all_language_probs
    assert "".join(s.text for s in segments).strip()
    assert 3 <= _text_tokens(segments, 50257) <= 20


def test_whisper_build_is_deterministic(tmp_path: Path) -> None:
    tokenizer_dir = DATA_DIR / "whisper-tokenizer"
    first = testmodels.build_whisper_model(tmp_path / "a", tokenizer_dir=tokenizer_dir)
    second = testmodels.build_whisper_model(tmp_path / "b", tokenizer_dir=tokenizer_dir)
    other = testmodels.build_whisper_model(tmp_path / "c", tokenizer_dir=tokenizer_dir, seed=1)
    weights = [(d / "model.bin").read_bytes() for d in (first, second, other)]
    assert weights[0] == weights[1] != weights[2]
    assert 35e6 < len(weights[0]) < 45e6  # tiny, int8
    assert sorted(p.name for p in first.iterdir()) == [
        "config.json",
        "model.bin",
        "preprocessor_config.json",
        "tokenizer.json",
        "vocabulary.json",
    ]


def _sentiment(path: Path) -> tuple[Any, Any, dict[str, Any]]:
    import onnxruntime
    import tokenizers

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    session = onnxruntime.InferenceSession(
        str(path / "model.onnx"), options, providers=["CPUExecutionProvider"]
    )
    tokenizer = tokenizers.Tokenizer.from_file(str(path / "tokenizer.json"))
    config = json.loads((path / "config.json").read_text(encoding="utf-8"))
    return session, tokenizer, config


def _classify(session: Any, tokenizer: Any, texts: list[str]) -> np.ndarray:
    tokenizer.enable_padding(pad_id=tokenizer.token_to_id("[PAD]"), pad_token="[PAD]")
    encodings = tokenizer.encode_batch(texts)
    feed = {
        "input_ids": np.array([e.ids for e in encodings], dtype=np.int64),
        "attention_mask": np.array([e.attention_mask for e in encodings], dtype=np.int64),
    }
    (logits,) = session.run(["logits"], feed)
    return np.asarray(logits)


def test_sentiment_model_has_the_export_interface(models: TestModels) -> None:
    session, _, config = _sentiment(models.sentiment)
    inputs = {i.name: (i.type, i.shape) for i in session.get_inputs()}
    assert inputs == {
        "input_ids": ("tensor(int64)", ["batch", "sequence"]),
        "attention_mask": ("tensor(int64)", ["batch", "sequence"]),
    }
    (output,) = session.get_outputs()
    assert (output.name, output.type, output.shape) == ("logits", "tensor(float)", ["batch", 2])
    assert config["id2label"] == {"0": "NEGATIVE", "1": "POSITIVE"}
    assert config["label2id"] == {"NEGATIVE": 0, "POSITIVE": 1}


def test_sentiment_model_classifies_text(models: TestModels) -> None:
    session, tokenizer, config = _sentiment(models.sentiment)
    texts = ["A wonderful, moving film.", "BORING and awful, a waste of time", "ok"]
    logits = _classify(session, tokenizer, texts)
    assert logits.shape == (3, 2)
    assert logits.dtype == np.float32
    labels = [config["id2label"][str(i)] for i in logits.argmax(axis=1)]
    assert labels[:2] == ["POSITIVE", "NEGATIVE"]
    # padding is masked out: a text scores the same alone and in a padded batch
    alone = _classify(session, tokenizer, ["ok"])
    np.testing.assert_allclose(alone[0], logits[2], rtol=1e-5, atol=1e-6)


def test_sentiment_tokenizer_is_lowercasing_wordpiece(models: TestModels) -> None:
    _, tokenizer, _ = _sentiment(models.sentiment)
    encoding = tokenizer.encode("GREAT Film zqxv")
    assert encoding.tokens[0] == "[CLS]"
    assert encoding.tokens[-1] == "[SEP]"
    assert encoding.tokens[1:3] == ["great", "film"]
    assert "[UNK]" not in encoding.tokens  # unknown words are spelled out
    assert any(t.startswith("##") for t in encoding.tokens)


def test_sentiment_build_is_deterministic_by_seed(tmp_path: Path) -> None:
    built = [
        testmodels.build_sentiment_model(tmp_path / name, seed=seed)
        for name, seed in (("a", 0), ("b", 0), ("c", 1))
    ]
    weights = [(d / "model.onnx").read_bytes() for d in built]
    assert weights[0] == weights[1] != weights[2]


def test_cache_is_reused(models: TestModels) -> None:
    stamps = {p: p.stat().st_mtime_ns for p in (models.whisper, models.sentiment)}
    assert ensure_test_models() == models
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps
    assert models.whisper.parent.name == f"v{testmodels.GENERATOR_VERSION}"


def test_command_line_writes_the_chosen_models(tmp_path: Path) -> None:
    assert testmodels.main(["--out", str(tmp_path), "--sentiment"]) == 0
    assert [p.name for p in tmp_path.iterdir()] == ["sentiment"]
    assert (tmp_path / "sentiment" / "model.onnx").is_file()
