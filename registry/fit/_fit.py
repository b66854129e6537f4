"""``fit_transfer_law``: screen the runs, estimate D_E, keep the low-data points with D_T > 0, fit, bootstrap."""

from __future__ import annotations

import warnings as _warnings
from collections import Counter
from collections.abc import Iterable

import numpy as np

from ._bootstrap import (
    law_draws_in_blocks,
    log_d_e_global,
    log_d_e_interpolate,
    resample_counts,
    scratch_presence,
)
from ._checks import low_data_check, residual_summary, span, verdict
from ._io import fingerprint_of, package_version
from ._law import design, fit_the_fits, huber_lstsq, weighted_lstsq
from ._model import ScratchModel, TransferLaw
from ._scratch import fit_kaplan, group_by_n, match_n, monotone_curve
from ._types import (
    FINETUNE,
    R_ABOVE_RANGE,
    R_BELOW_RANGE,
    R_HIGH_DATA,
    R_NO_CURVE,
    R_NO_D_E,
    R_OSSIFIED,
    SCRATCH,
    FitError,
    Point,
    RunResult,
)
from ._validate import screen

MIN_POINTS = 3
# Fewer identified draws than this share makes the intervals meaningless; say so.
MIN_GOOD_DRAW_SHARE = 0.8


def _scratch_model(n: np.ndarray, d: np.ndarray, loss: np.ndarray, method: str) -> ScratchModel:
    levels, group = group_by_n(n)
    curves = [monotone_curve(np.log(d[group == g]), np.log(loss[group == g])) for g in range(levels.size)]
    kaplan = None
    if method == "global":
        with _warnings.catch_warnings():
            _warnings.simplefilter("ignore", RuntimeWarning)
            kaplan = fit_kaplan(np.log(n), np.log(d), np.log(loss))
    return ScratchModel(levels=levels, curves=curves, kaplan=kaplan, method=method,
                        log_n=np.log(n), log_d=np.log(d), log_l=np.log(loss))


def _classify(scratch: ScratchModel, n: np.ndarray, log_d_f: np.ndarray, log_d_e: np.ndarray,
              low_data_fraction: float) -> list[str]:
    """Per fine-tune run, why it cannot enter the fit ("" when it can); the first failing check wins.

    Whole-array masks, so 50,000 runs cost milliseconds; only the excluded runs' messages are formatted."""
    interpolate = scratch.method == "interpolate"
    flat = scratch.flat_log_d(n)
    no_curve = (match_n(scratch.levels, n) < 0) if interpolate else np.zeros(n.shape, dtype=bool)
    with np.errstate(invalid="ignore"):
        high_data = log_d_f > np.log(low_data_fraction) + flat
    checks = [no_curve, interpolate & (log_d_e == np.inf), interpolate & (log_d_e == -np.inf),
              ~np.isfinite(log_d_e), high_data, log_d_e <= log_d_f]
    # Index of the first check that fails, len(checks) when none does.
    first = np.argmax(np.stack([*checks, np.ones(n.shape, dtype=bool)]), axis=0)
    fixed = {1: R_BELOW_RANGE, 2: R_ABOVE_RANGE, 3: R_NO_D_E, 5: R_OSSIFIED}
    reasons = [""] * n.size
    for i in np.flatnonzero(first < len(checks)).tolist():
        kind = int(first[i])
        if kind == 0:
            reasons[i] = f"{R_NO_CURVE}: N={n[i]:.4g}"
        elif kind == 4:
            reasons[i] = f"{R_HIGH_DATA}: D_F = {np.exp(log_d_f[i] - flat[i]):.3g} x D(N) > {low_data_fraction:g}"
        else:
            reasons[i] = fixed[kind]
    return reasons


def _summarise_exclusions(excluded: list[tuple[str, str]]) -> str:
    counts = Counter(reason.split(":")[0] for _, reason in excluded)
    return "; ".join(f"{c} x {r}" for r, c in counts.most_common()) or "none excluded"


def _identifiability(log_n: np.ndarray, log_d_f: np.ndarray, excluded: list[tuple[str, str]]) -> None:
    n_levels = np.unique(np.round(log_n, 9)).size
    d_levels = np.unique(np.round(log_d_f, 9)).size
    problem = ""
    if log_n.size < MIN_POINTS:
        problem = f"{log_n.size} usable fine-tune points, need at least {MIN_POINTS} to fit k, alpha, beta"
    elif n_levels < 2:
        problem = f"all {log_n.size} usable fine-tune points share one N: beta is unidentifiable, need >= 2 sizes"
    elif d_levels < 2:
        problem = f"all {log_n.size} usable fine-tune points share one D_F: alpha is unidentifiable, need >= 2"
    elif np.linalg.matrix_rank(design(log_d_f, log_n)) < 3:
        problem = f"the {log_n.size} usable points lie on a line in (ln D_F, ln N): k, alpha, beta not separable"
    if problem:
        raise FitError(f"{problem}. Excluded: {_summarise_exclusions(excluded)}.")


