"""``TransferLaw``: the fitted law, its bootstrap draws, the per-run record and the scratch model behind D_E."""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from . import _predict
from ._irreducible import IrreducibleLaw
from ._scratch import KaplanLaw, curve_flat_log_d, fit_kaplan, match_n
from ._smooth import smooth_invert, smooth_loss
from ._types import Point, Prediction

ArrayLike = float | np.ndarray


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
        if self.method == "global":  # the Kaplan form's former name
            self.method = "kaplan"
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

    def _per_curve(self, n: np.ndarray, values: np.ndarray, fn: Any) -> np.ndarray:
        n, values = np.broadcast_arrays(np.asarray(n, dtype=float), np.asarray(values, dtype=float))
        out = np.full(n.shape, np.nan)
        idx = match_n(self.levels, n.ravel()).reshape(n.shape)
        for g in np.unique(idx[idx >= 0]):
            out[idx == g] = fn(*self.curves[g], values[idx == g])
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


@dataclass
class TransferLaw:
    """D_T = k * D_F^alpha * N^beta (N: non-embedding parameters; D_F in ``settings['unit']``), with its evidence."""

    k: float
    """Fitted k."""
    alpha: float
    """Fitted alpha (exponent of D_F)."""
    beta: float
    """Fitted beta (exponent of N)."""
    intervals: dict[str, tuple[float, float]]
    """95% bootstrap percentile intervals for ``"k"``, ``"alpha"``, ``"beta"``."""
    draws: dict[str, np.ndarray]
    """Bootstrap draws of ``"k"``, ``"alpha"``, ``"beta"`` (NaN where a draw could not identify the law)."""
    points: list[Point]
    """Every screened fine-tune run with D_E, D_T, whether it was used and why not."""
    excluded: list[tuple[str, str]]
    """(run_id, reason) of every run not used, scratch and fine-tune."""
    warnings: list[str]
    """What the reader should distrust (e.g. only two N values)."""
    input_run_ids: list[str]
    """Ids of all runs that passed the field checks (scratch and fine-tune), sorted."""
    fingerprint: str
    """sha256 of the sorted eligible inputs and the fit settings: same inputs, same fingerprint."""
    settings: dict[str, Any]
    """d_e_method, unit, robust, low_data_fraction, bootstrap, seed."""
    scratch: ScratchModel
    """The scratch model that gave D_E."""
    cross_check: dict[str, float] | None = None
    """k, alpha, beta by the paper's fit-the-fits route (None when the grid does not allow it)."""
    kaplan_draws: np.ndarray | None = None
    """B x 4 Kaplan refits per draw (``kaplan`` only): ln N_c, ln D_c, alpha_N/alpha_D, alpha_D."""
    version: str = ""
    """Package version that made the fit."""
    checks: dict[str, Any] = field(default_factory=dict)
    """Model checks, JSON-ready: ``estimator`` (the scratch model that gave D_E), ``candidates`` (each candidate's
    cross-validated error and alpha/beta), ``tie_rule``, ``scratch_residuals`` and ``law_residuals`` (rms, max_abs,
    n), ``low_data`` (the low-data cutoff check), ``verdict`` (plain sentences, the headline first) and ``needs``
    (runs that would fix a thin fit). Empty for fits made before the checks existed."""

    @classmethod
    def from_coefficients(cls, k: float, alpha: float, beta: float, unit: str = "tokens") -> TransferLaw:
        """A law from published coefficients (e.g. the paper's Table 1, ``unit="chars"``): no runs, no draws, so
        intervals collapse to the values and loss predictions are NaN."""
        empty = np.empty(0)
        scratch = ScratchModel(levels=empty, curves=[], kaplan=None, method="interpolate", log_n=empty,
                               log_d=empty, log_l=empty)
        return cls(k=float(k), alpha=float(alpha), beta=float(beta),
                   intervals={"k": (k, k), "alpha": (alpha, alpha), "beta": (beta, beta)},
                   draws={"k": empty, "alpha": empty, "beta": empty}, points=[], excluded=[],
                   warnings=["coefficients given, not fitted"], input_run_ids=[], fingerprint="",
                   settings={"unit": unit, "d_e_method": "given"}, scratch=scratch)

    def effective_data_transferred(self, n_params: ArrayLike, d_f: ArrayLike) -> ArrayLike:
        """D_T = k * D_F^alpha * N^beta."""
        return _predict.d_t(self.k, self.alpha, self.beta, n_params, d_f)

    def effective_data_multiplier(self, n_params: ArrayLike, d_f: ArrayLike) -> ArrayLike:
        """(D_F + D_T) / D_F."""
        return 1.0 + self.effective_data_transferred(n_params, d_f) / np.asarray(d_f, dtype=float)

    def fraction_from_transfer(self, n_params: ArrayLike, d_f: ArrayLike) -> ArrayLike:
        """D_T / (D_F + D_T)."""
        d_t = self.effective_data_transferred(n_params, d_f)
        return d_t / (np.asarray(d_f, dtype=float) + d_t)

    def exchange_rate(self) -> float:
        """10^(beta/alpha): a 10x larger N is worth this many times more fine-tuning data."""
        return float(10.0 ** (self.beta / self.alpha))

    def exchange_interval(self) -> tuple[float, float] | None:
        """95% interval of 10^(beta/alpha) from the bootstrap draws; None when alpha's interval includes 0 (or has no
        draws): then the ratio is undetermined, not a number."""
        low, high = self.intervals.get("alpha", (float("nan"), float("nan")))
        alpha, beta = self.draws.get("alpha", np.empty(0)), self.draws.get("beta", np.empty(0))
        if not (np.isfinite(low) and np.isfinite(high)) or low <= 0 <= high or alpha.size == 0:
            return None
        with np.errstate(over="ignore", divide="ignore", invalid="ignore"):
            log10_rate = beta / alpha
        log10_rate = log10_rate[np.isfinite(log10_rate)]
        if log10_rate.size == 0:
            return None
        lo, hi = np.percentile(log10_rate, [2.5, 97.5])
        return float(10.0**lo), float(10.0**hi)

    def exchange_headline(self) -> str:
        """"10x N is worth X x fine-tuning data [low, high]", or why the ratio is undetermined."""
        return _predict.exchange_headline(self)

    def predict(self, n_params: ArrayLike, d_f: ArrayLike) -> Prediction:
        """D_T, D_E, multiplier, fraction and best loss at (N, D_F), each with a 95% interval from the draws."""
        return _predict.predict(self, n_params, d_f)

    def d_f_for_target_loss(self, n_params: float, loss: float) -> float:
        """D_F a model of N needs, fine-tuned, to reach ``loss`` (NaN if the scratch model cannot reach it)."""
        return _predict.d_f_for_target_loss(self, n_params, loss)

    def n_for_target_loss(self, d_f: float, loss: float) -> float:
        """Smallest N that reaches ``loss`` when fine-tuned on D_F (needs the Kaplan scratch fit; NaN if none)."""
        return _predict.n_for_target_loss(self, d_f, loss)

    def k_in(self, unit: str, chars_per_token: float) -> float:
        """k in another data unit: k_tokens = k_chars * (chars/token)^(alpha - 1); alpha and beta do not change."""
        return _predict.convert_k(self.k, self.alpha, chars_per_token, self.settings["unit"], unit)

    def summary(self) -> str:
        """A few lines for people: the law, intervals, points used, exclusions, warnings."""
        return _predict.summary(self)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (arrays as lists)."""
        from ._io import law_to_dict

        return law_to_dict(self)

    def save(self, folder: str | Path) -> Path:
        """Write ``law.json`` and ``draws.npz`` into ``folder``; loss-free with ``TransferLaw.load``."""
        from ._io import save_law

        return save_law(self, Path(folder))

    @classmethod
    def load(cls, folder: str | Path) -> TransferLaw:
        """Read a folder written by ``save``."""
        from ._io import load_law

        return load_law(Path(folder))

    @staticmethod
    def is_fit_folder(folder: str | Path) -> bool:
        """Whether ``folder`` holds a fit written by ``save``."""
        from ._io import is_fit_folder

        return is_fit_folder(Path(folder))
