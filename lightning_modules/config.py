"""The training settings every recipe is configured with: torch-free dataclasses (litgpt's ``args.py`` pattern).

``OptimConfig`` (the optimiser and its schedule) and ``TrainConfig`` (how long, where and how a run trains) are one
definition each; the command line builds its flags from them (``scripts/_args.py``) and each recipe keeps its
defaults as instances of them. Nothing here imports torch or Lightning, so ``transfer-laws <command> --help`` and a
parser built for a training command cost no torch import; ``module.py`` and ``train.py`` use these classes.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any


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


def default_from(instance: Any) -> Any:
    """A dataclass field whose default is a fresh copy of ``instance`` (a recipe's defaults, kept as an instance)."""
    return dataclasses.field(default_factory=lambda: dataclasses.replace(instance))
