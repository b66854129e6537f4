"""The from-scratch recipe: train on exactly D tokens of the target (the D_E reference curve)."""

from __future__ import annotations

from dataclasses import dataclass

from transfer_laws.lightning_modules.config import DataConfig, OptimConfig, TrainConfig, default_from, positive
from transfer_laws.plugin import training
from transfer_laws.plugin.facts import RunFacts
from transfer_laws.plugin.recipes import workspace
from transfer_laws.plugin.recipes.args import DataArgs, RefitArgs, ShapeArgs, TokenizerArgs, TrackingArgs, megabytes
from transfer_laws.plugin.recipes.pretrain import model_config
from transfer_laws.plugin.training import RunExtras, TrainedRun
from transfer_laws.registry import checkpoints, tracking
from transfer_laws.registry.records import MAX_D
from transfer_laws.registry.schema import ROLE_SCRATCH

OPTIM = OptimConfig(lr=1e-3)
"""Scratch runs' optimiser defaults."""
TRAIN = TrainConfig(max_steps=3000, max_epochs=50, eval_every_steps=10, patience=3)
"""Scratch runs' loop defaults (early stopping on held-out loss)."""


@dataclass(kw_only=True)
class ScratchArgs(TrackingArgs, RefitArgs, ShapeArgs, TokenizerArgs, DataArgs):
    """Arguments of ``transfer-laws scratch``."""

    d_f_tokens: int = positive(maximum=MAX_D["tokens"])
    """Training-set size D in tokens of the target (exact)."""
    target: str = "python"
    """Target corpus: python (built-in), or a folder of files, s3://bucket/prefix or a datasets path."""
    tokenizer_from: str | None = None
    """Take the tokenizer from a registered checkpoint (models:/name@alias) instead of the workspace's."""
    evals_per_epoch: float | None = positive(2.0)
    """Held-out evaluations per pass over the training data, at least 10 steps apart (None: use
    --train.eval-every-steps)."""
    optim: OptimConfig = default_from(OPTIM)
    """Optimiser settings."""
    train: TrainConfig = default_from(TRAIN)
    """Training loop settings (early stopping on held-out loss)."""


def run_scratch(args: ScratchArgs, extras: RunExtras | None = None) -> TrainedRun:
    """Train from scratch on exactly D tokens of the target; ``extras``: tags, params and callbacks of a caller (a
    sweep)."""
    uri = tracking.use_tracking_uri(args.tracking_uri)  # the one activation: an unreachable server is the first error
    if args.tokenizer_from:
        tokenizer_dir = checkpoints.load_checkpoint_uri(args.tokenizer_from).folder / "tokenizer"
    else:
        tokenizer_dir = workspace.tokenizer_dir(args.tokenizer_corpus, args.vocab_size,
                                                megabytes(args.tokenizer_max_mb))
    corpus_dir = workspace.corpus_dir(args.target, megabytes(args.corpus_max_mb))
    data = DataConfig(corpus_dir=corpus_dir, tokenizer_dir=tokenizer_dir, context_length=args.context_length,
                      batch_size=args.batch_size, d_f_tokens=args.d_f_tokens, test_tokens=args.test_tokens,
                      seed=args.seed)
    facts = RunFacts(role=ROLE_SCRATCH, source=None, target=workspace.corpus_label(args.target))
    return training.train_run(role=ROLE_SCRATCH, facts=facts, data_config=data, model_config=model_config(args),
                              optim=args.optim, train=args.train, tracking_uri=uri, extras=extras,
                              experiment=args.experiment, run_name=args.run_name, progress_bar=args.progress_bar,
                              refit_bootstrap=args.refit_bootstrap, refit_plots=args.refit_plots,
                              evals_per_epoch=args.evals_per_epoch)


def headline(trained: TrainedRun) -> str:
    """The line a finished scratch run prints (its refit's lines follow: ``outcome.outcome_lines``)."""
    return (f"scratch run {trained.run_id}: N={trained.n_params:,} D={trained.d_f_tokens:,} tokens, "
            f"best test loss {trained.best_test_loss:.4f} nats/token")
