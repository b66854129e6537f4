"""Plots of a fitted law (matplotlib, Agg): Figure-1 view, D_T vs D_F with bands, transfer fraction, residuals.

One colour meaning everywhere: colour = model size N, from a colour-blind-safe palette (Okabe-Ito, or viridis
without its pale yellow end when there are more sizes than Okabe-Ito has colours). Filled markers are fine-tunes
used in the fit, crosses fine-tunes left out, hollow markers runs from scratch. Each PNG is 800 x 560 px and
carries its caption, so it reads on its own in MLflow's artifact viewer; ``index.html`` (see ``_html``) inlines them.

Rendering cost does not grow with the run count beyond one vectorised scatter per size: at most ``MAX_DRAWN``
points per series are drawn (an even subsample, said in the caption), figures are built without pyplot and laid
out with fixed margins (no ``tight_layout`` pass), and PNGs are written with fast zlib settings.
"""

from __future__ import annotations

import base64
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from ._model import TransferLaw
    from ._types import Point

FIGSIZE = (8.0, 5.6)
DPI = 100
MAX_DRAWN = 300
"""Most points drawn per size and kind; beyond it an even subsample (every run still counts in the fit)."""
OKABE_ITO = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000")
"""Okabe & Ito's colour-blind-safe set without its yellow (invisible on white)."""
_VIRIDIS = ("#440154", "#482878", "#3E4A89", "#31688E", "#26828E", "#1F9E89", "#35B779", "#6DCD59", "#B4DE2C")
"""Viridis from 0 to 0.9 (its last tenth is a yellow too pale on white), for more sizes than OKABE_ITO has."""
_PNG = {"compress_level": 1}  # zlib level 1: a few times faster than the default for a slightly larger file


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
    from ._svg_chart import number_label

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


def law_colours(law: TransferLaw) -> NColours:
    """The law's N -> colour map over every size it knows (scratch levels and fine-tunes), same in every plot."""
    return n_colours(np.unique(np.r_[law.scratch.levels, [p.n for p in law.points]]).tolist())


def unit_of(law: TransferLaw) -> str:
    """The data unit of D_F, D_E and D_T: "tokens" or "characters"."""
    unit = str(law.settings.get("unit", "tokens"))
    return "characters" if unit.startswith("char") else unit


def drawn(points: Sequence[Any], limit: int = MAX_DRAWN) -> list[Any]:
    """At most ``limit`` of ``points``, evenly spread over the sequence (all of them when there are fewer)."""
    if len(points) <= limit:
        return list(points)
    return [points[i] for i in np.linspace(0, len(points) - 1, limit).round().astype(int)]


