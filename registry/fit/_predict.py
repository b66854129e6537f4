"""Derived quantities of a law, their bootstrap intervals, inverse queries and unit conversion."""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy.optimize import brentq

from ._chars import KPerChar, convert_to_chars
from ._forecast import finetune_interval
from ._law_data import LawData
from ._types import ArrayLike, Prediction

# Search range for inverse queries, in ln units (covers 1e-40 .. 1e20 data and 1e2 .. 1e16 parameters).
LN_D_SPAN = 140.0
LN_N_RANGE = (np.log(1e2), np.log(1e16))


def _out(value: np.ndarray) -> ArrayLike:
    return float(value) if np.ndim(value) == 0 else value


def _band(draws: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    if draws.shape[0] == 0 or not np.isfinite(draws).any():
        nan = np.full(draws.shape[1:], np.nan)
        return nan, nan
    return np.nanpercentile(draws, 2.5, axis=0), np.nanpercentile(draws, 97.5, axis=0)


def predict(law: LawData, n_params: ArrayLike, d_f: ArrayLike) -> Prediction:
    """Point values from the fit, intervals from the same quantities computed for every bootstrap draw; the loss's
    interval is a 95% prediction interval for one run (``_forecast.finetune_interval``)."""
    n, d = np.broadcast_arrays(np.asarray(n_params, dtype=float), np.asarray(d_f, dtype=float))
    k, a, b = (law.draws[name].reshape((-1,) + (1,) * n.ndim) for name in ("k", "alpha", "beta"))
    draw_dt = k * d[None] ** a * n[None] ** b
    point_dt = law.k * d**law.alpha * n**law.beta
    values = {"d_t": (point_dt, draw_dt), "d_e": (d + point_dt, d[None] + draw_dt),
              "multiplier": ((d + point_dt) / d, (d[None] + draw_dt) / d[None]),
              "fraction": (point_dt / (d + point_dt), draw_dt / (d[None] + draw_dt))}
    with np.errstate(invalid="ignore", divide="ignore"):
        values["loss"] = (np.exp(law.scratch.log_loss(n, np.log(d + point_dt))),
                          np.exp(law.scratch.log_loss(np.broadcast_to(n, draw_dt.shape), np.log(d[None] + draw_dt))))
    fields: dict[str, Any] = {}  # Prediction's fields: floats for a scalar query, arrays for arrays
    for name, (point, draws) in values.items():
        low, high = _band(draws)
        fields[name], fields[f"{name}_low"], fields[f"{name}_high"] = _out(point), _out(low), _out(high)
    # A run's loss is what gets measured: its interval is a prediction interval (the draws and the run-to-run noise).
    _, low, high = finetune_interval(law, n, d)
    fields["loss_low"], fields["loss_high"] = _out(low), _out(high)
    return Prediction(**fields)


def d_f_for_target_loss(law: LawData, n_params: float, loss: float) -> float:
    """Solve D_F + k D_F^alpha N^beta = D_E(N, loss) for D_F (left side increases with D_F)."""
    log_d_e = float(law.scratch.log_d_e_any(np.array([float(n_params)]), np.array([np.log(loss)]))[0])
    if not np.isfinite(log_d_e) or loss <= 0:
        return float("nan")
    log_kn = np.log(law.k) + law.beta * np.log(n_params)

    def gap(x: float) -> float:
        return float(np.logaddexp(x, log_kn + law.alpha * x) - log_d_e)

    lo = log_d_e - LN_D_SPAN
    if gap(lo) > 0:
        return float("nan")
    return float(np.exp(brentq(gap, lo, log_d_e, xtol=1e-12)))


def n_for_target_loss(law: LawData, d_f: float, loss: float) -> float:
    """Smallest N whose predicted fine-tuned loss, Kaplan L(N, D_F + D_T(N, D_F)), reaches ``loss``."""
    kaplan = law.scratch.kaplan_law()
    if kaplan is None or loss <= 0 or d_f <= 0:
        return float("nan")

    def gap(log_n: float) -> float:
        n = np.exp(log_n)
        return float(kaplan.log_loss(np.array([n]), np.array([d_f + law.k * d_f**law.alpha * n**law.beta]))[0]
                     - np.log(loss))

    lo, hi = LN_N_RANGE
    if gap(lo) <= 0:
        return float(np.exp(lo))
    if gap(hi) > 0:
        return float("nan")
    return float(np.exp(brentq(gap, lo, hi, xtol=1e-12)))


def convert_k(k: float, alpha: float, chars_per_token: float, src: str, dst: str) -> float:
    """k between units: D_chars = c * D_tokens gives k_tokens = k_chars * c^(alpha - 1)."""
    for unit in (src, dst):
        if unit not in ("tokens", "chars"):
            raise ValueError(f"unit must be 'tokens' or 'chars', not {unit!r}")
    if not chars_per_token > 0:
        raise ValueError(f"chars_per_token must be > 0, not {chars_per_token!r}")
    if src == dst:
        return float(k)
    factor = chars_per_token ** (alpha - 1.0)
    return float(k * factor if src == "chars" else k / factor)


def k_per_char(law: LawData) -> KPerChar:
    """k with D_F in characters (the paper's unit) and its 95% interval, or why there is none (``_chars``)."""
    unit = str(law.settings.get("unit", "tokens"))
    return convert_to_chars(law.k, law.alpha, law.draws, law.intervals.get("k"), unit, law.chars_per_token)


def exchange_headline(law: LawData) -> str:
    """The headline exchange rate with its 95% interval from the draws (percentiles of 10^(beta/alpha) over the draws
    that identify the law); undetermined, with no number, when alpha's interval includes 0."""
    interval = law.exchange_interval()
    if interval is None:
        low, high = law.intervals.get("alpha", (float("nan"), float("nan")))
        return (f"10x N is worth an undetermined multiple of fine-tuning data (alpha's 95% interval "
                f"[{low:.3g}, {high:.3g}] includes 0)")
    return (f"10x N is worth {law.exchange_rate():.3g}x fine-tuning data "
            f"[{interval[0]:.3g}x, {interval[1]:.3g}x] (95%, from the bootstrap draws)")


def summary(law: LawData) -> str:
    """Human-readable lines."""
    iv = law.intervals
    used = sum(p.used for p in law.points)
    unit = law.settings.get("unit", "tokens")
    method = law.settings.get("d_e_method")
    estimator = (law.checks or {}).get("estimator") or method
    per_char = k_per_char(law)
    how = f"{estimator}, chosen by cross-validation" if method == "auto" else estimator
    lines = [
        f"D_T = k * D_F^alpha * N^beta  (D_F in {unit}, N non-embedding, D_E by {how})",
        f"  k     = {law.k:.4g}  [{iv['k'][0]:.4g}, {iv['k'][1]:.4g}]",
        f"  alpha = {law.alpha:.4f}  [{iv['alpha'][0]:.4f}, {iv['alpha'][1]:.4f}]",
        f"  beta  = {law.beta:.4f}  [{iv['beta'][0]:.4f}, {iv['beta'][1]:.4f}]",
        f"  k per character (the paper's unit) = {per_char.text()}"
        + (f"  ({per_char.basis()})" if per_char.value is not None and unit != "chars" else ""),
        f"  {exchange_headline(law)}",
        f"  {used} of {len(law.points)} fine-tune runs used; {len(law.excluded)} runs excluded",
    ]
    cc = law.cross_check
    if cc and any(f"{cc[name]:.3g}" != f"{getattr(law, name):.3g}" for name in ("k", "alpha", "beta")):  # no repeat
        lines.append(f"  fit-the-fits: k={cc['k']:.4g} alpha={cc['alpha']:.4f} beta={cc['beta']:.4f}")
    lines += [f"  excluded {run_id}: {reason}" for run_id, reason in law.excluded[:20]]
    if len(law.excluded) > 20:
        lines.append(f"  ... and {len(law.excluded) - 20} more excluded")
    lines += [f"  warning: {w}" for w in law.warnings]
    return "\n".join(lines)
