"""``charlm-transformer``: a small decoder-only character-level transformer on the Debian fortunes.

Text: the fortune cookies of the Debian packages ``fortunes`` and ``fortunes-min`` (Debian 12
"bookworm", version 1:1.99.1-7.3), read from ``/usr/share/games/fortunes`` (``$LRKIT_FORTUNES_DIR``
overrides it). The files read are the 43 named in `FORTUNE_FILES`, in that (sorted) order: every
plain-text file the two packages install there. Not read: the ``.dat`` indexes, the ``.u8``
symlinks, the ``off/`` folder of the offensive fortunes (package ``fortunes-off``) and whatever
other packages add to the folder, so the text does not depend on what else is installed. A
fortune is the text between two lines holding only ``%`` (fortune(6)'s strfile format).

Cleaning: each file is decoded as UTF-8 (``errors="replace"``); nroff overstrikes (a character
followed by a backspace, e.g. ``___\\b\\b\\band`` for an underlined "and") are collapsed to the
character printed last (311 of them), then every character but printable ASCII, tab and newline
is dropped (101 of 2.6 million: bells, a few accented letters, mis-encoded quotes). Restricting
to ASCII keeps the vocabulary small: the 95 printable characters, tab and newline.

Split: the 15 217 non-empty fortunes are split 14 760 / 457 (97 / 3 %) by a permutation seeded
with `SPLIT_SEED` (by fortune, so no fortune is on both sides; the split never depends on the
run seed); each side keeps the files' order and is one stream of fortunes joined by
``"\\n%\\n"`` (2 500 396 and 75 489 characters). The vocabulary is the sorted set of the training
stream's characters plus one unknown id (the last), for characters seen only in validation: 98
ids. Examples are windows of `CONTEXT` characters, ``x = ids[i:i+T]``, ``y = ids[i+1:i+T+1]``:
validation takes every window without overlap or gap (589), training every other one
(`TRAIN_STRIDE` = 2 T: 9 767 windows, half the training text, so an epoch stays near two CPU
minutes; the other half is never used). Building it all takes ≈ 0.3 s, so it is not cached on disk.

Model: GPT-2's decoder (Radford et al. 2019, "Language Models are Unsupervised Multitask
Learners", §2.3; Karpathy's nanoGPT ``model.py`` as the readable reference), pre-LayerNorm:
token + learned position embeddings, `N_LAYERS` blocks of ``x + attn(LN(x))``, ``x + mlp(LN(x))``
(causal multi-head self-attention through ``scaled_dot_product_attention(is_causal=True)``; MLP
d → 4d → GELU → d), a final LayerNorm and an untied linear head (tying would save 12 k of the
0.8 M weights and would put the head's weights in the embedding's layer group). Weights are
initialised as GPT-2's: N(0, 0.02), biases 0, the residual projections N(0, 0.02 / √(2 N)). No
dropout. The logits come out as (batch, vocabulary, time), so ``CrossEntropyLoss()(logits, y)``
with ``y`` of shape (batch, time) is the mean loss per character, unchanged through the training
loop, the evaluation loop and the LR finder.

Metric: the validation cross-entropy in nats per character (lower is better); `perplexity` and
`bits_per_character` convert it. A uniform guess scores ln V.
"""

from __future__ import annotations

import functools
import math
import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F
from torch.utils.data import TensorDataset

from lrkit.tasks.registry import Task, TaskData, register_task
from lrkit.tasks.splits import SPLIT_SEED
from lrkit.validation import fail, in_range, integer

__all__ = ["CharCorpus", "CharTransformer", "Vocabulary", "bits_per_character", "build_corpus", "clean",
           "cross_entropy", "fortunes_corpus", "fortunes_dir", "load_charlm_data", "perplexity", "read_fortunes",
           "split_fortunes", "windows"]

