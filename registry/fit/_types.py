"""What the transfer-law fitter hands out: per-run outcomes, predictions, errors, and the JSON records a law carries
(its settings and ``checks``, as written to ``law.json``); its input is the project's one run record,
``registry.records.RunResult``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, TypedDict

import numpy as np

from transfer_laws.registry.schema import ROLE_FINETUNE, ROLE_SCRATCH

ArrayLike = float | np.ndarray
"""N or D_F: one number or an array (results broadcast the same way)."""

ROLES = (ROLE_SCRATCH, ROLE_FINETUNE)
"""The roles the fitter uses: scratch runs give D_E, fine-tunes give D_T (pretraining runs are excluded)."""

# Exclusion reasons (prefixes; some carry details after a colon).
R_DUPLICATE = "duplicate run_id"
R_ROLE = "unknown role"
R_MISSING = "missing field"
R_NONFINITE = "non-finite loss (diverged)"
R_NONPOSITIVE_LOSS = "non-positive loss"
R_NONPOSITIVE_SIZE = "non-positive N or D_F"
R_NO_CURVE = "no scratch curve at this N"
R_BELOW_RANGE = "outside the scratch curve's range: loss below every scratch run at this N"
R_ABOVE_RANGE = "outside the scratch curve's range: loss above every scratch run at this N"
R_HIGH_DATA = "high-data regime"
R_OSSIFIED = "ossification: D_T <= 0"
R_PAST_REGIME = "past the low-data regime"
R_NO_D_E = "scratch model cannot reach this loss at this N"
R_IMPLAUSIBLE_SIZE = "implausible N or D"
R_IMPLAUSIBLE_LOSS = "implausible loss"
R_CONFLICT = "conflicting duplicate point"
R_REPEAT = "repeated scratch point"


@dataclass(frozen=True)
class Point:
    """One fine-tune run's place in the fit."""

    run_id: str
    """MLflow run id."""
    n: float
    """N, non-embedding parameters."""
    d_f: float
    """D_F in the law's unit."""
    loss: float
    """Best held-out loss."""
    d_e: float
    """Effective data D_E from the scratch model (NaN when it could not be computed)."""
    d_t: float
    """D_T = D_E - D_F (NaN when D_E is NaN)."""
    used: bool
    """Whether the point entered the fit of the law."""
    reason: str = ""
    """Why it was not used ("" when used)."""


@dataclass(frozen=True)
class Prediction:
    """What a law predicts at (N, D_F); every field has a 95% interval ``<name>_low``/``<name>_high``: a bootstrap
    (confidence) interval of the law's D_T, D_E, multiplier and fraction, and for ``loss`` a *prediction* interval
    of one run's best loss (the law's uncertainty and the run-to-run noise, see ``_forecast``)."""

    d_t: float
    """Effective data transferred, D_T = k * D_F^alpha * N^beta."""
    d_t_low: float
    d_t_high: float
    d_e: float
    """Effective data D_E = D_F + D_T."""
    d_e_low: float
    d_e_high: float
    multiplier: float
    """Effective data multiplier (D_F + D_T) / D_F."""
    multiplier_low: float
    multiplier_high: float
    fraction: float
    """Fraction of effective data from transfer D_T / (D_F + D_T)."""
    fraction_low: float
    fraction_high: float
    loss: float
    """Predicted best loss: the scratch model at (N, D_E); NaN where the scratch model does not reach. Its interval
    is a 95% prediction interval: where one run's measured best loss falls."""
    loss_low: float
    loss_high: float


class FitError(ValueError):
    """Too few usable points to fit the law; the message says how many there were and why the rest were excluded."""


JsonDict = dict[str, Any]
"""A JSON document of mixed values (the transfer map's ``map.json`` and its parts): what templates and the CLI read."""


class LawSettings(TypedDict, total=False):
    """How a law was fitted (part of its fingerprint but bootstrap and seed)."""

    d_e_method: str
    """The scratch model asked for: ``auto``, ``interpolate``, ``kaplan``, ``irreducible``; ``given`` for published
    coefficients."""
    unit: str
    """Unit of D_F and D: ``tokens`` for every fit, ``chars`` for the paper's published laws."""
    low_data_fraction: float
    bootstrap: int
    seed: int


