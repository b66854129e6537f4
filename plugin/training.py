"""One training run, shared by pretrain, finetune and scratch: data, model, MLflow logger, facts, fit, refit.

The recipes differ only in where the weights start and which facts the run carries; everything else (logging,
early stopping, failure handling, the in-process refit on the embedded store) happens here once.

One distributed job (DDP over several processes, however launched) is one run: global rank 0 creates it once the
processes have met and broadcasts its id (``TransferFactsCallback.setup``), and does every side effect (facts,
checkpoint, refit); the other ranks train and return. The run ends FINISHED only after every rank has passed the
end of training and rank 0's checkpoint is written: Lightning would end it when ``fit`` returns, before a rank that
failed late is known. A failure on any rank ends it FAILED and the command with a non-zero exit.

The process group Lightning creates for a run ends with the training, on every rank, whether it went well or not:
after the end-of-training barrier (so no rank is still inside a collective) and before rank 0's checkpoint and
refit, which use none (see ``lightning_modules/distributed.py`` for why a group left to interpreter exit can abort
a rank). A group the caller brought (a sweep's distributed job, ``plugin/sweeps/ranks.py``) is the caller's to end.
"""

from __future__ import annotations

import math
import shutil
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

from transfer_laws.plugin.facts import RunFacts
from transfer_laws.plugin.run_config import exact_count, resolved_config
from transfer_laws.registry.checkpoints import check_tokenizer
from transfer_laws.registry.records import RunResult
from transfer_laws.registry.refit import refit_after_run
from transfer_laws.registry.schema import ROLE_FINETUNE, ROLE_PRETRAIN, ROLE_SCRATCH, TAG_FAILURE
from transfer_laws.registry.tracking import client_for, ensure_experiment, home_dir, is_embedded, use_tracking_uri

if TYPE_CHECKING:  # torch, Lightning and MLflow load when a run trains, not when a recipe's flags are built
    from lightning.pytorch import Callback, Trainer
    from lightning.pytorch.loggers import MLFlowLogger

    from transfer_laws.lightning_modules import TransferLM  # lazy: torch and Lightning
    from transfer_laws.lightning_modules.config import DataConfig, GPTConfig, OptimConfig, TrainConfig
    from transfer_laws.lightning_modules.model import GPT
    from transfer_laws.registry.checkpoints import LoadedCheckpoint
    from transfer_laws.registry.refit import RefitResult

Param = str | int | float
"""A value MLflow logs as a param (it stores the text)."""


class TrainingSettingsError(ValueError):
    """Settings the Trainer cannot run (devices, strategy, batch per rank): bad input, before any run exists."""

    exit_code = 2


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
    params: dict[str, Param] = field(default_factory=dict)
    """Params beside the facts' N, D and settings (e.g. ``lr`` of a sweep's run)."""
    callbacks: Sequence[Callback] = ()
    """Lightning callbacks after the run's own (e.g. reporting each evaluation to an Optuna trial)."""


@dataclass(frozen=True)
class TrainedRun(RunResult):
    """A finished run: the project's run record (what the reader would read back from MLflow) and what the
    training left behind."""

    checkpoint_dir: Path | None = None
    """The saved best weights (with the tokenizer) when the recipe asked for them (pretraining)."""
    rank: int = 0
    """Global rank of the process that returns this; only rank 0 wrote the run, checkpoint and refit."""
    refit: list[RefitResult] | None = None
    """What the in-process refit on the embedded store did (one result per law the run feeds), None elsewhere."""


def default_run_name(role: str, n_params: int, d_f_tokens: int | None) -> str:
    """``finetune-N24832-D2500``: exact numbers (``k``/``M`` only for exact multiples), so names never collide."""
    budget = "" if d_f_tokens is None else f"-D{exact_count(d_f_tokens)}"
    return f"{role}-N{exact_count(n_params)}{budget}"


