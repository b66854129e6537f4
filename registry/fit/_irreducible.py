"""A from-scratch law with an irreducible loss: L(N, D) = E + A / N^a + B / D^b (Hoffmann et al. 2022's form).

Fitted by least squares on ln L. Starts: for each (a, b) on a small grid the model is linear in (E, A, B), solved by
non-negative least squares on L; the best few starts are refined in free coordinates z = (ln E, ln A, ln a, ln B,
ln b), which keep every parameter positive without bounds. Inversion is closed form:
ln D_E = (ln B - ln(L - E - A / N^a)) / b, NaN where L is at or below the N's infinite-data loss E + A / N^a.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
from scipy.optimize import least_squares, nnls

from ._scratch import FLAT_FACTOR

EXPONENT_GRID = (0.05, 0.1, 0.2, 0.35, 0.6, 1.0)
N_BEST_STARTS = 3


def _terms(z: np.ndarray, log_n: np.ndarray, log_d: np.ndarray) -> tuple[np.ndarray, ...]:
    """E, A/N^a, B/D^b for parameters ``z`` (p, or B x p for many laws at once: B x n out)."""
    t = z if z.ndim == 1 else z.T[:, :, None]
    # A fold's refit can wander to huge exponents; the terms then overflow to inf and the fit says so by its error.
    with np.errstate(over="ignore"):
        e = np.exp(t[0]) * np.ones_like(log_n)
        n_term = np.exp(t[1] - np.exp(t[2]) * log_n)
        d_term = np.exp(t[3] - np.exp(t[4]) * log_d)
    return e, n_term, d_term


def log_loss_z(z: np.ndarray, log_n: np.ndarray, log_d: np.ndarray) -> np.ndarray:
    """ln L(N, D) for free parameters ``z``."""
    e, n_term, d_term = _terms(z, log_n, log_d)
    with np.errstate(over="ignore", invalid="ignore"):
        return np.log(e + n_term + d_term)


def jacobian_z(z: np.ndarray, log_n: np.ndarray, log_d: np.ndarray) -> np.ndarray:
    """d ln L / d z at every (N, D): n x 5."""
    e, n_term, d_term = _terms(z, log_n, log_d)
    total = e + n_term + d_term
    a, b = np.exp(z[2]), np.exp(z[4])
    with np.errstate(over="ignore", invalid="ignore"):
        return np.stack([e, n_term, -a * log_n * n_term, d_term, -b * log_d * d_term], axis=-1) / total[:, None]


def log_d_e_z(z: np.ndarray, log_n: np.ndarray, log_l: np.ndarray) -> np.ndarray:
    """ln D_E for parameters ``z`` (5, or B x 5: B x m out); NaN where L <= E + A / N^a."""
    t = z if z.ndim == 1 else z.T[:, :, None]
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        gap = np.exp(log_l) - np.exp(t[0]) - np.exp(t[1] - np.exp(t[2]) * log_n)
        return np.where(gap > 0, (t[3] - np.log(np.where(gap > 0, gap, 1.0))) / np.exp(t[4]), np.nan)


@dataclass(frozen=True)
class IrreducibleLaw:
    """L(N, D) = E + A / N^a + B / D^b, parameters stored in free coordinates."""

    log_e: float
    """ln E, the irreducible loss."""
    log_a: float
    """ln A."""
    log_alpha_n: float
    """ln a (exponent of N)."""
    log_b: float
    """ln B."""
    log_alpha_d: float
    """ln b (exponent of D)."""

    @property
    def z(self) -> np.ndarray:
        """Free coordinates as an array."""
        return np.array([self.log_e, self.log_a, self.log_alpha_n, self.log_b, self.log_alpha_d])

    def log_loss(self, n: np.ndarray, d: np.ndarray) -> np.ndarray:
        """ln L(N, D)."""
        return log_loss_z(self.z, np.log(n), np.log(d))

    def log_d_e(self, n: np.ndarray, log_l: np.ndarray) -> np.ndarray:
        """ln D_E at which L(N, D_E) equals each loss; NaN at or below the infinite-data loss."""
        return log_d_e_z(self.z, np.log(n), log_l)

    def flat_log_d(self, n: np.ndarray) -> np.ndarray:
        """ln D(N): data at which L(N, D) = L(N, infinity) / 0.99."""
        with np.errstate(over="ignore", divide="ignore"):
            log_inf = np.logaddexp(self.log_e, self.log_a - np.exp(self.log_alpha_n) * np.log(n))
        return self.log_d_e(n, log_inf - np.log(FLAT_FACTOR))

    def to_dict(self) -> dict[str, float]:
        """Plain parameters (E, A, a, B, b) and their free coordinates."""
        return {"log_e": self.log_e, "log_a": self.log_a, "log_alpha_n": self.log_alpha_n, "log_b": self.log_b,
                "log_alpha_d": self.log_alpha_d, "e": float(np.exp(self.log_e)), "a": float(np.exp(self.log_a)),
                "alpha_n": float(np.exp(self.log_alpha_n)), "b": float(np.exp(self.log_b)),
                "alpha_d": float(np.exp(self.log_alpha_d))}

    @classmethod
    def from_dict(cls, data: dict[str, float]) -> IrreducibleLaw:
        """Inverse of ``to_dict``."""
        return cls(data["log_e"], data["log_a"], data["log_alpha_n"], data["log_b"], data["log_alpha_d"])


def _starts(log_n: np.ndarray, log_d: np.ndarray, log_l: np.ndarray) -> list[np.ndarray]:
    loss = np.exp(log_l)
    found = []
    for a in EXPONENT_GRID:
        for b in EXPONENT_GRID:
            # Columns scaled to unit size so NNLS sees a well-conditioned problem.
            cols = np.stack([np.ones_like(loss), np.exp(-a * log_n), np.exp(-b * log_d)], axis=1)
            scale = np.max(cols, axis=0)
            coef, _ = nnls(cols / scale, loss)
            coef = np.maximum(coef / scale, 1e-12 * np.max(loss) / scale)
            z = np.array([np.log(coef[0]), np.log(coef[1]), np.log(a), np.log(coef[2]), np.log(b)])
            found.append((float(np.sum((log_loss_z(z, log_n, log_d) - log_l) ** 2)), z))
    found.sort(key=lambda item: item[0])
    return [z for _, z in found[:N_BEST_STARTS]]


def fit_irreducible(log_n: np.ndarray, log_d: np.ndarray, log_l: np.ndarray,
                    start: np.ndarray | None = None) -> IrreducibleLaw:
    """Least-squares fit on ln L (multi-start unless ``start``, free coordinates, is given)."""

    def residual(z: np.ndarray) -> np.ndarray:
        return log_loss_z(z, log_n, log_d) - log_l

    def jac(z: np.ndarray) -> np.ndarray:
        return jacobian_z(z, log_n, log_d)

    starts = [start] if start is not None else _starts(log_n, log_d, log_l)
    best = None
    with warnings.catch_warnings(), np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        warnings.simplefilter("ignore", RuntimeWarning)
        for z0 in starts:
            res = least_squares(residual, z0, jac=jac, method="lm", xtol=1e-12, ftol=1e-12,
                                max_nfev=200 if start is not None else 2000)
            if np.all(np.isfinite(res.x)) and (best is None or res.cost < best.cost):
                best = res
    z = best.x if best is not None else starts[0]
    return IrreducibleLaw(*(float(v) for v in z))
