"""The transfer map's charts as SVG: every source's D_T line at one N with its band (where two lines cross, a
marker), and alpha and beta per source with their intervals beside the paper's. Drawn from ``target_map``'s
document, so the page, ``report --target`` and the target's MLflow run show the same picture."""

from __future__ import annotations

import math

from ._svg_chart import Axis, Chart, number_label, span
from ._types import JsonDict

PALETTE = ("#0b6bcb", "#d1570d", "#2e8540", "#8e44ad", "#b8860b", "#c0392b", "#16a085", "#5f7281")
"""One colour per source, in the map's order (sorted by law)."""
PAPER = {"text": {"alpha": 0.18, "beta": 0.38}, "mix": {"alpha": 0.096, "beta": 0.38}}
"""Hernandez et al. 2021, Table 1 (text -> python; 50/50 text + code -> python)."""


def source_colours(doc: JsonDict) -> dict[str, str]:
    """Source -> colour, stable for a target's map."""
    return {law["source"]: PALETTE[i % len(PALETTE)] for i, law in enumerate(doc.get("laws", []))}


def _finite(*values: object) -> bool:
    return all(isinstance(v, int | float) and math.isfinite(v) for v in values)


def lines_chart(doc: JsonDict, css_class: str = "chart map-lines", standalone: bool = False) -> str:
    """D_T against D_F for every source at the map's N, 95% bands outlined; crossings marked where they fall."""
    lines, unit, colour = doc.get("lines") or {}, doc["unit"], source_colours(doc)
    if not lines:
        return ""
    xs = [x for line in lines.values() for x in line["d_f"]]
    ys = [y for line in lines.values() for y in line["d_t"]]
    chart = Chart(Axis(min(xs), max(xs), f"D_F, fine-tuning data ({unit})"),
                  Axis(*span(ys, pad=0.35), f"D_T, effective data transferred ({unit})"),
                  f"{doc['target']}: every source at N = {number_label(doc['n'])}", css_class=css_class,
                  standalone=standalone)
    determined = {law["source"]: law.get("determined", True) for law in doc.get("laws", [])}
    unbanded = []
    for source, line in lines.items():
        if determined.get(source, True):
            chart.band(line["d_f"], line["low"], line["high"], colour[source])
        else:  # its draws do not pin it down: a band over the whole plot would hide every line
            unbanded.append(f"{source} ({_band_range(line)})")
        chart.line(line["d_f"], line["d_t"], colour[source], css="source-line")
        chart.legend("line", colour[source], f"{source} \u2192 {doc['target']}")
    for c in doc.get("crossings", []):
        d = (c.get("d_f") or {}).get("value")
        if d is None or not _finite(d):
            continue
        line = lines[c["sources"][0]]
        y = _at(line["d_f"], line["d_t"], d)
        tip = (f"{' and '.join(c['sources'])} cross at D_F = {d:.3g} {unit}"
               + (f" [{c['d_f']['low']:.3g}, {c['d_f']['high']:.3g}]" if _finite(c["d_f"]["low"], c["d_f"]["high"])
                  else "") + f", {c['note']}")
        chart.marker(d, y, "#11171c", "hollow", {"data-crossing": "-".join(c["sources"])}, tip, css="crossing")
    if len(unbanded) < len(lines):
        chart.legend("band", "#5f7281", "95% band (draws)")
    chart.legend("hollow", "#11171c", "crossing point")
    caption = (f"Each source's law at N = {doc['n']:.3g} (non-embedding). Slope = alpha: a smaller alpha transfers "
               "relatively more at small D_F. Above the line of another source = transfers more there; where the "
               "bands overlap the two are not distinguishable.")
    if unbanded:
        caption += (" No band is drawn for an undetermined law (its draws do not pin it down); its 95% range of D_T "
                    "at the middle D_F: " + "; ".join(unbanded) + ".")
    return chart.render(caption)


def _band_range(line: JsonDict) -> str:
    """The band's low and high at the line's middle D_F, for a caption."""
    i = len(line["d_f"]) // 2
    low, high = line["low"][i] if line["low"] else math.nan, line["high"][i] if line["high"] else math.nan
    if not _finite(low, high):
        return "no finite band"
    return f"{low:.3g} to {high:.3g} at D_F = {line['d_f'][i]:.3g}"


def _at(xs: list[float], ys: list[float], x: float) -> float:
    """Log-log interpolation of a line at x (its end value outside)."""
    pairs = [(a, b) for a, b in zip(xs, ys, strict=True) if _finite(a, b) and a > 0 and b > 0]
    for (x0, y0), (x1, y1) in zip(pairs, pairs[1:], strict=False):
        if x0 <= x <= x1:
            t = math.log(x / x0) / math.log(x1 / x0)
            return math.exp(math.log(y0) + t * math.log(y1 / y0))
    return pairs[0][1] if pairs and x < pairs[0][0] else pairs[-1][1] if pairs else math.nan


def params_chart(doc: JsonDict, name: str, css_class: str = "chart map-params",
                 standalone: bool = False) -> str:
    """``name`` (alpha or beta) of every source with its 95% interval; the paper's values as dashed ticks."""
    rows = [law for law in doc.get("laws", []) if law.get(name) and _finite(law[name]["value"])]
    if not rows:
        return ""
    colour = source_colours(doc)
    values = [v for law in rows for v in (law[name]["value"], law[name]["low"], law[name]["high"]) if _finite(v)]
    values += [PAPER[law["source"]][name] for law in rows if law["source"] in PAPER] + [0.0]
    chart = Chart(Axis(0.5, len(rows) + 0.5, "source", log=False, integer=True), Axis(*span(values, log=False), name,
                  log=False), f"{name} per source", width=480, height=260, css_class=f"{css_class} {name}",
                  margin=(30, 150, 46, 58), standalone=standalone)
    chart.line([chart.x.lo, chart.x.hi], [0.0, 0.0], "#11171c", width=0.8)
    shaky = False
    for i, law in enumerate(rows, 1):
        est, c = law[name], colour[law["source"]]
        if _finite(est["low"], est["high"]):
            undetermined = not law.get("determined", True)
            shaky |= undetermined
            chart.line([i, i], [est["low"], est["high"]], c, width=1.6, css="whisker",
                       dash="1 3" if undetermined else "")
        if law["source"] in PAPER:
            ref = PAPER[law["source"]][name]
            chart.line([i - 0.3, i + 0.3], [ref, ref], "#5f7281", width=1.4, dash="4 3", css="paper")
        chart.marker(i, est["value"], c, "filled", {"data-source": law["source"]},
                     f"{law['source']}: {name} = {est['value']:.3g}", css="source-pt")
        chart.legend("filled", c, f"{i}: {law['source']} \u2192 {doc['target']}")
    if any(law["source"] in PAPER for law in rows):
        chart.legend("band", "#5f7281", "paper, Table 1")
    labels = ", ".join(f"{i} = {law['source']}" for i, law in enumerate(rows, 1))
    return chart.render(f"{name} of each source's law with its 95% interval ({labels}); dashed: the paper's value "
                        "(Table 1) where it has one." + (" A dotted interval belongs to an undetermined law: its "
                                                         "draws do not pin it down." if shaky else ""))
