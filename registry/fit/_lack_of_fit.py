"""Does the law's own form hold? Nested F tests of ln D_T = ln k + alpha ln D_F + beta ln N against curvature.

Three alternatives, each the straight law plus curvature columns: ``D_F (pooled)`` (one quadratic in ln D_F shared by
every N), ``D_F (per N)`` (a quadratic in ln D_F at each N that has 3 or more D_F values) and ``N`` (a quadratic in
ln N, with 3 or more N values). Each is a nested F test of the least-squares fit on ln D_T; the family fails when a
test's p-value is below ``LEVEL`` / (number of tests) (Bonferroni) and its curvature is material (explains at
least ``MIN_SHARE`` of the straight law's residual sum of squares).

The errors of ln D_T are neither independent nor equal: points at one N share that N's scratch curve, so its error
bends all of them together, and a loss error is amplified by the scratch curve's slope. The classical F
distribution would then raise false alarms. So each statistic is divided by a calibration factor read off the
fit's own parametric bootstrap, whose draws are made under the straight law with the noise the fit estimated: the
median of the statistic over the draws divided by the F distribution's median (at least 1: the correction only
makes the test more cautious). With ``bootstrap=0`` the factor is 1 (classical F test).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import special

from ._law import design

LEVEL = 0.005
"""Family-wise level of the lack-of-fit check: below it the check fails and the fit warns. Low, because a false
alarm cuts good points: at 0.5% a cell of 30 straight-law seeds sees 2 or more false alarms about 1% of the time."""
MIN_LEVELS = 3
"""Distinct values a curvature needs (two points always lie on a line)."""
MIN_SHARE = 0.05
"""A curvature that explains less of the straight law's residual sum of squares than this is not material, however
significant: with thousands of points a test finds curvatures far too small to move alpha."""
_RANK_TOL = 1e-8


@dataclass
class Test:
    """One curvature alternative: its name, orthonormal columns orthogonal to the straight law's, and degrees of
    freedom (``q`` added parameters, ``dof`` residual degrees of freedom of the larger model)."""

    name: str
    basis: np.ndarray
    q: int
    dof: int


def _orthonormal_extra(q0: np.ndarray, columns: np.ndarray) -> np.ndarray:
    """Orthonormal basis of the part of ``columns`` (n x c) that the straight law's columns ``q0`` do not span."""
    scale = np.maximum(np.linalg.norm(columns, axis=0), 1e-300)
    rest = columns / scale - q0 @ (q0.T @ (columns / scale))
    if rest.shape[1] == 0:
        return rest
    u, s, _ = np.linalg.svd(rest, full_matrices=False)
    return u[:, s > _RANK_TOL * max(1.0, float(s.max(initial=0.0)))]


