"""The fit plot as inline SVG: best test loss against D_F (log axis), one colour per model size N.

Drawn on the server so the page needs no plotting library; each point carries its run id (``data-run-id`` and a
``<title>``) so the page's small script can show it on hover and open the run on click.
"""

from __future__ import annotations

import math
from html import escape

from transfer_laws.plugin.page_data import RunRow
from transfer_laws.registry import schema

WIDTH, HEIGHT, PAD = 560, 320, 48
COLOURS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#17becf", "#8c564b", "#e377c2")


def _scale(lo: float, hi: float, out_lo: float, out_hi: float):  # noqa: ANN202 - a small closure
    span = (hi - lo) or 1.0
    return lambda v: out_lo + (v - lo) / span * (out_hi - out_lo)


def fit_plot_svg(runs: list[RunRow], run_href: dict[str, str]) -> str:
    """SVG of the runs that have both D_F and a best loss; an empty-state SVG with a message otherwise."""
    # A run logged with inf or nan (MLflow stores them) would put the axes at infinity: it is not drawn.
    points = [r for r in runs if r.d_f and r.d_f > 0 and math.isfinite(r.d_f) and r.best_loss is not None
              and math.isfinite(r.best_loss)]
    head = f'<svg class="fit-plot" viewBox="0 0 {WIDTH} {HEIGHT}" width="{WIDTH}" height="{HEIGHT}" role="img">'
    if not points:
        return head + f'<text x="{PAD}" y="{HEIGHT / 2}">no finished runs with D_F and a best loss yet</text></svg>'
    xs = [math.log10(r.d_f) for r in points]
    ys = [r.best_loss for r in points]
    x = _scale(min(xs) - 0.1, max(xs) + 0.1, PAD, WIDTH - 16)
    y = _scale(min(ys) - 0.05, max(ys) + 0.05, HEIGHT - PAD, 16)
    sizes = sorted({r.n for r in points if r.n is not None})
    colour = {n: COLOURS[i % len(COLOURS)] for i, n in enumerate(sizes)}
    parts = [head, '<rect class="frame" x="0" y="0" width="100%" height="100%" fill="#fff"/>',
             f'<line x1="{PAD}" y1="{HEIGHT - PAD}" x2="{WIDTH - 16}" y2="{HEIGHT - PAD}" stroke="#333"/>',
             f'<line x1="{PAD}" y1="16" x2="{PAD}" y2="{HEIGHT - PAD}" stroke="#333"/>']
    for decade in range(math.ceil(min(xs) - 0.1), math.floor(max(xs) + 0.1) + 1):
        parts.append(f'<text x="{x(decade):.1f}" y="{HEIGHT - PAD + 16}" text-anchor="middle" font-size="11">'
                     f"1e{decade}</text>")
    parts.append(f'<text x="{WIDTH / 2}" y="{HEIGHT - 8}" text-anchor="middle" font-size="12">D_F (tokens)</text>')
    parts.append(f'<text x="12" y="{HEIGHT / 2}" font-size="12" transform="rotate(-90 12 {HEIGHT / 2})" '
                 'text-anchor="middle">best test loss (nats/token)</text>')
    for label in (min(ys), max(ys)):
        parts.append(f'<text x="{PAD - 4}" y="{y(label):.1f}" text-anchor="end" font-size="11">{label:.3g}</text>')
    for run, px, py in zip(points, xs, ys, strict=True):
        fill = colour.get(run.n, "#555")
        hollow = run.role == schema.ROLE_SCRATCH
        label = f"{run.role} {run.name} ({run.run_id}) N={run.n:.3g} D_F={run.d_f:.3g} loss={run.best_loss:.4g}" \
            if run.n is not None else f"{run.role} {run.name} ({run.run_id})"
        parts.append(
            f'<circle class="pt" cx="{x(px):.1f}" cy="{y(py):.1f}" r="6" stroke="{fill}" stroke-width="2" '
            f'fill="{"#fff" if hollow else fill}" data-run-id="{escape(run.run_id)}" '
            f'data-href="{escape(run_href.get(run.run_id, ""))}" data-label="{escape(label)}">'
            f"<title>{escape(label)}</title></circle>"
        )
    for i, n in enumerate(sizes):
        parts.append(f'<circle cx="{WIDTH - 120}" cy="{24 + 16 * i}" r="5" fill="{colour[n]}"/>'
                     f'<text x="{WIDTH - 110}" y="{28 + 16 * i}" font-size="11">N={n:.3g}</text>')
    parts.append("</svg>")
    return "".join(parts)
