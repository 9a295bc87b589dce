"""Train bellad's built-in sentiment model on SST-2 and ship it as ONNX.

Usage (from the repository root, with the ``train`` extra installed)::

    python scripts/train_sentiment.py            # train, export, write bellad/data/sentiment/
    python scripts/train_sentiment.py --dev      # score on the development split, write nothing

The model is an ensemble of small bidirectional GRUs over a subword vocabulary,
trained on every SST-2 row (phrases and sentences, with their own labels) that
the held-out split of ``sst2_split`` leaves on the training side. Each member
embeds the tokens, runs one bidirectional GRU layer, max-pools the outputs over
the real (unpadded) positions and maps them to two logits; the model's logits
are the mean of its members'. Weights ship as int8 with one float scale per
row (the embeddings as int4, two to a byte), and the PyTorch module is loaded
with exactly the dequantized values, so that what is scored here is what
onnxruntime runs in the daemon.

The ONNX graph is written node by node (no exporter), with the interface of the
usual DistilBERT SST-2 export: ``input_ids`` and ``attention_mask`` in, int64,
``[batch, seq]``, right-padded; ``logits`` out, float32, ``[batch, 2]``.
``from_onnx`` reads the weights back into the PyTorch module for the
equivalence test.

Runs are reproducible on one machine: a fixed seed per member, a vocabulary
built without randomness, and a fixed number of threads (``--threads``).
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import random
import sys
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

sys.path.insert(0, str(Path(__file__).resolve().parent))
import sst2_split

log = logging.getLogger(__name__)

REPO = Path(__file__).resolve().parent.parent
OUT = REPO / "bellad" / "data" / "sentiment"
SEED = 20_250_301
SPECIALS = ["[PAD]", "[UNK]", "[CLS]"]
PAD, UNK, CLS = 0, 1, 2
LABELS = ["NEGATIVE", "POSITIVE"]
MASKED = -1.0e4  # fills padded positions before the max-pool; GRU outputs lie in (-1, 1)
OPSET = 17


@dataclass(frozen=True)
class Hyper:
    """Everything that decides the trained weights, besides the data and the seed."""

    vocab_size: int = 8000
    embed: int = 128
    hidden: int = 128
    members: int = 5
    epochs: int = 6
    batch: int = 64
    lr: float = 2e-3
    dropout: float = 0.5


# --- tokenizer ----------------------------------------------------------------


def text_pipeline() -> tuple[Any, Any]:
    """The normalizer and pre-tokenizer: transcripts and SST-2's PTB text meet half-way.

    Lowercase, accents stripped, curly apostrophes and PTB quotes made plain, and
    ``don't`` split as PTB does (``do n't``); then words, ``n't``, ``'s``-like
    clitics and single punctuation marks become the units WordPiece cuts.
    """
    from tokenizers import Regex, normalizers, pre_tokenizers

    normalizer = normalizers.Sequence(
        [
            normalizers.NFKD(),
            normalizers.StripAccents(),
            normalizers.Lowercase(),
            normalizers.Replace("\u2019", "'"),
            normalizers.Replace("``", '"'),
            normalizers.Replace("''", '"'),
            normalizers.Replace(Regex(r"n't\b"), " n't"),
        ]
    )
    pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.WhitespaceSplit(),
            pre_tokenizers.Split(Regex(r"n't|'[a-z]+|[a-z0-9]+|[^\sa-z0-9]"), behavior="isolated"),
        ]
    )
    return normalizer, pre_tokenizer


def words(texts: Sequence[str]) -> list[list[str]]:
    """Each text as the units the tokenizer cuts into word pieces."""
    normalizer, pre_tokenizer = text_pipeline()
    return [
        [w for w, _ in pre_tokenizer.pre_tokenize_str(normalizer.normalize_str(t))] for t in texts
    ]


def piece_counts(vocabulary: Iterator[str], longest: int = 6) -> Counter[str]:
    """In how many distinct words each prefix and ``##``-inner piece (2-6 chars) occurs."""
    counts: Counter[str] = Counter()
    for word in vocabulary:
        pieces = {word[:n] for n in range(2, min(longest, len(word)) + 1)}
        for i in range(1, len(word)):
            pieces.update("##" + word[i : i + n] for n in range(2, min(longest, len(word) - i) + 1))
        counts.update(pieces)
    return counts


