"""The transfer-law fitter: D_E from scratch runs, D_T = k * D_F^alpha * N^beta, bootstrap, predictions, plots.

Pure numerics (numpy, scipy; SVG charts drawn as text); no MLflow. Its input is the project's one run record,
``RunResult`` (``registry/records.py``), re-exported here. Its public faces: this package (fitting, the law and its
queries, forecasts and their scores, the fit folder), ``registry.fit.charts`` (the SVG charts),
``registry.fit.compare`` (the laws of one target side by side) and ``registry.fit.advice`` (what the next run is
worth); its ``_`` modules are imported only from inside it (an import contract in pyproject.toml).
"""

from transfer_laws.registry.records import RunResult

from ._chars import KPerChar
from ._fit import fit_transfer_law
from ._forecast import Forecast, calibration, forecast_run
from ._io import JSON_NAME, NPZ_NAME, is_fit_folder
from ._loo import leave_one_out
from ._model import TransferLaw
from ._predict import convert_k
from ._regime import holds_at, misfit
from ._report import plot_law
from ._scratch import KaplanLaw
from ._scratch_model import ScratchModel
from ._types import (
    Calibration,
    Checks,
    FitError,
    LackOfFit,
    LawSettings,
    Point,
    Prediction,
    TrackRecord,
    VersionRecord,
)

__all__ = [
    # fitting and the law
    "Checks", "FitError", "KaplanLaw", "LackOfFit", "LawSettings", "Point", "Prediction", "RunResult", "ScratchModel",
    "TransferLaw", "convert_k", "fit_transfer_law", "holds_at", "misfit", "plot_law", "KPerChar",
    # forecasts: a version predicts the runs it has not seen, and is scored on them
    "Calibration", "Forecast", "TrackRecord", "VersionRecord", "calibration", "forecast_run", "leave_one_out",
    # the fit folder a version's model holds
    "JSON_NAME", "NPZ_NAME", "is_fit_folder",
]
