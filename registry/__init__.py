"""Checkpoint registry, law fitting and the law model. Re-exports only; importing this does not import MLflow."""

from .advice import Advice, Candidate, compute_flops, rank_next_runs
from .fit import FitError, Prediction, RunResult, TransferLaw, fit_transfer_law, plot_law

__all__ = [
    "Advice", "Candidate", "compute_flops", "rank_next_runs",
    "FitError", "Prediction", "RunResult", "TransferLaw", "fit_transfer_law", "plot_law",
]
