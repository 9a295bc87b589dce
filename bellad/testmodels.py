"""Generated models for bellad's tests and benchmarks.

No machine that runs bellad's test suite can download model weights, so the
suite builds its own: models of the real architecture and real tokenizers, with
random weights drawn from a seeded generator.

* :func:`build_whisper_model` writes a Whisper *tiny* model in CTranslate2
  format, quantized to int8, with a ``tokenizer.json`` and a
  ``preprocessor_config.json`` next to it, so that ``faster_whisper`` loads it
  from the folder alone. English-only (the real tiny.en vocabulary and token
  ids) or multilingual (the multilingual special-token layout, so that language
  detection runs). Random weights decode garbage; a push towards
  ``<|endoftext|>`` that grows at every step makes decoding stop after a few
  tokens.
* :func:`build_sentiment_model` writes a small ONNX sequence classifier with the
  inputs and output of a DistilBERT SST-2 export, a WordPiece ``tokenizer.json``
  and a ``config.json`` with the labels. Its weights are random but for one
  embedding column of word log-odds counted from SST-2, so plain sentiment words
  get the label one expects.
* :func:`ensure_test_models` builds all three once into a cache folder and
  reuses them.

Run ``python -m bellad.testmodels --out DIR [--whisper] [--sentiment]
[--multilingual]`` to write them to a folder by hand.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import re
import shutil
import tempfile
import time
import unicodedata
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

logger = logging.getLogger(__name__)

#: bump whenever the generated models change, so that caches rebuild them
GENERATOR_VERSION = "1"

#: default push towards ``<|endoftext|>`` per decoding step (see :func:`build_whisper_model`)
DEFAULT_EOT_RAMP = 1.5

WHISPER_DIRNAME = "whisper-tiny.en"
WHISPER_MULTILINGUAL_DIRNAME = "whisper-tiny"
SENTIMENT_DIRNAME = "sentiment"

_REPO_ROOT = Path(__file__).resolve().parent.parent

# The special tokens that are not languages, in their order after the languages.
_TASK_TOKENS = (
    "<|translate|>",
    "<|transcribe|>",
    "<|startoflm|>",
    "<|startofprev|>",
    "<|nocaptions|>",
    "<|notimestamps|>",
)
_EOT = "<|endoftext|>"
_SOT = "<|startoftranscript|>"
_NUM_TIMESTAMPS = 1501  # <|0.00|> .. <|30.00|> in steps of 0.02 s
_TEXT_CTX = 448  # decoder positions
_AUDIO_CTX = 1500  # encoder positions (30 s after the stride-2 convolution)

# Weight scales that make the random model depend on its audio and decode confidently.
_CONV_GAIN = 16.0  # audio features outweigh the encoder's sinusoidal positions
_CROSS_QUERY_GAIN = 3.0  # sharper cross-attention: the decoder reads a few frames
_POSITION_STD = 0.5  # decoder positions outweigh tokens: steps differ, fewer repeats
_LOGIT_SCALE = 20.0  # final layer-norm gain: the top token gets most of the probability
_TIMESTAMP_SHIFT = 0.4  # shared component of the timestamp embedding rows
_TIMESTAMP_PENALTY = 15.0  # logits taken off every timestamp token

# Cross-attention heads used for word alignment by the real tiny model.
_MULTILINGUAL_ALIGNMENT_HEADS = [[2, 2], [3, 0], [3, 2], [3, 3], [3, 4], [3, 5]]


@dataclass(frozen=True)
class _WhisperDims:
    """Sizes of a Whisper model; the defaults are those of *tiny*."""

    n_mels: int = 80
    d_model: int = 384
    encoder_layers: int = 4
    decoder_layers: int = 4
    heads: int = 6
    ffn: int = 1536


_TINY = _WhisperDims()


@dataclass(frozen=True)
class TestModels:
    """Folders of the generated models, as :func:`ensure_test_models` returns them."""

    __test__ = False  # not a test class, whatever its name says to pytest

    whisper: Path
    whisper_multilingual: Path
    sentiment: Path


def default_data_dir() -> Path:
    """The shared data folder: ``$BELLAD_DATA_DIR``, else ``<repo>/../shared/data``."""
    env = os.environ.get("BELLAD_DATA_DIR")
    return Path(env) if env else _REPO_ROOT.parent / "shared" / "data"


def default_cache_dir() -> Path:
    """The model cache: ``$BELLAD_TEST_MODELS``, else ``<repo>/.cache/test-models``."""
    env = os.environ.get("BELLAD_TEST_MODELS")
    return Path(env) if env else _REPO_ROOT / ".cache" / "test-models"


# --------------------------------------------------------------------------- whisper vocabulary


@dataclass(frozen=True)
class _WhisperVocab:
    """Every token of a generated Whisper model, by id."""

    text: list[str]  # byte-level BPE tokens, ids 0 .. eot - 1
    merges: list[tuple[str, str]]
    specials: list[str]  # <|endoftext|>, <|startoftranscript|>, languages, tasks
    timestamps: list[str]
    multilingual: bool

    @property
    def tokens(self) -> list[str]:
        return self.text + self.specials + self.timestamps

    @property
    def languages(self) -> list[str]:
        return [t for t in self.specials if t not in (_EOT, _SOT, *_TASK_TOKENS)]

    def special_id(self, token: str) -> int:
        return len(self.text) + self.specials.index(token)


def _read_json(path: Path) -> Any:
    with path.open(encoding="utf-8") as f:
        return json.load(f)


def _write_json(path: Path, data: Any) -> None:
    with path.open("w", encoding="utf-8") as f:
        json.dump(data, f, indent=2, ensure_ascii=False)
        f.write("\n")


def _whisper_vocab(tokenizer_dir: Path, *, multilingual: bool) -> _WhisperVocab:
    """Read the English vocabulary and lay out the special tokens after it.

    English-only: the text tokens end at id 50255 and ``<|endoftext|>`` is 50256,
    as in tiny.en. Multilingual: an empty-string token takes id 50256 and every
    special token moves up by one, as in the multilingual models; the text
    tokens stay the English ones.
    """
    vocab: dict[str, int] = _read_json(tokenizer_dir / "vocab.json")
    by_id = {i: t for t, i in vocab.items()}
    text = [by_id[i] for i in range(vocab[_EOT])]
    if multilingual:
        text.append("")
    named = _read_json(tokenizer_dir / "special_tokens_map.json")["additional_special_tokens"]
    languages = [t for t in named if t != _SOT and t not in _TASK_TOKENS]
    with (tokenizer_dir / "merges.txt").open(encoding="utf-8") as f:
        merges = [_merge(line) for line in f if line.strip() and not line.startswith("#")]
    return _WhisperVocab(
        text=text,
        merges=merges,
        specials=[_EOT, _SOT, *languages, *_TASK_TOKENS],
        timestamps=[f"<|{i * 0.02:.2f}|>" for i in range(_NUM_TIMESTAMPS)],
        multilingual=multilingual,
    )


def _merge(line: str) -> tuple[str, str]:
    left, right = line.rstrip("\n").split(" ")
    return left, right


def _whisper_tokenizer(vocab: _WhisperVocab) -> Any:
    """A byte-level BPE ``tokenizers.Tokenizer`` with the special tokens at their ids."""
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, processors

    bpe = models.BPE({t: i for i, t in enumerate(vocab.text)}, vocab.merges)
    tokenizer = Tokenizer(bpe)
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    tokenizer.post_processor = processors.ByteLevel(trim_offsets=False)
    added = vocab.specials + vocab.timestamps
    tokenizer.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in added])
    for token_id, token in enumerate(vocab.tokens):
        if token and tokenizer.token_to_id(token) != token_id:
            raise RuntimeError(f"tokenizer put {token!r} at {tokenizer.token_to_id(token)}")
    return tokenizer


def _whisper_config(tokenizer_dir: Path, vocab: _WhisperVocab) -> dict[str, Any]:
    """The generation settings of the CTranslate2 ``config.json``.

    Taken from tiny.en's ``generation_config.json``; for the multilingual layout the
    special-token ids move up by one and the alignment heads are tiny's.
    """
    gen = _read_json(tokenizer_dir / "generation_config.json")
    first_special = len(vocab.text) - 1 if vocab.multilingual else len(vocab.text)

    def remap(ids: Iterable[int]) -> list[int]:
        if not vocab.multilingual:
            return list(ids)
        return [i + 1 if i >= first_special else i for i in ids]

    heads = _MULTILINGUAL_ALIGNMENT_HEADS if vocab.multilingual else gen["alignment_heads"]
    return {
        "suppress_ids": remap(gen["suppress_tokens"]),
        "suppress_ids_begin": remap(gen["begin_suppress_tokens"]),
        "lang_ids": [vocab.special_id(t) for t in vocab.languages],
        "alignment_heads": [list(h) for h in heads],
    }


# --------------------------------------------------------------------------- whisper weights


def _normal(rng: np.random.Generator, *shape: int, std: float) -> np.ndarray:
    return rng.standard_normal(shape, dtype=np.float32) * np.float32(std)


def _set_linear(spec: Any, rng: np.random.Generator, n_out: int, n_in: int) -> None:
    spec.weight = _normal(rng, n_out, n_in, std=1 / math.sqrt(n_in))
    spec.bias = np.zeros(n_out, dtype=np.float32)


def _set_norm(spec: Any, d: int) -> None:
    spec.gamma = np.ones(d, dtype=np.float32)
    spec.beta = np.zeros(d, dtype=np.float32)


def _set_attention(spec: Any, rng: np.random.Generator, d: int, *, cross: bool) -> None:
    """Self-attention: fused q/k/v, then out. Cross-attention: q, fused k/v, then out."""
    _set_norm(spec.layer_norm, d)
    if cross:
        _set_linear(spec.linear[0], rng, d, d)
        _set_linear(spec.linear[1], rng, 2 * d, d)
    else:
        _set_linear(spec.linear[0], rng, 3 * d, d)
    _set_linear(spec.linear[-1], rng, d, d)


def _set_ffn(spec: Any, rng: np.random.Generator, dims: _WhisperDims) -> None:
    _set_norm(spec.layer_norm, dims.d_model)
    _set_linear(spec.linear_0, rng, dims.ffn, dims.d_model)
    _set_linear(spec.linear_1, rng, dims.d_model, dims.ffn)
    # The hidden units are about N(0, 1) and GELU of that averages 1 / (2 sqrt(pi)):
    # take that mean back out, or every step would share one large output vector.
    gelu_mean = 1 / (2 * math.sqrt(math.pi))
    spec.linear_1.bias = (-gelu_mean * spec.linear_1.weight.sum(axis=1)).astype(np.float32)


def _sinusoids(length: int, channels: int) -> np.ndarray:
    """Fixed sinusoidal positions of the encoder: sines then cosines."""
    increment = math.log(10000) / (channels // 2 - 1)
    inv_timescales = np.exp(-increment * np.arange(channels // 2))
    scaled = np.arange(length)[:, None] * inv_timescales[None, :]
    return np.concatenate([np.sin(scaled), np.cos(scaled)], axis=1).astype(np.float32)


def _fill_encoder(spec: Any, dims: _WhisperDims, rng: np.random.Generator) -> None:
    d = dims.d_model
    spec.conv1.weight = _normal(rng, d, dims.n_mels, 3, std=1 / math.sqrt(3 * dims.n_mels))
    spec.conv1.bias = np.zeros(d, dtype=np.float32)
    spec.conv2.weight = _normal(rng, d, d, 3, std=_CONV_GAIN / math.sqrt(3 * d))
    spec.conv2.bias = np.zeros(d, dtype=np.float32)
    spec.position_encodings.encodings = _sinusoids(_AUDIO_CTX, d)
    for layer in spec.layer:
        _set_attention(layer.self_attention, rng, d, cross=False)
        _set_ffn(layer.ffn, rng, dims)
    _set_norm(spec.layer_norm, d)


def _fill_decoder(
    spec: Any, dims: _WhisperDims, rng: np.random.Generator, *, vocab_size: int
) -> None:
    d = dims.d_model
    embeddings = _normal(rng, vocab_size, d, std=0.02)
    spec.embeddings.weight = embeddings
    spec.projection.weight = embeddings  # tied; saved once, as an alias
    spec.position_encodings.encodings = _normal(rng, _TEXT_CTX, d, std=_POSITION_STD)
    for layer in spec.layer:
        _set_attention(layer.self_attention, rng, d, cross=False)
        _set_attention(layer.attention, rng, d, cross=True)
        layer.attention.linear[0].weight *= np.float32(_CROSS_QUERY_GAIN)
        _set_ffn(layer.ffn, rng, dims)
    _set_norm(spec.layer_norm, d)
    spec.layer_norm.gamma *= np.float32(_LOGIT_SCALE)


def _unit(vector: np.ndarray, *, against: Sequence[np.ndarray] = ()) -> np.ndarray:
    """``vector`` with zero mean, orthogonal to ``against`` (orthonormal), of norm 1.

    Zero mean keeps a layer norm's mean subtraction from leaking it into other
    directions.
    """
    out = vector - vector.mean()
    for other in against:
        out = out - np.dot(out, other) * other
    return (out / np.linalg.norm(out)).astype(np.float32)


def _reserve(spec: Any, directions: Sequence[np.ndarray]) -> None:
    """Make every decoder layer blind to ``directions`` and leave them untouched.

    The layers' input weights lose their component along each direction and
    their output weights stop writing along it, so what the token and position
    embeddings put there reaches the final layer norm as it is.
    """
    for layer in spec.layer:
        readers = (layer.self_attention.linear[0], layer.attention.linear[0], layer.ffn.linear_0)
        writers = (layer.self_attention.linear[1], layer.attention.linear[2], layer.ffn.linear_1)
        for u in directions:
            for linear in readers:
                linear.weight = linear.weight - np.outer(linear.weight @ u, u)
            for linear in writers:
                linear.weight = linear.weight - np.outer(u, u @ linear.weight)


def _steer_decoder(
    spec: Any,
    vocab: _WhisperVocab,
    rng: np.random.Generator,
    *,
    eot_bias: float,
    eot_ramp: float,
) -> None:
    """Make greedy decoding end after a few text tokens.

    * ``<|endoftext|>`` gets ``eot_bias`` logits at every step through the final
      layer-norm bias, which is ``eot_bias * e / |e|^2`` along its embedding row
      ``e`` (the output projection is the token embedding).
    * The decoder positions carry a component along that row that grows by
      ``eot_ramp`` per position; the layers cannot see it, so it pushes
      ``<|endoftext|>`` up a little more at each step until it wins.
    * Timestamp rows share a component that the final bias turns into a
      penalty of ``_TIMESTAMP_PENALTY`` logits, so they are never chosen as text.
    """
    embeddings = spec.embeddings.weight
    eot_row = embeddings[vocab.special_id(_EOT)].copy()
    eot_dir = _unit(eot_row)
    ts_dir = _unit(rng.standard_normal(len(eot_row)), against=[eot_dir])
    first_ts = len(vocab.text) + len(vocab.specials)
    embeddings[first_ts:] += _TIMESTAMP_SHIFT * ts_dir
    _reserve(spec, [eot_dir, ts_dir])
    # Count steps from the first text token: <|startoftranscript|> [language task]
    # <|notimestamps|> come before it.
    first_text = 4 if vocab.multilingual else 2
    steps = np.arange(_TEXT_CTX, dtype=np.float32)[:, None] - (first_text - 1)
    spec.position_encodings.encodings = spec.position_encodings.encodings + (
        eot_ramp * steps * eot_dir[None, :]
    )
    beta = eot_bias * eot_row / np.dot(eot_row, eot_row)
    beta -= (_TIMESTAMP_PENALTY / _TIMESTAMP_SHIFT) * ts_dir
    spec.layer_norm.beta = beta.astype(np.float32)


def build_whisper_model(
    out_dir: Path,
    *,
    tokenizer_dir: Path,
    multilingual: bool = False,
    seed: int = 0,
    eot_ramp: float = DEFAULT_EOT_RAMP,
    eot_bias: float = 0.0,
) -> Path:
    """Write a random-weight Whisper tiny model that ``faster_whisper`` loads offline.

    ``out_dir`` gets ``model.bin`` (int8), ``config.json``, ``vocabulary.json``,
    ``tokenizer.json`` and ``preprocessor_config.json``. ``tokenizer_dir`` holds
    tiny.en's ``vocab.json``, ``merges.txt``, ``special_tokens_map.json``,
    ``generation_config.json`` and ``preprocessor_config.json``.

    Greedy decoding stops when ``<|endoftext|>`` outscores every text token.
    ``eot_ramp`` raises its score at each step. Measured on bellad's 43 test
    clips (greedy, no timestamps), transcripts end after 7 to 9 text tokens with
    the default 1.5, 11 to 13 with 1, 21 to 23 with 0.5, 4 to 5 with 3 and 3
    with 5; with 0 the model rambles to the length limit. ``eot_bias`` adds a
    constant number of logits (negative values delay the end). The first token
    is never ``<|endoftext|>``, which faster-whisper suppresses there.
    Returns ``out_dir``.
    """
    import ctranslate2

    started = time.perf_counter()
    dims = _TINY
    vocab = _whisper_vocab(tokenizer_dir, multilingual=multilingual)
    tokens = vocab.tokens
    rng = np.random.default_rng(seed)
    spec = ctranslate2.specs.WhisperSpec(
        dims.encoder_layers, dims.heads, dims.decoder_layers, dims.heads
    )
    _fill_encoder(spec.encoder, dims, rng)
    _fill_decoder(spec.decoder, dims, rng, vocab_size=len(tokens))
    _steer_decoder(spec.decoder, vocab, rng, eot_bias=eot_bias, eot_ramp=eot_ramp)
    for key, value in _whisper_config(tokenizer_dir, vocab).items():
        setattr(spec.config, key, value)
    spec.register_vocabulary(tokens)
    spec.validate()
    spec.optimize("int8")

    out_dir.mkdir(parents=True, exist_ok=True)
    spec.save(str(out_dir))
    _whisper_tokenizer(vocab).save(str(out_dir / "tokenizer.json"))
    shutil.copyfile(
        tokenizer_dir / "preprocessor_config.json", out_dir / "preprocessor_config.json"
    )
    logger.info(
        "built %s Whisper tiny test model in %s (%.1f MB, %.2f s)",
        "multilingual" if multilingual else "English-only",
        out_dir,
        _folder_size(out_dir) / 1e6,
        time.perf_counter() - started,
    )
    return out_dir


def _folder_size(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.iterdir() if p.is_file())


# --------------------------------------------------------------------------- sentiment

_SENTIMENT_SPECIALS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")
_SENTIMENT_VOCAB_SIZE = 8192
_SENTIMENT_DIM = 64
_SENTIMENT_LABELS = ("NEGATIVE", "POSITIVE")
_WORD = re.compile(r"[^\W_]+|[^\w\s]|_")
_COMBINING_MARK = re.compile(r"[\u0300-\u036f]")
_ONNX_OPSET = 17  # what onnxruntime 1.18, bellad's oldest, runs
_ONNX_IR_VERSION = 8


@dataclass(frozen=True)
class _SentimentVocab:
    tokens: list[str]  # by id: specials, single characters, ##characters, words
    log_odds: np.ndarray  # per token: log P(token | positive) - log P(token | negative)


def _sentiment_vocab(corpus: Path, size: int) -> _SentimentVocab:
    """Words of a ``sentence<TAB>label`` file, most frequent first, and their log-odds.

    Every character seen is in the vocabulary too, alone and as a ``##``
    continuation, so that WordPiece spells out any word it does not know.
    """
    texts: dict[str, list[str]] = {"0": [], "1": []}
    with corpus.open(encoding="utf-8") as f:
        next(f)  # header
        for line in f:
            sentence, _, label = line.rstrip("\n").rpartition("\t")
            texts.get(label, []).append(sentence)
    counts = {label: Counter(_words("\n".join(lines))) for label, lines in texts.items()}
    total = counts["0"] + counts["1"]
    chars = sorted({c for word in total for c in word})
    tokens = [*_SENTIMENT_SPECIALS, *chars, *(f"##{c}" for c in chars)]
    known = set(tokens)
    by_count = sorted(total, key=lambda w: (-total[w], w))
    tokens += [w for w in by_count if w not in known][: max(0, size - len(tokens))]
    neg, pos = (np.array([counts[k][t] for t in tokens], dtype=np.float64) for k in "01")
    log_odds = np.log((pos + 1) / (pos.sum() + len(tokens)))
    log_odds -= np.log((neg + 1) / (neg.sum() + len(tokens)))
    log_odds[: len(_SENTIMENT_SPECIALS)] = 0.0
    return _SentimentVocab(tokens=tokens, log_odds=log_odds.astype(np.float32))


def _words(text: str) -> list[str]:
    """Lowercase words and punctuation marks without accents, as the tokenizer splits text."""
    text = _COMBINING_MARK.sub("", unicodedata.normalize("NFD", text.lower()))
    return _WORD.findall(text)


def _sentiment_tokenizer(tokens: Sequence[str]) -> Any:
    """A lowercasing WordPiece tokenizer that wraps text in ``[CLS] ... [SEP]``."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors

    ids = {t: i for i, t in enumerate(tokens)}
    tokenizer = Tokenizer(models.WordPiece(ids, unk_token="[UNK]"))
    tokenizer.normalizer = normalizers.BertNormalizer(lowercase=True)
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tokenizer.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", ids["[CLS]"]), ("[SEP]", ids["[SEP]"])],
    )
    tokenizer.decoder = decoders.WordPiece(prefix="##")
    tokenizer.add_special_tokens(list(_SENTIMENT_SPECIALS))
    return tokenizer


