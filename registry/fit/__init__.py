"""The transfer-law fitter: D_E from scratch runs, D_T = k * D_F^alpha * N^beta, bootstrap, predictions, plots.

Pure numerics (numpy, scipy; SVG charts drawn as text); no MLflow. Its input is the project's one run record,
``RunResult`` (``registry/records.py``), re-exported here.
"""

from transfer_laws.registry.records import RunResult

from ._fit import fit_transfer_law
from ._model import TransferLaw
from ._predict import convert_k
from ._regime import holds_at, misfit
from ._report import plot_law
from ._scratch import KaplanLaw
from ._scratch_model import ScratchModel
from ._types import Checks, FitError, Point, Prediction

__all__ = [
    "Checks", "FitError", "KaplanLaw", "Point", "Prediction", "RunResult", "ScratchModel",
    "TransferLaw", "convert_k", "fit_transfer_law", "holds_at", "misfit", "plot_law",
]
