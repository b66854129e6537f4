"""95% prediction intervals for one run's best loss, and the forecast of a run a law has not seen.

A *prediction* interval holds a new run's measured loss, not the law's mean: both what the law does not know (its
parameter uncertainty) and the run-to-run noise (the scale the residuals show). In ln L, each side of the interval
is the two half-widths added in quadrature: the bootstrap's 2.5/97.5 percentile of the predicted loss (a fine-tune)
or the scratch form's first-order spread sigma * sqrt(g (J'J)^-1 g') (a scratch run), and t(0.975, dof) x sigma
(sigma read off dof residual degrees of freedom). ``z`` is the run's ln-loss gap in units of the side it fell on,
so |z| <= 1.96 exactly when the run lies inside; mean |z| of a calibrated law is about 0.8.

A run the law cannot forecast gets a reason instead: a size without a scratch curve, D_F outside the fine-tunes the
law was fitted on, D outside the scratch curve at its N, a loss the scratch model does not reach.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.stats import t as student_t

from transfer_laws.registry.records import RunResult
from transfer_laws.registry.schema import ROLE_FINETUNE, ROLE_SCRATCH

from ._law_data import LawData
from ._parametric import RIDGE, _free_and_jacobian
from ._scratch import match_n
from ._scratch_model import ScratchModel
from ._types import Calibration, ForecastRecord

Z95 = 1.959963984540054
"""The normal 97.5% quantile: an interval side is Z95 standard deviations of the parameter spread."""
INTERPOLATE_SPREAD = float(np.sqrt(1.5))
"""An interpolated curve's error at a new D holds the noise of its neighbour nodes too (as in ``_fit``)."""
RANGE_RTOL = 1e-9
"""Relative slack on the fitted ranges (floats read back from MLflow)."""

# Why a run has no forecast (prefixes; the details follow a colon).
F_ROLE = "not a scratch run or fine-tune"
F_NUMBERS = "missing or non-positive N, D or loss"
F_NEW_SIZE = "a new size: no scratch curve at this N"
F_D_F_RANGE = "D_F outside the fitted range"
F_D_RANGE = "D outside the scratch curve's range at this N"
F_NO_REACH = "the scratch model does not reach this point"
F_NO_SPREAD = "no interval: the version had too few runs to read the noise (no residual degrees of freedom)"


@dataclass(frozen=True)
class Forecast:
    """A law's 95% prediction interval for one run's best loss, scored against what the run measured."""

    run_id: str
    role: str
    n: float
    """N, non-embedding parameters."""
    d: float
    """D_F of a fine-tune, D of a scratch run, in the law's unit."""
    observed: float
    """The run's best held-out loss (nats/token)."""
    loss: float = float("nan")
    """Predicted best loss (NaN when there is no forecast)."""
    low: float = float("nan")
    high: float = float("nan")
    z: float = float("nan")
    """ln(observed / predicted) in units of the interval side it fell on (|z| <= 1.96 inside)."""
    reason: str = ""
    """Why there is no forecast ("" when there is one)."""

    @property
    def inside(self) -> bool:
        return not self.reason and self.low <= self.observed <= self.high

    def to_dict(self) -> ForecastRecord:
        return ForecastRecord(run_id=self.run_id, role=self.role, n=_finite(self.n), d=_finite(self.d),
                              observed=_finite(self.observed), loss=_finite(self.loss), low=_finite(self.low),
                              high=_finite(self.high), z=_finite(self.z), inside=self.inside, reason=self.reason)


def _finite(x: float) -> float | None:
    """``x`` as JSON keeps it: NaN and infinities are None."""
    return float(x) if np.isfinite(x) else None


def _t_quantile(dof: int) -> float:
    return float(student_t.ppf(0.975, dof)) if dof > 0 else Z95


def _noise(law: LawData, role: str) -> tuple[float, int]:
    """(sigma, dof) of the run-to-run noise in ln L the fit read off its residuals (0 for fits made before)."""
    checks = law.checks
    if role == ROLE_FINETUNE:
        return float(checks.get("finetune_noise") or 0.0), int(checks.get("finetune_noise_dof") or 0)
    return float(checks.get("scratch_noise") or 0.0), int(checks.get("scratch_noise_dof") or 0)


def _combine(log_pred: np.ndarray, param_low: np.ndarray, param_high: np.ndarray,
             noise_half: float) -> tuple[np.ndarray, np.ndarray]:
    """Each side: the parameter half-width and the noise half-width in quadrature (ln L)."""
    down = np.sqrt(np.square(log_pred - param_low) + noise_half**2)
    up = np.sqrt(np.square(param_high - log_pred) + noise_half**2)
    return log_pred - down, log_pred + up


def finetune_interval(law: LawData, n_params: np.ndarray, d_f: np.ndarray) -> tuple[np.ndarray, ...]:
    """Predicted fine-tuned loss at (N, D_F) and its 95% prediction interval (loss, low, high; NaN where the
    scratch model does not reach)."""
    n, d = np.broadcast_arrays(np.asarray(n_params, dtype=float), np.asarray(d_f, dtype=float))
    k, a, b = (law.draws[name].reshape((-1,) + (1,) * n.ndim) for name in ("k", "alpha", "beta"))
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        log_pred = law.scratch.log_loss(n, np.log(d + law.k * d**law.alpha * n**law.beta))
        log_draws = law.scratch.log_loss(np.broadcast_to(n, (len(k), *n.shape)),
                                         np.log(d[None] + k * d[None] ** a * n[None] ** b))
    if log_draws.shape[0] and np.isfinite(log_draws).any():
        with np.errstate(invalid="ignore"):
            param_low, param_high = (np.nanpercentile(log_draws, q, axis=0) for q in (2.5, 97.5))
    else:
        param_low = param_high = log_pred
    sigma, dof = _noise(law, ROLE_FINETUNE)
    low, high = _combine(log_pred, np.minimum(param_low, log_pred), np.maximum(param_high, log_pred),
                         _t_quantile(dof) * sigma)
    return np.exp(log_pred), np.exp(low), np.exp(high)


