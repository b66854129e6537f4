"""The sweep's Optuna study: a grid's cells as fixed-parameter trials in an RDB storage that any number of worker
processes pop from, with heartbeats and retry of crashed trials, the sweep's parent MLflow run, and progress with
an ETA by compute."""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from transfer_laws.lightning_modules.config import PRESETS
from transfer_laws.plugin.sweeps.eta import eta_seconds
from transfer_laws.plugin.sweeps.say import note, warn
from transfer_laws.registry.schema import ROLE_FINETUNE, ROLE_SCRATCH, TAG_SWEEP
from transfer_laws.registry.tracking import client_for, ensure_experiment, home_dir, use_tracking_uri

if TYPE_CHECKING:  # optuna is the training extra's, imported where a study is opened
    from optuna import Study, Trial
    from optuna.pruners import BasePruner
    from optuna.samplers import BaseSampler
    from optuna.trial import FrozenTrial

CELL_KEYS = ("size", "d_f_tokens", "role")
ATTR_PARENT_RUN = "parent_run_id"
ATTR_RUN_ID = "run_id"
TAG_PARENT_RUN = "mlflow.parentRunId"


@dataclass(frozen=True)
class Cell:
    """One grid cell = one run."""

    size: str
    """Preset name (lightning_modules.config.PRESETS)."""
    d_f_tokens: int
    """D_F in tokens."""
    role: str
    """finetune or scratch."""

    def params(self) -> dict[str, str | int]:
        """The trial's fixed parameters."""
        return {"size": self.size, "d_f_tokens": self.d_f_tokens, "role": self.role}


def grid_cells(sizes: list[str], d_f_tokens: list[int], roles: list[str]) -> list[Cell]:
    """Every (size, D_F, role) cell, sizes outermost; bad names or budgets raise ValueError naming them."""
    unknown = [s for s in sizes if s not in PRESETS]
    if unknown:
        raise ValueError(f"unknown size(s) {unknown}; choose from {', '.join(PRESETS)}")
    bad_roles = [r for r in roles if r not in (ROLE_FINETUNE, ROLE_SCRATCH)]
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
    home_dir().mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{home_dir() / 'optuna.db'}"


def open_study(name: str, storage: str | None, *, create: bool = True, heartbeat_s: int = 30, grace_s: int = 120,
               max_retry: int = 2, sampler: BaseSampler | None = None, pruner: BasePruner | None = None) -> Study:
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


def enqueue_cells(study: Study, cells: list[Cell]) -> int:
    """Enqueue the cells not yet in the study (in any state); returns how many were new."""
    before = len(study.get_trials(deepcopy=False))
    for cell in cells:
        study.enqueue_trial(cell.params(), skip_if_exists=True)
    return len(study.get_trials(deepcopy=False)) - before


def fixed_params(trial: Trial | FrozenTrial) -> dict[str, str | int | float] | None:
    """The parameters a trial was enqueued with (``enqueue_trial``); None for a trial Optuna made itself."""
    from optuna.trial import FrozenTrial

    if isinstance(trial, FrozenTrial):
        attrs = trial.system_attrs
    else:  # a live Trial keeps its attributes in the storage
        attrs = trial.storage.get_trial_system_attrs(trial._trial_id)  # Optuna has no public getter
    return attrs.get("fixed_params")


def _cell_of(trial: Trial | FrozenTrial) -> Cell | None:
    """The cell a trial runs; None for a trial that was not enqueued (``trial``: a live Trial or a FrozenTrial)."""
    fixed = fixed_params(trial)
    if not fixed or set(fixed) != set(CELL_KEYS):
        return None
    return Cell(str(fixed["size"]), int(fixed["d_f_tokens"]), str(fixed["role"]))


def trial_loss(trial: FrozenTrial) -> float:
    """A finished trial's value (its run's best held-out loss); NaN when it has none."""
    return math.nan if trial.value is None else float(trial.value)