#: Where the Debian packages put the fortunes; ``$LRKIT_FORTUNES_DIR`` overrides it.
FORTUNES_DIR = Path("/usr/share/games/fortunes")
#: The plain-text fortune files of ``fortunes`` and ``fortunes-min`` 1:1.99.1-7.3, read in this order.
FORTUNE_FILES = (
    "art", "ascii-art", "computers", "cookie", "debian", "definitions", "disclaimer", "drugs", "education",
    "ethnic", "food", "fortunes", "goedel", "humorists", "kids", "knghtbrd", "law", "linux", "linuxcookie",
    "literature", "love", "magic", "medicine", "men-women", "miscellaneous", "news", "paradoxum", "people",
    "perl", "pets", "platitudes", "politics", "pratchett", "riddles", "science", "songs-poems", "sports",
    "startrek", "tao", "translate-me", "wisdom", "work", "zippy",
)
#: Fraction of the fortunes held out for validation (≈ 600 windows: the evaluation loop keeps
#: all of a pass's logits, ≈ 30 MB).
VAL_FRACTION = 0.03
#: Characters per example (the model's context length).
CONTEXT = 128
#: Start-to-start distance of the training windows: every other window, so an epoch (306 steps of
#: 32) takes ≈ 140 s on one CPU thread, 80 s on two; the other half of the training text is never used.
TRAIN_STRIDE = 2 * CONTEXT
#: Between two fortunes in a stream (the strfile separator line).
SEPARATOR = "\n%\n"
D_MODEL, N_LAYERS, N_HEADS = 128, 4, 4

_OVERSTRIKE = re.compile(r"[^\x08]\x08")
_NOT_KEPT = re.compile(r"[^\t\n\x20-\x7e]")


def fortunes_dir() -> Path:
    """``$LRKIT_FORTUNES_DIR`` when set, else `FORTUNES_DIR`."""
    return Path(os.environ.get("LRKIT_FORTUNES_DIR") or FORTUNES_DIR)


def clean(text: str) -> str:
    """`text` with overstrikes collapsed and everything but printable ASCII, tab and newline dropped."""
    count = 1
    while count:  # one pass per backspace of a run: "___\b\b\band" -> "__\b\band" -> ... -> "and"
        text, count = _OVERSTRIKE.subn("", text)
    return _NOT_KEPT.sub("", text)


def split_fortunes(text: str) -> list[str]:
    """The fortunes of one strfile text: the pieces between lines that hold only ``%``, without
    their surrounding blank lines; empty pieces are skipped."""
    pieces: list[str] = []
    lines: list[str] = []
    for line in [*text.split("\n"), "%"]:
        if line == "%":
            pieces.append("\n".join(lines).strip("\n"))
            lines = []
        else:
            lines.append(line)
    return [piece for piece in pieces if piece.strip()]


def read_fortunes(directory: Path | None = None, files: tuple[str, ...] = FORTUNE_FILES) -> list[str]:
    """The cleaned fortunes of `files` in `directory` (default `fortunes_dir()`), in file order."""
    directory = fortunes_dir() if directory is None else directory
    if not directory.is_dir():
        raise FileNotFoundError(
            f"charlm-transformer: {directory} not found; it comes from the Debian package 'fortunes': run "
            f"`make system-deps` or `sudo apt-get install fortunes`, or set $LRKIT_FORTUNES_DIR to a copy")
    missing = [name for name in files if not (directory / name).is_file()]
    if missing:
        raise FileNotFoundError(f"charlm-transformer: {directory} lacks the fortune files {missing} of the Debian "
                                f"package 'fortunes' 1:1.99.1-7.3; reinstall it (`sudo apt-get install --reinstall "
                                f"fortunes fortunes-min`)")
    return [fortune for name in files
            for fortune in split_fortunes(clean((directory / name).read_text(encoding="utf-8", errors="replace")))]


