"""Every setting a run is configured with: torch-free dataclasses (litgpt's ``args.py`` pattern).

``GPTConfig`` (a model's shape, with the named ``PRESETS`` and the non-embedding parameter count N of a shape),
``DataConfig`` (where the data comes from and the exact D_F budget), ``OptimConfig`` (the optimiser and its schedule)
and ``TrainConfig`` (how long, where and how a run trains) are one definition each, with the errors raised on them
(``CheckpointError``, ``BudgetError``). The command line builds its flags from them (``scripts/_args.py``) and each
recipe keeps its defaults as instances of them. Nothing here imports torch or Lightning, so ``transfer-laws
<command> --help``, a parser built for a training command, a preset's N and the checkpoint registry's errors cost no
torch import; ``model.py``, ``data.py``, ``module.py`` and ``train.py`` use these classes.
"""

from __future__ import annotations

import dataclasses
import math
import re
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

_Settings = TypeVar("_Settings", bound="DataclassInstance")


class CheckpointError(ValueError):
    """A checkpoint folder is missing, incomplete, corrupt or does not match the expected model."""


_MODEL_URI = re.compile(r"^models:/(?P<name>[^/@]+)(?:/(?P<version>\d+)|@(?P<alias>[\w-]+))$")


def parse_model_uri(uri: str) -> tuple[str, str | None, str | None]:
    """``models:/name/3`` -> (name, "3", None); ``models:/name@alias`` -> (name, None, alias).

    Torch-free, so the core install's ``lineage`` and the plugin can read a parent URI without the training stack.
    """
    match = _MODEL_URI.match(uri or "")
    if not match:
        raise CheckpointError(f"{uri!r} is not a checkpoint URI: use models:/name/version or models:/name@alias")
    return match["name"], match["version"], match["alias"]


class BudgetError(ValueError):
    """A requested D_F (or test) budget the corpus cannot supply; the message names both sizes."""


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

    def non_embedding_params(self) -> int:
        """N, the number of non-embedding parameters: THE convention of this project (Kaplan et al. 2020).

        Every parameter except the token-embedding table (V x d) and the position-embedding table (T x d). The
        unembedding is tied to the token embedding, so it is that same table and is not counted again; an untied
        unembedding would count. Biases and LayerNorms count. For our GPT (``model.py``) that is
        ``12*L*d^2 + 13*L*d + 2*d``: per block a 3d x d attention projection in, a d x d one out and two d x 4d MLP
        matrices with their biases and two LayerNorms, plus the final LayerNorm. Counted from the shape, so a
        1e9-parameter preset costs no model and no torch; ``model.non_embedding_params`` counts a built model by
        walking its parameters and must agree (tests/test_model.py).
        """
        layers, d = self.n_layer, self.n_embd
        return 12 * layers * d * d + 13 * layers * d + 2 * d

    def total_params(self) -> int:
        """Every parameter: N plus the token and position embeddings, the tied unembedding once."""
        return self.non_embedding_params() + (self.vocab_size + self.context_length) * self.n_embd


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


@dataclass
class DataConfig:
    """Where the data comes from and how it is cut into batches (``data.py`` states how D_F maps to windows)."""

    corpus_dir: Path
    """A folder written by build_corpus (train.jsonl, test.jsonl, manifest.json)."""
    tokenizer_dir: Path
    """A folder written by train_tokenizer (the pretrained checkpoint's tokenizer when fine-tuning)."""
    context_length: int = 128
    """Tokens per training window (the model's context)."""
    batch_size: int = 8
    """Windows per batch, for training and evaluation."""
    d_f_tokens: int | None = None
    """Exact training budget D_F in tokens; None = the whole train split."""
    test_tokens: int | None = 65_536
    """Cap on the held-out test set in tokens (None = the whole test split); the same for every budget."""
    seed: int = 0
    """Seeds the document order of the training stream (and so which tokens form D_F) and the batch shuffling."""
    num_workers: int = 0
    """DataLoader worker processes."""
    cache_dir: Path | None = None
    """`datasets` cache for tokenised splits; None = ``corpus_dir/cache``."""

