"""Model checks carried by every fitted law: residuals, the low-data check, a plain verdict and what would fix it.

Everything here is read off a finished fit; nothing changes the law. The verdict's numbers are the fit's own: a
half-width is half the 95% interval; the advised span is a linear extrapolation (an interval's half-width shrinks
about as 1 / ln(span) when the points spread evenly over the span), stated as such.
"""

from __future__ import annotations

import numpy as np

from ._types import LowData, Residuals

# A fit whose draws identify the law less often than this cannot support an interval.
MIN_GOOD_DRAW_SHARE = 0.8
# The advised span aims at a half-width of |estimate| / SAFETY, so the interval clears 0 with room to spare.
SAFETY = 2.0
# Beyond this many times today's span the extrapolation says nothing useful.
MAX_SPAN_FACTOR = 1000.0


def residual_summary(residuals: np.ndarray) -> Residuals:
    """rms, max_abs and n of the finite residuals (rms and max_abs None when there are none: law.json stays JSON)."""
    r = np.asarray(residuals, dtype=float)
    r = r[np.isfinite(r)]
    if r.size == 0:
        return Residuals(rms=None, max_abs=None, n=0)
    return Residuals(rms=float(np.sqrt(np.mean(r * r))), max_abs=float(np.max(np.abs(r))), n=int(r.size))


def span(values: np.ndarray) -> float:
    """max / min of positive values (1 for one value or none)."""
    v = np.asarray(values, dtype=float)
    return float(v.max() / v.min()) if v.size else 1.0


def advised_span(today: float, estimate: float, low: float, high: float) -> float | None:
    """Span (max/min) at which the 95% interval's half-width would be |estimate| / SAFETY, by the 1/ln(span) rule.

    None when the estimate is too close to 0 (or the interval unknown) for the extrapolation to mean anything."""
    half = (high - low) / 2.0
    if not (np.isfinite(half) and half > 0 and today > 1 and estimate != 0):
        return None
    factor = SAFETY * half / abs(estimate)
    needed = float(np.exp(np.log(today) * max(factor, 1.0)))
    return needed if needed <= MAX_SPAN_FACTOR * today else None


def _interval_sentence(name: str, what: str, value: float, low: float, high: float, today: float,
                       needs: list[str]) -> str:
    if not (np.isfinite(low) and np.isfinite(high)):
        return f"{name} has no interval"
    if low <= 0 <= high:
        wanted = advised_span(today, value, low, high)
        advice = f"about {wanted:.3g}x advised" if wanted else "far more span or less noisy runs needed"
        needs.append(f"{what} span: today {today:.3g}x; {advice}, or more runs at the ends of today's span")
        return f"{name}'s interval includes 0: more {what} span needed (today {today:.3g}x; {advice})"
    return f"{name} is determined to \u00b1{(high - low) / 2:.2g}"


def verdict(alpha: float, beta: float, intervals: dict[str, tuple[float, float]], n_span: float, d_span: float,
            good_share: float, used: int, bootstrap: int) -> tuple[list[str], list[str]]:
    """Plain sentences about how far the law can be trusted (the headline first) and the runs that would help."""
    needs: list[str] = []
    if bootstrap == 0:
        return [f"no intervals (bootstrap=0): alpha = {alpha:.3g}, beta = {beta:.3g} from {used} points"], needs
    if good_share < MIN_GOOD_DRAW_SHARE or used <= 3:
        why = (f"only {good_share:.0%} of the draws could identify k, alpha and beta" if good_share <
               MIN_GOOD_DRAW_SHARE else f"{used} usable points for 3 parameters")
        needs.append(f"more fine-tune runs at more model sizes and D_F values (N span today {n_span:.3g}x, "
                     f"D_F span {d_span:.3g}x)")
        return [f"intervals are not meaningful: {why}"], needs
    a_low, a_high = intervals.get("alpha", (float("nan"), float("nan")))
    b_low, b_high = intervals.get("beta", (float("nan"), float("nan")))
    head = "; ".join([_interval_sentence("alpha", "D_F", alpha, a_low, a_high, d_span, needs),
                      _interval_sentence("beta", "N", beta, b_low, b_high, n_span, needs)])
    return [head + "."], needs


def low_data_check(flat_log_d: np.ndarray, n_used: np.ndarray, log_d_f_used: np.ndarray, fraction: float,
                   high_data_excluded: int, unmeasured: np.ndarray) -> LowData:
    """How the used points sit against the low-data cutoff D_F <= fraction x D(N); ``unmeasured``: per used point,
    whether its D(N) lies beyond the scratch runs (then its N is listed as unchecked)."""
    flat = np.asarray(flat_log_d, dtype=float)
    checked = np.isfinite(flat) & ~unmeasured
    ratio = np.exp(log_d_f_used[checked] - flat[checked]) if checked.any() else np.empty(0)
    return LowData(fraction=float(fraction), excluded_high_data=int(high_data_excluded),
                   max_d_f_over_d_n=float(ratio.max()) if ratio.size else None,
                   unchecked_n=sorted({float(x) for x in n_used[~checked]}))