@dataclass(frozen=True)
class Vocabulary:
    """Character ids: ``chars[i]`` has id i; `unknown` (= ``len(chars)``) stands for any other character."""

    chars: str

    def __post_init__(self) -> None:
        if list(self.chars) != sorted(set(self.chars)):  # `encode` searches them
            raise fail("Vocabulary", "chars", "distinct characters in code-point order", self.chars)

    @classmethod
    def of(cls, text: str) -> Vocabulary:
        return cls("".join(sorted(set(text))))

    @property
    def unknown(self) -> int:
        return len(self.chars)

    @property
    def size(self) -> int:
        """Number of ids, the unknown one included."""
        return len(self.chars) + 1

    def encode(self, text: str) -> np.ndarray:
        """`text` as an int64 array of ids (vectorised: a binary search of each code point)."""
        known = np.frombuffer(self.chars.encode("utf-32-le"), dtype=np.uint32)
        codes = np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32)
        ids = np.searchsorted(known, codes)
        found = ids < len(known)
        found[found] = known[ids[found]] == codes[found]
        return np.where(found, ids, self.unknown).astype(np.int64)

    def decode(self, ids: np.ndarray | torch.Tensor | list[int]) -> str:
        """The characters of `ids`; the unknown id reads as U+FFFD."""
        return "".join(self.chars[i] if i < self.unknown else "\ufffd" for i in np.asarray(ids).tolist())


def windows(ids: np.ndarray, context: int, stride: int | None = None) -> TensorDataset:
    """Windows of `context` ids every `stride` ids (default `context`: non-overlapping):
    ``x = ids[i:i+T]`` and ``y = ids[i+1:i+T+1]`` for i = 0, stride, 2 stride, ... while ``y`` fits."""
    integer("windows", "context", context, minimum=1)
    stride = context if stride is None else integer("windows", "stride", stride, minimum=1)
    if len(ids) <= context:
        raise fail("windows", "len(ids)", f"> context ({context})", len(ids))
    tokens = torch.from_numpy(np.ascontiguousarray(ids, dtype=np.int64))
    return TensorDataset(tokens[:-1].unfold(0, context, stride), tokens[1:].unfold(0, context, stride))


@dataclass(frozen=True)
class CharCorpus:
    """The split streams, their vocabulary and the window datasets."""

    train_text: str
    val_text: str
    vocab: Vocabulary
    data: TaskData


def build_corpus(fortunes: list[str], val_fraction: float = VAL_FRACTION, context: int = CONTEXT,
                 train_stride: int = TRAIN_STRIDE) -> CharCorpus:
    """Split `fortunes` (fixed seed `SPLIT_SEED`, the validation size rounded up), join each side
    in the given order, build the vocabulary of the training side, and window the training side
    every `train_stride` ids and the validation side without overlap or gap."""
    in_range("build_corpus", "val_fraction", val_fraction, 0.0, 1.0, open_low=True, open_high=True)
    order = np.random.default_rng(SPLIT_SEED).permutation(len(fortunes))
    n_val = math.ceil(val_fraction * len(fortunes))
    val = set(order[:n_val].tolist())
    train_text = SEPARATOR.join(f for i, f in enumerate(fortunes) if i not in val)
    val_text = SEPARATOR.join(f for i, f in enumerate(fortunes) if i in val)
    vocab = Vocabulary.of(train_text)
    data = TaskData(windows(vocab.encode(train_text), context, train_stride),
                    windows(vocab.encode(val_text), context))
    return CharCorpus(train_text, val_text, vocab, data)


@functools.lru_cache(maxsize=1)
def fortunes_corpus() -> CharCorpus:
    """The task's corpus (built once per process, ≈ 0.3 s)."""
    return build_corpus(read_fortunes())


def load_charlm_data(seed: int) -> TaskData:
    """The fixed split (9 767 train / 589 validation windows); `seed` only drives the loader order."""
    return fortunes_corpus().data