def _intervals(draws: dict[str, np.ndarray]) -> dict[str, tuple[float, float]]:
    out = {}
    for name, values in draws.items():
        finite = values[np.isfinite(values)]
        out[name] = (float(np.percentile(finite, 2.5)), float(np.percentile(finite, 97.5))) if finite.size \
            else (float("nan"), float("nan"))
    return out


def _content_order(run: RunResult) -> tuple:
    """Sort key from what a run measured (its id only breaks ties between identical measurements)."""

    def number(value: object) -> tuple[int, float]:
        try:
            x = float(value)  # type: ignore[arg-type]
        except (TypeError, ValueError):
            return (1, 0.0)
        return (0, x) if np.isfinite(x) else (1, 0.0)

    return (str(run.role), number(run.n_params), number(run.d_f_tokens), number(run.best_test_loss),
            number(run.d_f_chars), str(run.run_id))


def fit_transfer_law(runs: Iterable[RunResult], d_e_method: str = "interpolate", bootstrap: int = 1000,
                     seed: int = 0, unit: str = "tokens", robust: bool = False,
                     low_data_fraction: float = 0.1) -> TransferLaw:
    """Fit D_T = k * D_F^alpha * N^beta to scratch and fine-tune runs (N: non-embedding parameters).

    D_E of a fine-tune run is the data a scratch model of the same N needs to reach its loss (``d_e_method``
    ``"interpolate"``: the measured curve at that N; ``"global"``: the fitted Kaplan form); D_T = D_E - D_F. Points
    enter the fit only when D_F <= ``low_data_fraction`` x D(N) (D(N): data where the scratch loss comes within 1%
    of its best) and D_T > 0. The fit is least squares on ln D_T (Huber IRLS when ``robust``). D(N) and the set of
    eligible points come from the point estimate; a bootstrap draw resamples scratch runs within each N and the
    eligible fine-tune runs, redoes D_E and the fit, and drops points whose D_T <= 0 in that draw.

    Bad runs never raise: each lands in ``law.excluded`` with its reason. ``FitError`` is raised only when the
    usable points cannot identify k, alpha and beta (fewer than 3, a single N, a single D_F).
    """
    if d_e_method not in ("interpolate", "global"):
        raise ValueError(f"d_e_method must be 'interpolate' or 'global', not {d_e_method!r}")
    if unit not in ("tokens", "chars"):
        raise ValueError(f"unit must be 'tokens' or 'chars', not {unit!r}")
    if not 0 < low_data_fraction <= 1:
        raise ValueError(f"low_data_fraction must be in (0, 1], not {low_data_fraction!r}")
    if bootstrap < 0:
        raise ValueError(f"bootstrap must be >= 0, not {bootstrap!r}")
    runs = sorted(runs, key=_content_order)  # draws then depend on the runs, not on the order they came in
    screened = screen(runs, unit)
    excluded = list(screened.excluded)
    roles = np.array(screened.roles, dtype=object)
    n, d, loss = (np.array(v, dtype=float) for v in (screened.n, screened.d, screened.loss))
    ids = np.array(screened.run_ids, dtype=object)
    s, f = roles == SCRATCH, roles == FINETUNE
    if not s.any():
        excluded += [(str(i), R_NO_CURVE + ": no scratch runs at all") for i in ids[f]]
        raise FitError(f"no usable scratch runs, so no D_E. Excluded: {_summarise_exclusions(excluded)}.")
    scratch = _scratch_model(n[s], d[s], loss[s], d_e_method)
    log_d_f, f_log_l = np.log(d[f]), np.log(loss[f])
    log_d_e = scratch.log_d_e(n[f], f_log_l)
    reasons = _classify(scratch, n[f], log_d_f, log_d_e, low_data_fraction)
    points = [Point(str(i), float(nn), float(df), float(lo), float(np.exp(e)) if np.isfinite(e) else float("nan"),
                    float(np.exp(e) - df) if np.isfinite(e) else float("nan"), r == "", r)
              for i, nn, df, lo, e, r in zip(ids[f], n[f], d[f], loss[f], log_d_e, reasons, strict=True)]
    excluded += [(p.run_id, p.reason) for p in points if not p.used]
    used = np.array([p.used for p in points], dtype=bool)
    u_log_n, u_log_d_f = np.log(n[f][used]), log_d_f[used]
    _identifiability(u_log_n, u_log_d_f, excluded)
    u_log_d_t = np.log(np.exp(log_d_e[used]) - np.exp(u_log_d_f))
    x = design(u_log_d_f, u_log_n)
    theta = (huber_lstsq if robust else weighted_lstsq)(x, u_log_d_t[None, :], np.ones((1, x.shape[0])))[0]

    rng = np.random.default_rng(seed)
    s_counts = scratch_presence(rng, bootstrap, scratch.group)
    f_counts = resample_counts(rng, bootstrap, int(used.sum()))
    u_n, u_log_l = n[f][used], f_log_l[used]
    kaplan_draws = None
    if d_e_method == "interpolate":
        f_group = match_n(scratch.levels, u_n)

        def log_d_e_of(block: slice) -> np.ndarray:
            return log_d_e_interpolate(s_counts[block], scratch.group, scratch.log_d, scratch.log_l, f_group, u_log_l)
    else:
        assert scratch.kaplan is not None
        de_draws, kaplan_draws = log_d_e_global(s_counts, scratch.kaplan, scratch.log_n, scratch.log_d,
                                                scratch.log_l, u_n, u_log_l)

        def log_d_e_of(block: slice) -> np.ndarray:
            return de_draws[block]
    raw = law_draws_in_blocks(log_d_e_of, f_counts, u_log_d_f, u_log_n, robust, max(s_counts.shape[1], u_n.size))
    draws = {"k": np.exp(raw[:, 0]), "alpha": raw[:, 1], "beta": raw[:, 2]}

    warnings = []
    if used.sum() == MIN_POINTS:
        warnings.append("exactly 3 usable points for 3 parameters: the fit is exact, its intervals are not reliable")
    good = np.isfinite(raw).all(axis=1).mean() if bootstrap else 1.0
    if good < MIN_GOOD_DRAW_SHARE:
        warnings.append(f"only {good:.0%} of bootstrap draws could identify k, alpha, beta (too few N or D_F values "
                        "survive resampling): intervals are unreliable")
    if np.unique(np.round(u_log_n, 9)).size == 2:
        warnings.append("only two model sizes: beta rests on two N values, its interval is wide or optimistic")
    rising = np.unique(u_n[np.isposinf(scratch.flat_log_d(u_n))])
    if rising.size:
        warnings.append("scratch curves still falling at their largest D (N = " + ", ".join(f"{x:.3g}" for x in rising)
                        + f"): D(N) lies beyond them, so the low-data cutoff (D_F <= {low_data_fraction:g} x D(N)) "
                        "is not checked at those N; larger scratch runs would check it")
    cross = fit_the_fits(u_log_d_f, u_log_n, u_log_d_t)
    intervals = _intervals(draws)
    headline, needs = verdict(float(theta[1]), float(theta[2]), intervals, span(u_n), span(np.exp(u_log_d_f)),
                              float(good), int(used.sum()), bootstrap)
    checks = {
        "estimator": d_e_method, "candidates": [], "tie_rule": "",
        "scratch_residuals": residual_summary(scratch.residuals()),
        "law_residuals": residual_summary(u_log_d_t - x @ theta),
        "low_data": low_data_check(scratch.flat_log_d(u_n), u_n, u_log_d_f, low_data_fraction,
                                   sum(r.startswith(R_HIGH_DATA) for r in reasons)),
        "verdict": headline, "needs": needs,
    }
    eligible = [(str(i), str(r), float(a), float(b), float(c))
                for i, r, a, b, c in zip(ids, roles, n, d, loss, strict=True)]
    return TransferLaw(
        k=float(np.exp(theta[0])), alpha=float(theta[1]), beta=float(theta[2]), intervals=intervals,
        draws=draws, points=points, excluded=excluded, warnings=warnings,
        input_run_ids=sorted(str(i) for i in ids), fingerprint=fingerprint_of(eligible, {
            "d_e_method": d_e_method, "unit": unit, "robust": robust, "low_data_fraction": low_data_fraction}),
        settings={"d_e_method": d_e_method, "unit": unit, "robust": robust, "low_data_fraction": low_data_fraction,
                  "bootstrap": bootstrap, "seed": seed},
        scratch=scratch, cross_check=cross, kaplan_draws=kaplan_draws, version=package_version(),
        checks=checks)
