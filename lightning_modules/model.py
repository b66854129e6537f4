"""A GPT decoder at any size, its parameter count, and safetensors checkpoints.

The model follows nanoGPT's shape: learned position embeddings, pre-LayerNorm blocks with causal
``F.scaled_dot_product_attention``, a tanh-GELU MLP of width 4d, a final LayerNorm and an unembedding tied to the
token embedding. The loss is the mean cross-entropy in nats/token. Its shape (``GPTConfig``, ``PRESETS``,
``preset``), the N convention of a shape and ``CheckpointError`` live in the torch-free ``config.py``.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from transfer_laws.lightning_modules.config import CheckpointError, GPTConfig

CheckpointFacts = dict[str, Any]
"""What a checkpoint records beside its weights (``config.json``'s ``extra``): JSON values of many kinds."""
CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"


class _Attention(nn.Module):
    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        self.n_head = config.n_head
        self.dropout = config.dropout
        self.qkv = nn.Linear(config.n_embd, 3 * config.n_embd)
        self.proj = nn.Linear(config.n_embd, config.n_embd)
        self.resid_drop = nn.Dropout(config.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, d = x.shape
        q, k, v = self.qkv(x).split(d, dim=2)
        q, k, v = (z.view(b, t, self.n_head, d // self.n_head).transpose(1, 2) for z in (q, k, v))
        y = F.scaled_dot_product_attention(q, k, v, dropout_p=self.dropout if self.training else 0.0, is_causal=True)
        return self.resid_drop(self.proj(y.transpose(1, 2).reshape(b, t, d)))


class _MLP(nn.Module):
    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        self.fc = nn.Linear(config.n_embd, 4 * config.n_embd)
        self.proj = nn.Linear(4 * config.n_embd, config.n_embd)
        self.drop = nn.Dropout(config.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.drop(self.proj(F.gelu(self.fc(x), approximate="tanh")))


class _Block(nn.Module):
    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        self.ln_1 = nn.LayerNorm(config.n_embd)
        self.attn = _Attention(config)
        self.ln_2 = nn.LayerNorm(config.n_embd)
        self.mlp = _MLP(config)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln_1(x))
        return x + self.mlp(self.ln_2(x))


class GPT(nn.Module):
    """A GPT decoder; ``forward(idx, targets)`` returns ``(logits, mean CE in nats/token or None)``."""

    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        self.config = config
        self.wte = nn.Embedding(config.vocab_size, config.n_embd)
        self.wpe = nn.Embedding(config.context_length, config.n_embd)
        self.drop = nn.Dropout(config.dropout)
        self.blocks = nn.ModuleList(_Block(config) for _ in range(config.n_layer))
        self.ln_f = nn.LayerNorm(config.n_embd)
        self.lm_head = nn.Linear(config.n_embd, config.vocab_size, bias=False)
        self.lm_head.weight = self.wte.weight  # tied: one table, counted once
        self.apply(self._init_weights)
        # GPT-2's scaled init of the projections into the residual stream keeps its variance flat in depth.
        for name, param in self.named_parameters():
            if name.endswith("proj.weight"):
                nn.init.normal_(param, mean=0.0, std=0.02 / math.sqrt(2 * config.n_layer))

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)

    def forward(
        self, idx: torch.Tensor, targets: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        t = idx.shape[1]
        if t > self.config.context_length:
            raise ValueError(f"sequence length {t} exceeds context_length {self.config.context_length}")
        pos = torch.arange(t, device=idx.device)
        x = self.drop(self.wte(idx) + self.wpe(pos))
        for block in self.blocks:
            x = block(x)
        logits = self.lm_head(self.ln_f(x))
        if targets is None:
            return logits, None
        # float32 cross-entropy: bf16 log-softmax over a large vocabulary loses precision in the loss we report.
        loss = F.cross_entropy(logits.float().view(-1, logits.size(-1)), targets.reshape(-1))
        return logits, loss


def non_embedding_params(model_or_config: GPT | GPTConfig) -> int:
    """N as ``GPTConfig.non_embedding_params`` defines it: a config by that formula, a model by walking its
    parameters and leaving out the token- and position-embedding tables (the tied head is the token table)."""
    if isinstance(model_or_config, GPTConfig):
        return model_or_config.non_embedding_params()
    embeddings = {id(model_or_config.wte.weight), id(model_or_config.wpe.weight)}
    return sum(p.numel() for p in model_or_config.parameters() if id(p) not in embeddings)


def total_params(model_or_config: GPT | GPTConfig) -> int:
    """Every parameter, embeddings included, the tied unembedding once."""
    if isinstance(model_or_config, GPTConfig):
        return model_or_config.total_params()
    return sum(p.numel() for p in model_or_config.parameters())


def save_checkpoint(model: GPT, folder: Path, extra: CheckpointFacts | None = None) -> Path:
    """Write ``model.safetensors`` and ``config.json`` (``{"gpt": config, "extra": extra}``) into ``folder``.

    Files are written under temporary names and renamed, so a crash never leaves a half-written checkpoint behind
    a valid name. No pickle is involved.
    """
    from safetensors.torch import save_model

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    payload = json.dumps({"gpt": model.config.to_dict(), "extra": extra or {}}, indent=2, sort_keys=True)
    tmp_weights = folder / (WEIGHTS_FILE + ".tmp")
    tmp_config = folder / (CONFIG_FILE + ".tmp")
    save_model(model, str(tmp_weights))  # de-duplicates the tied table
    tmp_config.write_text(payload)
    os.replace(tmp_weights, folder / WEIGHTS_FILE)
    os.replace(tmp_config, folder / CONFIG_FILE)
    return folder


def load_checkpoint(folder: Path) -> tuple[GPT, CheckpointFacts]:
    """Read a folder written by save_checkpoint; any missing, corrupt or truncated file is a CheckpointError."""
    folder = Path(folder)
    files = {}
    for name in (CONFIG_FILE, WEIGHTS_FILE):
        try:
            files[name] = (folder / name).read_bytes()
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError) as exc:
            raise CheckpointError(f"checkpoint {folder} has no {name}") from exc
        except OSError as exc:
            raise CheckpointError(f"checkpoint {folder}: cannot read {name}: {exc}") from exc
    return checkpoint_from_bytes(files, str(folder))


def checkpoint_from_bytes(files: Mapping[str, bytes], where: str) -> tuple[GPT, CheckpointFacts]:
    """The GPT and its recorded facts from the bytes of ``config.json`` and ``model.safetensors``.

    The one reader of a checkpoint: ``load_checkpoint`` passes a folder's files, the registry passes the bytes it
    has just checked against the manifest, so what was verified is what is loaded and nothing is read twice.
    ``where`` names the checkpoint in errors. Peak memory: the bytes plus one copy of the weights (the GPT is built
    on the meta device and takes the loaded tensors; ``benchmarks/bench_checkpoint_load.py``).
    """
    from safetensors import SafetensorError
    from safetensors.torch import load

    for name in (CONFIG_FILE, WEIGHTS_FILE):
        if name not in files:
            raise CheckpointError(f"checkpoint {where} has no {name}")
    try:
        meta = json.loads(files[CONFIG_FILE])
        config = GPTConfig.from_dict(meta["gpt"])
        extra = meta.get("extra") or {}
    except (ValueError, KeyError, TypeError) as exc:
        raise CheckpointError(f"checkpoint {where}: unreadable {CONFIG_FILE}: {exc}") from exc
    with torch.device("meta"):  # no memory and no random init for weights the checkpoint replaces
        model = GPT(config)
    try:
        _assign_state(model, load(files[WEIGHTS_FILE]))
    except (SafetensorError, RuntimeError, ValueError) as exc:
        raise CheckpointError(f"checkpoint {where}: corrupt or truncated {WEIGHTS_FILE}: {exc}") from exc
    return model, extra


def _assign_state(model: nn.Module, state: dict[str, torch.Tensor]) -> None:
    """Make ``state``'s tensors the parameters of a model built on the meta device, strictly, as
    ``safetensors.torch.load_model(strict=True)`` checks.

    The tensors are used as they are (``assign``), so a load holds one copy of the weights beside the file's bytes,
    not two. ``save_model`` stores a tied table once, under one of its names: every other name of that table is
    pointed at the same parameter again, so the tie survives; a name with no stored alias is missing.
    """
    groups: dict[int, list[str]] = {}
    for name, tensor in model.state_dict(keep_vars=True).items():
        groups.setdefault(id(tensor), []).append(name)
    missing = sorted(name for group in groups.values() if not any(a in state for a in group) for name in group)
    unexpected = sorted(set(state) - {name for group in groups.values() for name in group})
    if missing or unexpected:
        raise RuntimeError(f"state of {type(model).__name__} does not match: missing {missing}, "
                           f"unexpected {unexpected}")
    model.load_state_dict(state, strict=False, assign=True)  # still refuses a tensor of the wrong shape
    for group in groups.values():
        stored = model.get_parameter(next(a for a in group if a in state))
        for alias in group:
            owner, _, attr = alias.rpartition(".")
            setattr(model.get_submodule(owner), attr, stored)