class Residuals(TypedDict):
    """rms and largest absolute residual (None without any) over ``n`` residuals."""

    rms: float | None
    max_abs: float | None
    n: int


class Candidate(TypedDict):
    """One scratch model the fit compared: its cross-validated error and the alpha, beta it gives."""

    method: str
    cv_error: float | None
    alpha: float | None
    beta: float | None
    chosen: bool


class LowData(TypedDict):
    """How the used points sit against the low-data cutoff D_F <= fraction x D(N)."""

    fraction: float
    excluded_high_data: int
    max_d_f_over_d_n: float | None
    unchecked_n: list[float]


class CurvatureTest(TypedDict):
    """One lack-of-fit test: its F statistic, degrees of freedom, bootstrap calibration, p-value and share."""

    name: str
    f: float
    q: int
    dof: int
    calibration: float
    p: float
    share: float


class CurvatureAtN(TypedDict):
    n: float
    f: float
    bends: str
    """``down`` or ``up``."""


class LackOfFit(TypedDict, total=False):
    """The law's own form tested for curvature (``passed`` None when nothing could be tested)."""

    level: float
    min_share: float
    passed: bool | None
    tests: list[CurvatureTest]
    per_n: list[CurvatureAtN]
    factors: dict[str, float]
    before_cut: LackOfFit
    """The same check on every low-data point, before the regime cut (when there was one)."""


class HoldsAt(TypedDict):
    """Per N: the D_F range the law was fitted on and the smallest D_F cut past the low-data regime there."""

    n: float
    d_f_low: float
    d_f_high: float
    bends_above: float | None


class Alternative(TypedDict):
    """The law fitted under another regime rule."""

    rule: str
    alpha: float | None
    beta: float | None


class RegimeRecord(TypedDict):
    rule: str
    holds: list[HoldsAt]
    excluded_past_regime: int
    alternatives: list[Alternative]
    no_transfer_above: list[list[float]]
    """(N, D_F) of fine-tunes with D_T <= 0 above the D_F fitted at their N."""


class Calibration(TypedDict):
    """How a set of forecasts fared: scored ``n``, ``inside`` the 95% interval, ``coverage``, mean |z| (None when
    none was scored) and the runs that got a reason instead."""

    n: int
    inside: int
    coverage: float | None
    mean_abs_z: float | None
    unscored: int


class ForecastRecord(TypedDict):
    """One run's forecast as JSON (``Forecast.to_dict``): NaN numbers are None."""

    run_id: str
    role: str
    n: float | None
    d: float | None
    observed: float | None
    loss: float | None
    low: float | None
    high: float | None
    z: float | None
    inside: bool
    reason: str


class LooRecord(Calibration):
    """Leave-one-out: each used fine-tune and scratch run forecast by the law fitted without it."""

    roles: dict[str, Calibration]
    limit: int
    bootstrap: int
    runs: list[ForecastRecord]


class VersionRecord(Calibration, total=False):
    runs: list[ForecastRecord]
    """Each forecast of the version (left out of the summary a version keeps)."""


class TrackRecord(TypedDict):
    """How each version's forecasts fared (``versions``) and all of them together (``pooled``)."""

    versions: dict[str, VersionRecord]
    pooled: Calibration


class Checks(TypedDict, total=False):
    """A law's model checks (``law.checks``, JSON-ready; empty for fits made before the checks existed)."""

    estimator: str
    candidates: list[Candidate]
    tie_rule: str
    scratch_noise: float
    finetune_noise: float
    scratch_noise_dof: int
    finetune_noise_dof: int
    scratch_residuals: Residuals
    law_residuals: Residuals
    low_data: LowData
    verdict: list[str]
    lack_of_fit: LackOfFit
    regime: RegimeRecord
    needs: list[str]
    loo: LooRecord
    """Leave-one-out calibration (``_loo.leave_one_out``), added by the refit."""
    track_record: TrackRecord
    """The earlier versions' forecasts (``registry/forecast.py``, without the per-run lists), added by the refit."""
