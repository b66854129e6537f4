"""The sweep (``transfer-laws sweep``): a grid of N x D_F x role as one Optuna study; each trial is one MLflow run.

The grid's cells are enqueued into the study as fixed-parameter trials (idempotently: enqueueing again adds
nothing), so any number of ``--worker`` processes on any number of machines share the work by popping WAITING
trials from the same storage (SQLite locally, PostgreSQL across machines). A trial that stops sending heartbeats
(its worker crashed or was killed) is failed by the next worker and re-enqueued by ``RetryFailedTrialCallback``;
finished cells are never run again, so a stopped sweep resumes where it was. Every trial's MLflow run carries
``transfer.sweep``/``transfer.trial``, ``mlflow.parentRunId`` of the sweep's parent run, its learning rate and
where it came from, all in the run's facts, written when the run starts (``plugin.training.RunExtras``).

``--adaptive`` trains cells one at a time in the order next-run advice chooses (``registry.fit.advice``) until the
law's alpha is known within ``--alpha-tolerance`` or ``--max-runs`` is spent; each run's ``transfer.adaptive_reason``
tag says why it was chosen (see ``plugin/sweeps/adaptive.py``).

``--tune-lr`` first tunes the peak learning rate of every (size, role) with short pruned Optuna trials in the same
storage, then trains the grid at the chosen values (see ``plugin/sweeps/lr_tune.py``). Every grid run records its
learning rate (param ``lr``) and where it came from (tag ``transfer.lr_source``).
"""

from __future__ import annotations

import dataclasses
from dataclasses import replace
from functools import partial
from typing import TYPE_CHECKING, TypeVar

from transfer_laws.plugin.recipes import (
    FinetuneArgs,
    ScratchArgs,
    run_finetune,
    run_scratch,
)
from transfer_laws.plugin.recipes import finetune as finetune_recipe
from transfer_laws.plugin.recipes import scratch as scratch_recipe
from transfer_laws.plugin.recipes.outcome import outcome_lines
from transfer_laws.plugin.sweeps import ranks
from transfer_laws.plugin.sweeps.args import SweepArgs
from transfer_laws.plugin.sweeps.lr_tune import ChosenLr, TuneTarget, tune_learning_rates
from transfer_laws.plugin.sweeps.say import Say, quiet
from transfer_laws.plugin.sweeps.study import (
    TAG_PARENT_RUN,
    Cell,
    TrainCell,
    enqueue_cells,
    ensure_parent_run,
    grid_cells,
    open_study,
    run_worker,
    sweep_progress,
)
from transfer_laws.plugin.training import RunExtras, TrainedRun
from transfer_laws.registry.schema import PARAM_LR, ROLE_FINETUNE, TAG_LR_SOURCE, TAG_SWEEP, TAG_TRIAL

if TYPE_CHECKING:
    from _typeshed import DataclassInstance
    from optuna import Study

ATTR_TUNE_LR = "tune_lr"
"""On the study: whether its grid trains at tuned learning rates (every process of it must agree)."""

_Recipe = TypeVar("_Recipe", bound="DataclassInstance")


def recipe_trainer(args: SweepArgs, parent_run_id: str, lrs: dict[TuneTarget, ChosenLr] | None = None, *,
                   say: Say = quiet) -> TrainCell:
    """Train a cell with the finetune or scratch recipe, tagged as a trial of this sweep under its parent run.

    The learning rate is the tuned one of the cell's (size, role) when ``lrs`` has it, else ``--optim.lr``; the
    run records it as param ``lr`` with its origin in ``transfer.lr_source``. With ``--print-outcome`` rank 0
    says each run's headline and what its refit did.
    """

    def train(cell: Cell, number: int, tags: dict[str, str] | None = None) -> tuple[str, float]:
        tuned = (lrs or {}).get(TuneTarget(cell.size, cell.role))
        optim = args.optim if tuned is None else replace(args.optim, lr=tuned.lr)
        source = "fixed: --optim.lr of the sweep" if tuned is None else tuned.source()
        extras = RunExtras(tags={TAG_SWEEP: args.study, TAG_TRIAL: str(number), TAG_PARENT_RUN: parent_run_id,
                                 TAG_LR_SOURCE: source, **(tags or {})},
                           params={PARAM_LR: f"{optim.lr:.6g}"})
        checkpoint = args.from_template.format(size=cell.size)
        trained: TrainedRun
        if cell.role == ROLE_FINETUNE:
            trained = run_finetune(recipe_args(args, FinetuneArgs, parent=checkpoint, d_f_tokens=cell.d_f_tokens,
                                               optim=optim), extras)
            headline = finetune_recipe.headline(trained)
        else:
            # Scratch runs share the fine-tunes' tokenizer so both land on the same loss scale.
            tokenizer_from = checkpoint if ROLE_FINETUNE in args.roles else None
            trained = run_scratch(recipe_args(args, ScratchArgs, preset=cell.size, tokenizer_from=tokenizer_from,
                                              d_f_tokens=cell.d_f_tokens, optim=optim), extras)
            headline = scratch_recipe.headline(trained)
        if trained.rank == 0 and args.print_outcome:
            for line in outcome_lines(trained, args.tracking_uri, headline):
                say(line)
        return trained.run_id, float(trained.best_test_loss)

    return train