def gap_point(law: TransferLaw) -> Point | None:
    """The fine-tune the Figure-1 gap is drawn for: used, at the largest N, at that N's median D_F."""
    used = [p for p in law.points if p.used and np.isfinite(p.d_e) and p.d_t > 0]
    if not used:
        return None
    top = max(p.n for p in used)
    at_top = sorted((p for p in used if p.n == top), key=lambda p: p.d_f)
    return at_top[len(at_top) // 2]


class _Plot:
    """One figure and axes (no pyplot: no global figure registry), a caption strip and fixed margins."""

    def __init__(self, ncols: int = 1) -> None:
        from matplotlib.figure import Figure

        self.fig = Figure(figsize=FIGSIZE, dpi=DPI)
        axes = self.fig.subplots(1, ncols, squeeze=False)[0]
        self.axes = list(axes)
        self.ax = self.axes[0]
        self.fig.subplots_adjust(left=0.1, right=0.98, top=0.92, bottom=0.2, wspace=0.28)
        for ax in self.axes:
            ax.grid(True, which="major", color="#d0d0d0", lw=0.6)
            ax.grid(True, which="minor", color="#ececec", lw=0.4)
            ax.set_axisbelow(True)

    def save(self, path: Path, caption: str) -> Path:
        from matplotlib.ticker import LogLocator

        for ax in self.axes:  # within a decade matplotlib labels every minor tick (2..9): they overprint
            for axis, scale in ((ax.xaxis, ax.get_xscale()), (ax.yaxis, ax.get_yscale())):
                if scale == "log":
                    axis.set_minor_locator(LogLocator(base=10.0, subs=(2.0, 5.0)))
        self.fig.text(0.01, 0.015, caption, fontsize=8.5, color="#333333", wrap=True, va="bottom")
        self.fig.savefig(path, dpi=DPI, pil_kwargs=_PNG)
        return path


def _plain_numbers(axis: Any) -> None:
    """Label a log axis spanning less than a decade with plain numbers (4, 5) instead of 4x10^0."""
    from matplotlib.ticker import FuncFormatter

    fmt = FuncFormatter(lambda v, _: f"{v:.3g}")
    axis.set_major_formatter(fmt)
    axis.set_minor_formatter(fmt)


def _caption_note(shown: int, total: int) -> str:
    return f" Showing {shown} of {total} runs (even subsample per size)." if shown < total else ""


def plot_loss_vs_data(law: TransferLaw, path: Path) -> Path:
    """The paper's Figure 1: best loss against data per N, the fitted scratch curves, and the D_T gap of one run."""
    colour, unit, sc = law_colours(law), unit_of(law), law.scratch
    gap = gap_point(law)
    shown = total = 0
    caption = ("Each fine-tune (filled) reaches the loss a from-scratch model of the same N (line: fitted scratch "
               "curve; hollow: scratch runs) reaches only with more data. The horizontal gap from a fine-tune to its "
               "curve is the effective data transferred, D_T (arrow).")
    plot = _Plot()
    ax = plot.ax
    for n, c in colour.items():
        in_n = sc.group == sc.curve_index(n) if sc.levels.size else np.zeros(0, dtype=bool)
        s_d, s_l = np.exp(sc.log_d[in_n]), np.exp(sc.log_l[in_n])
        if s_d.size:
            grid = np.linspace(np.log(s_d.min()), np.log(s_d.max()), 80)
            ax.plot(np.exp(grid), np.exp(sc.log_loss(np.full_like(grid, n), grid)), "-", color=c, lw=1.6)
            ax.scatter(s_d, s_l, s=22, facecolors="white", edgecolors=c, linewidths=1.2, zorder=3)
        pts = [p for p in law.points if p.n == n]
        used, left = drawn([p for p in pts if p.used]), drawn([p for p in pts if not p.used])
        shown += len(used) + len(left) + int(in_n.sum())
        total += len(pts) + int(in_n.sum())
        if used:
            ax.scatter([p.d_f for p in used], [p.loss for p in used], s=26, color=c, zorder=4)
        if left:
            ax.scatter([p.d_f for p in left], [p.loss for p in left], s=30, marker="x", color=c, zorder=4)
        ax.plot([], [], "o-", color=c, label=n_label(n))
    if gap is not None:
        ax.annotate("", xy=(gap.d_e, gap.loss), xytext=(gap.d_f, gap.loss), zorder=5,
                    arrowprops={"arrowstyle": "<|-|>", "color": "#222222", "lw": 1.4, "shrinkA": 4, "shrinkB": 0})
        from ._svg_chart import number_label

        ax.annotate(f"D_T = D_E \u2212 D_F = {number_label(gap.d_t)} {unit}", xy=(np.sqrt(gap.d_f * gap.d_e), gap.loss),
                    xytext=(0, 7), textcoords="offset points", ha="center", fontsize=9, color="#222222", zorder=5,
                    bbox={"boxstyle": "round,pad=0.15", "fc": "white", "ec": "none", "alpha": 0.85})
    ax.scatter([], [], s=26, color="#555555", label="fine-tune, in the fit")
    ax.scatter([], [], s=30, marker="x", color="#555555", label="fine-tune, left out")
    ax.scatter([], [], s=22, facecolors="white", edgecolors="#555555", label="from scratch")
    ax.set(xscale="log", yscale="log", xlabel=f"training data D_F or D ({unit})",
           ylabel="best test loss (nats/token)", title="Loss vs data: fine-tuned and from scratch (paper's Figure 1)")
    _plain_numbers(ax.yaxis)
    ax.legend(fontsize=8, loc="upper right", ncol=2, framealpha=0.9)
    return plot.save(path, caption + _caption_note(shown, total))


def _band(ax: Any, x: np.ndarray, low: np.ndarray, high: np.ndarray, c: str) -> None:
    """An outlined band: light fill plus dashed edges, so overlapping bands stay readable."""
    ax.fill_between(x, low, high, color=c, alpha=0.12, lw=0)
    ax.plot(x, low, "--", color=c, lw=0.8)
    ax.plot(x, high, "--", color=c, lw=0.8)


def d_t_draws(law: TransferLaw, n: float, d_f: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
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


def _used_by_n(law: TransferLaw) -> dict[float, list[Point]]:
    out: dict[float, list[Point]] = {}
    for p in law.points:
        if p.used:
            out.setdefault(p.n, []).append(p)
    return dict(sorted(out.items()))


def _d_f_grid(law: TransferLaw) -> np.ndarray:
    d_f = [p.d_f for p in law.points if p.used]
    return np.geomspace(min(d_f) / 2, max(d_f) * 2, 60)


def _per_size(law: TransferLaw, ax: Any, y_of: Callable[[np.ndarray, np.ndarray], np.ndarray]
              ) -> tuple[str, dict[float, tuple[np.ndarray, np.ndarray, np.ndarray]]]:
    """Per N: outlined band, fitted line and measured points of ``y_of(D_F, D_T)``; returns the subsample note and
    per N the line and its band (for the axis range)."""
    colour, by_n, grid = law_colours(law), _used_by_n(law), _d_f_grid(law)
    shown, drawn_lines = 0, {}
    for n, pts in by_n.items():
        c, pts_drawn = colour[n], drawn(pts)
        shown += len(pts_drawn)
        d_t, draws = d_t_draws(law, n, grid)
        low, high = band(y_of(grid[None], draws))
        _band(ax, grid, low, high, c)
        line = y_of(grid, d_t)
        ax.plot(grid, line, "-", color=c, lw=1.8, label=n_label(n))
        ax.scatter([p.d_f for p in pts_drawn], y_of(np.array([p.d_f for p in pts_drawn]),
                                                     np.array([p.d_t for p in pts_drawn])), s=26, color=c, zorder=3)
        drawn_lines[n] = (line, low, high)
    return _caption_note(shown, sum(len(v) for v in by_n.values())), drawn_lines


def decade_span(values: Any) -> tuple[float, float]:
    """The whole decades around the finite positive ``values`` (the axis range of a log plot of them)."""
    v = np.asarray(list(values), dtype=float)
    v = v[np.isfinite(v) & (v > 0)]
    if not v.size:
        return 1.0, 10.0
    lo, hi = np.floor(np.log10(v.min())), np.ceil(np.log10(v.max()))
    return 10.0 ** lo, 10.0 ** max(hi, lo + 1)


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


def plot_d_t(law: TransferLaw, path: Path) -> Path:
    """D_T against D_F per N: measured points, fitted lines and outlined 95% bands, on the decades of the data (a
    band running beyond them is an arrow at the edge, its range in the caption)."""
    unit, plot = unit_of(law), _Plot()
    ax = plot.ax
    note, lines = _per_size(law, ax, lambda d_f, d_t: d_t)
    lo, hi = decade_span([*(p.d_t for p in law.points if p.used), *(v for line, _, _ in lines.values() for v in line)])
    off = off_axis_bands({n: (low, high) for n, (_, low, high) in lines.items()}, lo, hi)
    colour, x_end = law_colours(law), float(_d_f_grid(law)[-1])
    for i, (n, (_, _, below, above)) in enumerate(sorted(off.items())):
        x = x_end / 1.3 ** (i + 1)  # one arrow per size, side by side at the right end
        for edge, runs_off, towards in ((hi, above, 1.0), (lo, below, -1.0)):
            if runs_off:
                ax.annotate("", xy=(x, edge), xytext=(x, edge / 3.0 ** towards), annotation_clip=False,
                            arrowprops={"arrowstyle": "-|>", "color": colour[n], "lw": 1.4})
    ax.set(xscale="log", yscale="log", ylim=(lo, hi), xlabel=f"D_F, fine-tuning data ({unit})",
           ylabel=f"D_T, effective data transferred ({unit})",
           title=f"D_T = {law.k:.3g} \u00b7 D_F^{law.alpha:.3f} \u00b7 N^{law.beta:.3f}")
    ax.legend(fontsize=8, loc="upper left", framealpha=0.9)
    caption = ("Slope of each line = alpha (how D_T grows with D_F); vertical spacing between sizes = beta (how it "
               "grows with N). Dashed outlines: 95% bootstrap band. Points: D_T measured from each fine-tune.")
    return plot.save(path, caption + note + off_axis_caption(off))


def plot_fraction(law: TransferLaw, path: Path) -> Path:
    """Fraction of effective data from transfer, D_T / (D_F + D_T), against D_F per N, with bands and points."""
    unit, plot = unit_of(law), _Plot()
    ax = plot.ax
    note, _ = _per_size(law, ax, lambda d_f, d_t: d_t / (d_f + d_t))
    ax.set(xscale="log", ylim=(0, 1), xlabel=f"D_F, fine-tuning data ({unit})",
           ylabel="fraction of effective data from transfer", title="D_T / (D_F + D_T): how much pretraining is worth")
    ax.legend(fontsize=8, loc="lower left", framealpha=0.9)
    caption = ("Near 1: pretraining supplies almost all the effective data (little target data); falling with D_F as "
               "fine-tuning data takes over; higher for larger N when beta > 0. Dashed outlines: 95% bootstrap band.")
    return plot.save(path, caption + note)


def plot_residuals(law: TransferLaw, path: Path) -> Path:
    """Two panels, colour = N: ln D_T measured minus fitted against D_F; the scratch model's ln L residuals."""
    colour, unit, sc = law_colours(law), unit_of(law), law.scratch
    by_n = _used_by_n(law)
    plot = _Plot(ncols=2)
    left, right = plot.axes
    for n, pts in by_n.items():
        pts = drawn(pts)
        d_f = np.array([p.d_f for p in pts])
        resid = np.log([p.d_t for p in pts]) - np.log(law.effective_data_transferred(np.full_like(d_f, n), d_f))
        left.scatter(d_f, resid, s=24, color=colour[n], label=n_label(n))
    s_resid = sc.residuals() if sc.log_d.size else np.zeros(0)
    for g, n in enumerate(sc.levels.tolist()):
        mine = drawn(np.flatnonzero(sc.group == g).tolist())
        right.scatter(np.exp(sc.log_d[mine]), s_resid[mine], s=24, facecolors="white", edgecolors=colour[n],
                      linewidths=1.2, label=n_label(n))
    for ax in (left, right):
        ax.axhline(0.0, color="#222222", lw=0.8)
        ax.set_xscale("log")
        ax.legend(fontsize=7.5, loc="best" if ax is right else "upper right", framealpha=0.9)
    left.set(xlabel=f"D_F, fine-tuning data ({unit})", ylabel="ln D_T measured \u2212 ln D_T fitted",
             title="Law residuals (fine-tunes used)")
    right.set(xlabel=f"D, scratch training data ({unit})", ylabel="ln L measured \u2212 ln L of scratch model",
              title=f"Scratch-model residuals ({sc.method})")
    caption = ("Look for structure, not size: residuals should scatter around 0 with no trend in D_F or N. A trend "
               "means the power law (left) or the scratch model behind D_E (right) misses the data. Colour = N.")
    return plot.save(path, caption)


PLOTS: dict[str, Callable[[TransferLaw, Path], Path]] = {
    "loss_vs_data.png": plot_loss_vs_data, "d_t_vs_d_f.png": plot_d_t, "fraction_vs_d_f.png": plot_fraction,
    "residuals.png": plot_residuals}
CAPTIONS = {
    "loss_vs_data.png": "Figure 1 of the paper, on these runs: a fine-tune (filled) matches a scratch model of the "
                        "same size (line) trained on more data; the arrow is that gap, D_T.",
    "d_t_vs_d_f.png": "The law itself: D_T against D_F, one line per model size, with 95% bands.",
    "fraction_vs_d_f.png": "How much of the effective data pretraining supplies, per model size.",
    "residuals.png": "Model checks: what the law and the scratch model leave unexplained.",
}


def plot_law(law: TransferLaw, folder: str | Path, title: str = "Transfer law", kind: str = "svg") -> list[Path]:
    """Write the plots and ``index.html`` (plots inlined, the law explained, runs listed) into ``folder``.

    ``kind="svg"`` (what a refit logs): SVG charts drawn without a plotting library, milliseconds whatever the run
    count. ``kind="png"`` (``transfer-laws report``): matplotlib PNGs for print, a few tenths of a second each.
    """
    from ._html import write_report

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    if kind == "png":
        paths = [fn(law, folder / name) for name, fn in PLOTS.items()]
        figures = [(f"<img alt='{p.stem}' src='data:image/png;base64,{base64.b64encode(p.read_bytes()).decode()}'>",
                    CAPTIONS[p.name]) for p in paths]
    elif kind == "svg":
        from ._svg_plots import SVG_CAPTIONS, SVG_PLOTS

        paths, figures = [], []
        for name, draw in SVG_PLOTS.items():
            svg = draw(law)
            (folder / name).write_text(svg)
            paths.append(folder / name)
            figures.append((svg, SVG_CAPTIONS[name]))
    else:
        raise ValueError(f"kind must be 'svg' or 'png', not {kind!r}")
    return [*paths, write_report(law, figures, folder / "index.html", title)]