def _sentiment_graph(vocab: _SentimentVocab, rng: np.random.Generator) -> Any:
    """Embedding lookup, mean over the unmasked tokens, one linear layer.

    Embedding column 0 holds each token's log-odds of being positive and the
    linear layer reads it with opposite signs for the two labels, so plain
    sentiment words score the way one expects; the other columns are random.
    """
    from onnx import TensorProto, helper, numpy_helper

    embeddings = _normal(rng, len(vocab.tokens), _SENTIMENT_DIM, std=0.5)
    embeddings[:, 0] = vocab.log_odds
    weight = _normal(rng, _SENTIMENT_DIM, len(_SENTIMENT_LABELS), std=0.05)
    weight[0] = [-2.0, 2.0]
    constants = {
        "embeddings": embeddings,
        "classifier.weight": weight,
        "classifier.bias": np.zeros(len(_SENTIMENT_LABELS), dtype=np.float32),
        "axis_seq": np.array([1], dtype=np.int64),
        "axis_last": np.array([-1], dtype=np.int64),
        "min_count": np.array(1e-6, dtype=np.float32),
    }
    nodes = [
        helper.make_node("Gather", ["embeddings", "input_ids"], ["embedded"]),
        helper.make_node("Cast", ["attention_mask"], ["mask"], to=TensorProto.FLOAT),
        helper.make_node("Unsqueeze", ["mask", "axis_last"], ["mask3"]),
        helper.make_node("Mul", ["embedded", "mask3"], ["masked"]),
        helper.make_node("ReduceSum", ["masked", "axis_seq"], ["summed"], keepdims=0),
        helper.make_node("ReduceSum", ["mask3", "axis_seq"], ["count"], keepdims=0),
        helper.make_node("Max", ["count", "min_count"], ["safe_count"]),
        helper.make_node("Div", ["summed", "safe_count"], ["pooled"]),
        helper.make_node("MatMul", ["pooled", "classifier.weight"], ["scores"]),
        helper.make_node("Add", ["scores", "classifier.bias"], ["logits"]),
    ]
    ids = helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["batch", "sequence"])
    mask = helper.make_tensor_value_info("attention_mask", TensorProto.INT64, ["batch", "sequence"])
    logits = helper.make_tensor_value_info(
        "logits", TensorProto.FLOAT, ["batch", len(_SENTIMENT_LABELS)]
    )
    graph = helper.make_graph(
        nodes,
        "bellad_test_sentiment",
        [ids, mask],
        [logits],
        initializer=[numpy_helper.from_array(v, name=k) for k, v in constants.items()],
    )
    model = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", _ONNX_OPSET)],
        producer_name="bellad.testmodels",
        producer_version=GENERATOR_VERSION,
    )
    model.ir_version = _ONNX_IR_VERSION
    return model