def recipe_args(args: object, recipe: type[_Recipe], **cell: object) -> _Recipe:
    """A recipe's arguments for one run: every setting the sweep shares with the recipe (by field name, so a new
    shared setting reaches the runs without a copy here), then the cell's own."""
    shared = {f.name: getattr(args, f.name) for f in dataclasses.fields(recipe) if hasattr(args, f.name)}
    return recipe(**{**shared, **cell})


def _check_tune_lr(study: Study, args: SweepArgs) -> None:
    """Every process of a study trains at the same kind of learning rate: tuned (``--tune-lr``) or fixed."""
    recorded = study.user_attrs.get(ATTR_TUNE_LR)
    if recorded is None and not args.worker:
        study.set_user_attr(ATTR_TUNE_LR, args.tune_lr)
    elif recorded is not None and bool(recorded) != args.tune_lr:
        flag = "with" if recorded else "without"
        raise ValueError(f"study {study.study_name!r} was started {flag} --tune-lr: run every process of it {flag} "
                         "--tune-lr, or its runs would mix tuned and fixed learning rates")


def run_sweep(args: SweepArgs, *, say: Say = quiet) -> int:
    """``transfer-laws sweep``: create (or join, with ``--worker``) the study and train its cells; 0 when done.

    Its lines (the grid enqueued, each run's outcome, what this process ran) go to ``say``."""
    if args.adaptive and args.worker:
        raise ValueError("--adaptive chooses runs one at a time in one process; it does not take --worker")
    distributed = ranks.job_size() > 1  # a worker launched by torchrun: each trial one DDP run of the job
    if distributed:
        ranks.check_job(args)
    cells = grid_cells(args.sizes, args.d_f_tokens, args.roles)
    study = open_study(args.study, args.storage, create=not args.worker, heartbeat_s=args.heartbeat_s,
                       grace_s=args.grace_s, max_retry=args.max_retry)
    _check_tune_lr(study, args)
    parent = ensure_parent_run(study, args.tracking_uri, args.experiment, create=not args.worker)
    lrs = None
    if args.tune_lr and args.max_trials != 0:
        # Workers tune too (the studies are shared), and every process waits for the final choice.
        lrs = tune_learning_rates(args, cells, parent, partial(open_study, storage=args.storage,
                                                               heartbeat_s=args.heartbeat_s, grace_s=args.grace_s,
                                                               max_retry=args.max_retry))
    train = recipe_trainer(args, parent, lrs, say=say)
    if args.adaptive:
        from transfer_laws.plugin.sweeps.adaptive import run_adaptive  # lazy: numpy (0.2 s), not for sweep --help

        return run_adaptive(args, study, cells, train, say=say)
    if not args.worker:
        added = enqueue_cells(study, cells)
        say(f"sweep {args.study}: {len(cells)} cells, {added} newly enqueued; parent run {parent}")
    if distributed:
        ran = ranks.run_job(lambda t: run_worker(study, t, max_trials=args.max_trials, progress=True), train)
        if ranks.rank() != 0:
            return 0
    else:
        ran = run_worker(study, train, max_trials=args.max_trials, progress=True)
    done, total = sweep_progress(study)
    say(f"sweep {args.study}: this process ran {ran} trial(s); {done}/{total} cells finished")
    return 0