def sweep_progress(study: Study) -> tuple[int, int]:
    """(cells finished, cells in the study): every enqueued cell counts once, retries included."""
    cells = _cell_states(study)
    return sum(cells.values()), len(cells)


def _cell_states(study: Study) -> dict[Cell, bool]:
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
    from transfer_laws.registry.next_runs import preset_n  # lazy: numpy (0.2 s), which sweep --help needs not

    try:
        return float(preset_n(cell.size)) * cell.d_f_tokens
    except (KeyError, ValueError):  # a size PRESETS does not know fails its trial; weigh it like a small run
        return float(cell.d_f_tokens)


class TrainCell(Protocol):
    """``train(cell, n, tags=None)`` trains one cell as trial number ``n`` (``tags``: more tags its run carries from
    the start, e.g. why --adaptive chose it); returns (MLflow run id, best test loss)."""

    def __call__(self, cell: Cell, number: int, /, tags: dict[str, str] | None = None) -> tuple[str, float]: ...


def finished_trial(study: Study, cell: Cell) -> FrozenTrial | None:
    """The COMPLETE trial (a FrozenTrial) that ran ``cell``, or None."""
    from optuna.trial import TrialState

    return next((t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)) if _cell_of(t) == cell),
                None)


def run_worker(study: Study, train_cell: TrainCell, *, max_trials: int | None = None, progress: bool = True,
               trial_attrs: Callable[[Cell], dict[str, str]] | None = None) -> int:
    """Pop waiting trials and train them until none are left (or ``max_trials``); returns how many this ran.

    ``study.optimize`` runs each trial so that Optuna sends its heartbeats and fails stale trials first (which the
    storage's retry callback re-enqueues). A trial Optuna creates when the queue emptied under us is pruned
    unrun. A training error fails its trial (recorded, not retried) and the worker moves on. ``trial_attrs(cell)``
    gives user attributes to set on the trial before it trains.
    """
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

        def objective(trial: Trial) -> float:
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
                warn(f"sweep: trial {trial.number} {cell} failed: {type(exc).__name__}: {exc}")
                raise
            trial.set_user_attr(ATTR_RUN_ID, run_id)
            mine.append(cell_compute(cell))
            took.append(time.monotonic() - began)
            return loss

        study.optimize(objective, n_trials=1, catch=(Exception,))
        if progress and ran > done_before:
            _print_progress(study, ran, took, mine, time.monotonic() - start)
    return ran


def _print_progress(study: Study, ran: int, took: list[float], mine: list[float], elapsed: float) -> None:
    """The study's progress and an ETA at this worker's seconds per unit of compute (N x D_F, not per run)."""
    cells = _cell_states(study)
    done, total = sum(cells.values()), len(cells)
    eta = eta_seconds(took, mine, [cell_compute(c) for c, finished in cells.items() if not finished])
    width = 30
    filled = int(width * done / total) if total else width
    eta_text = "-" if eta != eta else f"{eta / 60:.1f} min"  # NaN until this worker finished a run
    note(f"sweep {study.study_name}: [{'#' * filled}{'.' * (width - filled)}] {done}/{total} runs, "
         f"ETA {eta_text} by compute (this worker: {ran} in {elapsed / 60:.1f} min)")


def ensure_parent_run(study: Study, tracking_uri: str | None, experiment: str, *, create: bool) -> str:
    """The sweep's parent MLflow run id (stored in the study; created once by the starting process)."""
    existing = study.user_attrs.get(ATTR_PARENT_RUN)
    if existing:
        return str(existing)
    if not create:
        raise ValueError(f"study {study.study_name!r} has no sweep parent run: start it without --worker first")
    uri = use_tracking_uri(tracking_uri)
    experiment_id = ensure_experiment(experiment, uri)
    run = client_for(uri).create_run(experiment_id, run_name=f"sweep-{study.study_name}",
                                    tags={TAG_SWEEP: study.study_name})
    study.set_user_attr(ATTR_PARENT_RUN, run.info.run_id)
    return run.info.run_id