def train_run(
    *,
    role: str,
    facts: RunFacts,
    data_config: DataConfig,
    model_config: GPTConfig,
    optim: OptimConfig,
    train: TrainConfig,
    tracking_uri: str | None,
    experiment: str,
    run_name: str | None,
    init_weights: Path | GPT | None = None,
    parent: LoadedCheckpoint | None = None,
    save_checkpoint_to: Path | None = None,
    checkpoint_extra: dict[str, Param] | None = None,
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
    # lazy: torch and Lightning (seconds), loaded when a run trains, not when a recipe builds its flags
    from transfer_laws.lightning_modules import TokenDataModule, TrainingDiverged, save_checkpoint
    from transfer_laws.lightning_modules.distributed import (
        before_process_group,
        end_process_groups,
        has_process_group,
        launch_rank,
    )
    from transfer_laws.plugin.callback import TransferFactsCallback

    if role not in (ROLE_PRETRAIN, ROLE_SCRATCH, ROLE_FINETUNE):
        raise ValueError(f"unknown role {role!r}")
    extras = extras or RunExtras()
    own_group = not has_process_group()  # Lightning creates it inside fit, for this run alone
    if own_group:
        before_process_group()
    uri = tracking_uri if tracking_uri and tracking_uri == current_tracking_uri() else use_tracking_uri(tracking_uri)
    if launch_rank() == 0:  # the other ranks of a job write nothing
        ensure_experiment(experiment, uri)

    datamodule = TokenDataModule(data_config)
    datamodule.setup("fit")  # fails fast (budget larger than the corpus) before a run exists
    if parent is not None:
        check_tokenizer(parent, datamodule.tokenizer_digest)  # a clear error before training starts
    if evals_per_epoch:
        train = replace(train, eval_every_steps=eval_interval(datamodule.train_tokens, data_config.context_length,
                                                              data_config.batch_size, evals_per_epoch))
    model_config = replace(model_config, vocab_size=datamodule.vocab_size)
    module = seeded_module(model_config, optim, init_weights, train.seed)
    # A pretraining run is named by the tokens it trained on, known when it ends (renamed below), not its corpus.
    name = run_name or default_run_name(role, module.n_params, None if role == ROLE_PRETRAIN
                                        else datamodule.train_tokens)
    # No MLflow call before fit: the run is created inside it, on global rank 0, once the ranks are known.
    logger = _run_logger(experiment_name=experiment, tracking_uri=uri, run_name=name)
    if extras.tags:
        facts = replace(facts, extra_tags={**facts.extra_tags, **extras.tags})
    config = resolved_config(role=role, model=model_config, optim=optim, train=train, data=data_config,
                             run={"experiment": experiment, "parent": getattr(parent, "parent_uri", None),
                                  "evals_per_epoch": evals_per_epoch, "refit": refit,
                                  "refit_bootstrap": refit_bootstrap, "refit_plots": refit_plots})
    run_facts = TransferFactsCallback(facts, config=config, params=extras.params)
    trainer = _trainer(train, data_config, callbacks=[run_facts, *extras.callbacks], logger=logger,
                       enable_progress_bar=progress_bar)
    try:
        trainer.fit(module, datamodule=datamodule)
        _all_ranks_done(trainer, end_group=own_group)
    except TrainingDiverged as exc:
        raise _failed(trainer, logger, run_facts.run_id, exc, f"run {run_facts.run_id} failed: {exc}") from exc
    except Exception as exc:
        failed = _failed(trainer, logger, run_facts.run_id, exc, f"run {run_facts.run_id} failed on rank "
                         f"{trainer.global_rank} of {trainer.world_size}: {type(exc).__name__}: {exc}")
        if trainer.world_size == 1:
            raise  # one process: the error as it was, the run already FAILED with its reason
        raise failed from exc
    finally:
        if own_group:  # a failed run too; no barrier there (a rank may have died), and a no-op once ended
            end_process_groups(barrier=False)
    run_id = str(run_facts.run_id)

    result = TrainedRun(
        run_id=run_id,
        role=role,
        n_params=int(module.n_params),
        d_f_tokens=int(datamodule.train_tokens),
        best_test_loss=float(module.best_test_loss),
        d_f_chars=datamodule.train_chars,
        parent=getattr(parent, "parent_uri", None),
        experiment_id=logger.experiment_id,
        name=name,
        rank=int(trainer.global_rank),
    )
    if not trainer.is_global_zero:
        return result
    if role == ROLE_PRETRAIN and run_name is None and module.tokens_seen:  # named by what it trained on
        name = default_run_name(role, module.n_params, int(module.tokens_seen))
        client_for(uri).update_run(run_id, name=name)
        result = replace(result, name=name)
    try:
        if save_checkpoint_to is not None:
            checkpoint_dir = save_checkpoint_to / run_id
            extra = {
                "run_id": run_id,
                "role": role,
                "tokens_seen": int(module.tokens_seen),
                "best_test_loss": float(module.best_test_loss),
                "tokenizer_digest": datamodule.tokenizer_digest,
                "corpus": datamodule.corpus_name,
                "corpus_digest": datamodule.train_digest,
                **(checkpoint_extra or {}),
            }
            save_checkpoint(module.whole_model(), checkpoint_dir, extra=extra)  # whole under FSDP too
            shutil.copytree(Path(data_config.tokenizer_dir), checkpoint_dir / "tokenizer", dirs_exist_ok=True)
            result = replace(result, checkpoint_dir=checkpoint_dir)
    except Exception as exc:
        raise _failed(trainer, logger, run_id, exc, f"run {run_id} failed after training: {exc}") from exc
    logger.experiment.set_terminated(logger.run_id, "FINISHED")  # the end of fit left it RUNNING (_run_logger)
    if refit and role != ROLE_PRETRAIN and is_embedded(uri):
        # No server runs hooks for the embedded store: the refit the app plugin would enqueue runs here.
        result = replace(result, refit=refit_after_run(result.run_id, tracking_uri=uri, bootstrap=refit_bootstrap,
                                                          plots=refit_plots))
    return result


def _trainer(train: TrainConfig, data_config: DataConfig, *, callbacks: Sequence[Callback], logger: MLFlowLogger,
             enable_progress_bar: bool) -> Trainer:
    """The Trainer, with settings it cannot run as bad input (exit 2): nothing has started yet."""
    from lightning.fabric.utilities.exceptions import MisconfigurationException

    from transfer_laws.lightning_modules import build_trainer  # lazy: torch and Lightning
    from transfer_laws.lightning_modules.data import per_rank_batch  # lazy: torch

    try:
        trainer = build_trainer(train, callbacks=callbacks, logger=logger, enable_progress_bar=enable_progress_bar)
        per_rank_batch(data_config.batch_size, trainer.world_size)
    except (ValueError, MisconfigurationException) as exc:
        raise TrainingSettingsError(str(exc)) from None
    return trainer


def _run_logger(*, experiment_name: str, tracking_uri: str, run_name: str) -> MLFlowLogger:
    """MLflow's Lightning logger, except that the end of ``fit`` does not end the run: ``train_run`` ends it
    FINISHED when the whole job is done (a server's refit hook fires on that). A failed fit still ends it FAILED."""
    from lightning.pytorch.loggers import MLFlowLogger

    class RunLogger(MLFlowLogger):
        def finalize(self, status: str = "success") -> None:
            if status != "success":
                super().finalize(status)

    return RunLogger(experiment_name=experiment_name, tracking_uri=tracking_uri, run_name=run_name, log_model=False)


def _all_ranks_done(trainer: Trainer, *, end_group: bool) -> None:
    """Every rank got through training: a barrier (a rank that died makes it raise on the others), then with
    ``end_group`` the end of the process group on every rank (no collective follows), and, under Lightning's own
    launcher, the exit codes of the processes it started (its children)."""
    from transfer_laws.lightning_modules.distributed import end_process_groups

    if trainer.world_size == 1:
        return
    trainer.strategy.barrier("transfer-laws: end of training")
    if end_group:
        end_process_groups(barrier=False)  # every rank is past the barrier: none is inside a collective
    if not trainer.is_global_zero:
        return
    for i, proc in enumerate(getattr(trainer.strategy.launcher, "procs", None) or [], start=1):
        code = proc.wait(timeout=CHILD_EXIT_TIMEOUT_S)
        if code != 0:
            raise RuntimeError(f"local rank {i} (pid {proc.pid}) exited with code {code}")


CHILD_EXIT_TIMEOUT_S = 300
"""How long rank 0 waits for the ranks it launched to exit after training (they only return by then)."""


def _failed(trainer: Trainer, logger: MLFlowLogger, run_id: str | None, exc: BaseException,
            message: str) -> TrainingFailed:
    """Mark the run FAILED with the reason (global rank 0 only) and the error every rank raises."""
    if trainer.is_global_zero and run_id:
        _mark_failed(logger, run_id, f"{type(exc).__name__}: {exc}")
    return TrainingFailed(message, str(run_id))


def seeded_module(model_config: GPTConfig, optim: OptimConfig, init_weights: Path | GPT | None,
                  seed: int) -> TransferLM:
    """The TransferLM with its initial weights drawn from ``seed`` alone, whatever this process ran before
    (a sweep trains many runs in one process; the Trainer seeds only later, after the weights exist)."""
    import lightning as L

    from transfer_laws.lightning_modules import TransferLM  # lazy: torch and Lightning

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


def _mark_failed(logger: MLFlowLogger, run_id: str, reason: str) -> None:
    """Record why a run failed; the logger has already ended it as FAILED, or we do it here."""
    client = client_for(logger._tracking_uri)  # the logger's own store
    client.set_tag(run_id, TAG_FAILURE, reason[:5000])
    if client.get_run(run_id).info.status == "RUNNING":
        client.set_terminated(run_id, "FAILED")


def checkpoints_root() -> Path:
    """Where pretraining writes its best checkpoints before they are registered."""
    return home_dir() / "checkpoints"


def current_tracking_uri() -> str | None:
    """The tracking URI this process uses now (MLflow's default until one is set): a recipe activates it once."""
    import mlflow

    return mlflow.get_tracking_uri()
