"""Predicted against observed: one point per run a law forecast (or left out), its 95% prediction interval as a bar,
colour = N, and the diagonal where prediction equals measurement. Points whose bar misses the diagonal fell outside
their interval. Drawn for a version's forecasts on the law page and in ``report``, from ``Forecast.to_dict`` rows.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from ._plots import n_colours, n_key, n_label
from ._svg_chart import INK, Axis, Chart, span


def forecast_chart(rows: Sequence[dict[str, Any]], title: str, standalone: bool = False) -> str | None:
    """The chart as SVG, or None when no row has a forecast. ``rows``: dicts with n, observed, loss, low, high,
    inside (``Forecast.to_dict``)."""
    keep = [r for r in rows if all(isinstance(r.get(k), (int, float)) and math.isfinite(r[k]) and r[k] > 0
                                   for k in ("n", "observed", "loss", "low", "high"))]
    if not keep:
        return None
    lo, hi = span([v for r in keep for v in (r["observed"], r["loss"], r["low"], r["high"])])
    chart = Chart(Axis(lo, hi, "predicted best loss (nats/token)"), Axis(lo, hi, "observed best loss (nats/token)"),
                  title, standalone=standalone, width=640, height=440)
    chart.line([lo, hi], [lo, hi], INK, width=1.0, dash="5 4")
    colours = n_colours([r["n"] for r in keep])
    for r in keep:
        colour = colours[r["n"]]
        chart.whisker(r["loss"], r["low"], r["high"], colour)
        tip = (f"N = {r['n']:.4g}: predicted {r['loss']:.4g} [{r['low']:.4g}, {r['high']:.4g}], observed "
               f"{r['observed']:.4g}" + ("" if r.get("inside") else " (outside)"))
        chart.marker(r["loss"], r["observed"], colour, "filled" if r.get("inside") else "hollow",
                     attrs={"data-run": str(r.get("run_id", ""))}, tooltip=tip)
    for n in sorted({n_key(r["n"]) for r in keep}):
        chart.legend("filled", colours[n], n_label(n))
    chart.legend("band", INK, "observed = predicted")  # drawn dashed, as the diagonal
    chart.legend("hollow", "#5f7281", "outside its interval")
    inside = sum(bool(r.get("inside")) for r in keep)
    caption = (f"{inside} of {len(keep)} runs inside their 95% prediction interval (bar: the interval; a calibrated "
               "law has about 95% inside).")
    return chart.render(caption)
