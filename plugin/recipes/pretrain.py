"""The pretraining recipe: train a GPT on a source corpus, then register its best checkpoint for reuse."""

from __future__ import annotations

from dataclasses import dataclass

from transfer_laws.lightning_modules.config import (
    DataConfig,
    GPTConfig,
    OptimConfig,
    TrainConfig,
    default_from,
    positive,
    preset,
)
from transfer_laws.plugin import training
from transfer_laws.plugin.facts import RunFacts
from transfer_laws.plugin.recipes import workspace
from transfer_laws.plugin.recipes.args import DataArgs, ShapeArgs, TokenizerArgs, TrackingArgs, megabytes
from transfer_laws.plugin.training import RunExtras, TrainedRun
from transfer_laws.registry import checkpoints, tracking
from transfer_laws.registry.checkpoints import RegisteredCheckpoint
from transfer_laws.registry.schema import ROLE_PRETRAIN, checkpoint_model_name

OPTIM = OptimConfig(lr=2e-3)
"""Pretraining's optimiser defaults."""
TRAIN = TrainConfig(max_steps=2000, max_time_s=60.0, eval_every_steps=50, patience=5)
"""Pretraining's loop defaults."""


@dataclass(kw_only=True)
class PretrainArgs(TrackingArgs, ShapeArgs, TokenizerArgs, DataArgs):
    """Arguments of ``transfer-laws pretrain``."""

    corpus: str = "text"
    """Source corpus: text, code, mix (50/50 text + code), a folder of files, s3://bucket/prefix or a datasets path."""
    tokens: int | None = positive(None)
    """Pretraining token budget (None: the whole corpus, for as long as --train.max-time-s allows)."""
    register_as: str | None = None
    """Registered model name for the checkpoint (default: pretrained-<corpus>); empty string: do not register."""
    alias: str = "champion"
    """Alias the new checkpoint version takes."""
    optim: OptimConfig = default_from(OPTIM)
    """Optimiser settings."""
    train: TrainConfig = default_from(TRAIN)
    """Training loop settings."""



def model_config(args: ShapeArgs) -> GPTConfig:
    """The GPTConfig for a shape (vocabulary filled in from the tokenizer later)."""
    if args.preset:
        return preset(args.preset, vocab_size=1, context_length=args.context_length)
    return GPTConfig(vocab_size=1, context_length=args.context_length, n_layer=args.n_layer, n_head=args.n_head,
                     n_embd=args.n_embd)


def run_pretrain(args: PretrainArgs, extras: RunExtras | None = None) -> TrainedRun:
    """Train a GPT on ``args.corpus`` and save its best checkpoint (``register_pretrained`` registers it);
    ``extras``: tags, params and callbacks of a caller (the pin loop)."""
    uri = tracking.use_tracking_uri(args.tracking_uri)  # the one activation: an unreachable server is the first error
    corpus_dir = workspace.corpus_dir(args.corpus, megabytes(args.corpus_max_mb))
    tokenizer_dir = workspace.tokenizer_dir(args.tokenizer_corpus, args.vocab_size, megabytes(args.tokenizer_max_mb))
    source = workspace.corpus_label(args.corpus)
    data = DataConfig(corpus_dir=corpus_dir, tokenizer_dir=tokenizer_dir, context_length=args.context_length,
                      batch_size=args.batch_size, d_f_tokens=args.tokens, test_tokens=args.test_tokens,
                      seed=args.seed)
    facts = RunFacts(role=ROLE_PRETRAIN, source=source, target=None)
    return training.train_run(role=ROLE_PRETRAIN, facts=facts, data_config=data, model_config=model_config(args),
                              optim=args.optim, train=args.train, tracking_uri=uri, extras=extras,
                              experiment=args.experiment, run_name=args.run_name, progress_bar=args.progress_bar,
                              evals_per_epoch=args.evals_per_epoch, save_checkpoint_to=training.checkpoints_root(),
                              checkpoint_extra={"source": source})


def headline(trained: TrainedRun, args: PretrainArgs) -> str:
    """The line a finished pretraining run prints."""
    return (f"pretrained run {trained.run_id}: N={trained.n_params:,} best held-out "
            f"{workspace.corpus_label(args.corpus)} loss {trained.best_test_loss:.4f} nats/token")


def register_pretrained(trained: TrainedRun, args: PretrainArgs) -> RegisteredCheckpoint | None:
    """Register the run's checkpoint as ``--register-as`` (default ``pretrained-<corpus>``) at ``--alias``; None
    when ``--register-as`` is empty."""
    name = checkpoint_model_name(workspace.corpus_label(args.corpus)) if args.register_as is None else args.register_as
    if not name:
        return None
    if trained.checkpoint_dir is None:
        raise RuntimeError(f"pretrained run {trained.run_id} saved no checkpoint to register")
    return checkpoints.register_checkpoint(trained.checkpoint_dir, name=name, alias=args.alias, run_id=trained.run_id)
