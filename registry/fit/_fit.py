"""``fit_transfer_law``: screen the runs, estimate D_E, keep the low-data points with D_T > 0, fit, bootstrap."""

from __future__ import annotations

import warnings as _warnings
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, replace

import numpy as np

from transfer_laws.registry.records import RunResult
from transfer_laws.registry.schema import ROLE_FINETUNE, ROLE_SCRATCH

from ._bootstrap import law_draws_in_blocks
from ._chars import measure, spread_warning
from ._checks import MIN_GOOD_DRAW_SHARE, low_data_check, residual_summary, span, verdict
from ._io import fingerprint_of, package_version
from ._irreducible import fit_irreducible
from ._law import design, fit_the_fits, weighted_lstsq
from ._model import TransferLaw
from ._parametric import log_d_e_sampler, noise_scale
from ._regime import (
    REGIME_RULE,
    find_and_check,
    form_sentence,
    lack_of_fit_statistic,
    ossified_above,
    outside_intervals,
    regime_warnings,
)
from ._scratch import fit_kaplan, group_by_n, match_n, monotone_curve
from ._scratch_model import ScratchModel
from ._select import CANDIDATES, TIE_RULE, Candidates, _folds, choose
from ._types import (
    R_ABOVE_RANGE,
    R_BELOW_RANGE,
    R_HIGH_DATA,
    R_NO_CURVE,
    R_NO_D_E,
    R_OSSIFIED,
    R_PAST_REGIME,
    Candidate,
    Checks,
    FitError,
    LawSettings,
    Point,
    RegimeRecord,
)
from ._validate import screen

MIN_POINTS = 3
LOW_DATA_FRACTION = 0.1
"""A fine-tune enters the fit only when D_F <= this x D(N) (D(N): the data where the scratch loss comes within 1% of
its best): the low-data regime the law describes."""


def _scratch_model(n: np.ndarray, d: np.ndarray, loss: np.ndarray, method: str) -> tuple[ScratchModel, Candidates]:
    """The scratch model for ``method`` (``auto``: every candidate fitted, cross-validated and one chosen)."""
    levels, group = group_by_n(n)
    curves = [monotone_curve(np.log(d[group == g]), np.log(loss[group == g])) for g in range(levels.size)]
    log_n, log_d, log_l = np.log(n), np.log(d), np.log(loss)
    candidates = choose(log_n, log_d, log_l)
    chosen = candidates.chosen if method == "auto" else method
    if chosen == "kaplan" and candidates.kaplan is None:
        with _warnings.catch_warnings():
            _warnings.simplefilter("ignore", RuntimeWarning)
            candidates.kaplan = fit_kaplan(log_n, log_d, log_l)
    if chosen == "irreducible" and candidates.irreducible is None:
        candidates.irreducible = fit_irreducible(log_n, log_d, log_l)
    model = ScratchModel(levels=levels, curves=curves, kaplan=candidates.kaplan, method=chosen, log_n=log_n,
                         log_d=log_d, log_l=log_l, irreducible=candidates.irreducible)
    return model, candidates


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
    problem = needs = ""
    if log_n.size < MIN_POINTS:
        problem = f"{log_n.size} usable fine-tune points, need at least {MIN_POINTS} to fit k, alpha, beta"
        needs = ("fine-tunes at model sizes that have scratch curves, at two or more N and two or more D_F, with "
                 "D_F in the low-data regime")
    elif n_levels < 2:
        problem = f"all {log_n.size} usable fine-tune points share one N: beta is unidentifiable, need >= 2 sizes"
        needs = "fine-tune and scratch runs at a second model size (N span of 10x or more)"
    elif d_levels < 2:
        problem = f"all {log_n.size} usable fine-tune points share one D_F: alpha is unidentifiable, need >= 2"
        needs = "fine-tunes at a second D_F (D_F span of 10x or more)"
    elif np.linalg.matrix_rank(design(log_d_f, log_n)) < 3:
        problem = f"the {log_n.size} usable points lie on a line in (ln D_F, ln N): k, alpha, beta not separable"
        needs = "fine-tunes that vary D_F at a fixed N (and N at a fixed D_F)"
    if problem:
        raise FitError(f"{problem}. Excluded: {_summarise_exclusions(excluded)}. Needs: {needs}.")


