"""Kaplan-form refits for many bootstrap weightings at once: Levenberg-Marquardt on the summed Huber loss.

A bootstrap draw reweights the scratch runs by their resampling counts, and its refit starts at the point estimate,
which is already close. Damped Gauss-Newton steps on the Huber loss (curvature from the residuals inside +-delta)
reach the optimum in a handful of 4 x 4 solves per draw; taking every draw's step together replaces one scipy BFGS
run per draw (a Python-level loop of many iterations) by array work over B x n. Coordinates are the free ones of
``fit_kaplan``: ln N_c, ln D_c and the logs of alpha_N/alpha_D and alpha_D, so the exponents stay positive without
bounds.
"""

from __future__ import annotations

import numpy as np

from ._scratch import HUBER_DELTA, huber

MAX_ITERATIONS = 400
# Converged when every gradient component of the summed Huber loss (free coordinates) is below this: two orders
# tighter than the per-draw BFGS refit's gtol, so the batched draws are at least as well converged.
GRADIENT_TOL = 1e-9
# Marquardt damping: start small (near Gauss-Newton), shrink after a successful step, grow after a failed one; a
# draw whose damping passes LAMBDA_MAX cannot lower its loss any more in floating point and stops there.
LAMBDA_START, LAMBDA_DOWN, LAMBDA_UP, LAMBDA_MAX = 1e-3, 3.0, 4.0, 1e12


def _model(z: np.ndarray, log_n: np.ndarray, log_d: np.ndarray, log_l: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Residuals ln L_model - ln L (B x n) and their Jacobian in free coordinates (B x n x 4)."""
    log_n_c, log_d_c = z[:, 0:1], z[:, 1:2]
    a_n, alpha_d = np.exp(z[:, 2:3]), np.exp(z[:, 3:4])
    u = a_n * (log_n_c - log_n)
    s = np.logaddexp(u, log_d_c - log_d)
    p = np.exp(u - s)  # share of the N term in the bracket
    jac = np.stack([alpha_d * p * a_n, alpha_d * (1.0 - p), alpha_d * p * u, alpha_d * s], axis=-1)
    return alpha_d * s - log_l, jac


def _loss(r: np.ndarray, weight: np.ndarray) -> np.ndarray:
    return np.sum(weight * huber(r), axis=1)


def refit_kaplan_batch(start: np.ndarray, log_n: np.ndarray, log_d: np.ndarray, log_l: np.ndarray,
                       weights: np.ndarray) -> np.ndarray:
    """Huber fits of the Kaplan form, one per row of ``weights`` (B x n scratch-run weights), all from ``start``.

    ``start`` and the result rows are (ln N_c, ln D_c, alpha_N/alpha_D, alpha_D), as in ``KaplanLaw``."""
    draws = weights.shape[0]
    z = np.tile(np.r_[start[:2], np.log(start[2:])], (draws, 1))
    lam = np.full(draws, LAMBDA_START)
    active = np.ones(draws, dtype=bool)
    with np.errstate(over="ignore", invalid="ignore"):
        r, jac = _model(z, log_n, log_d, log_l)
        loss = _loss(r, weights)
        for _ in range(MAX_ITERATIONS):
            rows = np.flatnonzero(active)
            if rows.size == 0:
                break
            w, rr, jj = weights[rows], r[rows], jac[rows]
            psi = w * np.clip(rr, -HUBER_DELTA, HUBER_DELTA)  # w * huber'(r): the gradient's per-run factor
            grad = np.einsum("bn,bnk->bk", psi, jj)
            done = np.max(np.abs(grad), axis=1) < GRADIENT_TOL
            # Gauss-Newton curvature of the Huber loss: only residuals inside +-delta curve it.
            inside = w * (np.abs(rr) <= HUBER_DELTA)
            hess = np.matmul(np.swapaxes(jj * inside[:, :, None], 1, 2), jj)
            # Marquardt scaling from the IRLS weights min(1, delta/|r|), which count every present run, so the
            # damped matrix stays invertible when few residuals are inside +-delta.
            irls = w * np.minimum(1.0, HUBER_DELTA / np.maximum(np.abs(rr), 1e-300))
            scale = np.einsum("bn,bnk->bk", irls, jj * jj)
            scale = np.maximum(scale, 1e-12 * np.maximum(scale.max(axis=1, keepdims=True), 1e-300))
            damped = hess + (lam[rows, None] * scale)[:, :, None] * np.eye(4)
            step = -np.linalg.solve(damped, grad[:, :, None])[:, :, 0]
            z_try = z[rows] + step
            r_try, jac_try = _model(z_try, log_n, log_d, log_l)
            loss_try = _loss(r_try, w)
            better = np.isfinite(loss_try) & (loss_try < loss[rows]) & ~done
            take = rows[better]
            z[take], r[take], jac[take], loss[take] = z_try[better], r_try[better], jac_try[better], loss_try[better]
            lam[rows] = np.where(better, lam[rows] / LAMBDA_DOWN, lam[rows] * LAMBDA_UP)
            active[rows] = ~done & (lam[rows] < LAMBDA_MAX)
    return np.c_[z[:, :2], np.exp(z[:, 2:])]
