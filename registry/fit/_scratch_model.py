"""``ScratchModel``: what the scratch runs say about loss versus (N, D), the model behind every fine-tune's D_E."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from ._irreducible import IrreducibleLaw
from ._scratch import KaplanLaw, curve_flat_log_d, fit_kaplan, match_n
from ._smooth import smooth_invert, smooth_loss


@dataclass
class ScratchModel:
    """What the scratch runs say about loss versus (N, D): per-N monotone curves and, when fitted, global forms."""

    levels: np.ndarray
    """Distinct N of the scratch runs, ascending."""
    curves: list[tuple[np.ndarray, np.ndarray]]
    """Per level: ln D ascending and the running minimum of ln L (the nodes of the smooth curve)."""
    kaplan: KaplanLaw | None
    """The Kaplan-form fit: made at once for ``kaplan`` and ``auto``; otherwise on first use by ``kaplan_law``."""
    method: str
    """Which model gives D_E: ``"interpolate"`` (smooth monotone curve per N), ``"kaplan"`` or ``"irreducible"``."""
    log_n: np.ndarray
    """ln N of every scratch run."""
    log_d: np.ndarray
    """ln D of every scratch run."""
    log_l: np.ndarray
    """ln best loss of every scratch run."""
    irreducible: IrreducibleLaw | None = None
    """The fit of L = E + A/N^a + B/D^b, when made."""
    group: np.ndarray = field(init=False)
    """Level index of every scratch run."""

    def __post_init__(self) -> None:
        self.group = match_n(self.levels, np.exp(self.log_n))

    def form(self) -> KaplanLaw | IrreducibleLaw | None:
        """The global law behind D_E (None for ``interpolate``)."""
        if self.method == "kaplan":
            assert self.kaplan is not None
            return self.kaplan
        if self.method == "irreducible":
            assert self.irreducible is not None
            return self.irreducible
        return None

    def kaplan_law(self) -> KaplanLaw | None:
        """The Kaplan fit, fitted now if not yet (needs >= 6 scratch runs at >= 2 N); None when too few runs."""
        if self.kaplan is None and self.levels.size >= 2 and self.log_n.size >= 6:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)
                self.kaplan = fit_kaplan(self.log_n, self.log_d, self.log_l)
        return self.kaplan

    def curve_index(self, n: float) -> int:
        """Index of the curve measured at this N, -1 if none."""
        return int(match_n(self.levels, np.array([n]))[0])

    def _per_curve(self, n: np.ndarray, values: np.ndarray,
                   fn: Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray | float]) -> np.ndarray:
        """``fn(curve's ln D, curve's ln L, values)`` for the values at each N that has a curve; NaN elsewhere."""
        n, values = np.broadcast_arrays(np.asarray(n, dtype=float), np.asarray(values, dtype=float))
        out = np.full(n.shape, np.nan)
        idx = match_n(self.levels, n.ravel()).reshape(n.shape)
        for g in np.unique(idx[idx >= 0]):
            curve_log_d, curve_log_l = self.curves[g]
            out[idx == g] = fn(curve_log_d, curve_log_l, values[idx == g])
        return out

    def log_d_e(self, n: np.ndarray, log_l: np.ndarray) -> np.ndarray:
        """ln D_E by the fit's method: NaN without a curve at N, +-inf outside an interpolated curve's range."""
        form = self.form()
        if form is not None:
            return form.log_d_e(np.asarray(n, dtype=float), np.asarray(log_l, dtype=float))
        return self._per_curve(n, log_l, smooth_invert)

    def log_d_e_any(self, n: np.ndarray, log_l: np.ndarray) -> np.ndarray:
        """ln D_E by the method where it gives one; else (no curve at N) from the Kaplan form."""
        out = self.log_d_e(n, log_l)
        kaplan = self.kaplan_law() if self.method == "interpolate" else None
        if kaplan is not None:
            out = np.where(np.isnan(out), kaplan.log_d_e(np.asarray(n, dtype=float), log_l), out)
        return np.where(np.isfinite(out), out, np.nan)

    def flat_log_d(self, n: np.ndarray) -> np.ndarray:
        """ln D(N), the data at which the scratch loss comes within 1% of its best (the low-data yardstick)."""
        form = self.form()
        if form is not None:
            return form.flat_log_d(np.asarray(n, dtype=float))
        return self._per_curve(n, np.zeros(np.shape(n)), lambda ld, ll, _: curve_flat_log_d(ld, ll))

    def log_loss(self, n: np.ndarray, log_d: np.ndarray) -> np.ndarray:
        """Predicted ln best loss at (N, D): the method's model; an interpolated curve does not extrapolate, and
        where there is no curve at N the Kaplan form answers."""
        form = self.form()
        if form is not None:
            return form.log_loss(np.asarray(n, dtype=float), np.exp(log_d))
        out = self._per_curve(n, log_d, smooth_loss)
        no_curve = match_n(self.levels, np.ravel(n)).reshape(np.shape(n)) < 0
        kaplan = self.kaplan_law() if no_curve.any() else None
        if kaplan is not None:
            model = kaplan.log_loss(np.asarray(n, dtype=float), np.exp(log_d))
            out = np.where(np.isnan(out) & no_curve, model, out)
        return out

    def residuals(self) -> np.ndarray:
        """ln L observed minus the scratch model, per scratch run (the method's own model)."""
        return self.log_l - self.log_loss(np.exp(self.log_n), self.log_d)