def build_sentiment_model(
    out_dir: Path,
    *,
    seed: int = 0,
    corpus: Path | None = None,
    vocab_size: int = _SENTIMENT_VOCAB_SIZE,
) -> Path:
    """Write a small ONNX sentiment classifier shaped like a DistilBERT SST-2 export.

    ``out_dir`` gets ``model.onnx`` (inputs ``input_ids`` and ``attention_mask``,
    int64 ``[batch, sequence]``; output ``logits``, float32 ``[batch, 2]``), a
    WordPiece ``tokenizer.json`` whose vocabulary comes from ``corpus`` (a
    ``sentence<TAB>label`` file, by default the shared SST-2 training set) and a
    ``config.json`` with ``id2label`` and ``label2id``. Returns ``out_dir``.
    """
    import onnx

    started = time.perf_counter()
    corpus = corpus or default_data_dir() / "sst2" / "train.tsv"
    vocab = _sentiment_vocab(corpus, vocab_size)
    model = _sentiment_graph(vocab, np.random.default_rng(seed))
    onnx.checker.check_model(model, full_check=True)
    out_dir.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(out_dir / "model.onnx"))
    _sentiment_tokenizer(vocab.tokens).save(str(out_dir / "tokenizer.json"))
    _write_json(out_dir / "config.json", _sentiment_config(len(vocab.tokens)))
    logger.info(
        "built sentiment test model in %s (%d tokens, %.1f MB, %.2f s)",
        out_dir,
        len(vocab.tokens),
        _folder_size(out_dir) / 1e6,
        time.perf_counter() - started,
    )
    return out_dir


