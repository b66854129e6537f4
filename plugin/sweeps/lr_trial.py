"""The Lightning callback that reports a learning-rate tuning run's evaluations to its Optuna trial.

Apart from ``lr_tune.py`` because it imports Lightning, and the sweep's argument parser must not.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.callbacks import Callback

from transfer_laws.registry.schema import METRIC_TEST_LOSS

if TYPE_CHECKING:
    from optuna import Trial


class ReportToTrial(Callback):
    """Reports each held-out evaluation to an Optuna trial and stops training when the pruner says so.

    Stopping (rather than raising) lets Lightning end the run normally; the caller then marks it pruned.
    """

    def __init__(self, trial: Trial, min_evals: int = 1) -> None:
        self.trial = trial
        self.min_evals = min_evals
        self.evals = 0
        self.reason: str | None = None

    def on_validation_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        loss = trainer.callback_metrics.get(METRIC_TEST_LOSS)
        if trainer.sanity_checking or loss is None:
            return
        step = int(trainer.global_step)
        self.trial.report(float(loss), step=step)
        self.evals += 1
        if self.evals >= self.min_evals and self.trial.should_prune():
            self.reason = (f"pruned at step {step}: held-out loss {float(loss):.4f} is worse than the pruner "
                           f"allows against earlier trials at this step")
            trainer.should_stop = True
