"""The fine-tuning recipe: a registered checkpoint trained on exactly D_F tokens of the target corpus."""

from __future__ import annotations

from dataclasses import dataclass, field

from transfer_laws.lightning_modules.config import DataConfig, OptimConfig, TrainConfig, default_from, positive
from transfer_laws.plugin import training
from transfer_laws.plugin.facts import RunFacts
from transfer_laws.plugin.recipes import workspace
from transfer_laws.plugin.recipes.args import DataArgs, RefitArgs, TrackingArgs, megabytes
from transfer_laws.plugin.recipes.errors import BadInput
from transfer_laws.plugin.training import RunExtras, TrainedRun
from transfer_laws.registry import checkpoints, tracking
from transfer_laws.registry.records import MAX_D
from transfer_laws.registry.schema import CHECKPOINT_MODEL_PREFIX, ROLE_FINETUNE

OPTIM = OptimConfig(lr=5e-4)
"""Finetune runs' optimiser defaults."""
TRAIN = TrainConfig(max_steps=3000, max_epochs=50, eval_every_steps=10, patience=3)
"""Finetune runs' loop defaults (early stopping on held-out loss)."""


@dataclass(kw_only=True)
class FinetuneArgs(TrackingArgs, RefitArgs, DataArgs):
    """Arguments of ``transfer-laws finetune``."""

    parent: str = field(metadata={"flag": "from"})
    """The pretrained checkpoint to start from: models:/name@alias or models:/name/version."""
    d_f_tokens: int = positive(maximum=MAX_D["tokens"])
    """Fine-tuning budget D_F in tokens (exact; characters are recorded too)."""
    target: str = "python"
    """Target corpus: python (built-in), or a folder of files, s3://bucket/prefix or a datasets path."""
    evals_per_epoch: float | None = positive(2.0)
    """Held-out evaluations per pass over the training data, at least 10 steps apart (None: use
    --train.eval-every-steps)."""
    optim: OptimConfig = default_from(OPTIM)
    """Optimiser settings."""
    train: TrainConfig = default_from(TRAIN)
    """Training loop settings (early stopping on held-out loss)."""


def run_finetune(args: FinetuneArgs, extras: RunExtras | None = None) -> TrainedRun:
    """Fine-tune ``--from`` on exactly D_F tokens of the target; ``extras``: tags, params and callbacks of a caller
    (a sweep). A malformed or unknown ``--from`` is ``BadInput``, raised before any work."""
    try:
        checkpoints.parse_model_uri(args.parent)
    except ValueError as exc:  # CheckpointError is a ValueError: a malformed --from is bad input, before any work
        raise BadInput(f"--from: {exc}") from None
    uri = tracking.use_tracking_uri(args.tracking_uri)  # the one activation
    try:
        loaded = checkpoints.load_checkpoint_uri(args.parent)
    except tracking.CheckpointNotFound as exc:  # the message lists the aliases and versions there are
        raise BadInput(f"--from: {exc}") from None
    weights, extra = loaded.model, loaded.extra or {}  # read once, when verified: the weights carry their config
    model_cfg = weights.config
    corpus_dir = workspace.corpus_dir(args.target, megabytes(args.corpus_max_mb))
    data = DataConfig(corpus_dir=corpus_dir, tokenizer_dir=loaded.folder / "tokenizer",
                      context_length=model_cfg.context_length, batch_size=args.batch_size,
                      d_f_tokens=args.d_f_tokens, test_tokens=args.test_tokens, seed=args.seed)
    source = extra.get("source") or loaded.name.removeprefix(CHECKPOINT_MODEL_PREFIX)
    facts = RunFacts(role=ROLE_FINETUNE, source=source, target=workspace.corpus_label(args.target),
                     parent_uri=loaded.parent_uri, parent_model_id=loaded.model_id,
                     pretrain_run_id=loaded.pretrain_run_id)
    return training.train_run(role=ROLE_FINETUNE, facts=facts, data_config=data, model_config=model_cfg,
                              optim=args.optim, train=args.train, tracking_uri=uri, extras=extras,
                              experiment=args.experiment, run_name=args.run_name, progress_bar=args.progress_bar,
                              refit_bootstrap=args.refit_bootstrap, refit_plots=args.refit_plots,
                              evals_per_epoch=args.evals_per_epoch, init_weights=weights, parent=loaded)


def headline(trained: TrainedRun) -> str:
    """The line a finished fine-tune prints (its refit's lines follow: ``outcome.outcome_lines``)."""
    return (f"fine-tuned run {trained.run_id}: N={trained.n_params:,} D_F={trained.d_f_tokens:,} tokens, "
            f"best test loss {trained.best_test_loss:.4f} nats/token (from {trained.parent})")