def _sentiment_config(vocab_size: int) -> dict[str, Any]:
    return {
        "model_type": "bellad-test-sentiment",
        "generator_version": GENERATOR_VERSION,
        "id2label": {str(i): label for i, label in enumerate(_SENTIMENT_LABELS)},
        "label2id": {label: i for i, label in enumerate(_SENTIMENT_LABELS)},
        "vocab_size": vocab_size,
        "hidden_size": _SENTIMENT_DIM,
        "do_lower_case": True,
    }


# --------------------------------------------------------------------------- cache and command line


def ensure_test_models(
    cache_dir: Path | None = None, *, data_dir: Path | None = None
) -> TestModels:
    """Build the test models once into ``cache_dir`` and return their folders.

    Models live under ``<cache_dir>/v<GENERATOR_VERSION>/`` and are reused by
    later calls. Each is built in a temporary folder next to its final place and
    renamed into it, so concurrent callers never see half a model; when two
    build the same one, the first rename wins and the other build is dropped.
    ``cache_dir`` defaults to :func:`default_cache_dir`, ``data_dir`` (the
    Whisper tokenizer files and SST-2) to :func:`default_data_dir`.
    """
    root = (cache_dir or default_cache_dir()) / f"v{GENERATOR_VERSION}"
    data = data_dir or default_data_dir()
    tokenizer_dir = data / "whisper-tokenizer"
    return TestModels(
        whisper=_cached(
            root / WHISPER_DIRNAME,
            lambda out: build_whisper_model(out, tokenizer_dir=tokenizer_dir),
        ),
        whisper_multilingual=_cached(
            root / WHISPER_MULTILINGUAL_DIRNAME,
            lambda out: build_whisper_model(out, tokenizer_dir=tokenizer_dir, multilingual=True),
        ),
        sentiment=_cached(
            root / SENTIMENT_DIRNAME,
            lambda out: build_sentiment_model(out, corpus=data / "sst2" / "train.tsv"),
        ),
    )


