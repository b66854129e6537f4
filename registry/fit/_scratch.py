"""From-scratch models of best loss versus data, and their inversion D_E(N, L).

Two estimators. ``interpolate`` (the paper's way): per N, the measured loss-vs-D curve made monotone (running
minimum of log L as D grows) and interpolated linearly in log-log; it never extrapolates. ``global``: the Kaplan
et al. (2020) form L(N, D) = [(N_c/N)^(alpha_N/alpha_D) + D_c/D]^alpha_D fitted to all scratch runs with a Huber
loss on log L (summed, delta 1e-3) by BFGS from the best few of a grid of starts, inverted in closed form.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.optimize import minimize

# Scratch runs whose N differ by less than this relative amount share a curve.
N_MATCH_RTOL = 1e-6
HUBER_DELTA = 1e-3
# The paper's D(N): data at which the scratch loss is within 1% of its infinite-data value.
FLAT_FACTOR = 0.99


def group_by_n(n: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Distinct N values (sorted) and, per entry of ``n``, the index of its group."""
    order = np.argsort(n, kind="stable")
    sorted_n = n[order]
    starts = np.r_[True, np.abs(np.diff(sorted_n)) > N_MATCH_RTOL * sorted_n[1:]]
    gid_sorted = np.cumsum(starts) - 1
    gid = np.empty_like(gid_sorted)
    gid[order] = gid_sorted
    return sorted_n[starts], gid


def match_n(levels: np.ndarray, n: np.ndarray) -> np.ndarray:
    """Index into ``levels`` of each N in ``n``, -1 where no level matches within ``N_MATCH_RTOL``."""
    n = np.atleast_1d(np.asarray(n, dtype=float))
    if levels.size == 0:
        return np.full(n.shape, -1)
    idx = np.clip(np.searchsorted(levels, n), 0, levels.size - 1)
    best = idx.copy()
    lower = np.clip(idx - 1, 0, levels.size - 1)
    closer = np.abs(levels[lower] - n) < np.abs(levels[idx] - n)
    best[closer] = lower[closer]
    ok = np.abs(levels[best] - n) <= N_MATCH_RTOL * n
    return np.where(ok, best, -1)


