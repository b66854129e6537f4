"""Plots of a fitted law (matplotlib, Agg): Figure-1 view, D_T vs D_F with bands, fraction vs N, residuals.

Each is a 800 x 560 px PNG (8 x 5.6 in at 100 dpi); ``index.html`` inlines them as base64 so it stands alone.
"""

from __future__ import annotations

import base64
import html
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from ._model import TransferLaw

FIGSIZE = (8.0, 5.6)
DPI = 100


def _figure():  # noqa: ANN202 - matplotlib types are not worth importing eagerly
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=FIGSIZE, dpi=DPI)
    ax.grid(True, which="both", alpha=0.25)
    return plt, fig, ax


def _save(plt, fig, path: Path) -> Path:  # noqa: ANN001
    fig.tight_layout()
    fig.savefig(path, dpi=DPI)
    plt.close(fig)
    return path


def _colours(n_levels: np.ndarray) -> dict[float, tuple[float, ...]]:
    import matplotlib

    cmap = matplotlib.colormaps["viridis"]
    return {float(n): cmap(i / max(len(n_levels) - 1, 1)) for i, n in enumerate(n_levels)}


def _fine_tune_ns(law: TransferLaw) -> np.ndarray:
    return np.unique([p.n for p in law.points])


def plot_loss_vs_data(law: TransferLaw, path: Path) -> Path:
    """The paper's Figure 1: best loss against data, scratch curves (lines) and fine-tuned runs (markers), per N."""
    plt, fig, ax = _figure()
    sc = law.scratch
    all_n = np.unique(np.r_[sc.levels, _fine_tune_ns(law)])
    colour = _colours(all_n)
    for level, (log_d, log_l) in zip(sc.levels, sc.curves, strict=True):
        c = colour[float(level)]
        ax.plot(np.exp(log_d), np.exp(log_l), "-", color=c, label=f"scratch N={level:.3g}")
    for n in _fine_tune_ns(law):
        pts = [p for p in law.points if p.n == n]
        used = [p for p in pts if p.used]
        other = [p for p in pts if not p.used]
        c = colour[float(n)]
        ax.plot([p.d_f for p in used], [p.loss for p in used], "o", color=c, label=f"fine-tuned N={n:.3g}")
        if other:
            ax.plot([p.d_f for p in other], [p.loss for p in other], "x", color=c, alpha=0.6)
    ax.set(xscale="log", yscale="log", xlabel=f"data ({law.settings['unit']})", ylabel="best test loss (nats/token)",
           title="Best loss vs data: fine-tuned (o used, x excluded) and from scratch")
    ax.legend(fontsize=7, ncol=2)
    return _save(plt, fig, path)


def plot_d_t(law: TransferLaw, path: Path) -> Path:
    """D_T against D_F per N: measured points, fitted lines and 95% bootstrap bands."""
    plt, fig, ax = _figure()
    used = [p for p in law.points if p.used]
    ns = np.unique([p.n for p in used])
    colour = _colours(ns)
    d_grid = np.geomspace(min(p.d_f for p in used) / 2, max(p.d_f for p in used) * 2, 60)
    for n in ns:
        c = colour[float(n)]
        pts = [p for p in used if p.n == n]
        ax.plot([p.d_f for p in pts], [p.d_t for p in pts], "o", color=c, label=f"N={n:.3g}")
        pred = law.predict(np.full_like(d_grid, n), d_grid)
        ax.plot(d_grid, pred.d_t, "-", color=c)
        ax.fill_between(d_grid, pred.d_t_low, pred.d_t_high, color=c, alpha=0.2)
    ax.set(xscale="log", yscale="log", xlabel=f"D_F ({law.settings['unit']})", ylabel="D_T",
           title=f"D_T = {law.k:.3g} D_F^{law.alpha:.3f} N^{law.beta:.3f} (bands: 95% bootstrap)")
    ax.legend(fontsize=8)
    return _save(plt, fig, path)


def plot_fraction(law: TransferLaw, path: Path) -> Path:
    """Fraction of effective data from transfer against N, one line per D_F, with measured points."""
    plt, fig, ax = _figure()
    used = [p for p in law.points if p.used]
    d_levels = np.unique([p.d_f for p in used])
    colour = _colours(d_levels)
    n_grid = np.geomspace(min(p.n for p in used) / 3, max(p.n for p in used) * 3, 60)
    for d in d_levels:
        c = colour[float(d)]
        pred = law.predict(n_grid, np.full_like(n_grid, d))
        ax.plot(n_grid, pred.fraction, "-", color=c, label=f"D_F={d:.3g}")
        ax.fill_between(n_grid, pred.fraction_low, pred.fraction_high, color=c, alpha=0.15)
        pts = [p for p in used if p.d_f == d]
        ax.plot([p.n for p in pts], [p.d_t / (p.d_t + p.d_f) for p in pts], "o", color=c)
    ax.set(xscale="log", xlabel="N (non-embedding parameters)", ylabel="D_T / (D_F + D_T)", ylim=(0, 1),
           title="Fraction of effective data from transfer")
    ax.legend(fontsize=8)
    return _save(plt, fig, path)


def plot_residuals(law: TransferLaw, path: Path) -> Path:
    """ln D_T measured minus fitted, against D_F, marker size by N; and the scratch model's residuals."""
    plt, fig, ax = _figure()
    used = [p for p in law.points if p.used]
    fitted = np.log(law.effective_data_transferred(np.array([p.n for p in used]), np.array([p.d_f for p in used])))
    resid = np.log([p.d_t for p in used]) - fitted
    ax.scatter([p.d_f for p in used], resid, c=np.log10([p.n for p in used]), cmap="viridis", label="law (ln D_T)")
    sc = law.scratch
    ax.scatter(np.exp(sc.log_d), sc.residuals(), marker="+", color="grey", label="scratch model (ln L)")
    ax.axhline(0.0, color="black", lw=0.8)
    ax.set(xscale="log", xlabel="D_F or D", ylabel="residual (ln)", title="Residuals (colour: log10 N)")
    ax.legend(fontsize=8)
    return _save(plt, fig, path)


PLOTS = {"loss_vs_data.png": plot_loss_vs_data, "d_t_vs_d_f.png": plot_d_t, "fraction_vs_n.png": plot_fraction,
         "residuals.png": plot_residuals}


def plot_law(law: TransferLaw, folder: str | Path) -> list[Path]:
    """Write the PNGs and ``index.html`` (PNGs inlined, summary text) into ``folder``; returns all paths."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = [fn(law, folder / name) for name, fn in PLOTS.items()]
    images = "\n".join(
        f'<figure><img alt="{p.stem}" src="data:image/png;base64,{base64.b64encode(p.read_bytes()).decode()}">'
        f"<figcaption>{p.stem}</figcaption></figure>" for p in paths)
    page = (f"<!doctype html><html><head><meta charset='utf-8'><title>Transfer law</title></head><body>"
            f"<h1>Transfer law</h1><pre>{html.escape(law.summary())}</pre>{images}</body></html>")
    index = folder / "index.html"
    index.write_text(page)
    return [*paths, index]