def _cached(target: Path, build: Callable[[Path], Path]) -> Path:
    """``target``, built by ``build`` into a temporary folder first if it is missing."""
    if target.is_dir():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        build(scratch)
        scratch.chmod(0o755)
        try:
            scratch.rename(target)
        except OSError:
            if not target.is_dir():
                raise
            logger.debug("%s was built by another process meanwhile", target)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return target


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m bellad.testmodels``: write test models to a folder."""
    parser = argparse.ArgumentParser(
        prog="python -m bellad.testmodels",
        description="Write bellad's random-weight test models. Without a model "
        "option, all three are written.",
    )
    parser.add_argument("--out", type=Path, required=True, help="folder to write them to")
    parser.add_argument(
        "--whisper", action="store_true", help=f"English-only Whisper tiny, in {WHISPER_DIRNAME}/"
    )
    parser.add_argument(
        "--multilingual",
        action="store_true",
        help=f"multilingual Whisper tiny, in {WHISPER_MULTILINGUAL_DIRNAME}/",
    )
    parser.add_argument(
        "--sentiment", action="store_true", help=f"ONNX sentiment model, in {SENTIMENT_DIRNAME}/"
    )
    parser.add_argument(
        "--data-dir",
        type=Path,
        help="shared data folder (default: $BELLAD_DATA_DIR, else <repo>/../shared/data)",
    )
    parser.add_argument("--seed", type=int, default=0, help="random seed (default: %(default)s)")
    parser.add_argument(
        "--eot-ramp",
        type=float,
        default=DEFAULT_EOT_RAMP,
        help="per-step push towards <|endoftext|>; higher ends transcripts sooner "
        "(default: %(default)s)",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    data = args.data_dir or default_data_dir()
    every = not (args.whisper or args.multilingual or args.sentiment)
    builds: dict[str, Callable[[Path], Path]] = {}
    for name, wanted, multilingual in (
        (WHISPER_DIRNAME, args.whisper, False),
        (WHISPER_MULTILINGUAL_DIRNAME, args.multilingual, True),
    ):
        if wanted or every:
            builds[name] = _whisper_builder(data, args.seed, args.eot_ramp, multilingual)
    if args.sentiment or every:
        corpus = data / "sst2" / "train.tsv"
        builds[SENTIMENT_DIRNAME] = lambda out: build_sentiment_model(
            out, seed=args.seed, corpus=corpus
        )
    for name, build in builds.items():
        target = args.out / name
        if target.exists():
            shutil.rmtree(target)
        print(_cached(target, build))
    return 0


def _whisper_builder(
    data: Path, seed: int, eot_ramp: float, multilingual: bool
) -> Callable[[Path], Path]:
    def build(out: Path) -> Path:
        return build_whisper_model(
            out,
            tokenizer_dir=data / "whisper-tokenizer",
            multilingual=multilingual,
            seed=seed,
            eot_ramp=eot_ramp,
        )

    return build


if __name__ == "__main__":
    raise SystemExit(main())
