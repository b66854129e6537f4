"""Leave-one-out: each run's loss predicted by the law fitted without it, with the same 95% prediction intervals.

A fine-tune is left out of the whole fit (``fit_transfer_law`` on the other runs, the scratch model the full fit
chose, ``LOO_BOOTSTRAP`` draws). A scratch run is left out of the scratch model: the chosen global form refitted
without it (its noise re-read from the new residuals), or for interpolated curves the curve rebuilt without its node
(the noise scale is the full fit's: one run moves it little). A law thus has a calibration figure from its first
version on, before any later run has tested it. At most ``LOO_LIMIT`` runs of each role are left out, spread evenly
over the runs in content order, so a refit of thousands of runs stays seconds.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import numpy as np

from transfer_laws.registry.records import RunResult
from transfer_laws.registry.schema import ROLE_FINETUNE, ROLE_SCRATCH

from ._fit import fit_transfer_law
from ._forecast import Forecast, calibration, forecast_run, score, scratch_interval
from ._model import ScratchModel, TransferLaw
from ._parametric import noise_scale
from ._scratch import group_by_n, monotone_curve
from ._select import _fit_global
from ._types import FitError

LOO_BOOTSTRAP = 200
"""Bootstrap draws of each leave-one-out fit (its interval's percentiles; the full fit keeps its own count)."""
LOO_LIMIT = 60
"""Most runs of each role left out per refit."""
PARAMETERS = {"kaplan": 4, "irreducible": 5}


def _spread(items: Sequence[Any], limit: int) -> list[Any]:
    if len(items) <= limit:
        return list(items)
    return [items[i] for i in np.linspace(0, len(items) - 1, limit).round().astype(int)]


def _scratch_without(law: TransferLaw, keep: np.ndarray) -> tuple[ScratchModel, float, int]:
    """The law's scratch model refitted on the kept scratch runs, with its noise scale and degrees of freedom."""
    sc = law.scratch
    log_n, log_d, log_l = sc.log_n[keep], sc.log_d[keep], sc.log_l[keep]
    levels, group = group_by_n(np.exp(log_n))
    curves = [monotone_curve(log_d[group == g], log_l[group == g]) for g in range(levels.size)]
    form = sc.form()
    fitted: dict[str, Any] = {}
    if form is not None:
        fitted[sc.method] = _fit_global(sc.method, log_n, log_d, log_l, start=form)
    model = ScratchModel(levels=levels, curves=curves, kaplan=fitted.get("kaplan"), method=sc.method, log_n=log_n,
                         log_d=log_d, log_l=log_l, irreducible=fitted.get("irreducible"))
    checks = law.checks or {}
    if form is None:
        return model, float(checks.get("scratch_noise") or 0.0), int(checks.get("scratch_noise_dof") or 0)
    dof = log_n.size - PARAMETERS[sc.method]
    return model, noise_scale(model.residuals(), PARAMETERS[sc.method]), dof


def _scratch_loo(law: TransferLaw, run: RunResult) -> Forecast:
    sc = law.scratch
    unit = law.settings.get("unit", "tokens")
    d = run.d_f_chars if unit == "chars" and run.d_f_chars is not None else run.d_f_tokens
    hit = np.isclose(sc.log_n, np.log(float(run.n_params)), rtol=0, atol=1e-9) & \
        np.isclose(sc.log_d, np.log(float(d)), rtol=0, atol=1e-9)
    if not hit.any():  # a repeat the screen dropped: nothing to leave out
        return forecast_run(law, run)
    model, sigma, dof = _scratch_without(law, ~hit)
    view = replace(law, scratch=model, checks={**(law.checks or {}), "scratch_noise": sigma,
                                               "scratch_noise_dof": dof})
    out = forecast_run(view, run)
    if out.reason:
        return out
    loss, low, high = scratch_interval(model, sigma, dof, out.n, out.d)
    return score(out.run_id, out.role, out.n, out.d, out.observed, loss, low, high)


def _finetune_loo(law: TransferLaw, runs: list[RunResult], run: RunResult, cache: dict[Any, Any]) -> Forecast:
    others = [r for r in runs if r.run_id != run.run_id]
    settings = law.settings
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            without = fit_transfer_law(
                others, d_e_method=law.scratch.method, bootstrap=LOO_BOOTSTRAP, seed=int(settings.get("seed", 0)),
                unit=settings.get("unit", "tokens"), robust=bool(settings.get("robust", False)),
                low_data_fraction=float(settings.get("low_data_fraction", 0.1)), scratch_cache=cache)
    except FitError as exc:
        return Forecast(run.run_id, run.role, float(run.n_params), float(run.d_f_tokens),
                        float(run.best_test_loss), reason=f"the law cannot be fitted without it: {exc}")
    return forecast_run(without, run)


def leave_one_out(law: TransferLaw, runs: Sequence[RunResult], limit: int = LOO_LIMIT) -> dict[str, Any]:
    """LOO forecasts of the used fine-tunes and the scratch runs of ``law`` (fitted on ``runs``): the calibration
    (``calibration``) per role and pooled, and each run's forecast (JSON-ready, for ``law.checks["loo"]``)."""
    by_id = {r.run_id: r for r in runs}
    used = [by_id[p.run_id] for p in law.points if p.used and p.run_id in by_id]
    scratch = sorted((r for r in runs if r.role == ROLE_SCRATCH and r.run_id in set(law.input_run_ids)),
                     key=lambda r: (float(r.n_params), float(r.d_f_tokens), r.run_id))
    runs = list(runs)
    cache: dict[Any, Any] = {}
    forecasts = [_finetune_loo(law, runs, r, cache) for r in _spread(used, limit)]
    forecasts += [_scratch_loo(law, r) for r in _spread(scratch, limit)]
    return {
        **calibration(forecasts),
        "roles": {role: calibration([f for f in forecasts if f.role == role]) for role in (ROLE_FINETUNE,
                                                                                          ROLE_SCRATCH)},
        "limit": limit, "bootstrap": LOO_BOOTSTRAP,
        "runs": [f.to_dict() for f in forecasts],
    }

