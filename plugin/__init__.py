"""The MLflow plugin: run facts written by a Lightning callback, the run context provider, and the one training path
that ties them to a Lightning fit (``train_run``: one MLflow run per job, checkpoint, in-process refit).

Import-light on purpose: ``import mlflow`` loads our run context provider from this package, so nothing here
imports MLflow or Lightning at import time; the callback and helpers load on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from transfer_laws.plugin._lazy import lazy_names
from transfer_laws.plugin.facts import RunFacts

if TYPE_CHECKING:  # what __getattr__ loads on first use, as mypy should see it
    from transfer_laws.plugin.callback import FACTS_FILE, TransferFactsCallback, replay_facts
    from transfer_laws.plugin.run_context import TransferRunContextProvider
    from transfer_laws.plugin.training import RunExtras, TrainedRun, TrainingFailed, train_run

_LAZY = {
    "TransferFactsCallback": "transfer_laws.plugin.callback",
    "replay_facts": "transfer_laws.plugin.callback",
    "FACTS_FILE": "transfer_laws.plugin.callback",
    "TransferRunContextProvider": "transfer_laws.plugin.run_context",
    "train_run": "transfer_laws.plugin.training",
    "RunExtras": "transfer_laws.plugin.training",
    "TrainedRun": "transfer_laws.plugin.training",
    "TrainingFailed": "transfer_laws.plugin.training",
}

__all__ = ["FACTS_FILE", "RunExtras", "RunFacts", "TrainedRun", "TrainingFailed", "TransferFactsCallback",
           "TransferRunContextProvider", "replay_facts", "train_run"]


__getattr__, __dir__ = lazy_names(globals(), _LAZY)  # lazy: import mlflow loads this package (run_context)