def build_vocab(sentences: Sequence[str], size: int, word_share: float = 0.8) -> list[str]:
    """A WordPiece vocabulary, deterministic (the library's trainer is not).

    Special tokens, every character seen (alone and as ``##c``), then the words
    found in at least two sentences, most frequent first, up to ``word_share`` of
    the room left, then the prefixes and inner pieces shared by the most words.
    Ties break alphabetically.
    """
    doc_freq: Counter[str] = Counter()
    for ws in words(sentences):
        doc_freq.update(set(ws))
    chars = sorted({c for w in doc_freq for c in w})
    vocab = SPECIALS + chars + ["##" + c for c in chars]
    seen = set(vocab)

    def add(tokens: Iterator[str], limit: int) -> None:
        for token in tokens:
            if len(vocab) >= limit:
                return
            if token not in seen:
                vocab.append(token)
                seen.add(token)

    ranked = sorted(doc_freq.items(), key=lambda kv: (-kv[1], kv[0]))
    word_limit = len(vocab) + int((size - len(vocab)) * word_share)
    add((w for w, n in ranked if n >= 2), word_limit)
    pieces = piece_counts(iter(sorted(doc_freq)))
    add((p for p, _ in sorted(pieces.items(), key=lambda kv: (-kv[1], kv[0]))), size)
    return vocab


def build_tokenizer(vocab: list[str]) -> Any:
    """A tokenizers-library WordPiece tokenizer that puts ``[CLS]`` first."""
    from tokenizers import Tokenizer, decoders
    from tokenizers.models import WordPiece
    from tokenizers.processors import TemplateProcessing

    tokenizer = Tokenizer(
        WordPiece(
            {t: i for i, t in enumerate(vocab)}, unk_token="[UNK]", max_input_chars_per_word=100
        )
    )
    tokenizer.normalizer, tokenizer.pre_tokenizer = text_pipeline()
    tokenizer.post_processor = TemplateProcessing(
        single="[CLS] $A", special_tokens=[("[CLS]", CLS)]
    )
    tokenizer.decoder = decoders.WordPiece()
    return tokenizer


def encode(tokenizer: Any, texts: Sequence[str]) -> list[list[int]]:
    return [e.ids for e in tokenizer.encode_batch(list(texts))]


# --- model --------------------------------------------------------------------


class Member(nn.Module):
    """Embedding, one bidirectional GRU layer, masked max-pool, two logits."""

    def __init__(self, vocab_size: int, embed: int, hidden: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab_size, embed, padding_idx=PAD)
        self.gru = nn.GRU(embed, hidden, batch_first=True, bidirectional=True)
        self.drop = nn.Dropout(dropout)
        self.out = nn.Linear(2 * hidden, 2)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        lengths = attention_mask.sum(1).cpu()
        x = self.drop(self.embed(input_ids))
        packed = pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
        y, _ = pad_packed_sequence(
            self.gru(packed)[0], batch_first=True, total_length=input_ids.shape[1]
        )
        y = y.masked_fill(attention_mask.unsqueeze(2) == 0, MASKED)
        return self.out(self.drop(y.amax(1)))


class SentimentNet(nn.Module):
    """The shipped model: the mean of its members' logits."""

    def __init__(self, hyper: Hyper, vocab_size: int) -> None:
        super().__init__()
        self.members = nn.ModuleList(
            Member(vocab_size, hyper.embed, hyper.hidden, hyper.dropout)
            for _ in range(hyper.members)
        )

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        logits = [m(input_ids, attention_mask) for m in self.members]
        return torch.stack(logits).sum(0) / len(logits)

    def parts(self) -> list[Member]:
        """The members, typed."""
        return [m for m in self.members if isinstance(m, Member)]


# --- training -----------------------------------------------------------------


