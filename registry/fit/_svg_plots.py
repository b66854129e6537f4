"""The law's plots as SVG (milliseconds each, whatever the run count): what a refit logs and the law page shows.

One meaning in every chart (``_plots``): colour = N from one palette, filled = fine-tune used in the fit,
cross = fine-tune left out, hollow = run from scratch, dashed outlines = 95% bootstrap band. Marks can carry
attributes (a run id, a link), which the law page's script uses for hover and click.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from ._model import TransferLaw
from ._plots import (
    NColours,
    band,
    d_t_draws,
    drawn,
    gap_point,
    law_colours,
    n_colours,
    n_key,
    n_label,
    off_axis_bands,
    off_axis_caption,
    unit_of,
)
from ._svg_chart import Axis, Chart, number_label, span
from ._types import R_PAST_REGIME

Attrs = Callable[[str], tuple[dict[str, str], str]]
"""run id -> (attributes for the run's marker, its tooltip)."""


@dataclass(frozen=True)
class Mark:
    """One run drawn on the loss-vs-data chart."""

    run_id: str
    n: float
    d: float
    """D_F of a fine-tune, D of a scratch run."""
    loss: float
    kind: str
    """``filled`` (fine-tune in the fit), ``cross`` (fine-tune left out) or ``hollow`` (from scratch)."""
    attrs: dict[str, str] = field(default_factory=dict)
    tooltip: str = ""


def law_marks(law: TransferLaw) -> list[Mark]:
    """The law's own runs as marks: its fine-tunes (used or not) and its scratch runs (no run ids kept for those)."""
    marks = [Mark(p.run_id, p.n, p.d_f, p.loss, "filled" if p.used else "cross") for p in law.points]
    sc = law.scratch
    marks += [Mark("", float(n), float(d), float(v), "hollow")
              for n, d, v in zip(np.exp(sc.log_n), np.exp(sc.log_d), np.exp(sc.log_l), strict=True)]
    return marks


def colours_for(law: TransferLaw | None, ns: list[float]) -> NColours:
    """The law's N colours (same as its PNGs); with sizes only the page's runs have, a map over all of them."""
    base = law_colours(law) if law is not None else NColours()
    extra = [n for n in ns if n_key(n) not in base]
    return base if not extra else n_colours([*base, *extra])


def _by_n_and_kind(marks: list[Mark]) -> tuple[list[Mark], int]:
    """At most MAX_DRAWN marks per (N, kind), and how many were left out of the drawing."""
    groups: dict[tuple[float, str], list[Mark]] = {}
    for m in marks:
        groups.setdefault((m.n, m.kind), []).append(m)
    shown = [m for group in groups.values() for m in drawn(group)]
    return shown, len(marks) - len(shown)


def _note(hidden: int, total: int) -> str:
    return f" Drawing {total - hidden} of {total} runs (even subsample per size)." if hidden else ""


KIND_LEGEND = (("filled", "fine-tune, in the fit"), ("cross", "fine-tune, left out"), ("hollow", "from scratch"))


def loss_chart(law: TransferLaw | None, marks: list[Mark], unit: str = "tokens", css_class: str = "chart",
               standalone: bool = False) -> str:
    """Figure 1 of the paper: best loss against data, fitted scratch curves per N, the D_T gap of one fine-tune."""
    good = [m for m in marks if m.d > 0 and m.loss > 0 and math.isfinite(m.d) and math.isfinite(m.loss)]
    if not good:
        return _empty("no finished runs with data and a best loss yet", css_class)
    colour = colours_for(law, [m.n for m in good])
    gap = gap_point(law) if law is not None else None
    xs = [m.d for m in good] + ([gap.d_e] if gap else [])
    chart = Chart(Axis(*span(xs), f"training data: D_F of a fine-tune, D from scratch ({unit})"),
                  Axis(*span(m.loss for m in good), "best test loss (nats/token)"),
                  "Loss vs data: fine-tuned and from scratch (the paper's Figure 1)", css_class=css_class,
                  standalone=standalone)
    if law is not None:
        sc = law.scratch
        for g, n in enumerate(sc.levels.tolist()):  # each fitted curve over the data its scratch runs cover
            log_d = sc.log_d[sc.group == g]
            grid = np.linspace(log_d.min(), log_d.max(), 90)
            curve = np.exp(sc.log_loss(np.full_like(grid, n), grid))
            chart.line(np.exp(grid).tolist(), curve.tolist(), colour[n], css="scratch-curve")
    shown, hidden = _by_n_and_kind(good)
    for m in sorted(shown, key=lambda m: m.kind != "hollow"):  # scratch first: fine-tunes stay on top
        chart.marker(m.d, m.loss, colour[m.n], m.kind, m.attrs, m.tooltip)
    if gap is not None:
        chart.arrow(gap.d_f, gap.d_e, gap.loss, f"D_T = {number_label(gap.d_t)} {unit}")
    for n, c in colour.items():
        chart.legend("line", c, n_label(n))
    kinds = KIND_LEGEND if law is not None else (("filled", "fine-tune"), ("hollow", "from scratch"))
    for kind, label in kinds:
        chart.legend(kind, "#5f7281", label)
    if gap is not None:
        chart.legend("arrow", "#11171c", "D_T: gap to scratch curve")
    caption = ("A fine-tune (filled) reaches the loss that a from-scratch model of the same N (line: fitted scratch "
               "curve; hollow: scratch runs) reaches only with more data; the arrow is that horizontal gap, the "
               "effective data transferred D_T." + _note(hidden, len(good)))
    return chart.render(caption)


def d_t_chart(law: TransferLaw, attrs: Attrs | None = None, css_class: str = "chart", standalone: bool = False) -> str:
    """D_T against D_F per N: the fitted law's lines, outlined 95% bands and the measured D_T of each fine-tune."""
    used = [p for p in law.points if p.used and p.d_t > 0]
    if not used:
        return _empty("no fine-tune in the fit", css_class)
    colour, unit = law_colours(law), unit_of(law)
    # Fine-tunes past the low-data regime: drawn (crosses) so the bend shows against the law's lines.
    past = [p for p in law.points if p.reason.startswith(R_PAST_REGIME) and p.d_t > 0 and p.n in colour]
    grid = np.geomspace(min(p.d_f for p in used) / 2, max(p.d_f for p in used + past) * 2, 60)
    lines = {n: d_t_draws(law, n, grid) for n in sorted({p.n for p in used})}
    bands = {n: band(draws) for n, (_, draws) in lines.items()}
    ys = [p.d_t for p in used + past] + [v for d_t, _ in lines.values() for v in (d_t.min(), d_t.max())]
    chart = Chart(Axis(grid[0], grid[-1], f"D_F, fine-tuning data ({unit})"),
                  Axis(*span(ys, pad=0.15), f"D_T, effective data transferred ({unit})"),
                  f"D_T = {law.k:.3g} \u00b7 D_F^{law.alpha:.3f} \u00b7 N^{law.beta:.3f}", css_class=css_class,
                  standalone=standalone)
    for n, (d_t, _) in lines.items():
        chart.band(grid.tolist(), bands[n][0].tolist(), bands[n][1].tolist(), colour[n])
        chart.line(grid.tolist(), d_t.tolist(), colour[n], css="law-line")
        chart.legend("line", colour[n], n_label(n))
    off = off_axis_bands(bands, chart.y.lo, chart.y.hi)
    for i, (n, (b_lo, b_hi, below, above)) in enumerate(sorted(off.items())):
        x = float(grid[-1]) / 1.3 ** (i + 1)  # one arrow per size, side by side at the right end
        for runs_off, up in ((above, True), (below, False)):
            if runs_off:
                chart.edge_arrow(x, up, colour[n], f"{n_label(n)}: 95% band {b_lo:.2g} to {b_hi:.2g}")
    groups: dict[float, list] = {}
    for p in used:
        groups.setdefault(p.n, []).append(p)
    shown = [p for group in groups.values() for p in drawn(group)]
    for p in shown:
        extra, tip = attrs(p.run_id) if attrs else ({}, "")
        chart.marker(p.d_f, p.d_t, colour[p.n], "filled", extra, tip)
    for p in past:
        extra, tip = attrs(p.run_id) if attrs else ({}, "")
        chart.marker(p.d_f, p.d_t, colour[p.n], "cross", extra, tip or f"{p.run_id}: past the low-data regime")
    chart.legend("band", "#5f7281", "95% bootstrap band")
    if past:
        chart.legend("cross", "#5f7281", "past the low-data regime")
    caption = ("Slope of each line = alpha (how D_T grows with D_F); spacing between sizes = beta (how it grows with "
               "N); points: D_T measured from each fine-tune." + _note(len(used) - len(shown), len(used))
               + (f" Crosses: {len(past)} fine-tune(s) past the low-data regime, where D_T bends below the law (not "
                  "in the fit)." if past else "")
               + off_axis_caption(off))
    return chart.render(caption)


def fraction_chart(law: TransferLaw, css_class: str = "chart", standalone: bool = False) -> str:
    """D_T / (D_F + D_T) against D_F per N, with outlined bands."""
    used = [p for p in law.points if p.used and p.d_t > 0]
    if not used:
        return _empty("no fine-tune in the fit", css_class)
    colour, unit = law_colours(law), unit_of(law)
    grid = np.geomspace(min(p.d_f for p in used) / 2, max(p.d_f for p in used) * 2, 60)
    chart = Chart(Axis(grid[0], grid[-1], f"D_F, fine-tuning data ({unit})"),
                  Axis(0.0, 1.0, "fraction of effective data from transfer", log=False),
                  "D_T / (D_F + D_T): how much pretraining is worth", css_class=css_class, standalone=standalone)
    for n in sorted({p.n for p in used}):
        d_t, draws = d_t_draws(law, n, grid)
        low, high = band(draws / (grid[None] + draws))
        chart.band(grid.tolist(), low.tolist(), high.tolist(), colour[n])
        chart.line(grid.tolist(), (d_t / (grid + d_t)).tolist(), colour[n])
        chart.legend("line", colour[n], n_label(n))
    return chart.render("Near 1: pretraining supplies almost all of the effective data; it falls as fine-tuning data "
                        "takes over, and sits higher for larger N when beta > 0.")


def residual_chart(law: TransferLaw, css_class: str = "chart", standalone: bool = False) -> str:
    """ln D_T measured minus fitted, against D_F, colour = N."""
    used = [p for p in law.points if p.used and p.d_t > 0]
    if not used:
        return _empty("no fine-tune in the fit", css_class)
    colour, unit = law_colours(law), unit_of(law)
    n, d_f = np.array([p.n for p in used]), np.array([p.d_f for p in used])
    resid = (np.log([p.d_t for p in used]) - np.log(law.effective_data_transferred(n, d_f))).tolist()
    top = max(0.05, *(abs(r) for r in resid)) * 1.15
    chart = Chart(Axis(*span(p.d_f for p in used), f"D_F, fine-tuning data ({unit})"),
                  Axis(-top, top, "ln D_T measured \u2212 ln D_T fitted", log=False),
                  "Law residuals: look for a trend, not for size", css_class=css_class, standalone=standalone)
    chart.line([chart.x.lo, chart.x.hi], [0.0, 0.0], "#11171c", width=1.0)
    groups: dict[float, list[int]] = {}
    for i, p in enumerate(used):
        groups.setdefault(p.n, []).append(i)
    for size, idx in sorted(groups.items()):
        for i in drawn(idx):
            chart.marker(used[i].d_f, resid[i], colour[size])
        chart.legend("filled", colour[size], n_label(size))
    return chart.render("Residuals should scatter around 0 with no trend in D_F or N; a trend means the power law "
                        "misses the data.")


def _empty(message: str, css_class: str) -> str:
    return (f'<svg xmlns="http://www.w3.org/2000/svg" class="{css_class} empty" viewBox="0 0 640 80" width="640" '
            f'height="80" role="img"><text x="16" y="44" font-size="14">{message}</text></svg>')


SVG_PLOTS: dict[str, Callable[[TransferLaw], str]] = {
    "loss_vs_data.svg": lambda law: loss_chart(law, law_marks(law), unit_of(law), standalone=True),
    "d_t_vs_d_f.svg": lambda law: d_t_chart(law, standalone=True),
    "fraction_vs_d_f.svg": lambda law: fraction_chart(law, standalone=True),
    "residuals.svg": lambda law: residual_chart(law, standalone=True)}
"""The charts a refit logs: each file carries its caption, since MLflow's artifact view shows it alone."""
SVG_CAPTIONS = {
    "loss_vs_data.svg": "Figure 1 of the paper, on these runs: a fine-tune (filled) matches a scratch model of the "
                        "same size (line) trained on more data; the arrow is that gap, D_T.",
    "d_t_vs_d_f.svg": "The law itself: D_T against D_F, one line per model size, with 95% bands.",
    "fraction_vs_d_f.svg": "How much of the effective data pretraining supplies, per model size.",
    "residuals.svg": "Model checks: what the law and the scratch model leave unexplained.",
}
"""The report page's caption under each chart."""
