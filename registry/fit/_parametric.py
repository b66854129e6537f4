"""Parametric bootstrap that keeps the design: the same N, D and D_F in every draw, new noise on every loss.

A draw redraws the scratch losses (the chosen scratch model's fitted losses plus Gaussian noise of the scale its
residuals show) and the fine-tune losses (the losses the law and scratch model predict for them plus noise of the
scale the fine-tune residuals show; each scale is itself redrawn per draw from its chi-square spread, so few
residual degrees of freedom widen the intervals as a Student-t would), refits the scratch model, redoes D_E and
refits the law. Both noise sources reach k, alpha and beta, and every prediction is computed from the same draws.

The global forms are refitted to first order: a Gauss-Newton step from the fitted parameters on Gaussian noise is
a Gaussian step with covariance sigma^2 (J'J)^-1 (J: d ln L / d parameters at the scratch runs), drawn directly, so
a draw costs the same at 50 or 50,000 scratch runs. The interpolated curves are rebuilt per draw from their noisy
nodes (which already hold the observed noise once, so its scratch part of the spread is conservative).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from ._irreducible import IrreducibleLaw, jacobian_z, log_d_e_z
from ._scratch import KaplanLaw, kaplan_jacobian, kaplan_log_d_e
from ._smooth import smooth_invert_draws

# Relative ridge on J'J so a form that the runs barely pin down (e.g. a flat direction) still gets a finite spread.
RIDGE = 1e-10


def noise_scale(residuals: np.ndarray, parameters: int) -> float:
    """sqrt(RSS / (n - parameters)) of the finite residuals; 0 when there are no spare degrees of freedom."""
    r = np.asarray(residuals, dtype=float)
    r = r[np.isfinite(r)]
    dof = r.size - parameters
    return float(np.sqrt(np.sum(r * r) / dof)) if dof > 0 else 0.0


def _free_and_jacobian(form: KaplanLaw | IrreducibleLaw, log_n: np.ndarray,
                       log_d: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    if isinstance(form, KaplanLaw):
        z = np.array([form.log_n_c, form.log_d_c, np.log(form.a_n), np.log(form.alpha_d)])
        return z, kaplan_jacobian(z, log_n, log_d)
    return form.z, jacobian_z(form.z, log_n, log_d)


def global_form_draws(rng: np.random.Generator, draws: int, form: KaplanLaw | IrreducibleLaw, log_n: np.ndarray,
                      log_d: np.ndarray, sigma: float) -> np.ndarray:
    """draws x p free parameters of the form refitted to first order on redrawn scratch losses."""
    z, jac = _free_and_jacobian(form, log_n, log_d)
    info = jac.T @ jac
    info += RIDGE * np.trace(info) / info.shape[0] * np.eye(info.shape[0])
    cov = sigma**2 * np.linalg.inv(info)
    vals, vecs = np.linalg.eigh((cov + cov.T) / 2)
    root = vecs * np.sqrt(np.clip(vals, 0.0, None))
    return z[None, :] + rng.standard_normal((draws, z.size)) @ root.T


def global_log_d_e(form: KaplanLaw | IrreducibleLaw, params: np.ndarray, log_n: np.ndarray,
                   log_l: np.ndarray) -> np.ndarray:
    """B x m ln D_E for B free-parameter rows and B x m fine-tune losses (NaN where a draw's law cannot reach)."""
    # With noisy scratch runs a draw's exponents can be extreme; its D_E is then inf or NaN and the draw drops the
    # point, which the law step handles.
    with np.errstate(over="ignore", invalid="ignore"):
        if isinstance(form, KaplanLaw):
            theta = np.c_[params[:, :2], np.exp(params[:, 2:])]
            return kaplan_log_d_e(theta, log_n, log_l)
        return log_d_e_z(params, log_n, log_l)


def interpolate_log_d_e(rngs: list[np.random.Generator], draws: int, group: np.ndarray, log_d: np.ndarray,
                        log_l: np.ndarray, sigma: np.ndarray, f_group: np.ndarray, f_log_l: np.ndarray) -> np.ndarray:
    """B x m ln D_E from per-N smooth curves through redrawn scratch losses (``sigma``: per draw; ``f_log_l`` B x m,
    groups -1: NaN).

    ``rngs`` holds one generator per curve, so a draw's noise does not depend on how the draws are blocked."""
    out = np.full(f_log_l.shape, np.nan)
    for g in np.unique(group):
        s_idx = np.flatnonzero(group == g)
        s_idx = s_idx[np.argsort(log_d[s_idx], kind="stable")]
        noisy = log_l[s_idx][None, :] + sigma[:, None] * rngs[g].standard_normal((draws, s_idx.size))
        f_idx = np.flatnonzero(f_group == g)
        if f_idx.size:
            out[:, f_idx] = smooth_invert_draws(log_d[s_idx], noisy, f_log_l[:, f_idx])
    return out


def noise_scales(rng: np.random.Generator, draws: int, dof: int) -> np.ndarray:
    """Per draw, a factor on an estimated noise scale: sqrt(dof / chi2(dof)), the scale's own uncertainty when it
    was read off ``dof`` residual degrees of freedom (this turns the normal quantiles into Student-t ones); all 1
    without spare degrees of freedom."""
    if dof <= 0:
        return np.ones(draws)
    return np.sqrt(dof / rng.chisquare(dof, draws))


def log_d_e_sampler(rng: np.random.Generator, draws: int, form: KaplanLaw | IrreducibleLaw | None,
                    scratch_columns: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray],
                    sigma_s: tuple[float, int], f_log_n: np.ndarray, f_group: np.ndarray, f_fitted: np.ndarray,
                    sigma_f: tuple[float, int]) -> Callable[[slice], np.ndarray]:
    """A function of a block of draws giving its B x m ln D_E; the scratch redraws are made at once (small), the
    fine-tune noise per block (it is draws x fine-tune runs). ``sigma_s`` and ``sigma_f``: each noise scale and the
    residual degrees of freedom it was estimated from."""
    group, log_n, log_d, log_l = scratch_columns
    # The chi-square draws come from streams of their own: how many numbers they consume depends on the degrees of
    # freedom, and the advice compares designs that differ by one run (common random numbers for everything else).
    rng_s, rng_f = rng.spawn(2)
    scale_s = sigma_s[0] * noise_scales(rng_s, draws, sigma_s[1])
    scale_f = sigma_f[0] * noise_scales(rng_f, draws, sigma_f[1])
    params = None
    if form is not None:
        # Unit-noise steps from the fitted parameters, each scaled by its draw's noise scale.
        centre = _free_and_jacobian(form, log_n, log_d)[0]
        params = centre[None, :] + (global_form_draws(rng, draws, form, log_n, log_d, 1.0) - centre) * scale_s[:, None]
    # Separate streams, each read in draw order, so blocking the draws does not change them.
    block_rng = np.random.default_rng(rng.integers(0, 2**63))
    curve_rngs = [np.random.default_rng(s) for s in rng.integers(0, 2**63, int(group.max(initial=-1)) + 1)]

    def of(block: slice) -> np.ndarray:
        size = len(range(*block.indices(draws)))
        noisy_f = f_fitted[None, :] + scale_f[block, None] * block_rng.standard_normal((size, f_fitted.size))
        if params is not None and form is not None:
            return global_log_d_e(form, params[block], f_log_n, noisy_f)
        return interpolate_log_d_e(curve_rngs, size, group, log_d, log_l, scale_s[block], f_group, noisy_f)

    return of