def pad_batch(seqs: Sequence[Sequence[int]]) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-padded ``input_ids`` and ``attention_mask``, as the tokenizers library pads."""
    ids = torch.full((len(seqs), max(len(s) for s in seqs)), PAD, dtype=torch.long)
    for i, s in enumerate(seqs):
        ids[i, : len(s)] = torch.tensor(s, dtype=torch.long)
    return ids, (ids != PAD).long()


def batches(lengths: Sequence[int], size: int, rng: random.Random) -> list[list[int]]:
    """Shuffled batches of row indices; rows of similar length go together (less padding)."""
    order = list(range(len(lengths)))
    rng.shuffle(order)
    out = []
    for start in range(0, len(order), size * 50):
        pool = sorted(order[start : start + size * 50], key=lambda i: lengths[i])
        out += [pool[i : i + size] for i in range(0, len(pool), size)]
    rng.shuffle(out)
    return out


def train_member(
    hyper: Hyper, vocab_size: int, ids: list[list[int]], labels: list[int], seed: int
) -> Member:
    """One member, Adam with a one-cycle schedule over ``hyper.epochs`` epochs."""
    torch.manual_seed(seed)
    rng = random.Random(seed)
    member = Member(vocab_size, hyper.embed, hyper.hidden, hyper.dropout)
    opt = torch.optim.Adam(member.parameters(), lr=hyper.lr)
    steps = hyper.epochs * math.ceil(len(ids) / hyper.batch)
    schedule = torch.optim.lr_scheduler.OneCycleLR(opt, hyper.lr, total_steps=steps, pct_start=0.1)
    lengths = [len(s) for s in ids]
    for epoch in range(hyper.epochs):
        member.train()
        started, total = time.monotonic(), 0.0
        for batch in batches(lengths, hyper.batch, rng):
            x, mask = pad_batch([ids[i] for i in batch])
            loss = F.cross_entropy(member(x, mask), torch.tensor([labels[i] for i in batch]))
            opt.zero_grad()
            loss.backward()
            opt.step()
            schedule.step()
            total += loss.item() * len(batch)
        log.info(
            "seed %d epoch %d: loss %.4f (%.0f s)",
            seed,
            epoch + 1,
            total / len(ids),
            time.monotonic() - started,
        )
    return member.eval()


@torch.no_grad()
def positive_probability(model: nn.Module, ids: list[list[int]]) -> np.ndarray:
    """P(positive) for each sequence, in batches of 256."""
    model.eval()
    out = []
    for start in range(0, len(ids), 256):
        x, mask = pad_batch(ids[start : start + 256])
        out.append(F.softmax(model(x, mask), dim=1)[:, 1].numpy())
    return np.concatenate(out)


def accuracy(probs: np.ndarray, labels: Sequence[int]) -> float:
    return float(((probs > 0.5).astype(int) == np.asarray(labels)).mean())


# --- int8 and int4 weights------------------------------------------------------------

# Member weights stored as int8 rows with a float32 scale each (the embeddings, the
# bulk of the file, as int4 rows packed two to a byte); the rest stays float32.
EMBED4 = "embed.weight"
QUANTIZED = (
    "embed.weight",
    "gru.weight_ih_l0",
    "gru.weight_hh_l0",
    "gru.weight_ih_l0_reverse",
    "gru.weight_hh_l0_reverse",
)


def quantize_rows(w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Symmetric int8 per row: ``w ~= q * scale``, scale of shape ``[rows, 1]``."""
    peak = np.abs(w).max(axis=1, keepdims=True)
    scale = np.where(peak > 0, peak / 127.0, 1.0).astype(np.float32)
    q = np.clip(np.rint(w / scale), -127, 127).astype(np.int8)
    return q, scale


