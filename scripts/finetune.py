"""``transfer-laws finetune``: fine-tune a registered checkpoint on exactly D_F tokens of the target corpus."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from transfer_laws.scripts._args import positive
from transfer_laws.scripts._common import DataArgs, TrackingArgs, megabytes
from transfer_laws.scripts._errors import BadInput
from transfer_laws.scripts.pretrain import _optim_type, _train_type


def _optim() -> Any:
    from transfer_laws.lightning_modules import OptimConfig

    return OptimConfig(lr=5e-4)


def _train() -> Any:
    from transfer_laws.lightning_modules import TrainConfig

    return TrainConfig(max_steps=3000, max_epochs=50, eval_every_steps=10, patience=3)


@dataclass(kw_only=True)
class Args(TrackingArgs, DataArgs):
    """Arguments of ``transfer-laws finetune``."""

    parent: str = field(metadata={"flag": "from"})
    """The pretrained checkpoint to start from: models:/name@alias or models:/name/version."""
    d_f_tokens: int = positive()
    """Fine-tuning budget D_F in tokens (exact; characters are recorded too)."""
    target: str = "python"
    """Target corpus: python (built-in), or a folder of files, s3://bucket/prefix or a datasets path."""
    evals_per_epoch: float | None = positive(2.0)
    """Held-out evaluations per pass over the training data, at least 10 steps apart (None: use
    --train.eval-every-steps)."""
    optim: _optim_type() = field(default_factory=_optim)  # type: ignore[valid-type]
    """Optimiser settings."""
    train: _train_type() = field(default_factory=_train)  # type: ignore[valid-type]
    """Training loop settings (early stopping on held-out loss)."""


def run(args: Args) -> Any:
    from transfer_laws.lightning_modules import DataConfig, load_checkpoint
    from transfer_laws.plugin import RunFacts
    from transfer_laws.registry.checkpoints import load_checkpoint_uri, parse_model_uri
    from transfer_laws.registry.schema import ROLE_FINETUNE
    from transfer_laws.registry.tracking import use_tracking_uri
    from transfer_laws.scripts import workspace
    from transfer_laws.scripts._train import train_run

    try:
        parse_model_uri(args.parent)
    except ValueError as exc:  # CheckpointError is a ValueError: a malformed --from is bad input, before any work
        raise BadInput(f"--from: {exc}") from None
    use_tracking_uri(args.tracking_uri)
    loaded = load_checkpoint_uri(args.parent)
    _, extra = load_checkpoint(loaded.folder)  # validates the files before any run starts
    model_cfg = _checkpoint_config(loaded.folder)
    corpus_dir = workspace.corpus_dir(args.target, megabytes(args.corpus_max_mb))
    data = DataConfig(corpus_dir=corpus_dir, tokenizer_dir=loaded.folder / "tokenizer",
                      context_length=model_cfg.context_length, batch_size=args.batch_size,
                      d_f_tokens=args.d_f_tokens, test_tokens=args.test_tokens, seed=args.seed)
    source = extra.get("source") or loaded.name.removeprefix("pretrained-")
    facts = RunFacts(role=ROLE_FINETUNE, source=source, target=workspace.corpus_label(args.target),
                     parent_uri=loaded.parent_uri, parent_model_id=loaded.model_id,
                     pretrain_run_id=loaded.pretrain_run_id)
    trained = train_run(role=ROLE_FINETUNE, facts=facts, data_config=data, model_config=model_cfg,
                        optim=args.optim, train=args.train, tracking_uri=args.tracking_uri,
                        experiment=args.experiment, run_name=args.run_name, progress_bar=args.progress_bar,
                        refit_bootstrap=args.refit_bootstrap, refit_plots=args.refit_plots,
                        evals_per_epoch=args.evals_per_epoch,
                        init_weights=loaded.folder, parent=loaded)
    if args.print_outcome:
        from transfer_laws.scripts._outcome import print_run

        print_run(trained, args.tracking_uri,
                  f"fine-tuned run {trained.run_id}: N={trained.n_params:,} D_F={trained.d_f_tokens:,} tokens, "
                  f"best test loss {trained.best_test_loss:.4f} nats/token (from {loaded.parent_uri})")
    return trained


def _checkpoint_config(folder: Any) -> Any:
    import json

    from transfer_laws.lightning_modules import GPTConfig

    return GPTConfig.from_dict(json.loads((folder / "config.json").read_text())["gpt"])