def _intervals(draws: dict[str, np.ndarray]) -> dict[str, tuple[float, float]]:
    out = {}
    for name, values in draws.items():
        finite = values[np.isfinite(values)]
        out[name] = (float(np.percentile(finite, 2.5)), float(np.percentile(finite, 97.5))) if finite.size \
            else (float("nan"), float("nan"))
    return out


def _content_order(run: RunResult) -> tuple[str, tuple[int, float], tuple[int, float], tuple[int, float],
                                            tuple[int, float], str]:
    """Sort key from what a run measured (its id only breaks ties between identical measurements)."""

    def number(value: object) -> tuple[int, float]:
        try:
            x = float(value)  # type: ignore[arg-type]  # anything: a TypeError or ValueError means "not a number"
        except (TypeError, ValueError):
            return (1, 0.0)
        return (0, x) if np.isfinite(x) else (1, 0.0)

    return (str(run.role), number(run.n_params), number(run.d_f_tokens), number(run.best_test_loss),
            number(run.d_f_chars), str(run.run_id))


METHODS = ("auto", "interpolate", "kaplan", "irreducible")
PARAMETERS = {"kaplan": 4, "irreducible": 5}
# A candidate whose CV error is within this factor of the best is a plausible alternative to the chosen one.
COMPETITIVE = 1.5


@dataclass
class _PointFit:
    """The law from one scratch model: per fine-tune run ln D_E and why it is not used, and the fit of the rest."""

    log_d_e: np.ndarray
    reasons: list[str]
    used: np.ndarray
    theta: np.ndarray | None
    """ln k, alpha, beta (None when the used points cannot identify them)."""


def _point_fit(scratch: ScratchModel, n_f: np.ndarray, log_d_f: np.ndarray, f_log_l: np.ndarray,
               past: np.ndarray | None = None) -> _PointFit:
    """``past``: fine-tunes cut as past the low-data regime, left out too."""
    log_d_e = scratch.log_d_e(n_f, f_log_l)
    reasons = _classify(scratch, n_f, log_d_f, log_d_e, LOW_DATA_FRACTION)
    used = np.array([r == "" for r in reasons], dtype=bool) & (True if past is None else ~past)
    theta = None
    if used.sum() >= MIN_POINTS:
        x = design(log_d_f[used], np.log(n_f[used]))
        y = np.log(np.exp(log_d_e[used]) - np.exp(log_d_f[used]))
        row = weighted_lstsq(x, y[None, :], np.ones((1, x.shape[0])))[0]
        theta = row if np.isfinite(row).all() else None
    return _PointFit(log_d_e, reasons, used, theta)


def _candidate_table(scratch: ScratchModel, candidates: Candidates, point: _PointFit, n_f: np.ndarray,
                     log_d_f: np.ndarray, f_log_l: np.ndarray, past: np.ndarray) -> list[Candidate]:
    """Each candidate's CV error and the alpha, beta it would give on the same low-data regime (the chosen one's
    from the fit itself)."""
    rows = []
    for name in CANDIDATES:
        theta = point.theta if name == scratch.method else None
        if name != scratch.method and (name == "interpolate" or getattr(candidates, name) is not None):
            other = replace(scratch, method=name)
            theta = _point_fit(other, n_f, log_d_f, f_log_l, past).theta
        rows.append(Candidate(method=name, cv_error=candidates.cv_error.get(name),
                              alpha=None if theta is None else float(theta[1]),
                              beta=None if theta is None else float(theta[2]), chosen=name == scratch.method))
    return rows


