"""A small real DataModule for the plugin tests: stdlib source text as byte-level tokens, with exact digests.

It exposes the attributes the facts callback reads from the project's TokenDataModule (``train_tokens``,
``train_chars``, ``test_tokens``, ``*_digest``, ``corpus_name``).
"""

from __future__ import annotations

import hashlib
import inspect
import math

import lightning as L
import torch
from torch.utils.data import DataLoader, TensorDataset

from transfer_laws.lightning_modules import GPTConfig

CONTEXT = 32
CONFIG = GPTConfig(vocab_size=256, context_length=CONTEXT, n_layer=1, n_head=2, n_embd=32)


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def windows(text: str, batch_size: int, shuffle: bool) -> DataLoader:
    """(x, y) windows of ``CONTEXT`` UTF-8 bytes over ``text``, y shifted by one."""
    ids = torch.tensor(list(text.encode("utf-8")), dtype=torch.long)
    n = (len(ids) - 1) // CONTEXT
    x = ids[: n * CONTEXT].view(n, CONTEXT)
    y = ids[1 : n * CONTEXT + 1].view(n, CONTEXT)
    return DataLoader(TensorDataset(x, y), batch_size=batch_size, shuffle=shuffle)


class PoisonAtStep13(L.Callback):
    """Put a NaN into a weight at step 13 (after the evaluation at step 10), as an overflow would."""

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch: object,
                             batch_idx: int) -> None:
        if trainer.global_step == 13:
            with torch.no_grad():
                pl_module.model.blocks[0].mlp.fc.weight[0, 0] = math.nan


class ByteTextData(L.LightningDataModule):
    """Training text from one stdlib module, test text from another, tokenized as UTF-8 bytes."""

    def __init__(self, corpus_name: str = "stdlib", train_chars: int = 6_000, tokenizer: str = "bytes-v1") -> None:
        super().__init__()
        import json.decoder
        import textwrap

        self.corpus_name = corpus_name
        self._train_text = inspect.getsource(textwrap)[:train_chars]
        self._test_text = inspect.getsource(json.decoder)[:4_000]
        self.tokenizer_digest = _digest(tokenizer.encode())
        self.train_chars = len(self._train_text)
        self.train_tokens = len(self._train_text.encode())
        self.split_tokens = self.train_tokens  # the whole text is its train split
        self.test_tokens = len(self._test_text.encode())
        self.train_digest = _digest(self._train_text.encode())
        self.test_digest = _digest(self._test_text.encode())

    def train_dataloader(self) -> DataLoader:
        return windows(self._train_text, 8, shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return windows(self._test_text, 16, shuffle=False)