# -- the model ----------------------------------------------------------------------------
class CausalSelfAttention(nn.Module):
    """Multi-head self-attention where position t sees positions <= t: one qkv projection,
    ``softmax(q kᵀ / √d_head + causal mask) v`` per head, an output projection."""

    def __init__(self, d_model: int, n_heads: int) -> None:
        super().__init__()
        self.n_heads = integer("CausalSelfAttention", "n_heads", n_heads, minimum=1)
        if integer("CausalSelfAttention", "d_model", d_model, minimum=1) % n_heads:
            raise fail("CausalSelfAttention", "n_heads", f"a divisor of d_model ({d_model})", n_heads)
        self.qkv = nn.Linear(d_model, 3 * d_model)
        self.proj = nn.Linear(d_model, d_model)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, time, width = x.shape
        q, k, v = (t.view(batch, time, self.n_heads, width // self.n_heads).transpose(1, 2)
                   for t in self.qkv(x).split(width, dim=2))
        out = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        return self.proj(out.transpose(1, 2).reshape(batch, time, width))


class Block(nn.Module):
    """A pre-LayerNorm transformer block: ``x + attn(LN(x))`` then ``x + mlp(LN(x))``."""

    def __init__(self, d_model: int, n_heads: int) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(d_model)
        self.attn = CausalSelfAttention(d_model, n_heads)
        self.norm2 = nn.LayerNorm(d_model)
        self.mlp = nn.Sequential(nn.Linear(d_model, 4 * d_model), nn.GELU(), nn.Linear(4 * d_model, d_model))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class CharTransformer(nn.Module):
    """A GPT-2-style decoder: ``(batch, time)`` ids -> ``(batch, vocab_size, time)`` logits.

    Named parts, input side first (`lrkit.torch.layer_groups` cuts between them):
    ``token_embedding``, ``position_embedding``, ``blocks.0`` ... ``blocks.{n_layers-1}``,
    ``norm``, ``head``.
    """

    def __init__(self, vocab_size: int, context: int = CONTEXT, d_model: int = D_MODEL, n_layers: int = N_LAYERS,
                 n_heads: int = N_HEADS) -> None:
        super().__init__()
        owner = "CharTransformer"
        self.context = integer(owner, "context", context, minimum=1)
        self.token_embedding = nn.Embedding(integer(owner, "vocab_size", vocab_size, minimum=1), d_model)
        self.position_embedding = nn.Embedding(context, d_model)
        self.blocks = nn.ModuleList(Block(d_model, n_heads)
                                    for _ in range(integer(owner, "n_layers", n_layers, minimum=1)))
        self.norm = nn.LayerNorm(d_model)
        self.head = nn.Linear(d_model, vocab_size)
        for module in self.modules():
            if isinstance(module, (nn.Linear, nn.Embedding)):
                nn.init.normal_(module.weight, std=0.02)
            if isinstance(module, nn.Linear):
                nn.init.zeros_(module.bias)
        for name, parameter in self.blocks.named_parameters():  # the projections into the residual stream
            if name.endswith(("attn.proj.weight", "mlp.2.weight")):
                nn.init.normal_(parameter, std=0.02 / math.sqrt(2 * n_layers))

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        time = ids.shape[1]
        if time > self.context:
            raise fail("CharTransformer", "input length", f"<= context ({self.context})", time)
        x = self.token_embedding(ids) + self.position_embedding(torch.arange(time, device=ids.device))
        for block in self.blocks:
            x = block(x)
        return self.head(self.norm(x)).transpose(1, 2)


def charlm_transformer() -> CharTransformer:
    """The task's model: `N_LAYERS` blocks, width `D_MODEL`, `N_HEADS` heads, context `CONTEXT`."""
    return CharTransformer(fortunes_corpus().vocab.size)


# -- the metric ---------------------------------------------------------------------------
def cross_entropy(outputs: torch.Tensor, targets: torch.Tensor) -> float:
    """Mean cross-entropy in nats per character of (batch, vocab, time) logits against (batch, time) ids."""
    return F.cross_entropy(outputs, targets).item()


def perplexity(loss: float) -> float:
    """``exp(loss)`` for a loss in nats per character: the effective number of equally likely next
    characters (a uniform model over V ids scores V)."""
    return math.exp(loss)


def bits_per_character(loss: float) -> float:
    """``loss / ln 2``: a loss in nats per character in bits per character."""
    return loss / math.log(2)


register_task(Task(
    name="charlm-transformer",
    description=f"GPT-style character transformer ({N_LAYERS} layers, d={D_MODEL}, context {CONTEXT}) on the Debian "
                "fortunes split 97 / 3 % by fortune; an epoch is every other window of the 2.5 M training characters "
                "(9 767), validation 589 windows; metric: validation nats per character",
    build_model=charlm_transformer, load_data=load_charlm_data, criterion=nn.CrossEntropyLoss,
    metric=cross_entropy, metric_name="val_loss", higher_is_better=False, batch_size=32, epochs=4,
    family="transformer"))