def dequantize(q: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """The float32 product onnxruntime computes (Cast, then Mul)."""
    return q.astype(np.float32) * scale.astype(np.float32)


def quantize_rows4(w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Symmetric int4 per row, two values a byte: ``w ~= (nibble - 8) * scale``.

    Byte ``k`` of a row holds value ``2k`` in its low nibble and ``2k + 1`` in
    its high one; a nibble is the value plus 8, in 1..15.
    """
    peak = np.abs(w).max(axis=1, keepdims=True)
    scale = np.where(peak > 0, peak / 7.0, 1.0).astype(np.float32)
    nibbles = (np.clip(np.rint(w / scale), -7, 7) + 8).astype(np.uint8)
    return nibbles[:, 0::2] | (nibbles[:, 1::2] << 4), scale


def unpack4(packed: np.ndarray) -> np.ndarray:
    """The signed values of ``quantize_rows4``'s bytes, as int32 (what the graph computes)."""
    nibbles = np.stack([packed % 16, packed // 16], axis=-1).astype(np.int32)
    return nibbles.reshape(*packed.shape[:-1], -1) - 8


def quantize_member(member: Member) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Quantize in place: the member keeps exactly the dequantized weights."""
    params = dict(member.named_parameters())
    out = {}
    with torch.no_grad():
        for name in QUANTIZED:
            weight = params[name].detach().numpy()
            four = name == EMBED4
            q, scale = quantize_rows4(weight) if four else quantize_rows(weight)
            params[name].copy_(torch.from_numpy(dequantize(unpack4(q) if four else q, scale)))
            out[name] = (q, scale)
    return out


# --- ONNX -------------------------------------------------------------------------


def zrn(a: np.ndarray) -> np.ndarray:
    """PyTorch's GRU gate blocks (r, z, n) in ONNX order (z, r, h); its own inverse."""
    r, z, n = np.split(a, 3, axis=0)
    return np.concatenate([z, r, n], axis=0)


def member_initializers(
    prefix: str, member: Member, quant: dict[str, tuple[np.ndarray, np.ndarray]]
) -> dict[str, np.ndarray]:
    """The ONNX initializers of one member, by name, from ``quantize_member``'s output."""
    state = {k: v.detach().numpy() for k, v in member.state_dict().items()}
    out: dict[str, np.ndarray] = {}
    out[f"{prefix}.embed.q4"], out[f"{prefix}.embed.scale"] = quant[EMBED4]
    for onnx_name, torch_name in (("W", "weight_ih_l0"), ("R", "weight_hh_l0")):
        pairs = [quant[f"gru.{torch_name}{s}"] for s in ("", "_reverse")]
        out[f"{prefix}.gru.{onnx_name}.q"] = np.stack([zrn(q) for q, _ in pairs])
        out[f"{prefix}.gru.{onnx_name}.scale"] = np.stack([zrn(s) for _, s in pairs])
    out[f"{prefix}.gru.B"] = np.stack(
        [
            np.concatenate([zrn(state[f"gru.bias_ih_l0{s}"]), zrn(state[f"gru.bias_hh_l0{s}"])])
            for s in ("", "_reverse")
        ]
    )
    out[f"{prefix}.out.weight"] = state["out.weight"]
    out[f"{prefix}.out.bias"] = state["out.bias"]
    return out


def member_nodes(prefix: str, hidden: int) -> list[Any]:
    """Gather-unpack-dequantize, transpose, bidirectional GRU, masked max-pool, Gemm."""
    from onnx import TensorProto, helper

    p = prefix

    def node(op: str, inputs: list[str], output: str, **attrs: Any) -> Any:
        return helper.make_node(op, inputs, [output], name=output, **attrs)

    return [
        # only the rows of the sentence's tokens are unpacked: [batch, seq, embed / 2] bytes
        node("Gather", [f"{p}.embed.q4", "input_ids"], f"{p}/embed_packed"),
        node("Cast", [f"{p}/embed_packed"], f"{p}/embed_i32", to=TensorProto.INT32),
        node("Mod", [f"{p}/embed_i32", "sixteen"], f"{p}/embed_lo"),
        node("Div", [f"{p}/embed_i32", "sixteen"], f"{p}/embed_hi"),
        node("Unsqueeze", [f"{p}/embed_lo", "axis_last"], f"{p}/embed_lo1"),
        node("Unsqueeze", [f"{p}/embed_hi", "axis_last"], f"{p}/embed_hi1"),
        node("Concat", [f"{p}/embed_lo1", f"{p}/embed_hi1"], f"{p}/embed_pairs", axis=-1),
        node("Reshape", [f"{p}/embed_pairs", "shape_bs_"], f"{p}/embed_nibbles"),
        node("Sub", [f"{p}/embed_nibbles", "eight"], f"{p}/embed_q"),
        node("Cast", [f"{p}/embed_q"], f"{p}/embed_f", to=TensorProto.FLOAT),
        node("Gather", [f"{p}.embed.scale", "input_ids"], f"{p}/embed_scale"),
        node("Mul", [f"{p}/embed_f", f"{p}/embed_scale"], f"{p}/embed"),
        node("Transpose", [f"{p}/embed"], f"{p}/x", perm=[1, 0, 2]),
        *(
            n
            for w in ("W", "R")
            for n in (
                node("Cast", [f"{p}.gru.{w}.q"], f"{p}/{w}_f", to=TensorProto.FLOAT),
                node("Mul", [f"{p}/{w}_f", f"{p}.gru.{w}.scale"], f"{p}/{w}"),
            )
        ),
        node(
            "GRU",
            [f"{p}/x", f"{p}/W", f"{p}/R", f"{p}.gru.B", "lengths"],
            f"{p}/y",
            hidden_size=hidden,
            direction="bidirectional",
            linear_before_reset=1,
        ),
        node("Transpose", [f"{p}/y"], f"{p}/y_bsdh", perm=[2, 0, 1, 3]),
        node("Reshape", [f"{p}/y_bsdh", "shape_bs_"], f"{p}/y_bsh"),
        node("Where", ["mask_3d", f"{p}/y_bsh", "masked"], f"{p}/y_masked"),
        node("ReduceMax", [f"{p}/y_masked"], f"{p}/pooled", axes=[1], keepdims=0),
        node("Gemm", [f"{p}/pooled", f"{p}.out.weight", f"{p}.out.bias"], f"{p}/logits", transB=1),
    ]


def to_onnx(model: SentimentNet, quant: list[dict[str, tuple[np.ndarray, np.ndarray]]]) -> Any:
    """The whole ensemble as an ONNX model with the DistilBERT SST-2 interface.

    ``quant`` holds each member's quantized weights, as ``quantize_member`` returned them.
    """
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    members = model.parts()
    hidden = members[0].gru.hidden_size
    consts: dict[str, np.ndarray] = {
        "axis_1": np.array([1], dtype=np.int64),
        "axis_2": np.array([2], dtype=np.int64),
        "shape_bs_": np.array([0, 0, -1], dtype=np.int64),
        "axis_last": np.array([-1], dtype=np.int64),
        "sixteen": np.array(16, dtype=np.int32),
        "eight": np.array(8, dtype=np.int32),
        "masked": np.array(MASKED, dtype=np.float32),
        "count": np.array(len(members), dtype=np.float32),
    }
    nodes = [
        helper.make_node("Cast", ["attention_mask"], ["mask_bool"], to=TensorProto.BOOL),
        helper.make_node("Unsqueeze", ["mask_bool", "axis_2"], ["mask_3d"]),
        helper.make_node("ReduceSum", ["attention_mask", "axis_1"], ["lengths_64"], keepdims=0),
        helper.make_node("Cast", ["lengths_64"], ["lengths"], to=TensorProto.INT32),
    ]
    for i, member in enumerate(members):
        consts.update(member_initializers(f"m{i}", member, quant[i]))
        nodes += member_nodes(f"m{i}", hidden)
    nodes += [
        helper.make_node("Sum", [f"m{i}/logits" for i in range(len(members))], ["logits_sum"]),
        helper.make_node("Div", ["logits_sum", "count"], ["logits"]),
    ]
    seq = ["batch", "sequence"]
    graph = helper.make_graph(
        nodes,
        "bellad_sentiment",
        [
            helper.make_tensor_value_info(n, TensorProto.INT64, seq)
            for n in ("input_ids", "attention_mask")
        ],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 2])],
        [numpy_helper.from_array(v, name=k) for k, v in consts.items()],
    )
    proto = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", OPSET)],
        producer_name="bellad scripts/train_sentiment.py",
    )
    proto.ir_version = 8
    onnx.checker.check_model(proto, full_check=True)
    return proto


