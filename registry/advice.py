"""Next-run advice: which (N, D_F, role) run would shrink the intervals of alpha and beta most per unit of compute.

Pure numerics (numpy in, dataclasses out, no MLflow). The estimate is linearised: the law is least squares on
``ln D_T = ln k + alpha ln D_F + beta ln N``, so its covariance is ``sigma^2 (X'X)^-1`` with rows
``x = (1, ln D_F, ln N)`` of the used fine-tune points. Adding a run adds a row, and the new covariance follows in
closed form (Sherman-Morrison / a small block update) without refitting.

- ``sigma`` is the residual scale of the used points (RSS / (m - 3)); with no spare degrees of freedom it falls
  back to ``DEFAULT_SIGMA`` in ln D_T. The ranking does not depend on sigma; the reported half-widths do.
- A half-width is ``1.96 * sqrt(var)``. A candidate's *shrink* is the relative reduction of the half-width of
  alpha plus that of beta (each weighted), and its *score* is shrink per PFLOP of compute.
- Compute convention: ``C = 6 * N * tokens`` FLOPs with N the non-embedding parameters and
  ``tokens = D_F * epochs`` (the expected number of passes over the D_F-token budget under early stopping).
- A fine-tune candidate counts only where the law can compute its D_E: its N must have scratch runs (the
  interpolating D_E estimator needs a curve at that N). Otherwise its shrink is 0 and the note says why.
- A scratch candidate at N adds no row itself; it is valued by the fine-tune points it would make usable: points
  at that N now excluded as out of the scratch curve's range (a larger D than every scratch run at N rescues
  points *below* the curve; a smaller D rescues points *above* it) or for lack of a curve at N (rescued once N has
  two scratch runs). The rescued rows are added together.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from transfer_laws.registry.schema import ROLE_FINETUNE, ROLE_SCRATCH

DEFAULT_SIGMA = 0.3
"""Residual scale in ln D_T assumed when the fit has no spare degrees of freedom."""
Z95 = 1.96
# Ridge added to X'X so that a rank-deficient design still ranks rows that add rank first.
RIDGE = 1e-6
BELOW = "below every scratch run"
ABOVE = "above every scratch run"
NO_CURVE = "no scratch curve"


@dataclass(frozen=True)
class Candidate:
    """One run that could be trained next."""

    n_params: float
    """N, non-embedding parameters."""
    d_f_tokens: float
    """D_F in tokens (for a scratch run: its dataset size D)."""
    role: str = ROLE_FINETUNE
    """``"finetune"`` or ``"scratch"``."""
    epochs: float = 1.0
    """Expected passes over the data before early stopping (compute = 6 * N * D_F * epochs)."""
    label: str = ""
    """Free text carried into the advice (e.g. the preset name)."""


@dataclass(frozen=True)
class Advice:
    """What one candidate would buy."""

    candidate: Candidate
    """The run."""
    flops: float
    """Its compute, 6 * N * D_F * epochs."""
    alpha_halfwidth: float
    """Predicted half-width of alpha's 95% interval after the run."""
    beta_halfwidth: float
    """Predicted half-width of beta's 95% interval after the run."""
    shrink: float
    """Weighted relative reduction of the alpha and beta half-widths (0: no help)."""
    score: float
    """shrink per PFLOP (1e15 FLOPs): the ranking key."""
    new_points: int
    """Fine-tune points the run adds to the fit (1 for a usable fine-tune, the rescued count for a scratch run)."""
    note: str = ""
    """Why the run helps little or not at all."""


def compute_flops(n_params: float, d_f_tokens: float, epochs: float = 1.0) -> float:
    """Training compute ``6 * N * D_F * epochs`` FLOPs (N: non-embedding parameters)."""
    return 6.0 * float(n_params) * float(d_f_tokens) * float(epochs)


def _row(n: float, d_f: float) -> np.ndarray:
    return np.array([1.0, np.log(d_f), np.log(n)])


def _halfwidths(info: np.ndarray, sigma: float) -> tuple[float, float]:
    cov = sigma**2 * np.linalg.inv(info + RIDGE * np.eye(3))
    return Z95 * float(np.sqrt(max(cov[1, 1], 0.0))), Z95 * float(np.sqrt(max(cov[2, 2], 0.0)))


def _sigma(x: np.ndarray, log_d_t: np.ndarray) -> float:
    if x.shape[0] <= 3:
        return DEFAULT_SIGMA
    theta, *_ = np.linalg.lstsq(x, log_d_t, rcond=None)
    rss = float(np.sum((log_d_t - x @ theta) ** 2))
    return float(np.sqrt(rss / (x.shape[0] - 3))) or DEFAULT_SIGMA


