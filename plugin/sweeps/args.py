"""The arguments of ``transfer-laws sweep`` (and of its ``--tune-lr`` search)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from transfer_laws.lightning_modules.config import OptimConfig, TrainConfig, default_from, positive
from transfer_laws.plugin.recipes import scratch
from transfer_laws.plugin.recipes.args import DataArgs, RefitArgs, StoreArgs, TokenizerArgs
from transfer_laws.registry.records import MAX_D
from transfer_laws.registry.schema import DEMO_CHECKPOINT_TEMPLATE, ROLE_FINETUNE, ROLE_SCRATCH


@dataclass(kw_only=True)
class LrTuning:
    """Learning-rate tuning per (size, role) before the grid runs (``--tune-lr``)."""

    trials: int = 6
    """Finished (complete or pruned) tuning trials per (size, role); concurrent workers may add one each."""
    low: float = 1e-4
    """Lowest peak learning rate tried (log-uniform between low and high)."""
    high: float = 3e-2
    """Highest peak learning rate tried."""
    first: list[float] = field(default_factory=list)
    """Learning rates tried first (e.g. the recipe's default), before TPE samples."""
    d_f_tokens: int | None = None
    """Training tokens of a tuning run (None: the grid's largest D_F)."""
    max_steps: int | None = None
    """Optimizer steps of a tuning run (None: the grid's --train.max-steps). Early stopping applies as in the grid, so
    by default a tuning run optimises what a grid run reports; far shorter runs favour large learning rates."""
    eval_every_steps: int | None = None
    """Held-out evaluations, each reported to the pruner, every this many steps (None: as the grid's runs, two per
    pass over the data, at least 10 steps apart)."""
    pruner: Literal["median", "halving"] = "median"
    """median: prune a trial whose held-out loss is worse than the median of earlier trials at the same step;
    halving: successive halving (keeps the best quarter at each rung)."""
    startup_trials: int = 2
    """Trials that finish before the median pruner prunes anything."""
    min_evals: int = 3
    """Evaluations a trial has before it can be pruned (the first ones favour large learning rates)."""
    seed: int = 0
    """Seed of the TPE sampler."""

    def __post_init__(self) -> None:
        if not 0 < self.low < self.high:
            raise ValueError(f"--tuning.low must be positive and below high, got {self.low} and {self.high}")
        if min(self.trials, self.max_steps or 1, self.eval_every_steps or 1, self.min_evals) < 1:
            raise ValueError("--tuning.trials, max-steps, eval-every-steps and min-evals must be >= 1")
        outside = [lr for lr in self.first if not self.low <= lr <= self.high]
        if outside:
            raise ValueError(f"--tuning.first {outside} lies outside [low, high] = [{self.low:g}, {self.high:g}]")


OPTIM = OptimConfig(lr=1e-3)
"""The sweep's optimiser defaults (fine-tunes and scratch runs alike; --tune-lr replaces the learning rate)."""


@dataclass(kw_only=True)
class SweepArgs(StoreArgs, RefitArgs, TokenizerArgs, DataArgs):
    """Arguments of ``transfer-laws sweep``."""

    sizes: list[str] = field(default_factory=lambda: ["2x32", "2x64"])
    """Model shapes (names from lightning_modules.config.PRESETS), one N each."""
    d_f_tokens: list[int] = positive(maximum=MAX_D["tokens"], default_factory=lambda: [20000, 80000])
    """D_F budgets in tokens (a scratch run's dataset size D)."""
    roles: list[str] = field(default_factory=lambda: [ROLE_FINETUNE, ROLE_SCRATCH])
    """Which kinds of run each (size, D_F) gets: finetune, scratch or both."""
    from_template: str = DEMO_CHECKPOINT_TEMPLATE
    """Registered checkpoint per size that fine-tunes start from (and whose tokenizer scratch runs share)."""
    target: str = "python"
    """Target corpus: python (built-in), or a folder of files, s3://bucket/prefix or a datasets path."""
    evals_per_epoch: float | None = positive(2.0)
    """Held-out evaluations per pass over each run's training data, at least 10 steps apart (None: use
    --train.eval-every-steps); early stopping counts these evaluations."""
    study: str = "transfer-sweep"
    """Optuna study name (also the transfer.sweep tag of its runs)."""
    storage: str | None = None
    """Optuna storage URL: sqlite:///... or postgresql+psycopg2://...; default: optuna.db under TRANSFER_LAWS_HOME."""
    worker: bool = False
    """Join an existing study and pull trials until none are left (enqueue nothing)."""
    max_trials: int | None = None
    """Stop this process after this many trials (None: until the study has no waiting trials; 0: create and enqueue
    only, and leave --tune-lr's tuning to the workers)."""
    heartbeat_s: int = 30
    """Seconds between a running trial's heartbeats."""
    grace_s: int = 120
    """A running trial silent this long counts as crashed and is retried."""
    max_retry: int = 2
    """How often a crashed trial is retried."""
    adaptive: bool = False
    """Choose the next cell by next-run advice instead of running the whole grid."""
    alpha_tolerance: float = positive(0.02)
    """--adaptive stops once alpha's 95% interval is within +- this."""
    max_runs: int = positive(20)
    """--adaptive stops after this many runs."""
    law: str = "text-to-python"
    """The law --adaptive refits (``<source>-to-<target>``)."""
    epochs: float = positive(3.0)
    """Expected passes over D_F before early stopping, for the compute estimate of --adaptive (6 N D_F epochs)."""
    tune_lr: bool = False
    """Tune the peak learning rate per (size, role) with pruned Optuna trials before the grid (--tuning.*)."""
    tuning: LrTuning = field(default_factory=LrTuning)
    """How --tune-lr searches."""
    optim: OptimConfig = default_from(OPTIM)
    """Optimiser settings of every trial (--tune-lr replaces the learning rate per size and role)."""
    train: TrainConfig = default_from(scratch.TRAIN)
    """Training loop settings of every trial."""