def state_from_onnx(path: Path) -> tuple[Hyper, dict[str, torch.Tensor]]:
    """The PyTorch state (and shapes) of a model written by ``to_onnx``."""
    import onnx
    from onnx import numpy_helper

    init = {t.name: numpy_helper.to_array(t) for t in onnx.load(str(path)).graph.initializer}
    count = sum(1 for name in init if name.endswith(".embed.q4"))
    vocab_size, half = init["m0.embed.q4"].shape
    embed = 2 * half
    hyper = Hyper(
        vocab_size=vocab_size, embed=embed, hidden=init["m0.gru.R.q"].shape[2], members=count
    )
    state: dict[str, np.ndarray] = {}
    for i in range(count):
        p, t = f"m{i}", f"members.{i}"
        state[f"{t}.embed.weight"] = dequantize(
            unpack4(init[f"{p}.embed.q4"]), init[f"{p}.embed.scale"]
        )
        for onnx_name, torch_name in (("W", "weight_ih_l0"), ("R", "weight_hh_l0")):
            full = dequantize(init[f"{p}.gru.{onnx_name}.q"], init[f"{p}.gru.{onnx_name}.scale"])
            for d, suffix in enumerate(("", "_reverse")):
                state[f"{t}.gru.{torch_name}{suffix}"] = zrn(full[d])
        for d, suffix in enumerate(("", "_reverse")):
            bias_ih, bias_hh = np.split(init[f"{p}.gru.B"][d], 2)
            state[f"{t}.gru.bias_ih_l0{suffix}"] = zrn(bias_ih)
            state[f"{t}.gru.bias_hh_l0{suffix}"] = zrn(bias_hh)
        state[f"{t}.out.weight"] = init[f"{p}.out.weight"]
        state[f"{t}.out.bias"] = init[f"{p}.out.bias"]
    return hyper, {k: torch.from_numpy(np.array(v, dtype=np.float32)) for k, v in state.items()}


