"""Unit tests of bellad.testmodels: token layouts, configs, tokenizers and the cache."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from bellad import testmodels
from bellad.testmodels import default_cache_dir, default_data_dir

TOKENIZER_DIR = default_data_dir() / "whisper-tokenizer"


@pytest.fixture(scope="module")
def english() -> testmodels._WhisperVocab:
    return testmodels._whisper_vocab(TOKENIZER_DIR, multilingual=False)


@pytest.fixture(scope="module")
def multilingual() -> testmodels._WhisperVocab:
    return testmodels._whisper_vocab(TOKENIZER_DIR, multilingual=True)


def test_english_layout_has_the_real_tiny_en_ids(english: testmodels._WhisperVocab) -> None:
    tokens = english.tokens
    assert len(tokens) == 51864
    expected = {
        "<|endoftext|>": 50256,
        "<|startoftranscript|>": 50257,
        "<|en|>": 50258,
        "<|su|>": 50356,
        "<|translate|>": 50357,
        "<|transcribe|>": 50358,
        "<|nocaptions|>": 50361,
        "<|notimestamps|>": 50362,
        "<|0.00|>": 50363,
        "<|30.00|>": 51863,
    }
    assert {t: tokens.index(t) for t in expected} == expected
    assert "" not in tokens
    assert tokens[220] == "Ġ"


def test_multilingual_layout_moves_specials_after_an_empty_token(
    multilingual: testmodels._WhisperVocab,
) -> None:
    tokens = multilingual.tokens
    assert len(tokens) == 51865
    assert tokens[50256] == ""
    expected = {
        "<|endoftext|>": 50257,
        "<|startoftranscript|>": 50258,
        "<|en|>": 50259,
        "<|transcribe|>": 50359,
        "<|notimestamps|>": 50363,
        "<|30.00|>": 51864,
    }
    assert {t: tokens.index(t) for t in expected} == expected
    assert len(multilingual.languages) == 99


def test_tokenizer_puts_every_token_at_its_model_id(
    english: testmodels._WhisperVocab, multilingual: testmodels._WhisperVocab
) -> None:
    for vocab in (english, multilingual):
        tokenizer = testmodels._whisper_tokenizer(vocab)
        assert tokenizer.get_vocab_size() == len(vocab.tokens)
        for name in ("<|endoftext|>", "<|en|>", "<|notimestamps|>", "<|1.00|>"):
            assert tokenizer.token_to_id(name) == vocab.tokens.index(name)
        text = " And so my fellow Americans, ask not"
        ids = tokenizer.encode(text, add_special_tokens=False).ids
        assert max(ids) < 50256  # plain text never maps to special tokens
        assert tokenizer.decode(ids) == text


def test_english_tokenizer_matches_the_real_bpe(english: testmodels._WhisperVocab) -> None:
    tokenizer = testmodels._whisper_tokenizer(english)
    vocab = json.loads((TOKENIZER_DIR / "vocab.json").read_text(encoding="utf-8"))
    ids = tokenizer.encode(" fellow Americans", add_special_tokens=False).ids
    assert ids == [vocab["Ġfellow"], vocab["ĠAmericans"]]


def test_config_follows_the_layout(
    english: testmodels._WhisperVocab, multilingual: testmodels._WhisperVocab
) -> None:
    en = testmodels._whisper_config(TOKENIZER_DIR, english)
    ml = testmodels._whisper_config(TOKENIZER_DIR, multilingual)
    assert en["suppress_ids_begin"] == [220, 50256]
    assert ml["suppress_ids_begin"] == [220, 50257]
    assert en["lang_ids"] == list(range(50258, 50357))
    assert ml["lang_ids"] == list(range(50259, 50358))
    # text ids are kept, special ids move up by one with the multilingual layout
    assert en["suppress_ids"][:3] == ml["suppress_ids"][:3] == [1, 2, 7]
    assert en["suppress_ids"][-6:] == [50257, 50357, 50358, 50359, 50360, 50361]
    assert ml["suppress_ids"][-6:] == [50258, 50358, 50359, 50360, 50361, 50362]
    assert all(0 <= layer < 4 and 0 <= head < 6 for layer, head in ml["alignment_heads"])


def test_default_dirs_follow_the_environment(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("BELLAD_TEST_MODELS", str(tmp_path / "models"))
    monkeypatch.setenv("BELLAD_DATA_DIR", str(tmp_path / "data"))
    assert default_cache_dir() == tmp_path / "models"
    assert default_data_dir() == tmp_path / "data"
    monkeypatch.delenv("BELLAD_TEST_MODELS")
    monkeypatch.delenv("BELLAD_DATA_DIR")
    repo = Path(testmodels.__file__).resolve().parent.parent
    assert default_cache_dir() == repo / ".cache" / "test-models"
    assert default_data_dir() == repo.parent / "shared" / "data"


def test_cached_builds_once(tmp_path: Path) -> None:
    calls: list[Path] = []

    def build(out: Path) -> Path:
        calls.append(out)
        (out / "model.bin").write_text("weights")
        return out

    target = tmp_path / "v1" / "model"
    assert testmodels._cached(target, build) == target
    assert testmodels._cached(target, build) == target
    assert len(calls) == 1
    assert (target / "model.bin").read_text() == "weights"
    assert [p.name for p in target.parent.iterdir()] == ["model"]


def test_cached_leaves_nothing_behind_when_the_build_fails(tmp_path: Path) -> None:
    def build(out: Path) -> Path:
        (out / "half").write_text("x")
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        testmodels._cached(tmp_path / "model", build)
    assert list(tmp_path.iterdir()) == []


_RACER = textwrap.dedent(
    """
    import os, sys, time
    from pathlib import Path
    from bellad.testmodels import _cached

    def build(out):
        time.sleep(0.5)
        (out / "builder").write_text(str(os.getpid()))
        return out

    print(_cached(Path(sys.argv[1]), build))
    """
)


def test_cached_is_safe_across_processes(tmp_path: Path) -> None:
    target = tmp_path / "model"
    racers = [
        subprocess.Popen(
            [sys.executable, "-c", _RACER, str(target)], stdout=subprocess.PIPE, text=True
        )
        for _ in range(3)
    ]
    outputs = [racer.communicate(timeout=60)[0].strip() for racer in racers]
    assert [racer.returncode for racer in racers] == [0, 0, 0]
    assert outputs == [str(target)] * 3
    assert int((target / "builder").read_text()) in {racer.pid for racer in racers}
    assert [p.name for p in tmp_path.iterdir()] == ["model"]
