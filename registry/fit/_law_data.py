"""``LawData``: a fitted law's numbers and evidence, and the arithmetic on them (no I/O, no queries)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ._chars import CharsPerToken
from ._scratch_model import ScratchModel
from ._types import ArrayLike, Checks, LawSettings, Point


@dataclass
class LawData:
    """D_T = k * D_F^alpha * N^beta (N: non-embedding parameters; D_F in ``settings['unit']``), with its evidence:
    the numbers a fit holds and the arithmetic on them. ``TransferLaw`` (``_model``) adds queries, I/O and the
    summary on top, so the modules those use can take a law without importing ``_model``."""

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
    settings: LawSettings
    """d_e_method, unit (``tokens`` for every fit; ``chars`` for the paper's published law), low_data_fraction,
    bootstrap, seed."""
    scratch: ScratchModel
    """The scratch model that gave D_E."""
    cross_check: dict[str, float] | None = None
    """k, alpha, beta by the paper's fit-the-fits route (None when the grid does not allow it)."""
    kaplan_draws: np.ndarray | None = None
    """B x 4 Kaplan refits per draw (``kaplan`` only): ln N_c, ln D_c, alpha_N/alpha_D, alpha_D."""
    version: str = ""
    """Package version that made the fit."""
    checks: Checks = field(default_factory=lambda: Checks())
    """Model checks, JSON-ready: ``estimator`` (the scratch model that gave D_E), ``candidates`` (each candidate's
    cross-validated error and alpha/beta), ``tie_rule``, ``scratch_residuals`` and ``law_residuals`` (rms, max_abs,
    n), ``low_data`` (the low-data cutoff check), ``verdict`` (plain sentences, the headline first) and ``needs``
    (runs that would fix a thin fit). Empty for fits made before the checks existed."""
    chars_per_token: CharsPerToken | None = None
    """The target's characters per token measured on the runs (``_chars``): what k per character is converted
    with. None when the runs logged no characters (or the fit predates the measurement)."""

    def effective_data_transferred(self, n_params: ArrayLike, d_f: ArrayLike) -> ArrayLike:
        """D_T = k * D_F^alpha * N^beta."""
        d_t = self.k * np.asarray(d_f, dtype=float) ** self.alpha * np.asarray(n_params, dtype=float) ** self.beta
        return float(d_t) if np.ndim(d_t) == 0 else d_t

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