def monotone_curve(log_d: np.ndarray, log_l: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sorted log D and the running minimum of log L: more data never gives a worse best loss."""
    order = np.argsort(log_d, kind="stable")
    return log_d[order], np.minimum.accumulate(log_l[order])


def invert_curve(log_d: np.ndarray, log_l: np.ndarray, query_log_l: np.ndarray) -> np.ndarray:
    """log D at which the monotone curve reaches each query loss; -inf above its range, +inf below it."""
    out = np.interp(-query_log_l, -log_l, log_d)
    out = np.where(query_log_l > log_l[0], -np.inf, out)
    return np.where(query_log_l < log_l[-1], np.inf, out)


def curve_loss(log_d: np.ndarray, log_l: np.ndarray, query_log_d: np.ndarray) -> np.ndarray:
    """log L of the monotone curve at each query log D; NaN outside the measured range (no extrapolation)."""
    out = np.interp(query_log_d, log_d, log_l)
    return np.where((query_log_d < log_d[0]) | (query_log_d > log_d[-1]), np.nan, out)


def curve_flat_log_d(log_d: np.ndarray, log_l: np.ndarray) -> float:
    """log D(N): where the measured curve first comes within 1% of its lowest loss (the paper's 99% point).

    +inf when no measured point before the last is within 1% of the lowest loss: the curve is still falling at
    its largest D, so D(N) lies beyond the measurements and its lowest loss says nothing about where it flattens.
    """
    if log_d.size >= 2 and log_l[-2] > log_l[-1] - np.log(FLAT_FACTOR):
        return float("inf")
    target = log_l[-1] - np.log(FLAT_FACTOR)
    return float(max(invert_curve(log_d, log_l, np.array([target]))[0], log_d[0]))


@dataclass(frozen=True)
class KaplanLaw:
    """L(N, D) = [(N_c/N)^a_n + D_c/D]^alpha_d with a_n = alpha_N / alpha_D, parameters in logs."""

    log_n_c: float
    """ln N_c."""
    log_d_c: float
    """ln D_c (in the law's data unit)."""
    a_n: float
    """alpha_N / alpha_D."""
    alpha_d: float
    """alpha_D."""

    @property
    def alpha_n(self) -> float:
        """alpha_N."""
        return self.a_n * self.alpha_d

    def log_loss(self, n: np.ndarray, d: np.ndarray) -> np.ndarray:
        """ln L(N, D)."""
        return _kaplan_log_loss(np.array([self.log_n_c, self.log_d_c, self.a_n, self.alpha_d]), np.log(n), np.log(d))

    def log_d_e(self, n: np.ndarray, log_l: np.ndarray) -> np.ndarray:
        """ln D_E = ln D_c - ln(L^(1/alpha_d) - (N_c/N)^a_n); NaN where L <= L(N, infinity)."""
        return kaplan_log_d_e(np.array([self.log_n_c, self.log_d_c, self.a_n, self.alpha_d]), np.log(n), log_l)

    def flat_log_d(self, n: np.ndarray) -> np.ndarray:
        """ln D(N): data at which L(N, D) = L(N, infinity) / 0.99."""
        log_inf = self.alpha_d * self.a_n * (self.log_n_c - np.log(n))
        return self.log_d_e(n, log_inf - np.log(FLAT_FACTOR))

    def to_dict(self) -> dict[str, float]:
        """Plain parameters, with N_c, D_c, alpha_N for readers."""
        return {"log_n_c": self.log_n_c, "log_d_c": self.log_d_c, "a_n": self.a_n, "alpha_d": self.alpha_d,
                "n_c": float(np.exp(self.log_n_c)), "d_c": float(np.exp(self.log_d_c)), "alpha_n": self.alpha_n}


def kaplan_log_d_e(theta: np.ndarray, log_n: np.ndarray, log_l: np.ndarray) -> np.ndarray:
    """ln D_E for Kaplan parameters ``theta`` (4, or B x 4 for B laws at once: B x m out); NaN where L <= L(N, inf).

    ``theta`` holds ln N_c, ln D_c, alpha_N/alpha_D, alpha_D."""
    t = theta if theta.ndim == 1 else theta.T[:, :, None]
    gap = np.exp(log_l / t[3]) - np.exp(t[2] * (t[0] - log_n))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(gap > 0, t[1] - np.log(np.where(gap > 0, gap, 1.0)), np.nan)


def _kaplan_log_loss(theta: np.ndarray, log_n: np.ndarray, log_d: np.ndarray) -> np.ndarray:
    if theta.ndim == 1:
        log_n_c, log_d_c, a_n, alpha_d = theta
    else:
        log_n_c, log_d_c, a_n, alpha_d = theta[:, 0:1], theta[:, 1:2], theta[:, 2:3], theta[:, 3:4]
    return alpha_d * np.logaddexp(a_n * (log_n_c - log_n), log_d_c - log_d)


def kaplan_jacobian(z: np.ndarray, log_n: np.ndarray, log_d: np.ndarray) -> np.ndarray:
    """d ln L / d z at every (N, D), n x 4, in free coordinates z = (ln N_c, ln D_c, ln(alpha_N/alpha_D),
    ln alpha_D) (the exponents as logs, as ``fit_kaplan`` optimises them)."""
    a_n, alpha_d = np.exp(z[2]), np.exp(z[3])
    u = a_n * (z[0] - log_n)
    s = np.logaddexp(u, z[1] - log_d)
    p = np.exp(u - s)  # share of the N term in the bracket
    return np.stack([alpha_d * p * a_n, alpha_d * (1.0 - p), alpha_d * p * u, alpha_d * s], axis=-1)


def huber(r: np.ndarray) -> np.ndarray:
    """Huber loss of residuals ``r`` with threshold ``HUBER_DELTA``: quadratic inside, linear outside."""
    a = np.abs(r)
    return np.where(a <= HUBER_DELTA, 0.5 * r * r, HUBER_DELTA * (a - 0.5 * HUBER_DELTA))


def _objective(theta: np.ndarray, log_n: np.ndarray, log_d: np.ndarray, log_l: np.ndarray,
               weight: np.ndarray) -> tuple[float, np.ndarray]:
    log_n_c, log_d_c, a_n, alpha_d = theta
    u = a_n * (log_n_c - log_n)
    v = log_d_c - log_d
    s = np.logaddexp(u, v)
    p = np.exp(u - s)
    r = alpha_d * s - log_l
    g = weight * np.clip(r, -HUBER_DELTA, HUBER_DELTA)
    grad = np.array([np.sum(g * alpha_d * p * a_n), np.sum(g * alpha_d * (1 - p)),
                     np.sum(g * alpha_d * p * (log_n_c - log_n)), np.sum(g * s)])
    return float(np.sum(weight * huber(r))), grad


def _objective_free(z: np.ndarray, log_n: np.ndarray, log_d: np.ndarray, log_l: np.ndarray,
                    weight: np.ndarray) -> tuple[float, np.ndarray]:
    # Exponents as logs keep them positive without bounds; unconstrained BFGS reaches the same optimum as
    # L-BFGS-B with bounds several times faster here.
    theta = np.r_[z[:2], np.exp(z[2:])]
    value, grad = _objective(theta, log_n, log_d, log_l, weight)
    grad[2:] *= theta[2:]
    return value, grad


def _start_grid(log_n: np.ndarray, log_d: np.ndarray) -> np.ndarray:
    grid = np.meshgrid(log_n.max() + np.array([0.0, 5, 10, 20, 30]), log_d.max() + np.array([-5.0, 0, 5, 10, 20]),
                       np.array([0.4, 0.75, 1.5, 3.0]), np.array([0.05, 0.1, 0.2, 0.4]), indexing="ij")
    return np.stack([g.ravel() for g in grid], axis=1)


def fit_kaplan(log_n: np.ndarray, log_d: np.ndarray, log_l: np.ndarray, weight: np.ndarray | None = None,
               start: np.ndarray | None = None, n_best_starts: int = 4) -> KaplanLaw:
    """Huber fit of the Kaplan form to scratch runs (multi-start unless ``start`` is given)."""
    weight = np.ones_like(log_l) if weight is None else weight
    options = {"maxiter": 2000, "gtol": 1e-9}
    if start is None:
        starts = _start_grid(log_n, log_d)
        pred = _kaplan_log_loss(starts, log_n[None, :], log_d[None, :])
        scores = np.sum(weight * huber(pred - log_l[None, :]), axis=1)
        starts = starts[np.argsort(scores)[:n_best_starts]]
    else:
        # A bootstrap refit from the point estimate: a looser stop is plenty.
        starts, options = start[None, :], {"maxiter": 500, "gtol": 1e-7}
    best = None
    for s in starts:
        res = minimize(_objective_free, np.r_[s[:2], np.log(s[2:])], args=(log_n, log_d, log_l, weight), jac=True,
                       method="BFGS", options=options)
        if best is None or res.fun < best.fun:
            best = res
    assert best is not None  # at least one start ran
    x = np.r_[best.x[:2], np.exp(best.x[2:])]
    return KaplanLaw(*(float(v) for v in x))
