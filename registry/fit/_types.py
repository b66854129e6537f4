"""Inputs, per-run outcomes and errors of the transfer-law fitter."""

from __future__ import annotations

from dataclasses import dataclass

SCRATCH = "scratch"
FINETUNE = "finetune"
ROLES = (SCRATCH, FINETUNE)

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
R_NO_D_E = "scratch model cannot reach this loss at this N"
R_IMPLAUSIBLE_SIZE = "implausible N or D"
R_IMPLAUSIBLE_LOSS = "implausible loss"
R_CONFLICT = "conflicting duplicate point"
R_REPEAT = "repeated scratch point"
R_NO_PARENT = "fine-tune without a parent"
R_UNKNOWN_PARENT = "parent not among the runs"


@dataclass(frozen=True)
class RunResult:
    """One training run as the fitter sees it."""

    run_id: str
    """MLflow run id (unique)."""
    role: str
    """``"scratch"`` (trained from random init) or ``"finetune"`` (from a pretrained checkpoint)."""
    n_params: float
    """N: non-embedding parameters (token and position embeddings excluded)."""
    d_f_tokens: float
    """Training-set size in tokens: D_F of a fine-tune run, the dataset size D of a scratch run."""
    best_test_loss: float
    """Best held-out loss over training, nats/token."""
    d_f_chars: float | None = None
    """The same data counted in characters (the paper's unit), when known."""
    parent_run_id: str | None = None
    """A fine-tune's pretraining run (checked only when the fit is given the runs that exist)."""


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
    """What a law predicts at (N, D_F); every field has a 95% bootstrap interval ``<name>_low``/``<name>_high``."""

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
    """Predicted best loss: the scratch model at (N, D_E); NaN where the scratch model does not reach."""
    loss_low: float
    loss_high: float


class FitError(ValueError):
    """Too few usable points to fit the law; the message says how many there were and why the rest were excluded."""
