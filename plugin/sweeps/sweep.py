"""``transfer-laws sweep``: a grid of N x D_F x role as one Optuna study; each trial is one MLflow run.

The grid's cells are enqueued into the study as fixed-parameter trials (idempotently: enqueueing again adds
nothing), so any number of ``--worker`` processes on any number of machines share the work by popping WAITING
trials from the same storage (SQLite locally, PostgreSQL across machines). A trial that stops sending heartbeats
(its worker crashed or was killed) is failed by the next worker and re-enqueued by ``RetryFailedTrialCallback``;
finished cells are never run again, so a stopped sweep resumes where it was. Every trial's MLflow run carries
``transfer.sweep``/``transfer.trial``, ``mlflow.parentRunId`` of the sweep's parent run, its learning rate and
where it came from, all in the run's facts, written when the run starts (``plugin.training.RunExtras``).

``--adaptive`` trains cells one at a time in the order next-run advice chooses (``registry.advice``) until the
law's alpha is known within ``--alpha-tolerance`` or ``--max-runs`` is spent; each run's ``transfer.adaptive_reason``
tag says why it was chosen (see ``plugin/sweeps/adaptive.py``).

``--tune-lr`` first tunes the peak learning rate of every (size, role) with short pruned Optuna trials in the same
storage, then trains the grid at the chosen values (see ``plugin/sweeps/lr_tune.py``). Every grid run records its
learning rate (param ``lr``) and where it came from (tag ``transfer.lr_source``).
"""

from __future__ import annotations

import dataclasses
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

from transfer_laws.lightning_modules.config import OptimConfig, TrainConfig, default_from, positive
from transfer_laws.plugin.recipes import scratch
from transfer_laws.plugin.recipes.args import DataArgs, RefitArgs, StoreArgs, TokenizerArgs
from transfer_laws.plugin.sweeps.lr_tune import PARAM_LR, TAG_LR_SOURCE, ChosenLr, LrTuning, TuneTarget
from transfer_laws.registry.records import MAX_D

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

_Recipe = TypeVar("_Recipe", bound="DataclassInstance")

CELL_KEYS = ("size", "d_f_tokens", "role")
ATTR_PARENT_RUN = "parent_run_id"
ATTR_RUN_ID = "run_id"
ATTR_TUNE_LR = "tune_lr"
TAG_PARENT_RUN = "mlflow.parentRunId"


OPTIM = OptimConfig(lr=1e-3)
"""The sweep's optimiser defaults (fine-tunes and scratch runs alike; --tune-lr replaces the learning rate)."""


@dataclass(kw_only=True)
class Args(StoreArgs, RefitArgs, TokenizerArgs, DataArgs):
    """Arguments of ``transfer-laws sweep``."""

    sizes: list[str] = field(default_factory=lambda: ["2x32", "2x64"])
    """Model shapes (names from lightning_modules.config.PRESETS), one N each."""
    d_f_tokens: list[int] = positive(maximum=MAX_D["tokens"], default_factory=lambda: [20000, 80000])
    """D_F budgets in tokens (a scratch run's dataset size D)."""
    roles: list[str] = field(default_factory=lambda: ["finetune", "scratch"])
    """Which kinds of run each (size, D_F) gets: finetune, scratch or both."""
    from_template: str = "models:/pretrained-text@demo-{size}"
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


@dataclass(frozen=True)
class Cell:
    """One grid cell = one run."""

    size: str
    """Preset name (lightning_modules.config.PRESETS)."""
    d_f_tokens: int
    """D_F in tokens."""
    role: str
    """finetune or scratch."""

    def params(self) -> dict[str, Any]:
        """The trial's fixed parameters."""
        return {"size": self.size, "d_f_tokens": self.d_f_tokens, "role": self.role}


def grid_cells(sizes: list[str], d_f_tokens: list[int], roles: list[str]) -> list[Cell]:
    """Every (size, D_F, role) cell, sizes outermost; bad names or budgets raise ValueError naming them."""
    from transfer_laws.lightning_modules.config import PRESETS

    unknown = [s for s in sizes if s not in PRESETS]
    if unknown:
        raise ValueError(f"unknown size(s) {unknown}; choose from {', '.join(PRESETS)}")
    bad_roles = [r for r in roles if r not in ("finetune", "scratch")]
    if bad_roles:
        raise ValueError(f"unknown role(s) {bad_roles}; a sweep runs finetune and/or scratch")
    if any(d <= 0 for d in d_f_tokens):
        raise ValueError(f"D_F budgets must be positive, got {d_f_tokens}")
    if not (sizes and d_f_tokens and roles):
        raise ValueError("a sweep needs at least one size, one D_F and one role")
    return [Cell(s, int(d), r) for s in dict.fromkeys(sizes) for d in dict.fromkeys(d_f_tokens)
            for r in dict.fromkeys(roles)]


