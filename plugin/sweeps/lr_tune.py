"""Learning-rate tuning per model size for ``transfer-laws sweep --tune-lr``.

For every (size, role) of the sweep's grid an Optuna study named ``<sweep>.lr.<size>.<role>`` (in the sweep's own
storage, so ``--worker`` processes on other machines share it) samples the peak learning rate log-uniformly with
TPE. Each trial is a real training run on ``--tuning.d-f-tokens`` tokens (default: the grid's largest D_F) with the
grid's step limit, evaluation schedule and early stopping unless ``--tuning.max-steps`` / ``eval-every-steps`` say
otherwise, so by default a trial optimises what a grid run reports (best held-out loss, nats/token). It reports
that loss to the trial at every evaluation; from its ``--tuning.min-evals``-th evaluation on, the pruner (median or
successive halving) stops a learning rate that is worse than earlier trials at the same step. The grid then
trains every run of that size and role at the best complete trial's learning rate.

Why not short runs by default: the first steps favour large learning rates, and a full-length trial measures what a
grid run reports (see docs/sweeps.md for what one measurement here could and could not show).

Bookkeeping, so a law's runs say which learning rate they used and where it came from:

- a tuning trial is an MLflow run trained by ``plugin.training.train_run`` like every run, under the sweep's parent run,
  tagged ``transfer.lr_tuning=<size>/<role>`` and carrying params ``lr``, ``N`` (non-embedding parameters), its
  data size under the role's name and every setting. Its facts say no law reads it (``RunFacts.for_laws``): it has
  no ``transfer.role`` tag, so no law ever fits a tuning run, and no refit follows it. A pruned trial's run ends
  KILLED with ``transfer.pruned_reason`` (a diverged learning rate is pruned too): the sweep goes on.
- the parent run gets ``transfer.lr.<size>.<role>`` tags with the chosen value and ``transfer.lr_tuning`` with the
  search settings; every grid run gets the param ``lr`` and the tag ``transfer.lr_source``.

A resumed sweep counts finished (complete or pruned) tuning trials and runs only the missing ones; a trial whose
worker died is retried through the storage's heartbeats, like a grid trial.
"""

from __future__ import annotations

import time
import warnings
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Protocol

from transfer_laws.lightning_modules.config import DataConfig, GPTConfig
from transfer_laws.plugin.facts import RunFacts
from transfer_laws.plugin.recipes import ShapeArgs, megabytes, model_config, workspace
from transfer_laws.plugin.sweeps.args import LrTuning, SweepArgs
from transfer_laws.plugin.sweeps.say import note
from transfer_laws.plugin.sweeps.study import ATTR_RUN_ID, TAG_PARENT_RUN, Cell
from transfer_laws.plugin.training import RunExtras, TrainingFailed, train_run
from transfer_laws.registry.checkpoints import LoadedCheckpoint, load_checkpoint_uri
from transfer_laws.registry.schema import (
    CHECKPOINT_MODEL_PREFIX,
    MLFLOW_NOTE,
    PARAM_LR,
    ROLE_FINETUNE,
    TAG_LR_PREFIX,
    TAG_LR_TRIAL,
    TAG_LR_TUNING,
    TAG_PRUNED,
    TAG_SWEEP,
)
from transfer_laws.registry.tracking import client_for, use_tracking_uri

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from optuna import Study, Trial
    from optuna.pruners import BasePruner
    from optuna.samplers import BaseSampler
    from optuna.trial import FrozenTrial

    from transfer_laws.lightning_modules.model import GPT

ATTR_PRUNED = "pruned_reason"


@dataclass(frozen=True)
class TuneTarget:
    """What one tuning study tunes: the learning rate of one model size in one role."""

    size: str
    """Preset name (lightning_modules.config.PRESETS)."""
    role: str
    """finetune or scratch (they prefer different learning rates)."""


@dataclass(frozen=True)
class ChosenLr:
    """The learning rate a tuning study chose."""

    lr: float
    study: str
    trial: int
    loss: float
    """Best held-out loss of that trial, nats/token."""
    complete: int
    pruned: int

    def source(self) -> str:
        """Where the value came from, for the ``transfer.lr_source`` tag."""
        return (f"tuned: Optuna study {self.study}, trial {self.trial} (held-out loss {self.loss:.4f}), best of "
                f"{self.complete} complete trials, {self.pruned} pruned")


