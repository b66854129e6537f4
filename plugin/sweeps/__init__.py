"""Many runs as one Optuna study: the sweep's grid (``run_sweep``) with ``--adaptive`` and ``--tune-lr``, the pin
loop's workers (``run_pin``) and the demo that chains them (``train_seed_runs``, ``pin_laws``).

Import-light: Optuna, torch, Lightning and MLflow load when a study is opened or a run trains, so a command's
``--help`` can build its flags from these dataclasses.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from transfer_laws.plugin._lazy import lazy_names

if TYPE_CHECKING:  # what mypy reads; at run time each name loads on first use (``lazy_names``)
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

_HOMES = {
    "LrTuning": "transfer_laws.plugin.sweeps.args",
    "SweepArgs": "transfer_laws.plugin.sweeps.args",
    "DemoArgs": "transfer_laws.plugin.sweeps.demo",
    "DemoSeeds": "transfer_laws.plugin.sweeps.demo",
    "pin_laws": "transfer_laws.plugin.sweeps.demo",
    "train_seed_runs": "transfer_laws.plugin.sweeps.demo",
    "PinArgs": "transfer_laws.plugin.sweeps.pin",
    "PinResult": "transfer_laws.plugin.sweeps.pin",
    "StudyQueue": "transfer_laws.plugin.sweeps.pin",
    "parse_budget": "transfer_laws.plugin.sweeps.pin",
    "run_pin": "transfer_laws.plugin.sweeps.pin",
    "ATTR_PARENT_RUN": "transfer_laws.plugin.sweeps.study",
    "ATTR_RUN_ID": "transfer_laws.plugin.sweeps.study",
    "TAG_PARENT_RUN": "transfer_laws.plugin.sweeps.study",
    "Cell": "transfer_laws.plugin.sweeps.study",
    "TrainCell": "transfer_laws.plugin.sweeps.study",
    "default_storage": "transfer_laws.plugin.sweeps.study",
    "enqueue_cells": "transfer_laws.plugin.sweeps.study",
    "ensure_parent_run": "transfer_laws.plugin.sweeps.study",
    "grid_cells": "transfer_laws.plugin.sweeps.study",
    "open_study": "transfer_laws.plugin.sweeps.study",
    "run_worker": "transfer_laws.plugin.sweeps.study",
    "sweep_progress": "transfer_laws.plugin.sweeps.study",
    "recipe_args": "transfer_laws.plugin.sweeps.sweep",
    "recipe_trainer": "transfer_laws.plugin.sweeps.sweep",
    "run_sweep": "transfer_laws.plugin.sweeps.sweep",
}
"""Where each public name lives: a command imports only the module its name needs (``--help`` stays cheap)."""

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

__getattr__, __dir__ = lazy_names(globals(), _HOMES)