def default_storage() -> str:
    """``sqlite:///<TRANSFER_LAWS_HOME>/optuna.db``."""
    from transfer_laws.registry.tracking import home_dir

    home_dir().mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{home_dir() / 'optuna.db'}"


def open_study(name: str, storage: str | None, *, create: bool = True, heartbeat_s: int = 30, grace_s: int = 120,
               max_retry: int = 2, sampler: Any = None, pruner: Any = None) -> Any:
    """The study in an RDB storage with heartbeats and retry of crashed trials (created unless ``create`` is False).

    ``sampler`` and ``pruner`` live in the process, not in the storage: every worker passes its own.
    """
    import optuna
    from optuna.storages import RDBStorage, RetryFailedTrialCallback

    optuna.logging.set_verbosity(optuna.logging.ERROR)  # failures get our one line
    rdb = RDBStorage(storage or default_storage(), heartbeat_interval=heartbeat_s, grace_period=grace_s,
                     failed_trial_callback=RetryFailedTrialCallback(max_retry=max_retry))
    if not create:
        try:
            return optuna.load_study(study_name=name, storage=rdb, sampler=sampler, pruner=pruner)
        except KeyError:
            raise ValueError(f"no study {name!r} in the storage: start the sweep without --worker first") from None
    return optuna.create_study(study_name=name, storage=rdb, direction="minimize", load_if_exists=True,
                               sampler=sampler, pruner=pruner)


def enqueue_cells(study: Any, cells: list[Cell]) -> int:
    """Enqueue the cells not yet in the study (in any state); returns how many were new."""
    before = len(study.get_trials(deepcopy=False))
    for cell in cells:
        study.enqueue_trial(cell.params(), skip_if_exists=True)
    return len(study.get_trials(deepcopy=False)) - before


def _cell_of(trial: Any) -> Cell | None:
    """The cell a trial runs; None for a trial that was not enqueued (``trial``: a live Trial or a FrozenTrial)."""
    attrs = getattr(trial, "system_attrs", None)
    if attrs is None:  # a live Trial keeps its attributes in the storage
        attrs = trial.storage.get_trial_system_attrs(trial._trial_id)  # Optuna has no public getter
    fixed = attrs.get("fixed_params")
    if not fixed or set(fixed) != set(CELL_KEYS):
        return None
    return Cell(str(fixed["size"]), int(fixed["d_f_tokens"]), str(fixed["role"]))


def sweep_progress(study: Any) -> tuple[int, int]:
    """(cells finished, cells in the study): every enqueued cell counts once, retries included."""
    cells = _cell_states(study)
    return sum(cells.values()), len(cells)


def _cell_states(study: Any) -> dict[Cell, bool]:
    """Every enqueued cell and whether a trial of it completed."""
    from optuna.trial import TrialState

    cells: dict[Cell, bool] = {}
    for t in study.get_trials(deepcopy=False):
        cell = _cell_of(t)
        if cell is not None:
            cells[cell] = cells.get(cell, False) or t.state == TrialState.COMPLETE
    return cells


def cell_compute(cell: Cell) -> float:
    """A cell's weight in the ETA: N x D_F (training compute up to the constant 6 x epochs)."""
    from transfer_laws.registry.next_runs import preset_n

    try:
        return float(preset_n(cell.size)) * cell.d_f_tokens
    except (KeyError, ValueError):  # a size PRESETS does not know fails its trial; weigh it like a small run
        return float(cell.d_f_tokens)


TrainCell = Callable[..., tuple[str, float]]
"""``train(cell, n, tags=None)`` trains one cell as trial number ``n`` (``tags``: more tags its run carries from the
start, e.g. why --adaptive chose it); returns (MLflow run id, best test loss)."""


def finished_trial(study: Any, cell: Cell) -> Any:
    """The COMPLETE trial (a FrozenTrial) that ran ``cell``, or None."""
    from optuna.trial import TrialState

    return next((t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)) if _cell_of(t) == cell),
                None)


