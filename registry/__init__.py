"""Checkpoint registry, law fitting and the law model. Re-exports only; importing this does not import MLflow."""

from .fit import FitError, Prediction, RunResult, TransferLaw, fit_transfer_law, plot_law

__all__ = ["FitError", "Prediction", "RunResult", "TransferLaw", "fit_transfer_law", "plot_law"]