def _scratch_noise(scratch: ScratchModel, candidates: Candidates) -> tuple[float, int]:
    """Noise scale of the scratch losses (ln L) and its residual degrees of freedom: the chosen global form's
    residuals; for interpolated curves (no residuals of their own) the global candidates' smallest such scale, else
    the interpolation's own CV error divided by sqrt(1.5) (a held-out interior node's error holds its own noise and
    about half its neighbours')."""
    n = scratch.log_n.size
    if scratch.method in PARAMETERS:
        return noise_scale(scratch.residuals(), PARAMETERS[scratch.method]), n - PARAMETERS[scratch.method]
    scales = [(noise_scale(law.log_loss(np.exp(scratch.log_n), np.exp(scratch.log_d)) - scratch.log_l,
                           PARAMETERS[name]), n - PARAMETERS[name])
              for name in PARAMETERS if (law := getattr(candidates, name)) is not None]
    if scales:
        return min(scales)
    cv = candidates.cv_error.get("interpolate")
    held = int(np.sum(_folds(scratch.log_n, scratch.log_d) >= 0))
    return (cv / np.sqrt(1.5), held) if cv is not None else (0.0, 0)


@dataclass
class _Boot:
    """The law's bootstrap on one set of points: its point fit, draws, noise scales and lack-of-fit statistics."""

    theta: np.ndarray
    raw: np.ndarray
    stats: np.ndarray
    sigma_s: float
    sigma_f: float
    dof_s: int = 0
    dof_f: int = 0
    """Residual degrees of freedom behind each noise scale (prediction intervals, ``_forecast``)."""


def _law_bootstrap(scratch: ScratchModel, candidates: Candidates, n_f: np.ndarray, log_d_f: np.ndarray,
                   f_log_l: np.ndarray, log_d_e: np.ndarray, used: np.ndarray, theta: np.ndarray, bootstrap: int,
                   seed: int, *, lack_of_fit: bool = True) -> _Boot:
    """Parametric bootstrap of the law fitted to the ``used`` fine-tunes (see ``_parametric``); ``lack_of_fit=False``
    skips the draws' lack-of-fit statistics (leave-one-out needs only the draws)."""
    u_n, u_log_d_f = n_f[used], log_d_f[used]
    u_log_n = np.log(u_n)
    x = design(u_log_d_f, u_log_n)
    # Fine-tune losses the law and scratch model predict; where an interpolated curve does not reach, the measured.
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        fitted_f = scratch.log_loss(u_n, np.logaddexp(u_log_d_f, x @ theta))
    fitted_f = np.where(np.isfinite(fitted_f), fitted_f, f_log_l[used])
    sigma_f, dof_f = noise_scale(f_log_l[used] - fitted_f, MIN_POINTS), int(used.sum()) - MIN_POINTS
    sigma_s, dof_s = _scratch_noise(scratch, candidates)
    # A few fine-tunes read their noise poorly (9 points: 6 degrees of freedom), and a low reading makes intervals
    # too narrow. Fine-tunes and scratch runs are trained alike, so their pooled scale is the floor.
    if dof_f + dof_s > 0:
        pooled = float(np.sqrt((dof_f * sigma_f**2 + dof_s * sigma_s**2) / (dof_f + dof_s)))
        if pooled > sigma_f:
            sigma_f, dof_f = pooled, dof_f + dof_s
    rng = np.random.default_rng(seed)
    log_d_e_of = log_d_e_sampler(rng, bootstrap, scratch.form(), (scratch.group, scratch.log_n, scratch.log_d,
                                 scratch.log_l), (sigma_s, dof_s), u_log_n, match_n(scratch.levels, u_n), fitted_f,
                                 (sigma_f, dof_f))
    raw, stats = law_draws_in_blocks(log_d_e_of, np.ones((bootstrap, u_n.size)), u_log_d_f, u_log_n,
                                     max(scratch.log_n.size, u_n.size),
                                     lack_of_fit_statistic(u_log_d_f, u_log_n) if lack_of_fit else None)
    return _Boot(theta, raw, stats, sigma_s, sigma_f, dof_s, dof_f)


