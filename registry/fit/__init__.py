"""The transfer-law fitter: D_E from scratch runs, D_T = k * D_F^alpha * N^beta, bootstrap, predictions, plots.

Pure numerics (numpy, scipy, matplotlib for plots); no MLflow.
"""

from ._fit import fit_transfer_law
from ._model import ScratchModel, TransferLaw
from ._plots import plot_law
from ._predict import convert_k
from ._scratch import KaplanLaw
from ._types import FINETUNE, SCRATCH, FitError, Point, Prediction, RunResult

__all__ = [
    "FINETUNE", "SCRATCH", "FitError", "KaplanLaw", "Point", "Prediction", "RunResult", "ScratchModel",
    "TransferLaw", "convert_k", "fit_transfer_law", "plot_law",
]
