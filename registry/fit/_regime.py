"""Where the law holds: the low-data regime found from the fine-tunes themselves, and the checks' record of it.

The scratch curves give a first cutoff (D_F <= fraction x D(N)); the fine-tunes can show the law bending before it.
Rule: while the D_F tests of the lack-of-fit family (``_lack_of_fit``: pooled or per N) fail, drop the largest D_F
(``CUT_SHARE`` of that N's D_F values, at least one) at the N whose own quadratic in ln D_F bends down with the
largest F statistic, among the N that keep 2 or more D_F values after the drop; stop when those tests pass or no N
can give a point up (or the pooled curvature alone fails and bends up). The first cut needs the check's level; the
next ones go on at ``CONTINUE_LEVEL`` (0.05): once the law is shown to bend, the question is only where, and a bend's
shoulder just below the last cut still pulls alpha down. Each dropped point is excluded
"past the low-data regime". Only downward bends are cut: past the paper's regime D_T falls below the power law; an
upward bend, or curvature in ln N, is not a regime edge, and the check's warning stands instead.

The intervals hold the chosen regime fixed (the bootstrap refits the kept points); the checks state the
alternatives, alpha and beta from every point the scratch cutoff kept and from one more cut, and the fit warns when
either lies outside alpha's or beta's interval.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from . import _lack_of_fit as lof
from ._law import design, weighted_lstsq
from ._types import (
    R_PAST_REGIME,
    Alternative,
    Checks,
    CurvatureAtN,
    CurvatureTest,
    HoldsAt,
    LackOfFit,
)

D_F_TESTS = ("D_F (pooled)", "D_F (per N)")


CONTINUE_LEVEL = 0.05
"""Level of the D_F tests for every cut after the first (the first needs ``_lack_of_fit.LEVEL``)."""
CUT_SHARE = 0.05
"""A cut drops this share of an N's remaining D_F values (at least one), so thousands of D_F values cost few steps."""


def _family_p(log_d_f: np.ndarray, log_n: np.ndarray, y: np.ndarray, factors: dict[str, float]
              ) -> tuple[np.ndarray, list[lof.Test], list[lof.Single], np.ndarray, np.ndarray]:
    q0, family, singles = lof.curvature_tests(log_d_f, log_n)
    f_obs = lof.f_statistics(q0, family, y[None, :])[0]
    c = np.array([factors.get(t.name, 1.0) for t in family])
    return q0, family, singles, lof.p_values(family, f_obs, c), lof.shares(family, f_obs, c)


def _one_cut(log_d_f: np.ndarray, log_n: np.ndarray, y: np.ndarray, factors: dict[str, float],
             level: float = lof.LEVEL) -> tuple[np.ndarray, float] | None:
    """Mask of the points the next cut drops and the D_F tests' smallest p-value with them (None when those tests
    pass or no N can give a point up)."""
    q0, family, singles, p, share = _family_p(log_d_f, log_n, y, factors)
    names = [t.name for t in family]
    if not lof.family_fails(p, share, names, D_F_TESTS, level):
        return None
    # An upward pooled bend is no regime edge: cut only for it when the per-N test fails on its own.
    if not lof.family_fails(p, share, names, ("D_F (per N)",), level) and not lof.concave(
            q0, lof.quadratic(log_d_f), y):
        return None
    best, best_f = None, -np.inf
    n_round = np.round(log_n, 9)
    for n, test, column in singles:
        f = lof.f_statistics(q0, [test], y[None, :])[0, 0]
        if lof.concave(q0, column, y) and np.isfinite(f) and f > best_f:
            best, best_f = n, f
    if best is None:
        return None
    here = n_round == np.round(np.log(best), 9)
    levels = np.unique(np.round(log_d_f[here], 9))
    top = levels[-max(1, min(int(CUT_SHARE * levels.size), levels.size - 2)):]
    p_d_f = min(float(v) for v, name in zip(p, names, strict=True) if name in D_F_TESTS)
    return here & np.isin(np.round(log_d_f, 9), top), p_d_f