def load_onnx_as_torch(path: Path) -> SentimentNet:
    """Rebuild the PyTorch module from the weights stored in the ONNX file."""
    hyper, state = state_from_onnx(path)
    model = SentimentNet(hyper, hyper.vocab_size)
    model.load_state_dict(state)
    return model.eval()


# --- the run ----------------------------------------------------------------------


@dataclass
class Trained:
    """A trained, quantized ensemble with its tokenizer."""

    model: SentimentNet
    quant: list[dict[str, tuple[np.ndarray, np.ndarray]]]
    tokenizer: Any
    seconds: float


def train(hyper: Hyper, rows: list[sst2_split.Example], seed: int) -> Trained:
    """Vocabulary from the training sentences, then the members one by one."""
    started = time.monotonic()
    sentences = [r.text for r in sst2_split.full_sentences(rows)]
    tokenizer = build_tokenizer(build_vocab(sentences, hyper.vocab_size))
    ids = encode(tokenizer, [r.text for r in rows])
    labels = [r.label for r in rows]
    vocab_size = tokenizer.get_vocab_size()
    model = SentimentNet(hyper, vocab_size)
    quant = []
    for i in range(hyper.members):
        member = train_member(hyper, vocab_size, ids, labels, seed + i)
        quant.append(quantize_member(member))
        model.members[i] = member
    log.info("trained %d members in %.0f s", hyper.members, time.monotonic() - started)
    return Trained(model.eval(), quant, tokenizer, time.monotonic() - started)


def score_members(trained: Trained, rows: list[sst2_split.Example]) -> list[float]:
    """Accuracy of each member, then of the ensemble (PyTorch, quantized weights)."""
    ids = encode(trained.tokenizer, [r.text for r in rows])
    labels = [r.label for r in rows]
    members = [accuracy(positive_probability(m, ids), labels) for m in trained.model.parts()]
    return [*members, accuracy(positive_probability(trained.model, ids), labels)]


