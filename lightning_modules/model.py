"""A GPT decoder at any size, the N convention, and safetensors checkpoints.

The model follows nanoGPT's shape: learned position embeddings, pre-LayerNorm blocks with causal
``F.scaled_dot_product_attention``, a tanh-GELU MLP of width 4d, a final LayerNorm and an unembedding tied to the
token embedding. The loss is the mean cross-entropy in nats/token.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"


class CheckpointError(ValueError):
    """A checkpoint folder is missing, incomplete, corrupt or does not match the expected model."""


@dataclass
class GPTConfig:
    """The shape of a GPT decoder."""

    vocab_size: int
    """Number of token ids (the tokenizer's vocabulary size)."""
    context_length: int = 128
    """Longest sequence the model reads (rows of the learned position-embedding table)."""
    n_layer: int = 2
    """Number of transformer blocks."""
    n_head: int = 2
    """Attention heads per block; must divide ``n_embd``."""
    n_embd: int = 64
    """Width d of the residual stream."""
    dropout: float = 0.0
    """Dropout on embeddings, attention and residual branches (0 for the small-data sweeps, as in the paper)."""

    def __post_init__(self) -> None:
        for name in ("vocab_size", "context_length", "n_layer", "n_head", "n_embd"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"GPTConfig.{name} must be a positive integer, got {value!r}")
        if self.n_embd % self.n_head:
            raise ValueError(f"GPTConfig.n_embd ({self.n_embd}) must be divisible by n_head ({self.n_head})")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"GPTConfig.dropout must be in [0, 1), got {self.dropout!r}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> GPTConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown GPTConfig keys {unknown}; known: {sorted(known)}")
        return cls(**data)


PRESETS: dict[str, dict[str, int]] = {
    "1x32": {"n_layer": 1, "n_head": 1, "n_embd": 32},
    "2x32": {"n_layer": 2, "n_head": 2, "n_embd": 32},
    "2x48": {"n_layer": 2, "n_head": 2, "n_embd": 48},
    "2x64": {"n_layer": 2, "n_head": 2, "n_embd": 64},
    "3x96": {"n_layer": 3, "n_head": 3, "n_embd": 96},
    "4x128": {"n_layer": 4, "n_head": 4, "n_embd": 128},
    "6x128": {"n_layer": 6, "n_head": 4, "n_embd": 128},
    "6x256": {"n_layer": 6, "n_head": 8, "n_embd": 256},
    "8x320": {"n_layer": 8, "n_head": 5, "n_embd": 320},
    "6x512": {"n_layer": 6, "n_head": 8, "n_embd": 512},
    "8x512": {"n_layer": 8, "n_head": 8, "n_embd": 512},
    "gpt2-small": {"n_layer": 12, "n_head": 12, "n_embd": 768},
    "gpt2-medium": {"n_layer": 24, "n_head": 16, "n_embd": 1024},
    "gpt2-large": {"n_layer": 36, "n_head": 20, "n_embd": 1280},
    "1b": {"n_layer": 20, "n_head": 16, "n_embd": 2048},
}
"""Named shapes, ``LxD`` = layers x width, from ~1.3e4 (1x32) to ~1.0e9 (1b) non-embedding parameters."""


def preset(name: str, vocab_size: int, context_length: int = 128, dropout: float = 0.0) -> GPTConfig:
    """The GPTConfig of a named shape from PRESETS."""
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; choose one of {', '.join(PRESETS)}")
    return GPTConfig(vocab_size=vocab_size, context_length=context_length, dropout=dropout, **PRESETS[name])


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


def _formula_non_embedding(config: GPTConfig) -> int:
    layers, d = config.n_layer, config.n_embd
    return 12 * layers * d * d + 13 * layers * d + 2 * d


def non_embedding_params(model_or_config: GPT | GPTConfig) -> int:
    """N, the number of non-embedding parameters: THE convention of this project (Kaplan et al. 2020).

    Every parameter except the token-embedding table (V x d) and the position-embedding table (T x d). The
    unembedding is tied to the token embedding, so it is that same table and is not counted again; an untied
    unembedding would count. Biases and LayerNorms count. For our GPT this is ``12*L*d^2 + 13*L*d + 2*d``; a config
    is counted by that formula (no model is built, so 1e9-parameter presets cost nothing), a model by walking
    its parameters.
    """
    if isinstance(model_or_config, GPTConfig):
        return _formula_non_embedding(model_or_config)
    embeddings = {id(model_or_config.wte.weight), id(model_or_config.wpe.weight)}
    return sum(p.numel() for p in model_or_config.parameters() if id(p) not in embeddings)


def total_params(model_or_config: GPT | GPTConfig) -> int:
    """Every parameter, embeddings included, the tied unembedding once."""
    if isinstance(model_or_config, GPTConfig):
        c = model_or_config
        return _formula_non_embedding(c) + (c.vocab_size + c.context_length) * c.n_embd
    return sum(p.numel() for p in model_or_config.parameters())


def save_checkpoint(model: GPT, folder: Path, extra: dict[str, Any] | None = None) -> Path:
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


def load_checkpoint(folder: Path) -> tuple[GPT, dict[str, Any]]:
    """Read a folder written by save_checkpoint; any missing, corrupt or truncated file is a CheckpointError."""
    from safetensors import SafetensorError
    from safetensors.torch import load_model

    folder = Path(folder)
    config_path, weights_path = folder / CONFIG_FILE, folder / WEIGHTS_FILE
    for path in (config_path, weights_path):
        if not path.is_file():
            raise CheckpointError(f"checkpoint {folder} has no {path.name}")
    try:
        meta = json.loads(config_path.read_text())
        config = GPTConfig.from_dict(meta["gpt"])
        extra = meta.get("extra") or {}
    except (ValueError, KeyError, TypeError) as exc:
        raise CheckpointError(f"checkpoint {folder}: unreadable {CONFIG_FILE}: {exc}") from exc
    model = GPT(config)
    try:
        load_model(model, str(weights_path), strict=True)
    except (SafetensorError, OSError, RuntimeError, ValueError) as exc:
        raise CheckpointError(f"checkpoint {folder}: corrupt or truncated {WEIGHTS_FILE}: {exc}") from exc
    return model, extra