def find_regime(log_d_f: np.ndarray, log_n: np.ndarray, y: np.ndarray, factors: dict[str, float],
                extra_cuts: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Mask of the points inside the low-data regime by the rule above, and per cut point the D_F tests' p-value
    while it was still in (NaN for kept points). ``extra_cuts``: cuts made past where the rule stops, for the
    alternative the checks state; an extra cut ignores the tests."""
    keep = np.ones(y.shape, dtype=bool)
    p_cut = np.full(y.shape, np.nan)
    forced = {"D_F (pooled)": 1e-300, "D_F (per N)": 1e-300}  # a vanishing factor fails the tests: an extra cut
    extra = extra_cuts
    while True:
        idx = np.flatnonzero(keep)
        # The first cut needs the check's own level; once the law is shown to bend, the question is only where
        # the bend starts, and the cut goes on at the looser ``CONTINUE_LEVEL``.
        cut = _one_cut(log_d_f[idx], log_n[idx], y[idx], factors, lof.LEVEL if keep.all() else CONTINUE_LEVEL)
        if cut is None and extra > 0:
            extra -= 1
            cut = _one_cut(log_d_f[idx], log_n[idx], y[idx], {**factors, **forced})
        if cut is None:
            return keep, p_cut
        keep[idx[cut[0]]] = False
        p_cut[idx[cut[0]]] = cut[1]


def lack_of_fit_check(log_d_f: np.ndarray, log_n: np.ndarray, y: np.ndarray,
                      boot_stats: np.ndarray | None) -> LackOfFit:
    """The check as the law carries it: each test's F, degrees of freedom, calibration and p-value; per N the
    curvature's F and direction; ``passed`` (None when no curvature can be tested on these points)."""
    q0, family, singles = lof.curvature_tests(log_d_f, log_n)
    factors = lof.calibration(family, boot_stats)
    f_obs = lof.f_statistics(q0, family, y[None, :])[0]
    p, share = lof.p_values(family, f_obs, factors), lof.shares(family, f_obs, factors)
    tests = [CurvatureTest(name=t.name, f=float(f), q=t.q, dof=t.dof, calibration=float(c), p=float(pv),
                           share=float(sh)) for t, f, c, pv, sh in zip(family, f_obs, factors, p, share, strict=True)]
    per_n = [CurvatureAtN(n=n, f=float(lof.f_statistics(q0, [t], y[None, :])[0, 0]),
                          bends="down" if lof.concave(q0, column, y) else "up") for n, t, column in singles]
    return LackOfFit(level=lof.LEVEL, min_share=lof.MIN_SHARE,
                     passed=None if not family else not lof.family_fails(p, share, [t.name for t in family]),
                     tests=tests, per_n=per_n, factors={t.name: float(c) for t, c in zip(family, factors, strict=True)})


def straight_fit(log_d_f: np.ndarray, log_n: np.ndarray, y: np.ndarray) -> np.ndarray | None:
    """ln k, alpha, beta by least squares (None when the points cannot identify them)."""
    theta = weighted_lstsq(design(log_d_f, log_n), y[None, :], np.ones((1, y.size)))[0]
    return theta if np.isfinite(theta).all() else None


def holds(n: np.ndarray, d_f: np.ndarray, kept: np.ndarray, past: np.ndarray) -> list[HoldsAt]:
    """Per N of the kept points: the D_F range the law was fitted on, and the smallest D_F excluded past the
    low-data regime there (None when none was)."""
    rows = []
    for level in np.unique(n[kept]):
        here = np.isclose(n, level, rtol=1e-9)
        cut = d_f[here & past]
        rows.append(HoldsAt(n=float(level), d_f_low=float(d_f[here & kept].min()),
                            d_f_high=float(d_f[here & kept].max()), bends_above=float(cut.min()) if cut.size else None))
    return rows


REGIME_RULE = ("while the lack-of-fit tests in D_F (pooled or per N) fail (the first cut at the check's level, the "
               "next at 0.05), the largest D_F (5% of that N's D_F values, at least one) is dropped at the N whose "
               "quadratic in ln D_F bends down with the largest F statistic, among the N that keep 2 or more D_F "
               "values; the intervals hold the cut fixed")


def lack_of_fit_statistic(log_d_f: np.ndarray, log_n: np.ndarray) -> Callable[[np.ndarray], np.ndarray]:
    """The family's F statistics of a B x m block of draws' ln D_T on these points (for the bootstrap)."""
    q0, family, _ = lof.curvature_tests(log_d_f, log_n)
    return lambda y: lof.f_statistics(q0, family, y)


@dataclass
class Regime:
    """The regime the fine-tunes show (``keep``: per point given), why each cut point went, the straight fit of
    the kept points and the checks to record (``recheck`` redoes the lack-of-fit check on the kept points with
    their own bootstrap)."""

    n: np.ndarray
    log_d_f: np.ndarray
    y: np.ndarray
    keep: np.ndarray
    reasons: list[str]
    theta: np.ndarray | None
    before: LackOfFit
    check: LackOfFit
    alternatives: list[Alternative] = field(default_factory=list)

    def recheck(self, boot_stats: np.ndarray | None) -> None:
        k = self.keep
        self.check = lack_of_fit_check(self.log_d_f[k], np.log(self.n[k]), self.y[k], boot_stats)
        self.check["before_cut"] = self.before

    def holds(self) -> list[HoldsAt]:
        return holds(self.n, np.exp(self.log_d_f), self.keep, ~self.keep)


def _alternative(rule: str, theta: np.ndarray | None) -> Alternative:
    return Alternative(rule=rule, alpha=None if theta is None else float(theta[1]),
                       beta=None if theta is None else float(theta[2]))


def find_and_check(n: np.ndarray, log_d_f: np.ndarray, y: np.ndarray, boot_stats: np.ndarray | None) -> Regime:
    """The lack-of-fit check on every low-data point and, when its D_F tests fail, the cut (rule above)."""
    log_n = np.log(n)
    check = lack_of_fit_check(log_d_f, log_n, y, boot_stats)
    keep, p_cut = np.ones(y.shape, dtype=bool), np.full(y.shape, np.nan)
    if check["passed"] is False:
        keep, p_cut = find_regime(log_d_f, log_n, y, check["factors"])
    theta = straight_fit(log_d_f[keep], log_n[keep], y[keep])
    if theta is None:  # the cut cannot leave the law unidentified: then nothing is cut, and the check's warning stands
        keep, theta = np.ones(y.shape, dtype=bool), straight_fit(log_d_f, log_n, y)
    regime = Regime(n, log_d_f, y, keep, [], theta, check, check)
    if keep.all():
        return regime
    for i in np.flatnonzero(~keep):
        here = np.isclose(n, n[i], rtol=1e-9) & keep
        regime.reasons.append(f"{R_PAST_REGIME}: the law bends down above D_F = {np.exp(log_d_f[here].max()):.3g} "
                              f"at N = {n[i]:.3g} (lack-of-fit p = {p_cut[i]:.2g} while this point was in)")
    more = find_regime(log_d_f, log_n, y, check["factors"], extra_cuts=1)[0]
    regime.alternatives = [_alternative("every point the scratch cutoff kept", straight_fit(log_d_f, log_n, y))]
    if more.sum() < keep.sum():
        regime.alternatives.append(_alternative("one more cut", straight_fit(log_d_f[more], log_n[more], y[more])))
    return regime


def _failing(check: LackOfFit) -> list[CurvatureTest]:
    tests = check.get("tests") or []
    return [t for t in tests if lof.rejects(t["p"], t["share"], len(tests))]


def d_f_tested(check: LackOfFit) -> bool:
    """Whether the check could test curvature in D_F (3 or more D_F values)."""
    return any(t["name"] in D_F_TESTS for t in check.get("tests") or [])


def form_sentence(check: LackOfFit) -> str:
    """One verdict sentence on the law's form."""
    tests = check.get("tests") or []
    untested = "" if d_f_tested(check) else " Curvature in D_F is not tested: it needs 3 or more D_F values."
    if not tests:
        return "The law's form is not tested: curvature needs 3 or more D_F values (or N values) among the points."
    if check.get("passed"):
        names = ", ".join(t["name"] for t in tests)
        return (f"No curvature in ln D_T beyond the noise (lack-of-fit tests in {names}; smallest p = "
                f"{min(t['p'] for t in tests):.2g}).{untested}")
    return ("ln D_T curves beyond the noise: " + ", ".join(f"in {t['name']} (p = {t['p']:.2g})"
                                                           for t in _failing(check)) + "." + untested)


def outside_intervals(values: dict[str, float | None], intervals: dict[str, tuple[float, float]]) -> str:
    """``alpha = 0.21, beta = 0.5`` for the ``values`` outside their 95% ``intervals`` ("" when none is)."""
    outside = [(name, v) for name, v in values.items()
               if v is not None and not intervals[name][0] <= v <= intervals[name][1]]
    return ", ".join(f"{name} = {v:.3g}" for name, v in outside)


def ossified_above(regime: Regime, n: np.ndarray, d_f: np.ndarray) -> list[tuple[float, float]]:
    """(N, D_F) of the fine-tunes with no transfer (D_T <= 0; ``n``, ``d_f`` given) above the largest D_F fitted at
    their N: the paper's high-data end, so the low-data regime ends below them."""
    top = {round(r["n"], 6): r["d_f_high"] for r in regime.holds()}
    return [(float(a), float(b)) for a, b in zip(n, d_f, strict=True) if b > top.get(round(float(a), 6), np.inf)]


def regime_warnings(regime: Regime, intervals: dict[str, tuple[float, float]], ossified: int,
                    beyond: list[tuple[float, float]]) -> list[str]:
    """What to distrust about the law's form and the regime cut (``ossified``: fine-tunes excluded for D_T <= 0;
    ``beyond``: those of them above the D_F fitted at their N, see ``ossified_above``)."""
    out = []
    cut = int((~regime.keep).sum())
    if regime.check.get("passed") is False:
        out.append("the law's form does not fit its points: ln D_T curves "
                   + ", ".join(f"in {t['name']} (lack-of-fit p = {t['p']:.2g})" for t in _failing(regime.check))
                   + f" beyond the noise the fit estimates (level {lof.LEVEL:g}); alpha and beta average over a bend, "
                   "they are not the low-data law's")
    if cut:
        edges: dict[str, list[str]] = {}
        for r in regime.holds():
            if r["bends_above"] is not None:
                edges.setdefault(f"{r['d_f_high']:.3g}", []).append(f"{r['n']:.3g}")
        where = "; ".join(f"D_F = {d} at N = {', '.join(ns)}" for d, ns in edges.items())
        every = regime.alternatives[0]["alpha"] if regime.alternatives else None
        alpha = "" if regime.theta is None else f"alpha = {regime.theta[1]:.3g}"
        out.append(f"{cut} fine-tune(s) past the low-data regime excluded: the law bends down past {where}; "
                   f"{alpha} comes from the points before the bend"
                   + ("" if every is None else f" (with every point, alpha = {every:.3g})")
                   + "; the intervals hold this cut fixed")
        for alt in regime.alternatives[1:]:
            values = outside_intervals({"alpha": alt["alpha"], "beta": alt["beta"]}, intervals)
            if values:
                out.append(f"{alt['rule']} gives {values}, outside the interval: where the low-data regime ends "
                           "matters here")
    if beyond:
        where = ", ".join(f"D_F = {d:.3g} at N = {n:.3g}" for n, d in beyond[:6])
        out.append(f"{len(beyond)} fine-tune(s) show no transfer (D_T <= 0) above the D_F fitted at their N ({where}): "
                   "the low-data regime ends below them, and the fitted points nearest them may already bend")
    if not d_f_tested(regime.check) and (cut or ossified):
        above = " and ".join(part for part in (f"{cut} past the low-data regime" if cut else "",
                                               f"{ossified} with no transfer (D_T <= 0)" if ossified else "") if part)
        out.append(f"the law's form is not tested where it is fitted (no N keeps 3 D_F values, no 3 N) while "
                   f"fine-tunes show where it ends ({above}): alpha may still carry some of the bend; fine-tunes "
                   "at smaller D_F would test it")
    return out


def misfit(checks: Checks) -> list[str]:
    """Why a fitted law's form is in doubt, one sentence each (empty when it is not): the lack-of-fit check fails on
    the fitted points, fine-tunes were cut past the low-data regime (the law bends inside the data), or fine-tunes
    above the D_F fitted at their N show no transfer (the regime ends inside the data). Read from a law's
    ``checks``, so it works on saved fits too (older fits, without the check, give nothing)."""
    out = []
    check, regime = checks.get("lack_of_fit", LackOfFit()), checks.get("regime")
    if check.get("passed") is False:
        out.append("the law's form does not fit its points: ln D_T curves "
                   + ", ".join(f"in {t['name']} (p = {t['p']:.2g})" for t in _failing(check)))
    if regime is None:  # a fit made before the regime check
        return out
    cut = int(regime.get("excluded_past_regime") or 0)
    if cut:
        edges = sorted({r["d_f_high"] for r in regime.get("holds") or [] if r.get("bends_above") is not None})
        out.append(f"{cut} fine-tune(s) lie past the low-data regime: the law bends down beyond D_F = "
                   + ", ".join(f"{e:.3g}" for e in edges) + " at some N")
    beyond = regime.get("no_transfer_above") or []
    if beyond:
        out.append(f"{len(beyond)} fine-tune(s) show no transfer (D_T <= 0) above the D_F fitted at their N: the "
                   "low-data regime ends inside the data")
    return out


def holds_at(checks: Checks, n: float) -> HoldsAt | None:
    """The row of ``checks['regime']['holds']`` at the measured N nearest ``n`` in ln N (None without one)."""
    regime = checks.get("regime")
    rows = regime["holds"] if regime is not None else []
    if not rows or not n > 0:
        return None
    return min(rows, key=lambda r: abs(np.log(r["n"] / n)))