def write_model(out: Path, trained: Trained) -> None:
    """``model.onnx``, ``tokenizer.json`` and ``config.json`` into ``out``."""
    import onnx

    out.mkdir(parents=True, exist_ok=True)
    onnx.save(to_onnx(trained.model, trained.quant), str(out / "model.onnx"))
    trained.tokenizer.save(str(out / "tokenizer.json"))
    member = trained.model.parts()[0]
    config = {
        "architectures": ["BelladBiGruEnsemble"],
        "model_type": "bellad-bigru-ensemble",
        "id2label": {str(i): label for i, label in enumerate(LABELS)},
        "label2id": {label: i for i, label in enumerate(LABELS)},
        "vocab_size": trained.tokenizer.get_vocab_size(),
        "embedding_size": member.embed.embedding_dim,
        "hidden_size": member.gru.hidden_size,
        "members": len(trained.model.members),
        "max_position_embeddings": None,
        "weights": "int4 per row (embeddings), int8 per row (GRU matrices), "
        "float32 biases and output layer",
    }
    (out / "config.json").write_text(json.dumps(config, indent=2) + "\n")


# The architecture comparison behind ``Hyper``, on the development split (see the card).
ALTERNATIVES = """\
| vocabulary | embedding | members | embeddings stored as | model.onnx | scored |
|---|---|---|---|---|---|
| 8,000 | 128 | 4 | int8 | 5.07 MB | held-out 83.7%; over the 5 MB budget with the tokenizer |
| 6,000 | 128 | 4 | int8 | 3.9 MB | development 81.0% (members 81.2, 79.7, 80.4, 80.9); held-out 82.7% |
| 8,000 | 96 | 4 | int8 | 3.9 MB | development 80.0% (members 79.4, 80.5, 80.0, 80.1) |
| 8,000 | 128 | 5 | int4 | 3.8 MB | **shipped**: the figures above |

The development runs train on fewer rows (46,024: the held-out and the
development sentences both leave the training side) on one torch thread, so
their figures sit below the held-out ones. The first two rows were also
scored on the held-out sentences, so the shipped model's held-out figure is
the third look at that slice, not the first: read it as slightly optimistic.
Storing the embeddings as int4 is what let the 8,000-entry vocabulary fit;
the fifth member spends the room it freed.
"""


