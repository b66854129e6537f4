"""Token streams as short pieces of many documents, and the characters a stream of token ids decodes to.

Why pieces: a budget of a few thousand tokens taken as whole documents is one to four source files, and which
files they are moved a real scratch run's held-out loss by 2.4-6.0% (sd) between data seeds, against 0.1-0.3%
between init seeds (benchmarks/RESULTS.md, "Where the scratch noise comes from"). Cut into pieces of one context
window and taken in a seeded order, even a small budget samples many files (the spread fell to 0.3-1.3%), and the
fixed held-out set covers every test file.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

import numpy as np

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase


def piece_table(lengths: np.ndarray, piece: int,
                rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(document, start, size) of every ``piece``-token piece of every document (a document's last piece may be
    shorter), in the order ``rng`` permutes them."""
    if piece < 1:
        raise ValueError(f"piece must be >= 1, got {piece}")
    lengths = np.asarray(lengths, dtype=np.int64)
    counts = -(-lengths // piece)
    doc = np.repeat(np.arange(lengths.size), counts)
    start = (np.arange(doc.size) - np.repeat(np.cumsum(counts) - counts, counts)) * piece
    size = np.minimum(piece, lengths[doc] - start)
    order = rng.permutation(doc.size)
    return doc[order], start[order], size[order]


class Split(Protocol):
    """A tokenised split: per-chunk id arrays and where each document starts in them."""

    ids: list[np.ndarray]

    def locate(self, docs: np.ndarray) -> tuple[np.ndarray, np.ndarray]: ...


def gather(split: Split, table: tuple[np.ndarray, np.ndarray, np.ndarray], budget: int) -> np.ndarray:
    """The first ``budget`` tokens of the pieces in table order, as one array."""
    doc, start, size = table
    used = int(np.searchsorted(np.cumsum(size), budget, side="left")) + 1  # pieces touched by the budget
    chunk, first = split.locate(doc[:used])
    begin = first + start[:used]
    # Filled in place, not concatenated from a list: a 1e8-token budget is ~800k pieces.
    out = np.empty(int(size[:used].sum()), dtype=split.ids[0].dtype if split.ids else np.uint16)
    at = 0
    for c, b, k in zip(chunk.tolist(), begin.tolist(), size[:used].tolist(), strict=True):
        out[at: at + k] = split.ids[c][b: b + k]
        at += k
    return out[:budget]


def _bytes_to_unicode() -> dict[int, str]:
    """The byte -> character map of byte-level BPE (GPT-2's, which ``tokenizers``' ByteLevel uses)."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    chars = list(printable)
    extra = 0
    for b in range(256):
        if b not in printable:
            printable.append(b)
            chars.append(256 + extra)
            extra += 1
    return dict(zip(printable, map(chr, chars), strict=True))


def chars_per_id(tokenizer: PreTrainedTokenizerBase) -> np.ndarray | None:
    """Characters each id adds to decoded text under a byte-level BPE: its UTF-8 lead bytes, so a character split
    across two pieces counts once; special tokens count 0. None when the tokenizer is not byte-level."""
    byte_of = {c: b for b, c in _bytes_to_unicode().items()}
    vocab: dict[str, int] = tokenizer.get_vocab()
    special = set(tokenizer.all_special_ids)
    table = np.zeros(max(vocab.values()) + 1, dtype=np.int64)
    for token, i in vocab.items():
        if i in special:
            continue
        if any(c not in byte_of for c in token):
            return None
        table[i] = sum((byte_of[c] & 0xC0) != 0x80 for c in token)
    return table


def count_chars(ids: np.ndarray, tokenizer: PreTrainedTokenizerBase, chunk: int = 1 << 20) -> int:
    """Characters ``ids`` decode to (special tokens skipped): by lead bytes under a byte-level BPE, else by
    decoding ``chunk`` ids at a time."""
    table = chars_per_id(tokenizer)
    if table is not None:
        return int(sum(int(table[ids[i: i + chunk]].sum()) for i in range(0, len(ids), chunk)))
    return sum(len(tokenizer.decode(ids[i: i + chunk].tolist(), skip_special_tokens=True))
               for i in range(0, len(ids), chunk))
