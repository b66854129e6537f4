"""TokenDataModule: exact, nested D_F token budgets and a fixed held-out test set, through `datasets`.

How D_F maps to training windows (the convention every run records):
1. Each split's documents are tokenised once with `datasets` (Arrow, memory-mapped, cached; ids stored as uint16
   when the vocabulary fits, else uint32), each document followed by one ``<|endoftext|>`` (eos) token.
2. Every training document is cut into pieces of ``context_length`` tokens (its last piece may be shorter); the
   pieces of all documents are ordered by a permutation seeded with ``DataConfig.seed`` and concatenated into one
   flat stream. D_F is the first ``d_f_tokens`` tokens of that stream, so a smaller budget is a prefix of a larger
   one (nested) and runs of a sweep differ only in size. Pieces, not whole documents, so that a budget of a few
   thousand tokens samples many files rather than one or two (``_pieces.py`` says what that changed).
3. The D_F tokens are cut into windows of ``context_length + 1`` tokens that overlap by one token (the last target
   of a window is the first input of the next): window i holds tokens [i*C, i*C + C]. That gives
   ceil((D_F - 1) / C) windows; the last one is shorter when (D_F - 1) is not a multiple of C and is padded (inputs
   with eos, targets with -100, which the loss ignores). Every one of the D_F tokens is used, none twice as a
   target: ``train_tokens == d_f_tokens`` exactly, with D_F - 1 next-token targets per epoch.
4. ``train_chars`` counts the characters those tokens decode to, eos tokens 0: the whole split counts its
   documents' text length; a budget counts each character once, in the piece that holds its first byte.
5. The test set is the test split's pieces in an order fixed per corpus (seed ``TEST_ORDER_SEED``, independent of
   the run's seed and budget), capped at ``test_tokens`` tokens, windowed the same way, never shuffled: a capped
   set covers every test document, not the first few.
6. Under DDP or FSDP (R processes) ``batch_size`` stays the global batch: each rank reads ``batch_size / R`` windows
   per step, so a run's steps, schedule and D_F mean the same on any number of devices. Every window of an epoch
   (and of the test set) is read by exactly one rank, none twice (``distributed.ShardSampler``).

Several processes (DDP ranks, nodes sharing a file system, concurrent runs of a sweep) may set up the same corpus
at once: a file lock per split in the cache folder lets the first one tokenise while the others wait and then read
its cache, so a split is tokenised once, not once per rank.

``DataConfig`` (the settings above) and ``BudgetError`` live in the torch-free ``config.py`` and are re-exported
here.
"""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path
from typing import TYPE_CHECKING

import lightning as L
import numpy as np
import torch
from filelock import FileLock
from torch.utils.data import DataLoader, Dataset

from transfer_laws.lightning_modules._pieces import count_chars, gather, piece_table
from transfer_laws.lightning_modules.config import BudgetError, DataConfig
from transfer_laws.lightning_modules.distributed import EMPTY_WINDOW, ShardSampler, process_group
from transfer_laws.lightning_modules.tokenizer import load_tokenizer, tokenizer_digest

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

IGNORE_INDEX = -100
TEST_ORDER_SEED = 0
"""Seed of the held-out pieces' order: the same for every run seed and budget, so the test set is fixed."""


class WindowDataset(Dataset):
    """(x, y) windows over a flat token stream, as described in the module docstring."""

    def __init__(self, tokens: np.ndarray, context_length: int, pad_id: int) -> None:
        self.tokens = tokens
        self.context = context_length
        self.pad_id = pad_id
        self.n = max(0, math.ceil((len(tokens) - 1) / context_length))

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        x = torch.full((self.context,), self.pad_id, dtype=torch.long)
        y = torch.full((self.context,), IGNORE_INDEX, dtype=torch.long)
        if i == EMPTY_WINDOW:  # a ShardSampler's padding: nothing to predict, nothing counted
            return x, y
        if not 0 <= i < self.n:
            raise IndexError(i)
        chunk = torch.from_numpy(self.tokens[i * self.context: i * self.context + self.context + 1].astype(np.int64))
        x[: len(chunk) - 1] = chunk[:-1]
        y[: len(chunk) - 1] = chunk[1:]
        return x, y