def write_card(
    out: Path, hyper: Hyper, trained: Trained, split: sst2_split.Split, scores: list[float]
) -> None:
    """``MODEL_CARD.md``, with the figures measured on the files just written."""
    sys.path.insert(0, str(REPO))
    from bench.sentiment import measure  # the benchmark's own measurement (onnxruntime)

    fig = measure(out, split.heldout)
    params = sum(p.numel() for p in trained.model.parameters())
    members = ", ".join(f"{s:.1%}" for s in scores[:-1])
    text = f"""# bellad built-in sentiment model

Binary sentiment (NEGATIVE / POSITIVE) of an English transcript, shipped inside
the package so that a fresh install scores sentiment with no download. Written
by `scripts/train_sentiment.py`; do not edit by hand.

## Architecture
An ensemble of {hyper.members} bidirectional GRUs; the logits are the mean of the members'.
Each member: token embeddings ({hyper.embed}), one bidirectional GRU layer ({hyper.hidden} per
direction), max-pool over the real positions, a linear layer to 2 logits.
{params:,} parameters, stored with a float32 scale per row: the embeddings as int4
(two to a byte, unpacked in the graph for the sentence's tokens only), the GRU
matrices as int8, biases and the output layer as float32. Tokenizer: lowercasing WordPiece,
{trained.tokenizer.get_vocab_size():,} entries, `[CLS]` prepended; contractions split the
Penn Treebank way (`don't` -> `do n't`) so transcripts meet the training text.
ONNX interface of the usual DistilBERT SST-2 export: `input_ids`, `attention_mask`
(int64, [batch, sequence], right-padded, any length >= 1) -> `logits` (float32, [batch, 2]).
Folder size: {fig.size_mb:.2f} MB.

## Data and split
GLUE SST-2 training file (Stanford Sentiment Treebank, movie reviews; 67,349 rows
of sentences and their phrases, each labelled). Full sentences are the rows that
are no contiguous token sub-sequence of a longer row ({len(sst2_split.full_sentences(split.train)) + len(split.heldout):,} of them).
{len(split.heldout):,} of them, those with the smallest SHA-256 of
`"{sst2_split.SALT}" + text`, are held out; every row that occurs inside a held-out
sentence (even one also found in a training sentence) is removed from training,
which leaves {len(split.train):,} rows. See `scripts/sst2_split.py`.

## Measured
| what | figure | target |
|---|---|---|
| accuracy on the {fig.sentences:,} held-out sentences (onnxruntime) | {fig.accuracy:.2%} | >= 83% (goal 85%) |
| accuracy of the members alone (PyTorch) | {members} | |
| median time per sentence, tokenizer included, batch 1, one thread | {fig.median_ms:.3f} ms | <= 1 ms |
| p95 time per sentence | {fig.p95_ms:.3f} ms | |
| training time ({hyper.members} members x {hyper.epochs} epochs, 2 CPU threads) | {trained.seconds / 60:.1f} min | |

For comparison, DistilBERT fine-tuned on SST-2 scores about 91% (on the GLUE dev
set), with about 100 times the parameters. Times were taken on the machine that
trained the model; re-measure with `python -m bench.sentiment`.

## Alternatives tried
Development split: {sst2_split.DEV_SIZE:,} more sentences held out of the training side
the same way (salt `"{sst2_split.DEV_SALT}"`), for choices made without the
held-out sentences. One seed each.

{ALTERNATIVES}
## Limits
Trained on movie-review English; expect lower accuracy on other speech. No neutral
class: the valence is P(positive) - P(negative). Words unseen in training fall
back to word pieces or `[UNK]`.

## Retrain
    pip install -e '.[train]'          # torch and onnx
    python scripts/train_sentiment.py --dev   # development-split figures only
    python scripts/train_sentiment.py         # writes bellad/data/sentiment/
    python -m bench.sentiment

The data folder is `$BELLAD_DATA_DIR` (default `../shared/data`). Fixed seed
({SEED}); the same machine and `--threads` give the same weights.
"""
    (out / "MODEL_CARD.md").write_text(text)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=OUT, help="model folder to write")
    parser.add_argument(
        "--dev",
        action="store_true",
        help="train on the development split, score on it, write nothing",
    )
    parser.add_argument("--members", type=int, default=Hyper.members)
    parser.add_argument("--vocab-size", type=int, default=Hyper.vocab_size)
    parser.add_argument("--embed", type=int, default=Hyper.embed)
    parser.add_argument("--hidden", type=int, default=Hyper.hidden)
    parser.add_argument("--epochs", type=int, default=Hyper.epochs)
    parser.add_argument(
        "--threads", type=int, default=2, help="torch threads (results depend on it)"
    )
    parser.add_argument("--seed", type=int, default=SEED)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    torch.set_num_threads(args.threads)
    hyper = Hyper(
        vocab_size=args.vocab_size,
        embed=args.embed,
        hidden=args.hidden,
        members=args.members,
        epochs=args.epochs,
    )
    split = sst2_split.heldout_split()
    if args.dev:
        split = sst2_split.split(split.train, sst2_split.DEV_SIZE, sst2_split.DEV_SALT)
    trained = train(hyper, split.train, args.seed)
    scores = score_members(trained, split.heldout)
    name = "development" if args.dev else "held-out"
    log.info(
        "%s accuracy: members %s, ensemble %.4f",
        name,
        " ".join(f"{s:.4f}" for s in scores[:-1]),
        scores[-1],
    )
    if args.dev:
        return 0
    write_model(args.out, trained)
    write_card(args.out, hyper, trained, split, scores)
    log.info("wrote %s", args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