def fit_transfer_law(runs: Iterable[RunResult], d_e_method: str = "auto", bootstrap: int = 1000,
                     seed: int = 0) -> TransferLaw:
    """Fit D_T = k * D_F^alpha * N^beta to scratch and fine-tune runs (N: non-embedding parameters).

    D_E of a fine-tune run is the data a scratch model of the same N needs to reach its loss; D_T = D_E - D_F. The
    scratch model (``d_e_method``): ``"interpolate"``, a smooth monotone curve per N through the measured runs;
    ``"kaplan"``, L = [(N_c/N)^(a_N/a_D) + D_c/D]^a_D fitted to all scratch runs;
    ``"irreducible"``, L = E + A/N^a + B/D^b; ``"auto"`` (default), the one with the lowest cross-validated error on
    the scratch runs (see ``_select``). Points enter the fit only when D_F <= ``LOW_DATA_FRACTION`` x D(N) (D(N):
    data where the scratch loss comes within 1% of its best) and D_T > 0. The fit is least squares on ln D_T.
    Intervals come from a parametric bootstrap that keeps the design (see ``_parametric``);
    draws in which a point's D_T <= 0 drop that point. The scratch model chosen by ``auto`` is kept in every draw;
    ``checks["candidates"]`` gives the others' alpha and beta, and a warning says when they fall outside the
    intervals.

    D_F and D are in tokens (the unit budgets are set in); k per character, the paper's unit, is converted with the
    characters per token measured on the runs that logged characters (``law.k_per_char()``, see ``_chars``).

    Bad runs never raise: each lands in ``law.excluded`` with its reason (see ``_validate``: fields, implausible
    sizes and losses, conflicting repeats; lineage is the reader's to check). ``FitError`` is raised only when the
    usable points cannot identify k, alpha and beta (fewer than 3, a single N, a single D_F); its message says which
    runs would fix that.
    """
    method = d_e_method
    if method not in METHODS:
        raise ValueError(f"d_e_method must be one of {', '.join(METHODS)}, not {d_e_method!r}")
    if bootstrap < 0:
        raise ValueError(f"bootstrap must be >= 0, not {bootstrap!r}")
    runs = sorted(runs, key=_content_order)  # draws then depend on the runs, not on the order they came in
    screened = screen(runs)
    excluded = list(screened.excluded)
    roles = np.array(screened.roles, dtype=object)
    n, d, loss = (np.array(v, dtype=float) for v in (screened.n, screened.d, screened.loss))
    ids = np.array(screened.run_ids, dtype=object)
    s, f = roles == ROLE_SCRATCH, roles == ROLE_FINETUNE
    if not s.any():
        excluded += [(str(i), R_NO_CURVE + ": no scratch runs at all") for i in ids[f]]
        raise FitError(f"no usable scratch runs, so no D_E. Excluded: {_summarise_exclusions(excluded)}. "
                       "Needs: scratch runs at each fine-tuned model size, over a range of D.")
    scratch, candidates = _scratch_model(n[s], d[s], loss[s], method)
    log_d_f, f_log_l = np.log(d[f]), np.log(loss[f])
    point = _point_fit(scratch, n[f], log_d_f, f_log_l)
    log_d_e, reasons, used = point.log_d_e, point.reasons, point.used
    u_n, u_log_d_f = n[f][used], log_d_f[used]
    first = [(str(i), r) for i, r in zip(ids[f], reasons, strict=True) if r]
    _identifiability(np.log(u_n), u_log_d_f, excluded + first)
    assert point.theta is not None
    boot = _law_bootstrap(scratch, candidates, n[f], log_d_f, f_log_l, log_d_e, used, point.theta, bootstrap, seed)
    # The law's own form: test it on every low-data point, and where it bends down cut to the low-data regime.
    u_log_d_t = np.log(np.exp(log_d_e[used]) - np.exp(u_log_d_f))
    regime = find_and_check(n[f][used], u_log_d_f, u_log_d_t, boot.stats)
    if not regime.keep.all():
        past = np.flatnonzero(used)[~regime.keep]
        reasons = list(reasons)
        for i, why in zip(past, regime.reasons, strict=True):
            reasons[i] = why
        used = used.copy()
        used[past] = False
        u_n, u_log_d_f = n[f][used], log_d_f[used]
        _identifiability(np.log(u_n), u_log_d_f, excluded)
        y = u_log_d_t[regime.keep][None, :]
        regime.theta = weighted_lstsq(design(u_log_d_f, np.log(u_n)), y, np.ones_like(y))[0]
        boot = _law_bootstrap(scratch, candidates, n[f], log_d_f, f_log_l, log_d_e, used, regime.theta, bootstrap,
                              seed)
        regime.recheck(boot.stats)
    points = [Point(str(i), float(nn), float(df), float(lo), float(np.exp(e)) if np.isfinite(e) else float("nan"),
                    float(np.exp(e) - df) if np.isfinite(e) else float("nan"), r == "", r)
              for i, nn, df, lo, e, r in zip(ids[f], n[f], d[f], loss[f], log_d_e, reasons, strict=True)]
    excluded += [(p.run_id, p.reason) for p in points if not p.used]
    u_log_n = np.log(u_n)
    theta, raw, sigma_s, sigma_f = boot.theta, boot.raw, boot.sigma_s, boot.sigma_f
    u_log_d_t = np.log(np.exp(log_d_e[used]) - np.exp(u_log_d_f))
    x = design(u_log_d_f, u_log_n)
    draws = {"k": np.exp(raw[:, 0]), "alpha": raw[:, 1], "beta": raw[:, 2]}
    intervals = _intervals(draws)
    point.theta = theta
    past = np.array([r.startswith(R_PAST_REGIME) for r in reasons], dtype=bool)
    table = _candidate_table(scratch, candidates, point, n[f], log_d_f, f_log_l, past)

    warnings = []
    if used.sum() == MIN_POINTS:
        warnings.append("exactly 3 usable points for 3 parameters: the fit is exact, its intervals are not reliable")
    good = np.isfinite(raw).all(axis=1).mean() if bootstrap else 1.0
    if good < MIN_GOOD_DRAW_SHARE:
        warnings.append(f"only {good:.0%} of bootstrap draws could identify k, alpha, beta (in the others too few "
                        "points kept D_T > 0 or a loss the redrawn scratch model reaches): intervals are unreliable")
    if np.unique(np.round(u_log_n, 9)).size == 2:
        warnings.append("only two model sizes: beta rests on two N values, its interval is wide or optimistic")
    rising = np.unique(u_n[_cutoff_unmeasured(scratch, u_n)])
    if rising.size:
        warnings.append("scratch curves still falling at their largest D (N = " + ", ".join(f"{x:.3g}" for x in rising)
                        + f"): D(N) lies beyond them, so the low-data cutoff (D_F <= {LOW_DATA_FRACTION:g} x D(N)) "
                        "is not checked at those N (or rests on the scratch form's extrapolation); larger scratch runs "
                        "would check it")
    warnings += _model_choice_warnings(table, intervals, bootstrap)
    ossified = [p for p in points if p.reason == R_OSSIFIED]
    no_transfer = ossified_above(regime, np.array([p.n for p in ossified]), np.array([p.d_f for p in ossified]))
    warnings += regime_warnings(regime, intervals, len(ossified), no_transfer)
    cross = fit_the_fits(u_log_d_f, u_log_n, u_log_d_t)
    headline, needs = verdict(float(theta[1]), float(theta[2]), intervals, span(u_n), span(np.exp(u_log_d_f)),
                              float(good), int(used.sum()), bootstrap)
    if rising.size:
        needs.append("larger scratch runs at N = " + ", ".join(f"{x:.3g}" for x in rising)
                     + " (their curves are still falling, so the low-data cutoff is unchecked there)")
    checks = Checks({
        "estimator": scratch.method, "candidates": table, "tie_rule": TIE_RULE,
        "scratch_noise": sigma_s, "finetune_noise": sigma_f,
        "scratch_noise_dof": boot.dof_s, "finetune_noise_dof": boot.dof_f,  # prediction intervals (``_forecast``)
        "scratch_residuals": residual_summary(scratch.residuals()),
        "law_residuals": residual_summary(u_log_d_t - x @ theta),
        "low_data": low_data_check(scratch.flat_log_d(u_n), u_n, u_log_d_f, LOW_DATA_FRACTION,
                                   sum(r.startswith(R_HIGH_DATA) for r in reasons), _cutoff_unmeasured(scratch, u_n)),
        "verdict": headline + _estimator_sentences(table, scratch.method, sigma_s, sigma_f)
        + [form_sentence(regime.check)],
        "lack_of_fit": regime.check,
        "regime": RegimeRecord(rule=REGIME_RULE, holds=regime.holds(), excluded_past_regime=int((~regime.keep).sum()),
                               alternatives=regime.alternatives, no_transfer_above=[list(x) for x in no_transfer]),
        "needs": needs,
    })
    eligible = [(str(i), str(r), float(a), float(b), float(c))
                for i, r, a, b, c in zip(ids, roles, n, d, loss, strict=True)]
    settings = LawSettings(d_e_method=method, unit="tokens", low_data_fraction=LOW_DATA_FRACTION)
    read = set(screened.run_ids)
    chars = measure(run for run in runs if run.run_id in read)
    warnings += spread_warning(chars)
    return TransferLaw(
        k=float(np.exp(theta[0])), alpha=float(theta[1]), beta=float(theta[2]), intervals=intervals,
        draws=draws, points=points, excluded=excluded, warnings=warnings,
        input_run_ids=sorted(str(i) for i in ids), fingerprint=fingerprint_of(eligible, settings),
        settings=LawSettings(**settings, bootstrap=bootstrap, seed=seed),
        scratch=scratch, cross_check=cross, kaplan_draws=None, version=package_version(), checks=checks,
        chars_per_token=chars)