def run_worker(study: Any, train_cell: TrainCell, *, max_trials: int | None = None, progress: bool = True,
               trial_attrs: Callable[[Cell], dict[str, Any]] | None = None) -> int:
    """Pop waiting trials and train them until none are left (or ``max_trials``); returns how many this ran.

    ``study.optimize`` runs each trial so that Optuna sends its heartbeats and fails stale trials first (which the
    storage's retry callback re-enqueues). A trial Optuna creates when the queue emptied under us is pruned
    unrun. A training error fails its trial (recorded, not retried) and the worker moves on. ``trial_attrs(cell)``
    gives user attributes to set on the trial before it trains.
    """
    import warnings

    import optuna
    from optuna.trial import TrialState

    # fail_stale_trials and RDB heartbeats are the documented way to retry crashed trials, still marked experimental.
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    ran = 0
    mine: list[float] = []  # compute of the cells this worker trained, and the seconds each took: the ETA's data
    took: list[float] = []
    start = time.monotonic()
    while max_trials is None or ran < max_trials:
        optuna.storages.fail_stale_trials(study)
        if not study.get_trials(deepcopy=False, states=(TrialState.WAITING,)):
            break
        done_before = ran

        def objective(trial: Any) -> float:
            nonlocal ran
            cell = _cell_of(trial)
            if cell is None:
                trial.set_user_attr("empty", True)
                raise optuna.TrialPruned("no waiting cell was left")
            ran += 1
            for key, value in (trial_attrs(cell) if trial_attrs else {}).items():
                trial.set_user_attr(key, value)
            began = time.monotonic()
            try:
                run_id, loss = train_cell(cell, trial.number)
            except Exception as exc:
                sys.stderr.write(f"sweep: trial {trial.number} {cell} failed: {type(exc).__name__}: {exc}\n")
                raise
            trial.set_user_attr(ATTR_RUN_ID, run_id)
            mine.append(cell_compute(cell))
            took.append(time.monotonic() - began)
            return loss

        study.optimize(objective, n_trials=1, catch=(Exception,))
        if progress and ran > done_before:
            _print_progress(study, ran, took, mine, time.monotonic() - start)
    return ran


def _print_progress(study: Any, ran: int, took: list[float], mine: list[float], elapsed: float) -> None:
    """The study's progress and an ETA at this worker's seconds per unit of compute (N x D_F, not per run)."""
    from transfer_laws.plugin.sweeps.eta import eta_seconds

    cells = _cell_states(study)
    done, total = sum(cells.values()), len(cells)
    eta = eta_seconds(took, mine, [cell_compute(c) for c, finished in cells.items() if not finished])
    width = 30
    filled = int(width * done / total) if total else width
    eta_text = "-" if eta != eta else f"{eta / 60:.1f} min"  # NaN until this worker finished a run
    sys.stderr.write(f"sweep {study.study_name}: [{'#' * filled}{'.' * (width - filled)}] {done}/{total} runs, "
                     f"ETA {eta_text} by compute (this worker: {ran} in {elapsed / 60:.1f} min)\n")


def ensure_parent_run(study: Any, tracking_uri: str | None, experiment: str, *, create: bool) -> str:
    """The sweep's parent MLflow run id (stored in the study; created once by the starting process)."""
    from mlflow import MlflowClient

    from transfer_laws.registry.schema import TAG_SWEEP
    from transfer_laws.registry.tracking import ensure_experiment, use_tracking_uri

    existing = study.user_attrs.get(ATTR_PARENT_RUN)
    if existing:
        return str(existing)
    if not create:
        raise ValueError(f"study {study.study_name!r} has no sweep parent run: start it without --worker first")
    uri = use_tracking_uri(tracking_uri)
    experiment_id = ensure_experiment(experiment, uri)
    run = MlflowClient(uri).create_run(experiment_id, run_name=f"sweep-{study.study_name}",
                                       tags={TAG_SWEEP: study.study_name})
    study.set_user_attr(ATTR_PARENT_RUN, run.info.run_id)
    return run.info.run_id


