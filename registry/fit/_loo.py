"""Leave-one-out: each run's loss predicted by the law fitted without it, with the same 95% prediction intervals.

A fine-tune is left out of the law: the law refitted on the other used fine-tunes and bootstrapped as the full fit
is (``_fit._law_bootstrap``: its noise re-read without the run, ``LOO_BOOTSTRAP`` draws); the scratch model stays,
since leaving out a fine-tune does not change it. A scratch run is left out of the scratch model: for a global form
to first order (the refit without run i moves its fitted ln L by e_i h_i / (1 - h_i), h the leverage from the
form's Jacobian; the same first-order refit the bootstrap draws), for interpolated curves by rebuilding its curve
without the node (the noise scale is the full fit's: one run moves it little). A law thus has a calibration figure
from its first version on, before any later run has tested it. At most ``LOO_LIMIT`` runs of each role are left
out, spread evenly over the runs (fewer fine-tunes in a large law, ``LOO_WORK``), so a refit of thousands of runs
stays seconds.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import TypeVar

import numpy as np

from transfer_laws.registry.records import RunResult
from transfer_laws.registry.schema import ROLE_FINETUNE, ROLE_SCRATCH

from ._fit import PARAMETERS, _identifiability, _law_bootstrap
from ._forecast import (
    F_D_RANGE,
    F_NEW_SIZE,
    Z95,
    Forecast,
    _combine,
    _t_quantile,
    calibration,
    forecast_run,
    score,
    scratch_interval,
)
from ._law import design, weighted_lstsq
from ._model import ScratchModel, TransferLaw
from ._parametric import RIDGE, _free_and_jacobian
from ._scratch import group_by_n, monotone_curve
from ._select import Candidates
from ._types import FitError, LooRecord

LOO_BOOTSTRAP = 200
"""Bootstrap draws of each leave-one-out law (its interval's percentiles; the full fit keeps its own count)."""
LOO_LIMIT = 60
"""Most runs of each role left out per refit."""
LOO_WORK = 25_000
"""Fine-tunes left out x fine-tunes per refit of the law, at most (at least 10 left out): each left-out fine-tune is
one bootstrap of the rest, so a law of 2,500 fine-tunes leaves out 10, not 60, and its leave-one-out stays about
half its fit's time."""


T = TypeVar("T")


def _spread(items: Sequence[T], limit: int) -> list[T]:
    if len(items) <= limit:
        return list(items)
    return [items[i] for i in np.linspace(0, len(items) - 1, limit).round().astype(int)]


def _finetune_loo(law: TransferLaw, run: RunResult, index: int) -> Forecast:
    """Run ``index`` of ``law.points`` forecast by the law fitted and bootstrapped without it."""
    pts, checks, settings = law.points, law.checks or {}, law.settings
    n_f = np.array([p.n for p in pts])
    log_d_f, f_log_l = np.log([p.d_f for p in pts]), np.log([p.loss for p in pts])
    with np.errstate(invalid="ignore", divide="ignore"):
        log_d_e = np.log([p.d_e for p in pts])
        y = np.log(np.array([p.d_t for p in pts]))
    keep = np.array([p.used for p in pts], dtype=bool)
    keep[index] = False
    try:
        _identifiability(np.log(n_f[keep]), log_d_f[keep], [])
    except FitError as exc:
        return Forecast(run.run_id, run.role, pts[index].n, pts[index].d_f, pts[index].loss,
                        reason=f"the law cannot be fitted without it: {str(exc).split('. Excluded')[0]}")
    x = design(log_d_f[keep], np.log(n_f[keep]))
    theta = weighted_lstsq(x, y[keep][None, :], np.ones((1, x.shape[0])))[0]
    candidates = Candidates(law.scratch.kaplan, law.scratch.irreducible,
                            {c["method"]: c.get("cv_error") for c in checks.get("candidates", [])}, law.scratch.method)
    boot = _law_bootstrap(law.scratch, candidates, n_f, log_d_f, f_log_l, log_d_e, keep, theta, LOO_BOOTSTRAP,
                          int(settings.get("seed", 0)), lack_of_fit=False)
    view = replace(law, k=float(np.exp(theta[0])), alpha=float(theta[1]), beta=float(theta[2]),
                   draws={"k": np.exp(boot.raw[:, 0]), "alpha": boot.raw[:, 1], "beta": boot.raw[:, 2]},
                   points=[p for p, u in zip(pts, keep, strict=True) if u],  # the points it was fitted on
                   checks={**checks, "finetune_noise": boot.sigma_f, "finetune_noise_dof": boot.dof_f})
    return forecast_run(view, run)


def _interpolate_without(law: TransferLaw, keep: np.ndarray) -> ScratchModel:
    sc = law.scratch
    log_n, log_d, log_l = sc.log_n[keep], sc.log_d[keep], sc.log_l[keep]
    levels, group = group_by_n(np.exp(log_n))
    curves = [monotone_curve(log_d[group == g], log_l[group == g]) for g in range(levels.size)]
    return ScratchModel(levels=levels, curves=curves, kaplan=sc.kaplan, method=sc.method, log_n=log_n, log_d=log_d,
                        log_l=log_l, irreducible=sc.irreducible)


def _scratch_loo(law: TransferLaw, run: RunResult, i: int, leverage: np.ndarray | None) -> Forecast:
    """Scratch run ``i`` (of ``law.scratch``) predicted without it."""
    sc = law.scratch
    n, d, observed = float(np.exp(sc.log_n[i])), float(np.exp(sc.log_d[i])), float(np.exp(sc.log_l[i]))
    same_n = np.flatnonzero(np.isclose(sc.log_n, sc.log_n[i], rtol=0, atol=1e-9))
    others = np.exp(sc.log_d[same_n[same_n != i]])
    if others.size == 0:
        return Forecast(run.run_id, run.role, n, d, observed, reason=f"{F_NEW_SIZE}: N={n:.4g}")
    if not others.min() * (1 - 1e-9) <= d <= others.max() * (1 + 1e-9):
        return Forecast(run.run_id, run.role, n, d, observed,
                        reason=f"{F_D_RANGE}: D={d:.4g}, curve {others.min():.4g}..{others.max():.4g}")
    if leverage is None:  # interpolated curves: rebuilt without the node
        keep = np.ones(sc.log_n.size, dtype=bool)
        keep[i] = False
        checks = law.checks or {}
        loss, low, high = scratch_interval(_interpolate_without(law, keep), float(checks.get("scratch_noise") or 0),
                                           int(checks.get("scratch_noise_dof") or 0), n, d)
        return score(run.run_id, run.role, n, d, observed, loss, low, high)
    e = sc.residuals()
    h = min(float(leverage[i]), 0.999)
    dof = sc.log_n.size - PARAMETERS[sc.method] - 1
    if dof <= 0:
        return Forecast(run.run_id, run.role, n, d, observed, reason="too few scratch runs to leave one out")
    sigma = float(np.sqrt(max(float(np.sum(e * e)) - e[i] ** 2 / (1 - h), 0.0) / dof))
    log_pred = sc.log_l[i] - e[i] / (1 - h)
    param = Z95 * sigma * np.sqrt(h / (1 - h))
    log_low, log_high = _combine(np.array(log_pred), np.array(log_pred - param), np.array(log_pred + param),
                                 _t_quantile(dof) * sigma)
    return score(run.run_id, run.role, n, d, observed, float(np.exp(log_pred)), float(np.exp(log_low)),
                 float(np.exp(log_high)))


def _leverage(sc: ScratchModel) -> np.ndarray | None:
    """Per scratch run, its leverage in the global form's fit (None for interpolated curves)."""
    form = sc.form()
    if form is None:
        return None
    _, jac = _free_and_jacobian(form, sc.log_n, sc.log_d)
    info = jac.T @ jac
    info += RIDGE * np.trace(info) / info.shape[0] * np.eye(info.shape[0])
    return np.einsum("ij,ij->i", jac @ np.linalg.inv(info), jac)


def leave_one_out(law: TransferLaw, runs: Sequence[RunResult], limit: int = LOO_LIMIT) -> LooRecord:
    """LOO forecasts of the used fine-tunes and the scratch runs of ``law`` (fitted on ``runs``): the calibration
    (``calibration``) per role and pooled, and each run's forecast (JSON-ready, for ``law.checks["loo"]``)."""
    by_id = {r.run_id: r for r in runs}
    used = [(i, by_id[p.run_id]) for i, p in enumerate(law.points) if p.used and p.run_id in by_id]
    f_limit = max(min(limit, 10), min(limit, LOO_WORK // max(len(used), 1)))
    forecasts = [_finetune_loo(law, run, i) for i, run in _spread(used, f_limit)]
    # Scratch runs by their place in the scratch model (each (N, D) once): matched back to a run for its id.
    sc = law.scratch
    ids = {(round(float(np.log(r.n_params)), 9), round(float(np.log(r.d_f_tokens)), 9)): r for r in runs
           if r.role == ROLE_SCRATCH and r.n_params and r.d_f_tokens}
    nodes = [(i, r) for i in range(sc.log_n.size)
             if (r := ids.get((round(float(sc.log_n[i]), 9), round(float(sc.log_d[i]), 9)))) is not None]
    leverage = _leverage(sc)
    forecasts += [_scratch_loo(law, run, i, leverage) for i, run in _spread(nodes, limit)]
    return LooRecord(
        **calibration(forecasts),
        roles={role: calibration([f for f in forecasts if f.role == role]) for role in (ROLE_FINETUNE, ROLE_SCRATCH)},
        limit=limit, bootstrap=LOO_BOOTSTRAP, runs=[f.to_dict() for f in forecasts])