TrialTrainer = Callable[[TuneTarget, float, "Trial"], float]
"""Trains one tuning run at a learning rate, reporting to the Optuna trial; returns its best held-out loss or
raises ``optuna.TrialPruned``."""


class OpenStudy(Protocol):
    """``open_study(name, sampler=..., pruner=...)``: a study in the sweep's storage, opened or created."""

    def __call__(self, name: str, *, sampler: BaseSampler | None = None,
                 pruner: BasePruner | None = None) -> Study: ...


def study_name(sweep: str, target: TuneTarget) -> str:
    """``<sweep>.lr.<size>.<role>``."""
    return f"{sweep}.lr.{target.size}.{target.role}"


def targets_of(cells: Iterable[Cell]) -> list[TuneTarget]:
    """One target per distinct (size, role) of the cells, in grid order."""
    return list(dict.fromkeys(TuneTarget(c.size, c.role) for c in cells))


def make_pruner(tuning: LrTuning) -> BasePruner:
    import optuna

    # Both judge a trial only when ReportToTrial asks, which it does from its min_evals-th evaluation on.
    if tuning.pruner == "halving":
        return optuna.pruners.SuccessiveHalvingPruner()
    return optuna.pruners.MedianPruner(n_startup_trials=tuning.startup_trials, n_warmup_steps=0)


def tune_target(open_study: OpenStudy, sweep: str, target: TuneTarget, tuning: LrTuning,
                train_trial: TrialTrainer, *, poll_s: float = 2.0) -> ChosenLr:
    """Run this target's missing tuning trials, wait for other workers' running ones, and return the best.

    ``open_study(name, sampler=..., pruner=...)`` opens (or creates) a study in the sweep's storage.
    """
    import optuna
    from optuna.trial import TrialState

    # fail_stale_trials and RDB heartbeats are the documented way to retry crashed trials, still marked experimental.
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    name = study_name(sweep, target)
    study = open_study(name, sampler=optuna.samplers.TPESampler(seed=tuning.seed), pruner=make_pruner(tuning))
    for lr in tuning.first[:tuning.trials]:
        study.enqueue_trial({"lr": float(lr)}, skip_if_exists=True)

    numbers: list[int] = []

    def objective(trial: Trial) -> float:
        numbers.append(trial.number)
        return train_trial(target, trial.suggest_float("lr", tuning.low, tuning.high, log=True), trial)

    while True:
        optuna.storages.fail_stale_trials(study)  # a dead worker's trial comes back WAITING (retry callback)
        states = Counter(t.state for t in study.get_trials(deepcopy=False))
        planned = states[TrialState.COMPLETE] + states[TrialState.PRUNED] + states[TrialState.RUNNING]
        if states[TrialState.WAITING] or planned < tuning.trials:
            study.optimize(objective, n_trials=1)  # a training error propagates: it would fail every trial
            _log_trial(name, next(t for t in study.get_trials(deepcopy=False) if t.number == numbers[-1]))
        elif states[TrialState.RUNNING]:
            time.sleep(poll_s)  # another worker's trial: the grid needs the final choice
        else:
            break
    return best_of(study)


def best_of(study: Study) -> ChosenLr:
    """The complete trial with the lowest held-out loss; a clear error when every trial was pruned."""
    from optuna.trial import TrialState

    trials = study.get_trials(deepcopy=False)
    complete = [(t.value, t) for t in trials if t.state == TrialState.COMPLETE and t.value is not None]
    pruned = [t for t in trials if t.state == TrialState.PRUNED]
    if not complete:
        reasons = "; ".join(sorted({str(t.user_attrs.get(ATTR_PRUNED, "?")) for t in pruned}))
        raise ValueError(f"learning-rate tuning {study.study_name}: no trial finished ({len(pruned)} pruned: "
                         f"{reasons}); change --tuning.low/high or raise --tuning.max-steps")
    loss, best = min(complete, key=lambda scored: scored[0])
    return ChosenLr(lr=float(best.params["lr"]), study=study.study_name, trial=best.number, loss=float(loss),
                    complete=len(complete), pruned=len(pruned))


