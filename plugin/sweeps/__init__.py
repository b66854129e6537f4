"""Many runs as one Optuna study: the sweep's grid (``run_sweep``) with ``--adaptive`` and ``--tune-lr``, the pin
loop's workers (``run_pin``) and the demo that chains them (``train_seed_runs``, ``pin_laws``).

Import-light: Optuna, torch, Lightning and MLflow load when a study is opened or a run trains, so a command's
``--help`` can build its flags from these dataclasses.
"""

from __future__ import annotations

from transfer_laws.plugin.sweeps.args import LrTuning, SweepArgs
from transfer_laws.plugin.sweeps.demo import DemoArgs, DemoSeeds, pin_laws, train_seed_runs
from transfer_laws.plugin.sweeps.pin import PinArgs, PinResult, StudyQueue, parse_budget, run_pin
from transfer_laws.plugin.sweeps.study import (
    ATTR_PARENT_RUN,
    ATTR_RUN_ID,
    TAG_PARENT_RUN,
    Cell,
    TrainCell,
    default_storage,
    enqueue_cells,
    ensure_parent_run,
    grid_cells,
    open_study,
    run_worker,
    sweep_progress,
)
from transfer_laws.plugin.sweeps.sweep import recipe_args, recipe_trainer, run_sweep

__all__ = [
    "ATTR_PARENT_RUN",
    "ATTR_RUN_ID",
    "TAG_PARENT_RUN",
    "Cell",
    "DemoArgs",
    "DemoSeeds",
    "LrTuning",
    "PinArgs",
    "PinResult",
    "StudyQueue",
    "SweepArgs",
    "TrainCell",
    "default_storage",
    "enqueue_cells",
    "ensure_parent_run",
    "grid_cells",
    "open_study",
    "parse_budget",
    "pin_laws",
    "recipe_args",
    "recipe_trainer",
    "run_pin",
    "run_sweep",
    "run_worker",
    "sweep_progress",
    "train_seed_runs",
]
