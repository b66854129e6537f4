"""Smooth monotone per-N scratch curves: PCHIP through the running minimum of ln L over ln D.

PCHIP (Fritsch-Carlson) keeps the nodes' monotonicity, so more data never predicts a worse loss, and is smooth where
piecewise-linear interpolation has kinks that bias D_E across wide gaps between scratch runs. Inversion (ln D at a
loss) evaluates the curve on a dense grid between the nodes and interpolates that linearly: the error is far below
any loss noise (GRID_PER_SEGMENT points per gap between scratch runs). Like the linear curve it never
extrapolates: -inf above the curve's range, +inf below it.
"""

from __future__ import annotations

import numpy as np
from scipy.interpolate import PchipInterpolator

from ._scratch import curve_loss, invert_curve

GRID_PER_SEGMENT = 64


def _grid(log_d: np.ndarray) -> np.ndarray:
    steps = np.linspace(0.0, 1.0, GRID_PER_SEGMENT + 1)[:-1]
    inner = (log_d[:-1, None] + steps[None, :] * np.diff(log_d)[:, None]).ravel()
    return np.r_[inner, log_d[-1]]


def smooth_loss(log_d: np.ndarray, log_l: np.ndarray, query_log_d: np.ndarray) -> np.ndarray:
    """ln L of the smooth curve through monotone nodes at each query ln D; NaN outside the nodes' range."""
    if log_d.size < 3:
        return curve_loss(log_d, log_l, query_log_d)
    out = PchipInterpolator(log_d, log_l, extrapolate=False)(query_log_d)
    return np.where(np.isfinite(out), out, np.nan)


def smooth_invert(log_d: np.ndarray, log_l: np.ndarray, query_log_l: np.ndarray) -> np.ndarray:
    """ln D at which the smooth curve reaches each query loss; -inf above its range, +inf below it."""
    if log_d.size < 3:
        return invert_curve(log_d, log_l, query_log_l)
    grid = _grid(log_d)
    return invert_curve(grid, PchipInterpolator(log_d, log_l)(grid), query_log_l)


def smooth_invert_draws(log_d: np.ndarray, log_l: np.ndarray, query_log_l: np.ndarray) -> np.ndarray:
    """Per draw b: the smooth curve through the running minimum of ``log_l[b]`` (B x n, nodes at sorted ``log_d``)
    inverted at ``query_log_l[b]`` (B x m). Returns B x m with -inf / +inf outside each draw's range."""
    run_min = np.minimum.accumulate(log_l, axis=1)
    if log_d.size < 3:
        return np.stack([invert_curve(log_d, run_min[b], query_log_l[b]) for b in range(log_l.shape[0])])
    grid = _grid(log_d)
    dense = PchipInterpolator(log_d, run_min, axis=1)(grid)
    return np.stack([invert_curve(grid, dense[b], query_log_l[b]) for b in range(log_l.shape[0])])