def quadratic(x: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
    sel = np.ones(x.shape, dtype=bool) if mask is None else mask
    centre = x[sel].mean()
    return np.where(sel, (x - centre) ** 2, 0.0)


def _levels(x: np.ndarray) -> np.ndarray:
    return np.unique(np.round(x, 9))


def straight_basis(log_d_f: np.ndarray, log_n: np.ndarray) -> np.ndarray:
    """Orthonormal basis (n x 3) of the straight law's design."""
    return np.linalg.qr(design(log_d_f - log_d_f.mean(), log_n - log_n.mean()))[0]


Single = tuple[float, Test, np.ndarray]
"""A per-N test: the N, the test and its raw quadratic column (whose sign says which way it bends)."""


def curvature_tests(log_d_f: np.ndarray, log_n: np.ndarray) -> tuple[np.ndarray, list[Test], list[Single]]:
    """The straight law's basis, the family of tests (pooled, per N, N) and one single-column test per N with 3 or
    more D_F values (diagnostics and the regime rule, not in the family). Tests the points cannot support (no new
    direction, or no residual degree of freedom) are left out."""
    n_pts = log_d_f.size
    q0 = straight_basis(log_d_f, log_n)
    n_round = np.round(log_n, 9)
    per_n: list[tuple[float, np.ndarray]] = []
    for level in _levels(log_n):
        here = n_round == level
        if _levels(log_d_f[here]).size >= MIN_LEVELS:
            per_n.append((float(np.exp(level)), quadratic(log_d_f, here)))
    raw: list[tuple[str, np.ndarray]] = []
    if _levels(log_d_f).size >= MIN_LEVELS:
        raw.append(("D_F (pooled)", quadratic(log_d_f)[:, None]))
    if per_n:
        raw.append(("D_F (per N)", np.stack([c for _, c in per_n], axis=1)))
    if _levels(log_n).size >= MIN_LEVELS:
        raw.append(("N", quadratic(log_n)[:, None]))

    def make(name: str, columns: np.ndarray) -> Test | None:
        basis = _orthonormal_extra(q0, columns)
        q = basis.shape[1]
        dof = n_pts - 3 - q
        return Test(name, basis, q, dof) if q and dof >= 1 else None

    family = [t for name, c in raw if (t := make(name, c)) is not None]
    singles = [(n, t, c) for n, c in per_n if (t := make(f"D_F at N = {n:.3g}", c[:, None])) is not None]
    return q0, family, singles


def f_statistics(q0: np.ndarray, tests: list[Test], y: np.ndarray) -> np.ndarray:
    """B x T F statistics of B rows of ln D_T (NaN in a row where any of its values is NaN)."""
    y = np.atleast_2d(y)
    ok = np.isfinite(y).all(axis=1)
    yy = np.where(ok[:, None], y, 0.0)
    r0 = yy - (yy @ q0) @ q0.T
    rss0 = np.einsum("bi,bi->b", r0, r0)
    out = np.full((y.shape[0], len(tests)), np.nan)
    for j, t in enumerate(tests):
        gain = np.sum((r0 @ t.basis) ** 2, axis=1)
        rest = np.maximum(rss0 - gain, 1e-300)
        out[:, j] = (gain / t.q) / (rest / t.dof)
    out[~ok] = np.nan
    return out


def calibration(tests: list[Test], draws: np.ndarray | None) -> np.ndarray:
    """Per test, the median of the bootstrap draws' statistic over the F distribution's median, at least 1."""
    factors = np.ones(len(tests))
    if draws is None or draws.size == 0:
        return factors
    for j, t in enumerate(tests):
        finite = draws[:, j][np.isfinite(draws[:, j])]
        if finite.size >= 20:
            factors[j] = max(1.0, float(np.median(finite) / special.fdtri(t.q, t.dof, 0.5)))
    return factors


def p_values(tests: list[Test], f_obs: np.ndarray, factors: np.ndarray) -> np.ndarray:
    return np.array([float(special.fdtrc(t.q, t.dof, f / c)) if np.isfinite(f) else float("nan")
                     for t, f, c in zip(tests, f_obs, factors, strict=True)])


def shares(tests: list[Test], f_obs: np.ndarray, factors: np.ndarray) -> np.ndarray:
    """Per test, the share of the straight law's residual sum of squares its curvature explains (after the
    calibration): q F / (q F + dof)."""
    return np.array([t.q * f / c / (t.q * f / c + t.dof) if np.isfinite(f) else float("nan")
                     for t, f, c in zip(tests, f_obs, factors, strict=True)])


def rejects(p: float, share: float, tests: int, level: float = LEVEL) -> bool:
    """One test of a family of ``tests`` rejects: significant (Bonferroni) and material."""
    return bool(np.isfinite(p) and p < level / tests and share >= MIN_SHARE)


def family_fails(p: np.ndarray, share: np.ndarray, names: list[str], only: tuple[str, ...] | None = None,
                 level: float = LEVEL) -> bool:
    """Whether the Bonferroni family (or its members named in ``only``) rejects at ``level``."""
    return any(rejects(float(v), float(s), p.size, level) for v, s, name in zip(p, share, names, strict=True)
               if only is None or name in only)


def concave(q0: np.ndarray, column: np.ndarray, y: np.ndarray) -> bool:
    """Whether the fitted curvature along ``column`` (a quadratic in ln D_F) bends ln D_T down."""
    perp = column - q0 @ (q0.T @ column)
    r0 = y - q0 @ (q0.T @ y)
    return float(r0 @ perp) < 0