@dataclass
class OptimConfig:
    """AdamW with linear warmup and cosine decay."""

    lr: float = 1e-3
    """Peak learning rate, reached at the end of warmup."""
    weight_decay: float = 0.01
    """Decoupled weight decay on matrices (biases and LayerNorm weights are not decayed)."""
    betas: tuple[float, float] = (0.9, 0.95)
    """AdamW's moment decay rates."""
    warmup_steps: int = 10
    """Optimizer steps of linear warmup from lr/warmup_steps to lr."""
    min_lr_ratio: float = 0.1
    """The cosine ends at lr * min_lr_ratio at the last scheduled step."""
    grad_clip: float = 1.0
    """Clip the global gradient norm to this value (0 disables clipping)."""

    def __post_init__(self) -> None:
        if not self.lr > 0 or not math.isfinite(self.lr):
            raise ValueError(f"OptimConfig.lr must be a positive number, got {self.lr!r}")
        if self.warmup_steps < 0 or self.grad_clip < 0 or self.weight_decay < 0:
            raise ValueError("OptimConfig.warmup_steps, grad_clip and weight_decay must be >= 0")
        if not 0.0 <= self.min_lr_ratio <= 1.0:
            raise ValueError(f"OptimConfig.min_lr_ratio must be in [0, 1], got {self.min_lr_ratio!r}")
        self.betas = (float(self.betas[0]), float(self.betas[1]))


@dataclass
class TrainConfig:
    """How long and on what a run trains, and when it evaluates and stops."""

    max_steps: int = 1000
    """Upper bound on optimizer steps."""
    max_epochs: int = 50
    """Upper bound on passes over the training set (small D_F is seen many times, as in the paper)."""
    eval_every_steps: int = 10
    """Evaluate the held-out test loss every this many optimizer steps."""
    patience: int = 3
    """Stop after this many evaluations without a new best test loss; the best weights are restored."""
    max_time_s: float | None = None
    """Wall-clock limit on training in seconds (None: no limit)."""
    precision: str = "auto"
    """Lightning precision; auto = bf16-mixed on CUDA (16-mixed on cards without bf16), 32-true on CPU."""
    devices: int | str = "auto"
    """Devices per node, as Lightning takes them (auto: all GPUs, or the CPU)."""
    num_nodes: int = 1
    """Machines in a multi-node DDP job (launched by torchrun or SLURM)."""
    strategy: str = "auto"
    """Lightning strategy; auto is DDP on more than one device."""
    accumulate_grad_batches: int = 1
    """Micro-batches per optimizer step."""
    compile: bool = False
    """torch.compile the GPT before training (helps on GPUs; on CPU it does not pay for its compile time)."""
    log_every_steps: int = 10
    """Send training metrics to the logger every this many steps (one batched request each time)."""
    seed: int = 0
    """Seed of Python, NumPy and torch (data order, dropout) set when the Trainer is built."""

    def __post_init__(self) -> None:
        for name in ("max_steps", "max_epochs", "eval_every_steps", "log_every_steps", "accumulate_grad_batches",
                     "num_nodes"):
            if getattr(self, name) < 1:
                raise ValueError(f"TrainConfig.{name} must be >= 1, got {getattr(self, name)!r}")
        if self.patience < 0:
            raise ValueError(f"TrainConfig.patience must be >= 0, got {self.patience!r}")
        if self.max_time_s is not None and self.max_time_s <= 0:
            raise ValueError(f"TrainConfig.max_time_s must be positive, got {self.max_time_s!r}")


def default_from(instance: _Settings) -> _Settings:
    """A dataclass field whose default is a fresh copy of ``instance`` (a recipe's defaults, kept as an instance)."""
    return dataclasses.field(default_factory=lambda: dataclasses.replace(instance))


def at_least(minimum: float, default: Any = dataclasses.MISSING, *, strict: bool = False,
             maximum: float | None = None, **field_kwargs: Any) -> Any:
    """A dataclass field whose value (each value, for a list) must be >= ``minimum`` (> with ``strict``) and, when
    given, <= ``maximum``.

    The command line checks it when the arguments are built (``scripts/_args.py``), so a bad value is one line and
    exit 2 before any work starts.
    """
    metadata = {**field_kwargs.pop("metadata", {}), "minimum": minimum, "strict": strict, "maximum": maximum}
    if default is dataclasses.MISSING:
        return dataclasses.field(metadata=metadata, **field_kwargs)
    return dataclasses.field(default=default, metadata=metadata, **field_kwargs)


def positive(default: Any = dataclasses.MISSING, *, maximum: float | None = None, **field_kwargs: Any) -> Any:
    """A field that must be > 0 (a size, a budget, a loss), and at most ``maximum`` when given."""
    return at_least(0, default, strict=True, maximum=maximum, **field_kwargs)
