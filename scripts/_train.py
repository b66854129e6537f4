"""One training run, shared by pretrain, finetune and scratch: data, model, MLflow logger, facts, fit, refit.

The recipes differ only in where the weights start and which facts the run carries; everything else (logging,
early stopping, failure handling, the in-process refit on the embedded store) happens here once.
"""

from __future__ import annotations

import math
import shutil
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from transfer_laws.registry.records import RunResult
from transfer_laws.registry.schema import ROLE_FINETUNE, ROLE_PRETRAIN, ROLE_SCRATCH, TAG_FAILURE
from transfer_laws.registry.tracking import ensure_experiment, home_dir, is_embedded, use_tracking_uri


class TrainingFailed(RuntimeError):
    """The run ended without a usable result; its MLflow run is marked FAILED with the reason."""

    def __init__(self, message: str, run_id: str) -> None:
        super().__init__(message)
        self.run_id = run_id


@dataclass(frozen=True)
class RunExtras:
    """What a caller adds to one run (a sweep's trial, a learning-rate tuning trial), written at run start."""

    tags: dict[str, str] = field(default_factory=dict)
    """Tags that travel in the run's facts (sweep, trial, parent run, where the learning rate came from)."""
    params: dict[str, Any] = field(default_factory=dict)
    """Params beside the facts' N, D and settings (e.g. ``lr`` of a sweep's run)."""
    callbacks: Sequence[Any] = ()
    """Lightning callbacks after the run's own (e.g. reporting each evaluation to an Optuna trial)."""


@dataclass(frozen=True)
class TrainedRun(RunResult):
    """A finished run: the project's run record (what the reader would read back from MLflow) and what the
    training left behind."""

    checkpoint_dir: Path | None = None
    """The saved best weights (with the tokenizer) when the recipe asked for them (pretraining)."""
    refit: Any = None
    """What the in-process refit on the embedded store did (``registry.refit.RefitResult``), None elsewhere."""


def default_run_name(role: str, n_params: int, d_f_tokens: int | None) -> str:
    """``finetune-N24832-D2500``: exact numbers (``k``/``M`` only for exact multiples), so names never collide."""
    from transfer_laws.plugin.run_config import exact_count

    budget = "" if d_f_tokens is None else f"-D{exact_count(d_f_tokens)}"
    return f"{role}-N{exact_count(n_params)}{budget}"