class _SplitTokens:
    """A tokenised split as per-chunk views of its memory-mapped Arrow table: document d's ids without a copy."""

    def __init__(self, ids: list[np.ndarray], offsets: list[np.ndarray], n_chars: np.ndarray) -> None:
        self.ids, self.offsets, self.n_chars = ids, offsets, n_chars
        self.lengths = np.concatenate([np.diff(o) for o in offsets]) if offsets else np.zeros(0, dtype=np.int64)
        self._first_doc = np.cumsum([0] + [len(o) - 1 for o in offsets])  # first document index of each chunk

    def doc(self, d: int) -> np.ndarray:
        """Document ``d``'s ids (its eos included)."""
        chunk = int(np.searchsorted(self._first_doc, d, side="right")) - 1
        i = d - int(self._first_doc[chunk])
        return self.ids[chunk][self.offsets[chunk][i]: self.offsets[chunk][i + 1]]

    def locate(self, docs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(chunk, offset of the document's first id in that chunk) for each document index, vectorised."""
        chunk = np.searchsorted(self._first_doc, docs, side="right") - 1
        starts = np.concatenate([o[:-1] for o in self.offsets]) if self.offsets else np.zeros(0, dtype=np.int64)
        return chunk, starts[docs]


def _digest(tok_digest: str, tokens: np.ndarray) -> str:
    h = hashlib.sha256(tok_digest.encode())
    h.update(str(tokens.dtype).encode())
    h.update(np.ascontiguousarray(tokens).data)  # a memoryview, no copy: a 1e8-token stream is hashed in place
    return h.hexdigest()


class TokenDataModule(L.LightningDataModule):
    """Exact D_F-token training windows and the fixed held-out test set of a corpus (see the module docstring)."""

    def __init__(self, config: DataConfig) -> None:
        super().__init__()
        self.config = config
        self.train_tokens: int | None = None
        self.split_tokens: int | None = None
        """Tokens in the whole train split (the largest budget it can supply), known after ``setup``."""
        self.train_chars: int | None = None
        self.test_tokens: int | None = None
        self.train_digest: str | None = None
        self.test_digest: str | None = None
        self.tokenizer_digest: str | None = None
        self.corpus_name: str | None = None
        self.corpus_digest: str | None = None
        self.vocab_size: int | None = None
        self.tokenised_here: dict[str, bool] = {}
        """Per split: True when this process tokenised it, False when it read the cache another one wrote."""
        self._train: WindowDataset | None = None
        self._test: WindowDataset | None = None

    def setup(self, stage: str | None = None) -> None:
        """Tokenise (cached) and cut the exact budget; raises BudgetError when D_F exceeds the train split."""
        if self._train is not None:
            return
        cfg = self.config
        if cfg.context_length < 1 or cfg.batch_size < 1:
            raise ValueError("context_length and batch_size must be >= 1")
        if cfg.d_f_tokens is not None and cfg.d_f_tokens < 2:
            raise BudgetError(f"d_f_tokens must be at least 2 (one input and one target), got {cfg.d_f_tokens}")
        corpus_dir = Path(cfg.corpus_dir)
        manifest_path = corpus_dir / "manifest.json"
        if not manifest_path.is_file():
            raise FileNotFoundError(f"{corpus_dir} is not a built corpus (no manifest.json): run build_corpus first")
        manifest = json.loads(manifest_path.read_text())
        self.corpus_name = str(manifest["name"])
        self.corpus_digest = str(manifest["digest"])
        tokenizer = load_tokenizer(cfg.tokenizer_dir)
        self.tokenizer_digest = tokenizer_digest(Path(cfg.tokenizer_dir))
        self.vocab_size = len(tokenizer)
        eos = int(tokenizer.eos_token_id)

        split = self._tokenised("train", tokenizer, eos)
        pieces = piece_table(split.lengths, cfg.context_length, np.random.default_rng(cfg.seed))
        total = int(split.lengths.sum())
        budget = total if cfg.d_f_tokens is None else int(cfg.d_f_tokens)
        if budget > total:
            raise BudgetError(f"d_f_tokens={budget:,} is larger than the train split of {self.corpus_name!r} "
                              f"({total:,} tokens in {len(split.lengths):,} documents under this tokenizer)")
        train = gather(split, pieces, budget)
        chars = int(split.n_chars.sum()) if budget == total else count_chars(train, tokenizer)
        self.train_tokens, self.train_chars, self.split_tokens = budget, chars, total

        test_split = self._tokenised("test", tokenizer, eos)
        test_total = int(test_split.lengths.sum())
        test_pieces = piece_table(test_split.lengths, cfg.context_length, np.random.default_rng(TEST_ORDER_SEED))
        test = gather(test_split, test_pieces, test_total if cfg.test_tokens is None
                      else min(test_total, int(cfg.test_tokens)))
        if len(test) < 2:
            raise BudgetError(f"the test split of {self.corpus_name!r} has {test_total} tokens; need at least 2")
        self.test_tokens = len(test)
        self.train_digest = _digest(self.tokenizer_digest, train)
        self.test_digest = _digest(self.tokenizer_digest, test)
        self._train = WindowDataset(train, cfg.context_length, eos)
        self._test = WindowDataset(test, cfg.context_length, eos)

    def _tokenised(self, split: str, tokenizer: PreTrainedTokenizerBase, eos: int) -> _SplitTokens:
        """A split's token ids per document and characters per document, tokenised once and cached."""
        import datasets
        import pyarrow.compute as pc

        cfg = self.config
        cache = Path(cfg.cache_dir) if cfg.cache_dir is not None else Path(cfg.corpus_dir) / "cache"
        dtype = "uint16" if len(tokenizer) <= 1 << 16 else "uint32"
        features = datasets.Features({"input_ids": datasets.Sequence(datasets.Value(dtype)),
                                      "n_chars": datasets.Value("int64")})
        key = hashlib.sha256(f"{self.corpus_digest}:{self.tokenizer_digest}:{split}:v1".encode()).hexdigest()[:16]

        def encode(batch: dict[str, list[str]]) -> dict[str, list]:
            encoded = tokenizer(batch["text"], add_special_tokens=False)["input_ids"]
            return {"input_ids": [x + [eos] for x in encoded], "n_chars": [len(t) for t in batch["text"]]}

        cache.mkdir(parents=True, exist_ok=True)
        with FileLock(str(cache / f"tokenise-{key}.lock")):  # one process tokenises; the others wait, then read
            raw = datasets.load_dataset("json", data_files=str(Path(cfg.corpus_dir) / f"{split}.jsonl"),
                                        split="train", cache_dir=str(cache))
            # datasets names a map's cache "cache-<fingerprint>[_<shard>_of_<n>].arrow" next to the raw dataset's
            folder = Path(raw.cache_files[0]["filename"]).parent
            self.tokenised_here[split] = not any(folder.glob(f"cache-{key}*.arrow"))
            num_proc = 2 if raw.data.nbytes > 50_000_000 else None  # processes pay off on big corpora
            tokenised = raw.map(encode, batched=True, batch_size=256, remove_columns=raw.column_names,
                                features=features, new_fingerprint=key, num_proc=num_proc, desc=f"tokenising {split}")
        # Views of the memory-mapped Arrow chunks, not combine_chunks(): that would copy the whole split into RAM.
        chunks = tokenised.data.column("input_ids").chunks
        ids = [pc.list_flatten(c).to_numpy(zero_copy_only=False) for c in chunks]  # uint ids, no nulls: no copy
        offsets = [c.offsets.to_numpy() - c.offsets[0].as_py() for c in chunks]  # a slice's offsets start above 0
        n_chars = tokenised.data.column("n_chars").to_numpy()
        return _SplitTokens(ids, offsets, n_chars)

    def train_dataloader(self) -> DataLoader:
        """Shuffled (seeded) windows of exactly D_F tokens; this rank's share under DDP/FSDP."""
        if self._train is None:
            self.setup("fit")
        train = self._train
        if train is None:
            raise RuntimeError("TokenDataModule.setup('fit') built no training windows")
        rank, world = process_group()
        if world > 1:
            return self._sharded(train, rank, world, shuffle=True)
        generator = torch.Generator().manual_seed(self.config.seed)
        return DataLoader(train, batch_size=self.config.batch_size, shuffle=True, generator=generator,
                          num_workers=self.config.num_workers, drop_last=False, pin_memory=_pin())

    def val_dataloader(self) -> DataLoader:
        """The fixed held-out test set, in order; this rank's share under DDP/FSDP (summed over ranks)."""
        if self._test is None:
            self.setup("fit")
        test = self._test
        if test is None:
            raise RuntimeError("TokenDataModule.setup('fit') built no held-out windows")
        rank, world = process_group()
        if world > 1:
            return self._sharded(test, rank, world, shuffle=False)
        return DataLoader(test, batch_size=self.config.batch_size, shuffle=False,
                          num_workers=self.config.num_workers, pin_memory=_pin())

    def _sharded(self, data: WindowDataset, rank: int, world: int, *, shuffle: bool) -> DataLoader:
        per_rank = per_rank_batch(self.config.batch_size, world)
        sampler = ShardSampler(len(data), world, rank, batch_size=per_rank, shuffle=shuffle, seed=self.config.seed)
        return DataLoader(data, batch_size=per_rank, sampler=sampler, num_workers=self.config.num_workers,
                          drop_last=False, pin_memory=_pin())

    def test_dataloader(self) -> DataLoader:
        """Same as ``val_dataloader``."""
        return self.val_dataloader()


def per_rank_batch(batch_size: int, world_size: int) -> int:
    """Windows per rank and step for a global ``batch_size``; it must divide evenly (a clear error otherwise)."""
    if batch_size % world_size:
        raise ValueError(f"--batch-size {batch_size} is the global batch and must be divisible by the "
                         f"{world_size} processes of this job (each reads batch_size / {world_size} windows)")
    return batch_size // world_size


def _pin() -> bool:
    # Lightning copies batches with non_blocking=True, which is only asynchronous from pinned memory: a pageable
    # batch's copy blocks the host behind the GPU's queued work, a sync per step.
    return torch.cuda.is_available()