def recipe_trainer(args: Args, parent_run_id: str, lrs: dict[TuneTarget, ChosenLr] | None = None) -> TrainCell:
    """Train a cell with the finetune or scratch recipe, tagged as a trial of this sweep under its parent run.

    The learning rate is the tuned one of the cell's (size, role) when ``lrs`` has it, else ``--optim.lr``; the
    run records it as param ``lr`` with its origin in ``transfer.lr_source``.
    """
    from dataclasses import replace

    def train(cell: Cell, number: int, tags: dict[str, str] | None = None) -> tuple[str, float]:
        from transfer_laws.plugin.recipes import finetune
        from transfer_laws.plugin.training import RunExtras
        from transfer_laws.registry.schema import TAG_SWEEP, TAG_TRIAL

        tuned = (lrs or {}).get(TuneTarget(cell.size, cell.role))
        optim = args.optim if tuned is None else replace(args.optim, lr=tuned.lr)
        source = "fixed: --optim.lr of the sweep" if tuned is None else tuned.source()
        extras = RunExtras(tags={TAG_SWEEP: args.study, TAG_TRIAL: str(number), TAG_PARENT_RUN: parent_run_id,
                                 TAG_LR_SOURCE: source, **(tags or {})},
                           params={PARAM_LR: f"{optim.lr:.6g}"})
        checkpoint = args.from_template.format(size=cell.size)
        if cell.role == "finetune":
            trained = finetune.run(recipe_args(args, finetune.Args, parent=checkpoint, d_f_tokens=cell.d_f_tokens,
                                               optim=optim), extras)
        else:
            # Scratch runs share the fine-tunes' tokenizer so both land on the same loss scale.
            tokenizer_from = checkpoint if "finetune" in args.roles else None
            trained = scratch.run(recipe_args(args, scratch.Args, preset=cell.size, tokenizer_from=tokenizer_from,
                                              d_f_tokens=cell.d_f_tokens, optim=optim), extras)
        return trained.run_id, float(trained.best_test_loss)

    return train


def recipe_args(args: object, recipe: type[_Recipe], **cell: Any) -> _Recipe:
    """A recipe's arguments for one run: every setting the sweep shares with the recipe (by field name, so a new
    shared setting reaches the runs without a copy here), then the cell's own."""
    shared = {f.name: getattr(args, f.name) for f in dataclasses.fields(recipe) if hasattr(args, f.name)}
    return recipe(**{**shared, **cell})


def _check_tune_lr(study: Any, args: Args) -> None:
    """Every process of a study trains at the same kind of learning rate: tuned (``--tune-lr``) or fixed."""
    recorded = study.user_attrs.get(ATTR_TUNE_LR)
    if recorded is None and not args.worker:
        study.set_user_attr(ATTR_TUNE_LR, args.tune_lr)
    elif recorded is not None and bool(recorded) != args.tune_lr:
        flag = "with" if recorded else "without"
        raise ValueError(f"study {study.study_name!r} was started {flag} --tune-lr: run every process of it {flag} "
                         "--tune-lr, or its runs would mix tuned and fixed learning rates")


def run(args: Args) -> int:
    from transfer_laws.plugin.sweeps import ranks as _sweep_ranks

    if args.adaptive and args.worker:
        raise ValueError("--adaptive chooses runs one at a time in one process; it does not take --worker")
    distributed = _sweep_ranks.job_size() > 1  # a worker launched by torchrun: each trial one DDP run of the job
    if distributed:
        _sweep_ranks.check_job(args)
    cells = grid_cells(args.sizes, args.d_f_tokens, args.roles)
    study = open_study(args.study, args.storage, create=not args.worker, heartbeat_s=args.heartbeat_s,
                       grace_s=args.grace_s, max_retry=args.max_retry)
    _check_tune_lr(study, args)
    parent = ensure_parent_run(study, args.tracking_uri, args.experiment, create=not args.worker)
    lrs = None
    if args.tune_lr and args.max_trials != 0:
        from functools import partial

        from transfer_laws.plugin.sweeps.lr_tune import tune_learning_rates

        # Workers tune too (the studies are shared), and every process waits for the final choice.
        lrs = tune_learning_rates(args, cells, parent, partial(open_study, storage=args.storage,
                                                               heartbeat_s=args.heartbeat_s, grace_s=args.grace_s,
                                                               max_retry=args.max_retry))
    train = recipe_trainer(args, parent, lrs)
    if args.adaptive:
        from transfer_laws.plugin.sweeps.adaptive import run_adaptive

        return run_adaptive(args, study, cells, train)
    if not args.worker:
        added = enqueue_cells(study, cells)
        print(f"sweep {args.study}: {len(cells)} cells, {added} newly enqueued; parent run {parent}")
    if distributed:
        ran = _sweep_ranks.run_job(lambda t: run_worker(study, t, max_trials=args.max_trials, progress=True), train)
        if _sweep_ranks.rank() != 0:
            return 0
    else:
        ran = run_worker(study, train, max_trials=args.max_trials, progress=True)
    done, total = sweep_progress(study)
    print(f"sweep {args.study}: this process ran {ran} trial(s); {done}/{total} cells finished")
    return 0
