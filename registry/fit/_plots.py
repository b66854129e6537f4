"""What every chart of a law shares: colour per model size N, the drawn subsample, the data unit, the D_T draws and
their 95% bands, and the Figure-1 gap's fine-tune.

One colour meaning everywhere: colour = model size N, from a colour-blind-safe palette (Okabe-Ito, or viridis
without its pale yellow end when there are more sizes than Okabe-Ito has colours). Filled markers are fine-tunes
used in the fit, crosses fine-tunes left out, hollow markers runs from scratch. The charts themselves are SVG
(``_svg_plots``, ``_svg_forecast``, ``_svg_map``), drawn without a plotting library.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypeVar

import numpy as np

from ._law_data import LawData
from ._svg_chart import number_label
from ._types import Point

MAX_DRAWN = 300
"""Most points drawn per size and kind; beyond it an even subsample (every run still counts in the fit)."""
OKABE_ITO = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000")
"""Okabe & Ito's colour-blind-safe set without its yellow (invisible on white)."""
_VIRIDIS = ("#440154", "#482878", "#3E4A89", "#31688E", "#26828E", "#1F9E89", "#35B779", "#6DCD59", "#B4DE2C")
"""Viridis from 0 to 0.9 (its last tenth is a yellow too pale on white), for more sizes than OKABE_ITO has."""


def _blend(a: str, b: str, t: float) -> str:
    ca, cb = (np.array([int(h[i:i + 2], 16) for i in (1, 3, 5)], dtype=float) for h in (a, b))
    r, g, bl = np.round(ca + (cb - ca) * t).astype(int)
    return f"#{r:02X}{g:02X}{bl:02X}"


def n_key(n: float) -> float:
    """N rounded to 6 significant digits: the same size read from a param and from ln N compares equal."""
    return float(f"{float(n):.6g}")


class NColours(dict):
    """N -> colour, keyed by ``n_key``; looking up an unrounded N finds its size (grey for an unknown one)."""

    def __missing__(self, n: float) -> str:
        return dict.get(self, n_key(n), "#5f7281")


def n_label(n: float) -> str:
    """``N = 10⁵`` or ``N = 25,472``: the size as the legends print it."""
    return f"N = {number_label(n)}"


def n_colours(levels: Sequence[float]) -> NColours:
    """Colour of each model size N, keyed by ``n_key`` (ascending sizes get OKABE_ITO in order, or a viridis ramp
    beyond 7 sizes)."""
    ns = sorted({n_key(n) for n in levels})
    if len(ns) <= len(OKABE_ITO):
        return NColours({n: OKABE_ITO[i] for i, n in enumerate(ns)})
    out = NColours()
    for i, n in enumerate(ns):
        pos = i / (len(ns) - 1) * (len(_VIRIDIS) - 1)
        lo = min(int(pos), len(_VIRIDIS) - 2)
        out[n] = _blend(_VIRIDIS[lo], _VIRIDIS[lo + 1], pos - lo)
    return out


def law_colours(law: LawData) -> NColours:
    """The law's N -> colour map over every size it knows (scratch levels and fine-tunes), same in every plot."""
    return n_colours(np.unique(np.r_[law.scratch.levels, [p.n for p in law.points]]).tolist())


def unit_of(law: LawData) -> str:
    """The data unit of D_F, D_E and D_T: "tokens" or "characters"."""
    unit = str(law.settings.get("unit", "tokens"))
    return "characters" if unit.startswith("char") else unit


T = TypeVar("T")


def drawn(points: Sequence[T], limit: int = MAX_DRAWN) -> list[T]:
    """At most ``limit`` of ``points``, evenly spread over the sequence (all of them when there are fewer)."""
    if len(points) <= limit:
        return list(points)
    return [points[i] for i in np.linspace(0, len(points) - 1, limit).round().astype(int)]


def gap_point(law: LawData) -> Point | None:
    """The fine-tune the Figure-1 gap is drawn for: used, at the largest N, at that N's median D_F."""
    used = [p for p in law.points if p.used and np.isfinite(p.d_e) and p.d_t > 0]
    if not used:
        return None
    top = max(p.n for p in used)
    at_top = sorted((p for p in used if p.n == top), key=lambda p: p.d_f)
    return at_top[len(at_top) // 2]


def d_t_draws(law: LawData, n: float, d_f: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """D_T at (n, d_f) by the fit, and by every bootstrap draw that identified the law (rows: draws)."""
    k, a, b = (np.asarray(law.draws.get(name, np.empty(0)), dtype=float) for name in ("k", "alpha", "beta"))
    ok = np.isfinite(k) & np.isfinite(a) & np.isfinite(b)
    draws = k[ok, None] * d_f[None] ** a[ok, None] * n ** b[ok, None]
    return np.asarray(law.effective_data_transferred(n, d_f)), draws


def band(draws: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The 95% percentile band of ``draws`` (rows: draws), as ``TransferLaw.predict`` gives it; NaN without draws.

    One vectorised percentile over finite draws: ``nanpercentile`` walks the columns in Python, which cost more
    than the drawing at 1,000 draws."""
    if draws.shape[0] == 0:
        nan = np.full(draws.shape[1:], np.nan)
        return nan, nan
    low, high = np.percentile(draws, [2.5, 97.5], axis=0)
    return low, high


def off_axis_bands(bands: dict[float, tuple[np.ndarray, np.ndarray]], lo: float, hi: float
                   ) -> dict[float, tuple[float, float, bool, bool]]:
    """Per N whose band runs past ``[lo, hi]``: (band low, band high, runs below, runs above)."""
    out = {}
    for n, (low, high) in bands.items():
        b_lo, b_hi = float(np.nanmin(low, initial=np.inf)), float(np.nanmax(high, initial=-np.inf))
        if b_lo < lo or b_hi > hi:
            out[n] = (b_lo, b_hi, b_lo < lo, b_hi > hi)
    return out


def off_axis_caption(off: dict[float, tuple[float, float, bool, bool]]) -> str:
    """' ... bands running beyond it ...: N = 10^4: 3e+01 to 2e+09.' (empty when every band fits)."""
    if not off:
        return ""
    parts = [f"{n_label(n)}: {b_lo:.2g} to {b_hi:.2g}" for n, (b_lo, b_hi, _, _) in sorted(off.items())]
    return (" The axis spans the data's decades; bands running beyond it are arrows at the edge, with their full "
            "95% ranges: " + "; ".join(parts) + ".")
