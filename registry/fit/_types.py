"""Per-run outcomes and errors of the transfer-law fitter; its input is the project's one run record,
``registry.records.RunResult``."""

from __future__ import annotations

from dataclasses import dataclass

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
