"""The law page's charts as inline SVG, drawn on the server with the refit's own chart code (same colours, marks
and captions as the logged plots): the paper's Figure 1 over the law's runs, D_T against D_F with bands, and
alpha and beta across versions. Every run's mark carries ``data-run-id``, ``data-href`` and ``data-label`` for the
page's script (hover shows the run, click opens it in MLflow).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from transfer_laws.plugin.page_fit import VersionRow
from transfer_laws.registry import schema
from transfer_laws.registry.fit.charts import Axis, Chart, Mark, d_t_chart, loss_chart, n_key, span, unit_of
from transfer_laws.registry.paper import TEXT_TO_PYTHON
from transfer_laws.registry.records import RunResult

if TYPE_CHECKING:
    from transfer_laws.registry.fit import TransferLaw

GREY = "#5f7281"
PAPER = TEXT_TO_PYTHON
"""Hernandez et al. 2021, Table 1, text -> python: the dashed reference line of the history charts."""


def _finite(*values: float | None) -> bool:
    return all(v is not None and math.isfinite(v) for v in values)


def _label(run: RunResult, extra: str = "") -> str:
    parts = [f"{run.role} {run.name}", f"N={run.n_params:.3g}", f"D_F={run.d_f_tokens:.3g}",
             f"loss={run.best_test_loss:.4f}"]
    return " \u00b7 ".join(parts) + (f" \u00b7 {extra}" if extra else "") + f" ({run.run_id})"


def _attrs(run: RunResult, run_href: dict[str, str], extra: str = "") -> tuple[dict[str, str], str]:
    label = _label(run, extra)
    return {"data-run-id": run.run_id, "data-href": run_href.get(run.run_id, ""), "data-label": label}, label


def _marks(runs: list[RunResult], fit: TransferLaw | None, run_href: dict[str, str]) -> list[Mark]:
    """Marks for the Figure-1 chart. With a fit, positions come from it (its unit, its D_F), so they sit on its
    curves; runs the version does not include are crosses; without one, the runs as MLflow has them."""
    by_id = {r.run_id: r for r in runs}
    if fit is None:
        return [Mark(r.run_id, r.n_params, r.d_f_tokens, r.best_test_loss,
                     "hollow" if r.role == schema.ROLE_SCRATCH else "filled", *_attrs(r, run_href)) for r in runs]
    marks, placed = [], set()
    for p in fit.points:
        run = by_id.get(p.run_id)
        why = f"D_T={p.d_t:.3g}" if p.used else f"left out: {p.reason}"
        attrs, tip = _attrs(run, run_href, why) if run else ({"data-run-id": p.run_id}, f"{p.run_id} \u00b7 {why}")
        marks.append(Mark(p.run_id, p.n, p.d_f, p.loss, "filled" if p.used else "cross", attrs, tip))
        placed.add(p.run_id)
    # Scratch runs: the fit keeps their numbers, not their ids; a run is matched by its size and its exact loss.
    scratch = {(n_key(r.n_params), f"{r.best_test_loss:.9g}"): r for r in runs if r.role == schema.ROLE_SCRATCH}
    sc = fit.scratch
    for ln_n, ln_d, ln_l in zip(sc.log_n.tolist(), sc.log_d.tolist(), sc.log_l.tolist(), strict=True):
        n, loss = math.exp(ln_n), math.exp(ln_l)
        run = scratch.get((n_key(n), f"{loss:.9g}"))
        attrs, tip = _attrs(run, run_href) if run else ({}, f"scratch N={n:.3g} D={math.exp(ln_d):.3g} loss={loss:.4f}")
        marks.append(Mark(run.run_id if run else "", n, math.exp(ln_d), loss, "hollow", attrs, tip))
        if run:
            placed.add(run.run_id)
    if fit.settings.get("unit", "tokens") == "tokens":  # MLflow's D_F is in tokens: comparable with the fit's
        for r in runs:
            if r.run_id not in placed and r.role == schema.ROLE_FINETUNE:
                marks.append(Mark(r.run_id, r.n_params, r.d_f_tokens, r.best_test_loss, "cross",
                                  *_attrs(r, run_href, "not in this version")))
    return marks


def loss_svg(runs: list[RunResult], fit: TransferLaw | None, run_href: dict[str, str]) -> str:
    """Figure 1 of the paper on the law's runs: fitted scratch curves, fine-tunes, scratch runs, the D_T gap."""
    unit = unit_of(fit) if fit is not None else "tokens"
    return loss_chart(fit, _marks(runs, fit, run_href), unit, css_class="chart fit-plot")