def _same(a: float, b: float) -> bool:
    return bool(np.isclose(a, b, rtol=1e-6))


def _scratch_runs(law: Any) -> list[tuple[float, float]]:
    """(N, D) of the law's scratch runs, from ``law.runs`` (RunResult-like: role, n_params, d_f_tokens)."""
    return [(float(r.n_params), float(r.d_f_tokens)) for r in getattr(law, "runs", None) or []
            if getattr(r, "role", None) == ROLE_SCRATCH]


def _rescued(points: Sequence[Any], scratch: list[tuple[float, float]], cand: Candidate) -> list[Any]:
    """Excluded fine-tune points at the candidate's N that one more scratch run at (N, D) would make usable."""
    at_n = [d for n, d in scratch if _same(n, cand.n_params)]
    out = []
    for p in points:
        if p.used or not _same(p.n, cand.n_params):
            continue
        reason = p.reason
        if NO_CURVE in reason and len(at_n) + 1 >= 2:
            out.append(p)
        elif BELOW in reason and (not at_n or cand.d_f_tokens > max(at_n)):
            out.append(p)
        elif ABOVE in reason and (not at_n or cand.d_f_tokens < min(at_n)):
            out.append(p)
    return out


def rank_next_runs(law: Any, candidates: Sequence[Candidate], *, alpha_weight: float = 1.0,
                   beta_weight: float = 1.0, per_compute: bool = True) -> list[Advice]:
    """Rank candidate runs by how much each shrinks alpha's and beta's 95% intervals per unit of compute.

    ``law`` is a fitted ``TransferLaw`` (anything with ``.points``: objects with ``n``, ``d_f``, ``d_t``,
    ``used``, ``reason``; and ``.runs``: RunResult-like with ``role``, ``n_params``, ``d_f_tokens``). Returns one
    ``Advice`` per candidate, best first (by ``score``, or by ``shrink`` when ``per_compute`` is False).
    """
    if alpha_weight < 0 or beta_weight < 0 or alpha_weight + beta_weight == 0:
        raise ValueError("alpha_weight and beta_weight must be >= 0 and not both 0")
    for c in candidates:
        if c.role not in (ROLE_FINETUNE, ROLE_SCRATCH):
            raise ValueError(f"candidate role must be {ROLE_FINETUNE!r} or {ROLE_SCRATCH!r}, not {c.role!r}")
        if not (c.n_params > 0 and c.d_f_tokens > 0 and c.epochs > 0):
            raise ValueError(f"candidate {c} needs positive N, D_F and epochs")
    points = list(getattr(law, "points", []) or [])
    used = [p for p in points if p.used and np.isfinite(p.d_t) and p.d_t > 0]
    x = np.array([_row(p.n, p.d_f) for p in used]).reshape(-1, 3)
    info = x.T @ x
    sigma = _sigma(x, np.log([p.d_t for p in used])) if used else DEFAULT_SIGMA
    base_a, base_b = _halfwidths(info, sigma)
    scratch = _scratch_runs(law)
    scratch_n = {n for n, _ in scratch}

    advice = []
    for cand in candidates:
        note = ""
        if cand.role == ROLE_FINETUNE:
            if scratch and not any(_same(cand.n_params, n) for n in scratch_n):
                rows, note = [], "no scratch runs at this N: its D_E cannot be computed (train scratch runs first)"
            else:
                rows = [_row(cand.n_params, cand.d_f_tokens)]
        else:
            rescued = _rescued(points, scratch, cand)
            rows = [_row(p.n, p.d_f) for p in rescued]
            if not rows:
                note = "makes no excluded fine-tune point usable"
        new_info = info + sum((np.outer(r, r) for r in rows), np.zeros((3, 3)))
        half_a, half_b = _halfwidths(new_info, sigma)
        shrink = (alpha_weight * (1 - half_a / base_a) + beta_weight * (1 - half_b / base_b)) / (
            alpha_weight + beta_weight)
        shrink = max(float(shrink), 0.0)
        flops = compute_flops(cand.n_params, cand.d_f_tokens, cand.epochs)
        advice.append(Advice(candidate=cand, flops=flops, alpha_halfwidth=half_a, beta_halfwidth=half_b,
                             shrink=shrink, score=shrink / (flops / 1e15), new_points=len(rows), note=note))
    key = (lambda a: a.score) if per_compute else (lambda a: a.shrink)
    return sorted(advice, key=key, reverse=True)


def alpha_halfwidth(law: Any) -> float:
    """Half-width of alpha's bootstrap 95% interval (``law.intervals["alpha"]``), inf when unknown."""
    low, high = law.intervals.get("alpha", (np.nan, np.nan))
    width = (high - low) / 2
    return float(width) if np.isfinite(width) else float("inf")
