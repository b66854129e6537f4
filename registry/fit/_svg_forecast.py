"""Predicted against observed: one point per run a law forecast (or left out), its 95% prediction interval as a bar,
colour = N, and the diagonal where prediction equals measurement. Points whose bar misses the diagonal fell outside
their interval. Drawn for a version's forecasts on the law page and in ``report``, from ``Forecast.to_dict`` rows.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from ._plots import n_colours, n_key, n_label
from ._svg_chart import INK, Axis, Chart, span
from ._types import ForecastRecord


def _scored(r: ForecastRecord) -> tuple[float, float, float, float, float] | None:
    """(N, observed, predicted, low, high) of a forecast row, None when it has no forecast (or a number is not
    positive and finite)."""
    values = (r["n"], r["observed"], r["loss"], r["low"], r["high"])
    numbers = [v for v in values if v is not None and math.isfinite(v) and v > 0]
    if len(numbers) < len(values):
        return None
    n, observed, loss, low, high = numbers
    return n, observed, loss, low, high


def forecast_chart(rows: Sequence[ForecastRecord], title: str, standalone: bool = False) -> str | None:
    """The chart as SVG, or None when no row has a forecast. ``rows``: ``Forecast.to_dict`` records."""
    keep = [(r, point) for r in rows if (point := _scored(r)) is not None]
    if not keep:
        return None
    lo, hi = span([v for _, (_, observed, loss, low, high) in keep for v in (observed, loss, low, high)])
    chart = Chart(Axis(lo, hi, "predicted best loss (nats/token)"), Axis(lo, hi, "observed best loss (nats/token)"),
                  title, standalone=standalone, width=640, height=440)
    chart.line([lo, hi], [lo, hi], INK, width=1.0, dash="5 4")
    colours = n_colours([n for _, (n, *_) in keep])
    for r, (n, observed, loss, low, high) in keep:
        colour = colours[n]
        chart.whisker(loss, low, high, colour)
        tip = (f"N = {n:.4g}: predicted {loss:.4g} [{low:.4g}, {high:.4g}], observed "
               f"{observed:.4g}" + ("" if r.get("inside") else " (outside)"))
        chart.marker(loss, observed, colour, "filled" if r.get("inside") else "hollow",
                     attrs={"data-run": str(r.get("run_id", ""))}, tooltip=tip)
    for size in sorted({n_key(n) for _, (n, *_) in keep}):
        chart.legend("filled", colours[size], n_label(size))
    chart.legend("band", INK, "observed = predicted")  # drawn dashed, as the diagonal
    chart.legend("hollow", "#5f7281", "outside its interval")
    inside = sum(bool(r.get("inside")) for r, _ in keep)
    caption = (f"{inside} of {len(keep)} runs inside their 95% prediction interval (bar: the interval; a calibrated "
               "law has about 95% inside).")
    return chart.render(caption)
