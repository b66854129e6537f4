"""Several laws of one target side by side: k per token and per character, D_T lines at one N, where two sources'
lines cross, and which source gains most at (N, D_F). Numpy only; every interval comes from the laws' own draws.

Units: a law is fitted with D_F in tokens (the paper's published laws are in characters); c, the characters per
token measured on its runs (``_chars``, kept on the fit), converts: D_chars = c * D_tokens, so
k_tokens = k_chars * c^(alpha - 1) and alpha, beta do not change. A query in characters is answered by each law in
its own unit (``D_law = D / s``, ``D_T = s * D_T_law`` with ``s`` the query units per law unit), so laws whose
sources use different tokenizers still compare.
Losses are nats/token of each law's tokenizer, or nats/character for a query in characters.

Two laws are compared draw by draw, the second law's draws in a fixed shuffled order (``shuffled``): laws fitted with
the same seed draw the same noise deviates for their own runs, and pairing by index would turn that into a
correlation their runs do not have. So their errors are treated as independent; the scratch runs two laws of one
target share make their true errors positively correlated, so intervals of a difference are if anything too wide.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from transfer_laws.registry.records import RunResult

from ._chars import measure
from ._checks import MIN_GOOD_DRAW_SHARE
from ._model import TransferLaw
from ._types import JsonDict

UNITS = ("tokens", "chars")
SHUFFLE_SEED = 20210201
"""Seed of the fixed order in which a second law's draws are paired with the first's (arXiv 2102.01293's date)."""
Draws = float | np.ndarray
"""One law's number, or that number per bootstrap draw."""
LEVEL = 95.0
"""Every interval here is a central 95% interval of the draws."""


@dataclass
class Source:
    """One law of the target, as the comparison reads it."""

    source: str
    """The pretraining corpus (``text`` of ``text-to-python``)."""
    fit: TransferLaw
    chars_per_token: float | None = None
    """Characters per token of the law's data; None: the c measured when it was fitted (``fit.chars_per_token``)."""

    def __post_init__(self) -> None:
        if self.chars_per_token is None and self.fit.chars_per_token is not None:
            self.chars_per_token = self.fit.chars_per_token.value


@dataclass
class Estimate:
    """A number with its 95% interval (NaN where the draws cannot give one)."""

    value: float
    low: float = math.nan
    high: float = math.nan

    def as_dict(self) -> dict[str, float]:
        return {"value": self.value, "low": self.low, "high": self.high}

    def excludes(self, x: float) -> bool:
        """The interval lies wholly on one side of ``x``."""
        return bool(np.isfinite(self.low) and np.isfinite(self.high) and (self.low > x or self.high < x))


def estimate(value: float, draws: np.ndarray) -> Estimate:
    """``value`` with the 95% interval of the finite ``draws`` (NaN bounds when fewer than half are finite)."""
    d = np.asarray(draws, dtype=float)
    good = d[np.isfinite(d)]
    if good.size < max(2, d.size // 2):
        return Estimate(float(value))
    low, high = np.percentile(good, [(100 - LEVEL) / 2, (100 + LEVEL) / 2])
    return Estimate(float(value), float(low), float(high))


def shuffled(draws: np.ndarray, size: int) -> np.ndarray:
    """The first ``size`` of ``draws`` in a fixed order that depends only on their number (so a law's k, alpha and
    beta stay together when each is shuffled)."""
    d = np.asarray(draws, dtype=float)
    return d[np.random.default_rng(SHUFFLE_SEED).permutation(d.size)][:size]


def _shown(ok: bool, value: float, draws: np.ndarray) -> Estimate:
    """``estimate``, without bounds for a law whose draws do not pin it down (its intervals are not meaningful)."""
    return estimate(value, draws) if ok else Estimate(float(value))


def chars_per_token(runs: Sequence[RunResult]) -> float | None:
    """sum(characters) / sum(tokens) over the runs that logged both (None when none did): ``_chars.measure``."""
    c = measure(runs)
    return None if c is None else c.value


def determination(fit: TransferLaw) -> tuple[bool, str]:
    """Whether the law's draws pin it down (False with the reason: a ranking must say when it leans on such a law)."""
    draws = np.stack([np.asarray(fit.draws.get(p, []), dtype=float) for p in ("k", "alpha", "beta")])
    used = sum(p.used for p in fit.points)
    if draws.shape[1] == 0:
        return False, "the law has no bootstrap draws (no intervals)"
    share = float(np.isfinite(draws).all(axis=0).mean())
    if share < MIN_GOOD_DRAW_SHARE:
        return False, f"only {share:.0%} of its draws identify k, alpha and beta"
    if used <= 3:
        return False, f"{used} usable fine-tunes for 3 parameters"
    return True, "determined"


def scale(src: Source, unit: str) -> float:
    """Query units per law unit (c for a tokens law asked in characters, 1/c the other way, else 1)."""
    if unit not in UNITS:
        raise ValueError(f"unit must be one of {UNITS}, not {unit!r}")
    law_unit = src.fit.settings.get("unit", "tokens")
    if law_unit == unit:
        return 1.0
    if not src.chars_per_token:
        raise ValueError(f"{src.source}: its runs logged no characters, so D_F cannot be converted to {unit}")
    return src.chars_per_token if unit == "chars" else 1.0 / src.chars_per_token


def k_in(src: Source, unit: str) -> Estimate:
    """k in ``unit`` (``k_tokens = k_chars * c^(alpha - 1)``), converted draw by draw for its interval."""
    s = scale(src, unit)
    fit = src.fit
    draws = np.asarray(fit.draws["k"], dtype=float) * s ** (1.0 - np.asarray(fit.draws["alpha"], dtype=float))
    return estimate(fit.k * s ** (1.0 - fit.alpha), draws)


def fitted_span(fit: TransferLaw) -> dict[str, tuple[float, float]]:
    """N and D_F (the law's unit) spanned by the fine-tunes it used (all screened ones if none was used)."""
    pts = [p for p in fit.points if p.used] or list(fit.points)
    if not pts:
        return {}
    return {"N": (min(p.n for p in pts), max(p.n for p in pts)),
            "D_F": (min(p.d_f for p in pts), max(p.d_f for p in pts))}


def law_row(src: Source) -> JsonDict:
    """One row of the map: k per token and per character, alpha, beta, the runs behind it and its verdict."""
    fit = src.fit
    ok, why = determination(fit)
    row: JsonDict = {"source": src.source, "unit": fit.settings.get("unit", "tokens"),
                           "chars_per_token": src.chars_per_token, "determined": ok, "why": why,
                           "finetunes_used": int(sum(p.used for p in fit.points)),
                           "finetunes_screened": len(fit.points), "scratch_runs": int(fit.scratch.log_n.size),
                           "verdict": list((fit.checks or {}).get("verdict", [])), "warnings": list(fit.warnings),
                           "fitted": {k: list(v) for k, v in fitted_span(fit).items()}}
    # Shown with their intervals even when undetermined (``determined`` and the verdict say so beside them): a bare
    # point value would read as a precise one. What compares laws (ranking, crossings) still ignores such bounds.
    for name in ("alpha", "beta"):
        row[name] = estimate(getattr(fit, name), fit.draws[name]).as_dict()
    for unit in UNITS:
        try:
            row[f"k_{unit}"] = k_in(src, unit).as_dict()
        except ValueError:
            row[f"k_{unit}"] = None
    return row


@dataclass
class AtPoint:
    """What one law predicts at (N, D_F), point values and per draw, in the query's unit."""

    d_t: float
    d_e: float
    loss: float
    d_t_draws: np.ndarray
    d_e_draws: np.ndarray
    loss_draws: np.ndarray


def at_point(src: Source, n: float, d_f: float, unit: str) -> AtPoint:
    """D_T, D_E = D_F + D_T and the best loss at (N, D_F) by the law and by each of its draws."""
    fit, s = src.fit, scale(src, unit)
    d_law = d_f / s
    k, a, b = (np.asarray(fit.draws[p], dtype=float) for p in ("k", "alpha", "beta"))
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        dt_draws = k * d_law**a * n**b
        point_dt = fit.k * d_law**fit.alpha * n**fit.beta
        log_de = np.log(d_law + np.concatenate([[point_dt], dt_draws]))
        loss = np.exp(fit.scratch.log_loss(np.full(log_de.shape, float(n)), log_de))
    per_char = 1.0 / src.chars_per_token if unit == "chars" and src.chars_per_token else 1.0
    return AtPoint(d_t=float(point_dt * s), d_e=float((d_law + point_dt) * s), loss=float(loss[0] * per_char),
                   d_t_draws=dt_draws * s, d_e_draws=(d_law + dt_draws) * s, loss_draws=loss[1:] * per_char)


def d_t_line(src: Source, n: float, grid: np.ndarray, unit: str) -> dict[str, list[float]]:
    """D_T against D_F (``grid``, query unit) at N with its 95% band: ``d_f``, ``d_t``, ``low``, ``high``."""
    fit, s = src.fit, scale(src, unit)
    d_law = np.asarray(grid, dtype=float) / s
    k, a, b = (np.asarray(fit.draws[p], dtype=float)[:, None] for p in ("k", "alpha", "beta"))
    with np.errstate(invalid="ignore", over="ignore"):
        draws = k * d_law[None] ** a * n**b * s
    good = draws[np.isfinite(draws).all(axis=1)]
    low, high = (np.percentile(good, q, axis=0) if good.shape[0] >= 2 else np.full(d_law.shape, np.nan)
                 for q in ((100 - LEVEL) / 2, (100 + LEVEL) / 2))
    return {"d_f": list(map(float, grid)), "d_t": (fit.k * d_law**fit.alpha * n**fit.beta * s).tolist(),
            "low": low.tolist(), "high": high.tolist()}


def _log_intercept(src: Source, unit: str, n: float, k: Draws, alpha: Draws, beta: Draws) -> Draws:
    """ln D_T at D_F = 1 (query unit) at N: ln s + ln k - alpha ln s + beta ln N."""
    ln_s = math.log(scale(src, unit))
    return np.log(k) + (1.0 - alpha) * ln_s + beta * math.log(n)


def crossing(a: Source, b: Source, n: float, unit: str) -> JsonDict:
    """Where the D_T lines of two sources meet at N (query unit), with its 95% interval over paired draws.

    ``below``/``above``: the source that transfers more below and above the crossing (the one with the smaller
    alpha leads at small D_F); ``share_same_order``: the fraction of draws with that same leader at small D_F;
    ``within_data``: whether the crossing lies where both laws have fine-tunes (else it is beyond the data)."""
    fa, fb = a.fit, b.fit
    size = min(len(fa.draws["k"]), len(fb.draws["k"]))
    da = [np.asarray(fa.draws[p], dtype=float)[:size] for p in ("k", "alpha", "beta")]
    db = [shuffled(fb.draws[p], size) for p in ("k", "alpha", "beta")]
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        gap = _log_intercept(b, unit, n, *db) - _log_intercept(a, unit, n, *da)
        ln_draws = gap / (da[1] - db[1])
        point_gap = (_log_intercept(b, unit, n, fb.k, fb.alpha, fb.beta)
                     - _log_intercept(a, unit, n, fa.k, fa.alpha, fa.beta))
    slope = fa.alpha - fb.alpha
    out: JsonDict = {"sources": [a.source, b.source], "n": float(n), "unit": unit}
    if slope == 0:
        return {**out, "d_f": None, "within_data": False, "below": None, "above": None, "share_same_order": None,
                "note": "equal alphas: the lines never cross"}
    ln_point = point_gap / slope
    with np.errstate(over="ignore"):
        est = estimate(math.exp(ln_point) if ln_point < 700 else math.inf, np.exp(np.clip(ln_draws, -700, 700)))
    leader_small = a.source if fa.alpha < fb.alpha else b.source
    share = float(np.mean((da[1] < db[1]) == (fa.alpha < fb.alpha))) if size else math.nan
    lo, hi = _common_d_f(a, b, unit)
    within = bool(math.isfinite(est.value) and lo is not None and hi is not None and lo <= est.value <= hi)
    shaky = [src.source for src in (a, b) if not determination(src.fit)[0]]
    if shaky:
        est = Estimate(est.value)
    note = "within the data" if within else (
        "beyond the data: " + ("below" if lo is not None and est.value < lo else "above")
        + " the D_F where both laws have fine-tunes" if lo is not None else
        "beyond the data: the two laws' fine-tunes share no D_F range")
    if shaky:
        note += f"; {' and '.join(shaky)}'s law is undetermined, so this crossing is too"
    return {**out, "d_f": est.as_dict(), "within_data": within, "common_d_f": [lo, hi] if lo is not None else None,
            "below": leader_small, "above": b.source if leader_small == a.source else a.source,
            "share_same_order": share, "undetermined": shaky, "note": note}


def _common_d_f(a: Source, b: Source, unit: str) -> tuple[float | None, float | None]:
    """The D_F range (query unit) where both laws have fine-tunes, or (None, None) when they do not overlap."""
    spans = []
    for src in (a, b):
        span = fitted_span(src.fit).get("D_F")
        if span is None:
            return None, None
        s = scale(src, unit)
        spans.append((span[0] * s, span[1] * s))
    lo, hi = max(s[0] for s in spans), min(s[1] for s in spans)
    return (lo, hi) if lo <= hi else (None, None)


@dataclass
class Ranked:
    """One source in the ranking at (N, D_F)."""

    source: str
    determined: bool
    why: str
    d_t: Estimate
    d_e: Estimate
    multiplier: Estimate
    loss: Estimate
    extrapolation: list[str]
    at: AtPoint = field(repr=False)
    vs_next: JsonDict | None = None
    """Against the next source in the ranking: the ratio of their effective data with its interval, the share of
    draws in which this one is ahead, and whether the two are indistinguishable."""


def extrapolation(src: Source, n: float, d_f: float, unit: str) -> list[str]:
    """Sentences for each of N and D_F outside what the law was fitted on, in decades."""
    span = fitted_span(src.fit)
    if not span:
        return ["the law has no fine-tunes to say where it was fitted"]
    s = scale(src, unit)
    out = []
    for name, value, (lo, hi) in (("N", n, span["N"]), ("D_F", d_f, (span["D_F"][0] * s, span["D_F"][1] * s))):
        decades = math.log10(lo / value) if value < lo else math.log10(value / hi) if value > hi else 0.0
        if decades > 0.01:  # 2% beyond the last run is rounding, not extrapolation
            side = "below" if value < lo else "above"
            out.append(f"{name}={value:.3g} is {decades:.1f} decades {side} its fitted {lo:.3g}..{hi:.3g}")
    return out


def _vs(a: Ranked, b: Ranked) -> JsonDict:
    size = min(a.at.d_e_draws.size, b.at.d_e_draws.size)
    with np.errstate(invalid="ignore", divide="ignore"):
        ratio = a.at.d_e_draws[:size] / shuffled(b.at.d_e_draws, size)
    est = _shown(a.determined and b.determined, a.d_e.value / b.d_e.value, ratio)
    good = np.isfinite(ratio)
    ahead = float(np.mean(ratio[good] > 1)) if good.any() else math.nan
    # "ahead": the interval of the ratio lies above 1; "above undetermined": ranked first only because the next
    # law is undetermined (whatever it predicts); otherwise the two cannot be told apart.
    relation = ("above undetermined" if a.determined and not b.determined else
                "ahead" if est.excludes(1.0) and est.low > 1 else "indistinguishable")
    return {"than": b.source, "d_e_ratio": est.as_dict(), "share_ahead": ahead, "relation": relation,
            "indistinguishable": relation == "indistinguishable"}


def rank(sources: list[Source], n: float, d_f: float, unit: str = "tokens") -> tuple[list[Ranked], list[str]]:
    """Every source at (N, D_F), best first, and notes on the order.

    Determined laws come first (an undetermined one is never ranked above a determined one; a note says when its
    point prediction would have been better). Within each group: by predicted best loss when every law gives one,
    else by effective data D_E = D_F + D_T (for laws sharing a target's scratch curves the same order). Each row
    says whether it is distinguishable from the next: the 95% interval of their D_E ratio excludes 1."""
    rows = []
    for src in sources:
        at = at_point(src, n, d_f, unit)
        ok, why = determination(src.fit)
        rows.append(Ranked(src.source, ok, why, _shown(ok, at.d_t, at.d_t_draws), _shown(ok, at.d_e, at.d_e_draws),
                           _shown(ok, at.d_e / d_f, at.d_e_draws / d_f), _shown(ok, at.loss, at.loss_draws),
                           extrapolation(src, n, d_f, unit), at))
    by_loss = all(math.isfinite(r.loss.value) for r in rows)

    def key(r: Ranked) -> float:
        return r.loss.value if by_loss else -r.d_e.value

    best_point = min(rows, key=key) if rows else None
    rows.sort(key=lambda r: (not r.determined, key(r)))
    notes = [f"ranked by predicted best loss ({'nats/character' if unit == 'chars' else 'nats/token'})" if by_loss
             else "ranked by effective data D_E (a predicted loss is missing: the scratch model does not reach it)"]
    if best_point is not None and not best_point.determined and rows[0] is not best_point:
        notes.append(f"{best_point.source}'s point prediction is the best, but its law is undetermined "
                     f"({best_point.why}): it is ranked below every determined law")
    for a, b in zip(rows, rows[1:], strict=False):
        a.vs_next = _vs(a, b)
    return rows, notes


def contrast(base: Source, other: Source, n: float, d_f_small: float, unit: str = "chars") -> JsonDict:
    """The paper's comparison of two sources (Table 1: text against the 50/50 text + code mix), each with an
    interval over paired draws: does ``other`` transfer more at small D_F (D_T ratio at ``d_f_small``), is its alpha
    lower (alpha difference), is beta the same (beta difference: 'consistent' when its interval includes 0)."""
    a, b = at_point(base, n, d_f_small, unit), at_point(other, n, d_f_small, unit)
    size = min(a.d_t_draws.size, b.d_t_draws.size)
    with np.errstate(invalid="ignore", divide="ignore"):
        ratio = estimate(b.d_t / a.d_t, shuffled(b.d_t_draws, size) / a.d_t_draws[:size])
    diffs = {name: estimate(getattr(other.fit, name) - getattr(base.fit, name),
                            shuffled(other.fit.draws[name], size) - np.asarray(base.fit.draws[name])[:size])
             for name in ("alpha", "beta")}

    def answer(est: Estimate, yes: bool, no: bool) -> str:
        return "yes" if yes else "no" if no else "undetermined"

    return {
        "base": base.source, "other": other.source, "n": float(n), "d_f": float(d_f_small), "unit": unit,
        "transfers_more": {"answer": answer(ratio, ratio.low > 1, ratio.high < 1), "d_t_ratio": ratio.as_dict()},
        "alpha_lower": {"answer": answer(diffs["alpha"], diffs["alpha"].high < 0, diffs["alpha"].low > 0),
                        "difference": diffs["alpha"].as_dict()},
        "beta_same": {"answer": "differs" if diffs["beta"].excludes(0.0) else
                      ("consistent" if math.isfinite(diffs["beta"].low) else "undetermined"),
                      "difference": diffs["beta"].as_dict()},
    }
