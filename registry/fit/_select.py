"""Choosing the scratch model by held-out predictive error on the scratch runs themselves.

Candidates: ``interpolate`` (a smooth monotone curve per N), ``kaplan`` (L = [(N_c/N)^(a_N/a_D) + D_c/D]^a_D) and
``irreducible`` (L = E + A/N^a + B/D^b). Held out are the interior scratch runs (neither the smallest nor the largest
D at their N), so every candidate, the interpolation included, predicts the same runs without extrapolating. They
are split into at most ``FOLDS`` folds, consecutive runs of a curve in different folds; each fold is left out in
turn, every candidate refitted on the rest (the global forms warm-started at their full fit) and scored by the
root-mean-square error of ln L on the fold. The pooled error over all folds is the candidate's CV error.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np

from ._irreducible import IrreducibleLaw, fit_irreducible
from ._scratch import KaplanLaw, fit_kaplan, group_by_n, monotone_curve
from ._smooth import smooth_loss

CANDIDATES = ("kaplan", "irreducible", "interpolate")
FOLDS = 10
# Candidates within this share of the lowest CV error are tied; the tie goes to the first in PREFERENCE.
TIE_SHARE = 0.1
PREFERENCE = ("irreducible", "kaplan", "interpolate")
TIE_RULE = (f"lowest cross-validated error wins; candidates within {TIE_SHARE:.0%} of it are tied and the tie "
            f"goes to the first of {', '.join(PREFERENCE)} (the global forms pool every run; the irreducible form "
            "is the more general of the two)")
# Fewest scratch runs and distinct N a global form needs (Kaplan: 4 parameters; irreducible: 5, and 3 N levels
# to pin E, A and a).
MIN_RUNS = {"kaplan": 6, "irreducible": 8}
MIN_LEVELS = {"kaplan": 2, "irreducible": 3}


@dataclass
class Candidates:
    """The fitted candidates and their cross-validated errors (None where a candidate could not be scored)."""

    kaplan: KaplanLaw | None
    irreducible: IrreducibleLaw | None
    cv_error: dict[str, float | None]
    chosen: str


def _fit_global(name: str, log_n: np.ndarray, log_d: np.ndarray, log_l: np.ndarray,
                start: KaplanLaw | IrreducibleLaw | None = None) -> KaplanLaw | IrreducibleLaw:
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore", RuntimeWarning)
        if name == "kaplan":
            assert start is None or isinstance(start, KaplanLaw)
            s = None if start is None else np.array([start.log_n_c, start.log_d_c, start.a_n, start.alpha_d])
            return fit_kaplan(log_n, log_d, log_l, start=s)
        assert start is None or isinstance(start, IrreducibleLaw)
        return fit_irreducible(log_n, log_d, log_l, start=None if start is None else start.z)


def _interpolate_predict(log_n: np.ndarray, log_d: np.ndarray, log_l: np.ndarray, train: np.ndarray,
                         test: np.ndarray) -> np.ndarray:
    out = np.full(test.sum(), np.nan)
    _, group = group_by_n(np.exp(log_n))
    test_idx = np.flatnonzero(test)
    for g in np.unique(group[test]):
        tr = train & (group == g)
        if tr.sum() < 2:
            continue
        d, lo = monotone_curve(log_d[tr], log_l[tr])
        here = group[test_idx] == g
        out[here] = smooth_loss(d, lo, log_d[test_idx[here]])
    return out


def _folds(log_n: np.ndarray, log_d: np.ndarray) -> np.ndarray:
    """Fold index per scratch run, -1 for the runs never held out (each curve's smallest and largest D)."""
    _, group = group_by_n(np.exp(log_n))
    order = np.lexsort((log_d, group))
    g_sorted = group[order]
    first = np.r_[True, g_sorted[1:] != g_sorted[:-1]]
    last = np.r_[g_sorted[1:] != g_sorted[:-1], True]
    interior = np.zeros(log_n.size, dtype=bool)
    interior[order] = ~(first | last)
    fold = np.full(log_n.size, -1)
    ranked = order[interior[order]]
    k = min(FOLDS, ranked.size)
    if k:
        fold[ranked] = np.arange(ranked.size) % k
    return fold


def choose(log_n: np.ndarray, log_d: np.ndarray, log_l: np.ndarray) -> Candidates:
    """Fit every candidate that the runs allow, cross-validate them and pick one by ``TIE_RULE``."""
    levels = np.unique(np.round(log_n, 9)).size
    fits: dict[str, KaplanLaw | IrreducibleLaw] = {}
    for name in ("kaplan", "irreducible"):
        if log_n.size >= MIN_RUNS[name] and levels >= MIN_LEVELS[name]:
            fits[name] = _fit_global(name, log_n, log_d, log_l)
    fold = _folds(log_n, log_d)
    held = fold >= 0
    errors: dict[str, list[np.ndarray]] = {name: [] for name in CANDIDATES}
    for f in range(fold.max() + 1):
        test, train = fold == f, fold != f
        errors["interpolate"].append(_interpolate_predict(log_n, log_d, log_l, train, test) - log_l[test])
        for name, full in fits.items():
            law = _fit_global(name, log_n[train], log_d[train], log_l[train], start=full)
            errors[name].append(law.log_loss(np.exp(log_n[test]), np.exp(log_d[test])) - log_l[test])
    cv: dict[str, float | None] = {}
    for name in CANDIDATES:
        r = np.concatenate(errors[name]) if errors[name] else np.empty(0)
        scored = held.any() and r.size == held.sum() and bool(np.isfinite(r).all())
        cv[name] = float(np.sqrt(np.mean(r * r))) if scored else None
    scored = {name: e for name, e in cv.items() if e is not None}
    if scored:
        best = min(scored.values())
        tied = [name for name in PREFERENCE if name in scored and scored[name] <= best * (1 + TIE_SHARE)]
        chosen = tied[0]
    else:
        # Nothing could be held out (at most two runs per N): the Kaplan form when it could be fitted.
        chosen = "kaplan" if "kaplan" in fits else "interpolate"
    kaplan, irreducible = fits.get("kaplan"), fits.get("irreducible")
    assert kaplan is None or isinstance(kaplan, KaplanLaw)
    assert irreducible is None or isinstance(irreducible, IrreducibleLaw)
    return Candidates(kaplan=kaplan, irreducible=irreducible,
                      cv_error=cv, chosen=chosen)