def scratch_interval(scratch: ScratchModel, sigma: float, dof: int, n: float, d: float) -> tuple[float, ...]:
    """Predicted scratch loss at (N, D) and its 95% prediction interval (loss, low, high)."""
    log_n, log_d = np.array([np.log(n)]), np.array([np.log(d)])
    log_pred = float(scratch.log_loss(np.array([n]), log_d)[0])
    form = scratch.form()
    if form is not None:
        # First-order spread of the fitted form at this point: sigma^2 g (J'J)^-1 g', J at the scratch runs.
        z, jac = _free_and_jacobian(form, scratch.log_n, scratch.log_d)
        info = jac.T @ jac
        info += RIDGE * np.trace(info) / info.shape[0] * np.eye(info.shape[0])
        g = _free_and_jacobian(form, log_n, log_d)[1]
        param = Z95 * sigma * float(np.sqrt(max((g @ np.linalg.solve(info, g.T)).item(), 0.0)))
        noise = _t_quantile(dof) * sigma
    else:
        param, noise = 0.0, _t_quantile(dof) * sigma * INTERPOLATE_SPREAD
    low, high = _combine(np.array(log_pred), np.array(log_pred - param), np.array(log_pred + param), noise)
    return float(np.exp(log_pred)), float(np.exp(low)), float(np.exp(high))


def score(run_id: str, role: str, n: float, d: float, observed: float, loss: float, low: float,
          high: float) -> Forecast:
    """A forecast with its z (see the module docstring)."""
    if not np.isfinite(loss):
        return Forecast(run_id, role, n, d, observed, reason=F_NO_REACH)
    if not (np.isfinite(low) and np.isfinite(high) and low < loss < high):
        return Forecast(run_id, role, n, d, observed, reason=F_NO_SPREAD)
    gap = np.log(observed) - np.log(loss)
    side = np.log(high) - np.log(loss) if gap > 0 else np.log(loss) - np.log(low)
    return Forecast(run_id, role, n, d, observed, loss, low, high, float(Z95 * gap / side))


def _d_of(run: RunResult) -> float | None:
    """The run's D_F (or D) in tokens, the unit every law is fitted in; None when not a positive number."""
    try:
        return float(run.d_f_tokens) if run.d_f_tokens is not None and float(run.d_f_tokens) > 0 else None
    except (TypeError, ValueError):
        return None


def _in(value: float, low: float, high: float) -> bool:
    return low * (1 - RANGE_RTOL) <= value <= high * (1 + RANGE_RTOL)


def forecast_run(law: LawData, run: RunResult) -> Forecast:
    """What ``law`` predicted for ``run`` (a run it was not fitted on), or why it cannot say."""
    d = _d_of(run)
    try:
        n, observed = float(run.n_params), float(run.best_test_loss)
    except (TypeError, ValueError):
        n = observed = float("nan")
    base = Forecast(str(run.run_id), str(run.role), n, d or float("nan"), observed)
    if run.role not in (ROLE_FINETUNE, ROLE_SCRATCH):
        return _why(base, F_ROLE)
    if d is None or not (np.isfinite(n) and n > 0 and np.isfinite(observed) and observed > 0):
        return _why(base, F_NUMBERS)
    curve = int(match_n(law.scratch.levels, np.array([n]))[0]) if law.scratch.levels.size else -1
    if curve < 0:
        return _why(base, f"{F_NEW_SIZE}: N={n:.4g}")
    if run.role == ROLE_FINETUNE:
        used = [p.d_f for p in law.points if p.used]
        if not used or not _in(d, min(used), max(used)):
            span = f"{min(used):.4g}..{max(used):.4g}" if used else "none"
            return _why(base, f"{F_D_F_RANGE}: D_F={d:.4g}, fitted {span}")
        loss, low, high = (float(v) for v in finetune_interval(law, np.array(n), np.array(d)))
    else:
        nodes = np.exp(law.scratch.curves[curve][0])
        if not _in(d, float(nodes.min()), float(nodes.max())):
            return _why(base, f"{F_D_RANGE}: D={d:.4g}, curve {nodes.min():.4g}..{nodes.max():.4g}")
        sigma, dof = _noise(law, ROLE_SCRATCH)
        loss, low, high = scratch_interval(law.scratch, sigma, dof, n, d)
    return score(base.run_id, base.role, n, d, observed, loss, low, high)


def _why(base: Forecast, reason: str) -> Forecast:
    return Forecast(base.run_id, base.role, base.n, base.d, base.observed, reason=reason)


def calibration(forecasts: list[Forecast]) -> Calibration:
    """How a set of forecasts fared: ``n`` scored, ``inside`` (within the 95% interval), ``coverage``,
    ``mean_abs_z`` (None when none was scored), ``unscored`` (runs with a reason instead)."""
    scored = [f for f in forecasts if not f.reason]
    inside = sum(f.inside for f in scored)
    zs = np.abs([f.z for f in scored])
    return Calibration(n=len(scored), inside=inside, coverage=inside / len(scored) if scored else None,
                       mean_abs_z=float(np.mean(zs)) if scored else None, unscored=len(forecasts) - len(scored))
