"""ln D_E of fine-tune runs from scratch runs at the same N, for many resamplings of the scratch runs at once."""

from __future__ import annotations

import numpy as np


def _count_above(run_min: np.ndarray, query: np.ndarray) -> np.ndarray:
    """B x m: how many entries of each (non-increasing) row exceed each query, by one flat searchsorted.

    Rows are negated (non-decreasing) and shifted apart by more than their span, so a single sorted array holds
    them all: O(B (n + m) log) time and memory instead of a B x m x n comparison."""
    if run_min.shape[0] == 0:
        return np.zeros((0, query.size), dtype=int)
    values = -run_min
    finite = values[np.isfinite(values)]
    lo = min(finite.min(initial=0.0), (-query).min(initial=0.0)) - 1.0
    hi = max(finite.max(initial=0.0), (-query).max(initial=0.0)) + 1.0
    values = np.where(np.isfinite(values), values, lo)  # absent-before-first-present rows start at -inf
    shift = (hi - lo + 1.0) * np.arange(run_min.shape[0])[:, None]
    flat = (values + shift).ravel()
    pos = np.searchsorted(flat, (-query[None, :] + shift).ravel(), side="left").reshape(run_min.shape[0], -1)
    return pos - run_min.shape[1] * np.arange(run_min.shape[0])[:, None]


def invert_present(log_d: np.ndarray, log_l: np.ndarray, present: np.ndarray, query: np.ndarray) -> np.ndarray:
    """Per draw b: ln D at which the monotone log-log curve of the present scratch points reaches each query loss.

    ``log_d`` (sorted ascending) and ``log_l`` describe the n scratch runs of one N; ``present`` is B x n (which runs
    a draw holds); ``query`` is m ln-losses. The curve of a draw is the running minimum of ln L over its present
    points, interpolated linearly in ln D. Returns B x m: -inf above the curve's range, +inf below it."""
    # Queries in descending loss order make the flat search in ``_count_above`` walk memory forwards.
    order = np.argsort(-query, kind="stable")
    out = np.empty((present.shape[0], query.size))
    out[:, order] = _invert_sorted(log_d, log_l, present, query[order])
    return out


def _invert_sorted(log_d: np.ndarray, log_l: np.ndarray, present: np.ndarray, query: np.ndarray) -> np.ndarray:
    masked = np.where(present, log_l[None, :], np.inf)
    run_min = np.minimum.accumulate(masked, axis=1)
    n = log_d.size
    # First index whose running minimum reaches the query: always a present point, where the minimum drops.
    first = _count_above(run_min, query)
    last_present = np.maximum.accumulate(np.where(present, np.arange(n)[None, :], -1), axis=1)
    below = first >= n
    hi = np.minimum(first, n - 1)
    lo = np.take_along_axis(last_present, np.maximum(hi - 1, 0), axis=1)
    lo = np.where(hi == 0, -1, lo)
    above = lo < 0
    lo_c = np.maximum(lo, 0)
    l_hi = np.take_along_axis(run_min, hi, axis=1)
    l_lo = np.take_along_axis(run_min, lo_c, axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        t = np.where(above, 0.0, (l_lo - query[None, :]) / (l_lo - l_hi))
    out = log_d[lo_c] + t * (log_d[hi] - log_d[lo_c])
    # Exactly at the first present point's loss: its own D.
    exact_first = above & (l_hi == query[None, :])
    out = np.where(exact_first, log_d[hi], out)
    out = np.where(above & ~exact_first, -np.inf, out)
    return np.where(below, np.inf, out)