def _log_trial(name: str, trial: FrozenTrial) -> None:
    outcome = f"loss {trial.value:.4f}" if trial.value is not None else trial.state.name.lower()
    reason = trial.user_attrs.get(ATTR_PRUNED)
    note(f"{name}: trial {trial.number} lr={trial.params.get('lr', float('nan')):.3g} {outcome}"
         f"{f' ({reason})' if reason else ''}")


def describe(tuning: LrTuning, tokens: int) -> str:
    """The search settings, for the parent run's ``transfer.lr_tuning`` tag."""
    every = f"every {tuning.eval_every_steps} steps" if tuning.eval_every_steps else "as the grid's runs"
    return (f"{tuning.trials} trials per (size, role), lr log-uniform in [{tuning.low:g}, {tuning.high:g}], "
            f"TPE (seed {tuning.seed}) + {tuning.pruner} pruner from evaluation {tuning.min_evals}, "
            f"at most {tuning.max_steps} steps on {tokens} tokens, evaluated {every}")


@dataclass(frozen=True)
class _Prepared:
    data: DataConfig
    """The tuning run's data."""
    model: GPTConfig
    """Its shape (vocabulary filled in from the tokenizer)."""
    init_weights: GPT | None
    """The loaded GPT a fine-tune starts from; None for scratch."""
    checkpoint: LoadedCheckpoint | None
    """The checkpoint a fine-tune starts from; None for scratch."""


def _prepare(args: SweepArgs, target: TuneTarget, tokens: int) -> _Prepared:
    """The same data, shape and start as the grid's run of this size and role, at the tuning budget."""
    uri = args.from_template.format(size=target.size)
    init_weights: GPT | None = None
    checkpoint: LoadedCheckpoint | None = None
    if target.role == ROLE_FINETUNE:
        checkpoint = load_checkpoint_uri(uri)
        init_weights = checkpoint.model  # read once, when verified: the weights carry their config
        model, tokenizer = init_weights.config, checkpoint.folder / "tokenizer"
    else:
        model = model_config(ShapeArgs(preset=target.size))
        if ROLE_FINETUNE in args.roles:  # as the grid's scratch runs: the fine-tunes' tokenizer
            tokenizer = load_checkpoint_uri(uri).folder / "tokenizer"
        else:
            tokenizer = workspace.tokenizer_dir(args.tokenizer_corpus, args.vocab_size,
                                                megabytes(args.tokenizer_max_mb))
    data = DataConfig(corpus_dir=workspace.corpus_dir(args.target, megabytes(args.corpus_max_mb)),
                      tokenizer_dir=tokenizer, context_length=model.context_length, batch_size=args.batch_size,
                      d_f_tokens=tokens, test_tokens=args.test_tokens, seed=args.seed)
    return _Prepared(data, model, init_weights, checkpoint)


def _facts(args: SweepArgs, target: TuneTarget, prepared: _Prepared, tags: dict[str, str]) -> RunFacts:
    """A tuning run's facts: its role's data names, but no law reads it (no role tag, no lineage)."""
    checkpoint = prepared.checkpoint
    source = None if checkpoint is None else checkpoint.name.removeprefix(CHECKPOINT_MODEL_PREFIX)
    return RunFacts(role=target.role, source=source, target=workspace.corpus_label(args.target),
                    parent_uri=None if checkpoint is None else checkpoint.parent_uri,
                    pretrain_run_id=None if checkpoint is None else checkpoint.pretrain_run_id,
                    extra_tags=tags, for_laws=False)


