"""The fitter's charts, as the law page, the report and the transfer map draw them: SVG written as text, no
plotting library. ``loss_chart`` and ``d_t_chart`` draw one law (its runs as ``Mark``s, colour per N by ``n_key``,
data in ``unit_of`` the law); ``lines_chart`` and ``params_chart`` draw a target's transfer map; ``forecast_chart``
a law's track record; ``Chart``, ``Axis`` and ``span`` are the canvas the page composes its own charts on."""

from ._plots import n_key, unit_of
from ._svg_chart import Axis, Chart, span
from ._svg_forecast import forecast_chart
from ._svg_map import lines_chart, params_chart
from ._svg_plots import Mark, d_t_chart, loss_chart

__all__ = ["Axis", "Chart", "Mark", "d_t_chart", "forecast_chart", "lines_chart", "loss_chart", "n_key",
           "params_chart", "span", "unit_of"]
