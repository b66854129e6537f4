"""Our byte-level BPE: trained with `tokenizers` on a corpus' train split, saved as a PreTrainedTokenizerFast folder.

Byte-level means every UTF-8 byte has a token, so any text (code, unicode) round-trips exactly. The digest is the
sha256 of the saved tokenizer.json: losses are only comparable between runs with the same digest.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

EOS = "<|endoftext|>"


@dataclass(frozen=True)
class TokenizerInfo:
    """A saved tokenizer: its folder, the sha256 of its tokenizer.json, and its vocabulary size."""

    path: Path
    digest: str
    vocab_size: int


def tokenizer_digest(path: Path) -> str:
    """sha256 of ``path/tokenizer.json``'s bytes."""
    return hashlib.sha256((Path(path) / "tokenizer.json").read_bytes()).hexdigest()


def _texts(corpus_dir: Path, max_bytes: int | None, split: str = "train") -> Iterator[str]:
    used = 0
    with (Path(corpus_dir) / f"{split}.jsonl").open(encoding="utf-8") as fh:
        for line in fh:
            text = json.loads(line)["text"]
            yield text
            used += len(text.encode())
            if max_bytes is not None and used >= max_bytes:
                return


def train_tokenizer(corpus_dir: Path, out_dir: Path, *, vocab_size: int = 2048,
                    max_bytes: int | None = 10_000_000) -> TokenizerInfo:
    """Train a byte-level BPE of ``vocab_size`` tokens on the first ``max_bytes`` of ``corpus_dir``'s train split.

    ``<|endoftext|>`` is the only special token and serves as eos, bos and pad. Saved to ``out_dir`` as
    tokenizer.json + tokenizer_config.json (loadable with ``AutoTokenizer`` or :func:`load_tokenizer`).
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    if not (Path(corpus_dir) / "train.jsonl").is_file():
        raise FileNotFoundError(f"{corpus_dir} has no train.jsonl: build it with build_corpus first")
    if not 257 <= vocab_size <= 1 << 20:
        raise ValueError(f"vocab_size must be in [257, 2**20] (256 bytes + eos at least), got {vocab_size}")
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, min_frequency=2, special_tokens=[EOS],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(_texts(corpus_dir, max_bytes), trainer=trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token=EOS, eos_token=EOS, unk_token=EOS, pad_token=EOS)
    out_dir = Path(out_dir)
    fast.save_pretrained(str(out_dir))
    return TokenizerInfo(out_dir, tokenizer_digest(out_dir), len(fast))


def load_tokenizer(path: Path) -> PreTrainedTokenizerBase:
    """Load a saved tokenizer folder as a transformers fast tokenizer (offline; no hub access)."""
    from transformers import AutoTokenizer

    if not (Path(path) / "tokenizer.json").is_file():
        raise FileNotFoundError(f"{path} is not a tokenizer folder (no tokenizer.json): train one with train_tokenizer")
    return AutoTokenizer.from_pretrained(str(path), local_files_only=True)


def tokens_per_char(tokenizer: PreTrainedTokenizerBase, corpus_dir: Path, *, split: str = "test",
                    max_bytes: int | None = 2_000_000) -> float:
    """Tokens per character of ``tokenizer`` on ``corpus_dir``'s split (lower = better compression)."""
    texts = list(_texts(corpus_dir, max_bytes, split))
    if not texts:
        raise ValueError(f"{corpus_dir}/{split}.jsonl is empty")
    ids = tokenizer(texts, add_special_tokens=False)["input_ids"]
    return sum(len(x) for x in ids) / sum(len(t) for t in texts)