def recipe_trial_trainer(args: SweepArgs, parent_run_id: str, tokens: int) -> TrialTrainer:
    """Tuning runs with the sweep's recipe (same data, shape, start and optimiser but the learning rate), each
    trained by ``train_run`` like every run, with the trial's reporter as an extra callback and no refit."""

    def train(target: TuneTarget, lr: float, trial: Trial) -> float:
        import optuna

        from transfer_laws.plugin.sweeps.lr_trial import ReportToTrial  # lazy: imports Lightning

        prepared = _prepare(args, target, tokens)
        uri = use_tracking_uri(args.tracking_uri)
        report = ReportToTrial(trial, args.tuning.min_evals)
        tags = {TAG_SWEEP: args.study, TAG_PARENT_RUN: parent_run_id, TAG_LR_TUNING: f"{target.size}/{target.role}",
                TAG_LR_TRIAL: str(trial.number),
                MLFLOW_NOTE: f"Learning-rate tuning trial {trial.number} of {target.size}/{target.role} in sweep "
                             f"`{args.study}` (lr {lr:.3g}); no law reads this run."}
        extras = RunExtras(tags=tags, params={PARAM_LR: lr, "preset": target.size, "tuning_role": target.role},
                           callbacks=(report,))
        # The grid's schedule, unless --tuning says otherwise; every trial starts from the same initial weights.
        schedule = replace(args.train, max_steps=args.tuning.max_steps or args.train.max_steps,
                           eval_every_steps=args.tuning.eval_every_steps or args.train.eval_every_steps)
        try:
            trained = train_run(role=target.role, facts=_facts(args, target, prepared, tags), data_config=prepared.data,
                                model_config=prepared.model, optim=replace(args.optim, lr=lr), train=schedule,
                                tracking_uri=uri, experiment=args.experiment,
                                run_name=f"lr-tune-{target.size}-{target.role}-{lr:.2e}",
                                init_weights=prepared.init_weights, parent=prepared.checkpoint, refit=False,
                                evals_per_epoch=None if args.tuning.eval_every_steps else args.evals_per_epoch,
                                progress_bar=False, extras=extras)
            run_id = trained.run_id
        except TrainingFailed as exc:  # a learning rate too high to train: the tuner's answer, not an error
            report.reason, run_id = f"diverged: {exc.__cause__ or exc}", exc.run_id
        trial.set_user_attr(ATTR_RUN_ID, run_id)
        if report.reason:
            client = client_for(uri)
            client.set_tag(run_id, TAG_PRUNED, report.reason)
            client.set_terminated(run_id, "KILLED")
            trial.set_user_attr(ATTR_PRUNED, report.reason)
            raise optuna.TrialPruned(report.reason)
        return float(trained.best_test_loss)

    return train


def tune_learning_rates(args: SweepArgs, cells: list[Cell], parent_run_id: str, open_study: OpenStudy,
                        train_trial: TrialTrainer | None = None) -> dict[TuneTarget, ChosenLr]:
    """Tune every (size, role) of ``cells`` and record the choices on the sweep's parent run."""

    tokens = args.tuning.d_f_tokens or max(c.d_f_tokens for c in cells)
    tuning = replace(args.tuning, max_steps=args.tuning.max_steps or args.train.max_steps)
    trainer = train_trial or recipe_trial_trainer(args, parent_run_id, tokens)
    chosen = {t: tune_target(open_study, args.study, t, tuning, trainer) for t in targets_of(cells)}
    tags = {f"{TAG_LR_PREFIX}{t.size}.{t.role}": f"{c.lr:.6g}" for t, c in chosen.items()}
    tags[TAG_LR_TUNING] = describe(tuning, tokens)
    set_shared_tags(client_for(use_tracking_uri(args.tracking_uri)), parent_run_id, tags)
    for t, c in chosen.items():
        note(f"sweep {args.study}: {t.size}/{t.role} trains at lr={c.lr:.3g} ({c.source()})")
    return chosen


def set_shared_tags(client: MlflowClient, run_id: str, tags: dict[str, str]) -> None:
    """Set tags that several workers write with the same values at about the same time.

    MLflow's SQL store inserts a new tag after checking that none exists, so two workers racing on one key can get
    a unique-key violation; the loser finds the tag written and moves on (or writes it again if it differs).
    """
    from mlflow.exceptions import MlflowException

    for key, value in tags.items():
        try:
            client.set_tag(run_id, key, value)
        except MlflowException:
            if client.get_run(run_id).data.tags.get(key) != value:
                client.set_tag(run_id, key, value)  # the row exists now: this is an update