def train_run(
    *,
    role: str,
    facts: Any,
    data_config: Any,
    model_config: Any,
    optim: Any,
    train: Any,
    tracking_uri: str | None,
    experiment: str,
    run_name: str | None,
    init_weights: Path | Any = None,
    parent: Any = None,
    save_checkpoint_to: Path | None = None,
    checkpoint_extra: dict[str, Any] | None = None,
    refit: bool = True,
    refit_bootstrap: int = 1000,
    refit_plots: bool = True,
    evals_per_epoch: float | None = None,
    progress_bar: bool = True,
    extras: RunExtras | None = None,
) -> TrainedRun:
    """Train one model and land the run in MLflow with its facts; refit affected laws on the embedded store.

    ``tracking_uri`` is used as given when it is an activated URI (the recipes activate it once, first, so an
    unreachable server is the first error); ``refit`` False lands the run without refitting (a tuning trial).
    """
    from lightning.pytorch.loggers import MLFlowLogger

    from transfer_laws.lightning_modules import (
        TokenDataModule,
        TrainingDiverged,
        build_trainer,
        save_checkpoint,
    )
    from transfer_laws.plugin import TransferFactsCallback

    if role not in (ROLE_PRETRAIN, ROLE_SCRATCH, ROLE_FINETUNE):
        raise ValueError(f"unknown role {role!r}")
    extras = extras or RunExtras()
    uri = tracking_uri if tracking_uri and tracking_uri == current_tracking_uri() else use_tracking_uri(tracking_uri)
    ensure_experiment(experiment, uri)

    datamodule = TokenDataModule(data_config)
    datamodule.setup("fit")  # fails fast (budget larger than the corpus) before a run exists
    if parent is not None:
        from transfer_laws.registry.checkpoints import check_tokenizer

        check_tokenizer(parent, datamodule.tokenizer_digest)  # a clear error before training starts
    if evals_per_epoch:
        train = replace(train, eval_every_steps=eval_interval(datamodule.train_tokens, data_config.context_length,
                                                              data_config.batch_size, evals_per_epoch))
    model_config = replace(model_config, vocab_size=datamodule.vocab_size)
    module = seeded_module(model_config, optim, init_weights, train.seed)
    # A pretraining run is named by the tokens it trained on, known when it ends (renamed below), not its corpus.
    name = run_name or default_run_name(role, module.n_params, None if role == ROLE_PRETRAIN
                                        else datamodule.train_tokens)
    logger = MLFlowLogger(experiment_name=experiment, tracking_uri=uri, run_name=name, log_model=False)
    if extras.params:
        logger.log_hyperparams(extras.params)
    if extras.tags:
        facts = replace(facts, extra_tags={**facts.extra_tags, **extras.tags})
    from transfer_laws.plugin.run_config import resolved_config

    config = resolved_config(role=role, model=model_config, optim=optim, train=train, data=data_config,
                             run={"experiment": experiment, "parent": getattr(parent, "parent_uri", None),
                                  "evals_per_epoch": evals_per_epoch, "refit": refit,
                                  "refit_bootstrap": refit_bootstrap, "refit_plots": refit_plots})
    trainer = build_trainer(train, callbacks=[TransferFactsCallback(facts, config=config), *extras.callbacks],
                            logger=logger, enable_progress_bar=progress_bar)
    try:
        trainer.fit(module, datamodule=datamodule)
    except TrainingDiverged as exc:
        _mark_failed(logger, str(exc))
        raise TrainingFailed(f"run {logger.run_id} failed: {exc}", logger.run_id) from exc

    if role == ROLE_PRETRAIN and run_name is None and module.tokens_seen:
        from mlflow import MlflowClient

        name = default_run_name(role, module.n_params, int(module.tokens_seen))
        MlflowClient(tracking_uri=uri).update_run(logger.run_id, name=name)
    checkpoint_dir = None
    if save_checkpoint_to is not None:
        checkpoint_dir = save_checkpoint_to / logger.run_id
        extra = {
            "run_id": logger.run_id,
            "role": role,
            "tokens_seen": int(module.tokens_seen),
            "best_test_loss": float(module.best_test_loss),
            "tokenizer_digest": datamodule.tokenizer_digest,
            "corpus": datamodule.corpus_name,
            "corpus_digest": datamodule.train_digest,
            **(checkpoint_extra or {}),
        }
        save_checkpoint(module.model, checkpoint_dir, extra=extra)
        shutil.copytree(Path(data_config.tokenizer_dir), checkpoint_dir / "tokenizer", dirs_exist_ok=True)

    result = TrainedRun(
        run_id=logger.run_id,
        role=role,
        n_params=int(module.n_params),
        d_f_tokens=int(datamodule.train_tokens),
        best_test_loss=float(module.best_test_loss),
        d_f_chars=datamodule.train_chars,
        parent=getattr(parent, "parent_uri", None),
        experiment_id=logger.experiment_id,
        name=name,
        checkpoint_dir=checkpoint_dir,
    )
    if refit and role != ROLE_PRETRAIN and is_embedded(uri):
        # No server runs hooks for the embedded store: the refit the app plugin would enqueue runs here.
        from transfer_laws.registry.refit import refit_after_run

        result = replace(result, refit=refit_after_run(result.run_id, tracking_uri=uri, bootstrap=refit_bootstrap,
                                                          plots=refit_plots))
    return result


def seeded_module(model_config: Any, optim: Any, init_weights: Path | Any, seed: int) -> Any:
    """The TransferLM with its initial weights drawn from ``seed`` alone, whatever this process ran before
    (a sweep trains many runs in one process; the Trainer seeds only later, after the weights exist)."""
    import lightning as L

    from transfer_laws.lightning_modules import TransferLM

    L.seed_everything(seed, workers=True, verbose=False)
    return TransferLM(model_config, optim, init_weights=init_weights)


def eval_interval(train_tokens: int, context_length: int, batch_size: int, evals_per_epoch: float,
                  floor: int = 10) -> int:
    """Optimizer steps between held-out evaluations: ``evals_per_epoch`` per pass, never closer than ``floor``.

    Evaluating the fixed test set costs as much as tens of training steps; at large D_F, evaluating every few
    steps would spend most of the run on evaluation, at small D_F an epoch is only a few steps.
    """
    windows = max(1, math.ceil((train_tokens - 1) / context_length))
    steps_per_epoch = max(1, math.ceil(windows / batch_size))
    return max(floor, round(steps_per_epoch / evals_per_epoch))


def _mark_failed(logger: Any, reason: str) -> None:
    """Record why a run failed; the logger has already ended it as FAILED, or we do it here."""
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=logger._tracking_uri)  # the logger's own store
    client.set_tag(logger.run_id, TAG_FAILURE, reason[:5000])
    if client.get_run(logger.run_id).info.status == "RUNNING":
        client.set_terminated(logger.run_id, "FAILED")


def checkpoints_root() -> Path:
    """Where pretraining writes its best checkpoints before they are registered."""
    return home_dir() / "checkpoints"


def current_tracking_uri() -> str | None:
    """The tracking URI this process uses now (MLflow's default until one is set): a recipe activates it once."""
    import mlflow

    return mlflow.get_tracking_uri()