def _cutoff_unmeasured(scratch: ScratchModel, n: np.ndarray) -> np.ndarray:
    """Per N, whether D(N) lies beyond the largest scratch run there (or there is none): the curve is still falling
    where it was measured, so the low-data cutoff rests on a global form's extrapolation, or is not checked."""
    flat = scratch.flat_log_d(n)
    idx = match_n(scratch.levels, n)
    largest = np.array([scratch.curves[i][0][-1] if i >= 0 else -np.inf for i in idx])
    return np.isposinf(flat) | (np.isfinite(flat) & (flat > largest))


def _model_choice_warnings(table: list[Candidate], intervals: dict[str, tuple[float, float]],
                           bootstrap: int) -> list[str]:
    """The intervals hold the chosen scratch model fixed; say when a competitive candidate (CV error within
    ``COMPETITIVE`` x the best) disagrees with them."""
    scored = [r["cv_error"] for r in table if r["cv_error"] is not None]
    if not bootstrap or not scored:
        return []
    out = []
    for row in table:
        if row["chosen"] or row["cv_error"] is None or row["cv_error"] > COMPETITIVE * min(scored):
            continue
        values = outside_intervals({"alpha": row["alpha"], "beta": row["beta"]}, intervals)
        if values:
            out.append(f"the {row['method']} scratch model (CV error {row['cv_error']:.3g}) gives {values}, outside "
                       "the interval: the choice of scratch model matters here")
    return out


def _estimator_sentences(table: list[Candidate], chosen: str, sigma_s: float, sigma_f: float) -> list[str]:
    scored = sorted((r for r in table if r["cv_error"] is not None), key=lambda r: r["cv_error"] or 0.0)
    if not scored:
        return [f"D_E from the {chosen} scratch model (no scratch run could be held out to compare models)."]
    mine = next((r for r in table if r["chosen"]), None)
    text = f"D_E from the {chosen} scratch model"
    if mine is not None and mine["cv_error"] is not None:
        text += f" (held-out error {mine['cv_error']:.2%} of loss"
        others = [r for r in scored if not r["chosen"]]
        if others:
            r = others[0]
            ab = "" if r["alpha"] is None else f"; it gives alpha {r['alpha']:.3g}, beta {r['beta']:.3g}"
            text += f"; runner-up {r['method']} {r['cv_error']:.2%}{ab}"
        text += ")"
    return [text + f". Noise read from the residuals: {sigma_s:.2%} on scratch losses, {sigma_f:.2%} on fine-tunes."]