def d_t_svg(fit: TransferLaw, runs: list[RunResult], run_href: dict[str, str]) -> str:
    """D_T against D_F per N with the fitted lines and outlined 95% bands; points link to their runs."""
    by_id = {r.run_id: r for r in runs}
    d_t = {p.run_id: p.d_t for p in fit.points}

    def attrs(run_id: str) -> tuple[dict[str, str], str]:
        run, extra = by_id.get(run_id), f"D_T={d_t.get(run_id, math.nan):.3g}"
        return _attrs(run, run_href, extra) if run else ({"data-run-id": run_id}, f"{run_id} \u00b7 {extra}")

    return d_t_chart(fit, attrs, css_class="chart d-t-plot")


def history_svg(rows: list[VersionRow], name: str) -> str:
    """``name`` (alpha or beta) per version with its 95% interval, and the paper's value as a dashed line.

    The axis is scaled to the values themselves (with 0 and the paper's value), widened by at most their spread
    for the intervals: one version's huge interval would otherwise flatten every point onto a line. An interval
    cut at the axis ends in an arrow whose tooltip gives its bound."""
    pts = [(int(r.version), value, r.intervals.get(name)) for r in rows
           if (value := r.params.get(name)) is not None and math.isfinite(value)]
    if not pts:
        return ""
    paper = float(PAPER[name])  # Table 1's alpha or beta (its rows also hold a str: the pretraining)
    core = [v for _, v, _ in pts] + [0.0, paper]
    reach = max(max(core) - min(core), 0.25)
    limit = (min(core) - reach, max(core) + reach)
    bounds = [min(max(b, limit[0]), limit[1]) for _, _, iv in pts if iv for b in iv if _finite(b)]
    versions = [v for v, _, _ in pts]
    chart = Chart(Axis(min(versions) - 0.5, max(versions) + 0.5, "law version", log=False, integer=True),
                  Axis(*span(core + bounds, log=False), name, log=False), f"{name} across versions",
                  width=400, height=240, css_class=f"chart history history-{name}", margin=(30, 16, 46, 58))
    chart.line([chart.x.lo, chart.x.hi], [0.0, 0.0], "#11171c", width=0.8)
    chart.line([chart.x.lo, chart.x.hi], [paper] * 2, GREY, width=1.2, dash="5 4")
    cut = 0
    for version, value, interval in pts:
        if interval and _finite(*interval):
            chart.line([version, version], interval, "#11171c", width=1.4, css="whisker")
            for bound, up in ((interval[1], True), (interval[0], False)):
                if (bound > chart.y.hi) if up else (bound < chart.y.lo):
                    cut += 1
                    chart.edge_arrow(version, up, "#11171c", f"v{version}: interval runs to {bound:.3g}")
        tip = f"v{version}: {name} = {value:.3g}" + (f" [{interval[0]:.3g}, {interval[1]:.3g}]" if interval else "")
        chart.marker(version, value, "#11171c", "filled", {"data-version": str(version)}, tip, css="version-pt")
    note = f" {cut} interval end(s) beyond the axis: arrows (hover for the bound)." if cut else ""
    return chart.render(f"{name} of every version with its 95% interval (bar); dashed: the paper's {PAPER[name]} "
                        f"(text to python).{note}")
