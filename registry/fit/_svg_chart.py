"""A small SVG chart: log or linear axes with real ticks, lines, outlined bands, markers, an arrow, a legend.

Pure string building (no plotting library), so a chart costs milliseconds: the refit logs its plots as SVG and
the law page draws the same charts inline. Markers can carry attributes (a run id, a link) for the page's script.
"""

from __future__ import annotations

import math
import textwrap
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from html import escape

_SUPERSCRIPT = str.maketrans("-0123456789", "\u207b\u2070\u00b9\u00b2\u00b3\u2074\u2075\u2076\u2077\u2078\u2079")
FONT = '-apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif'
INK, GRID, MINOR_GRID = "#11171c", "#d1d9e1", "#eef1f4"


def power_label(exponent: int) -> str:
    """10 to an integer power as text: 10\u2075, 10\u207b\u00b2."""
    return "10" + str(exponent).translate(_SUPERSCRIPT)


def number_label(value: float) -> str:
    """A tick value in at most three significant digits, without exponent clutter where it is short."""
    if value == 0:
        return "0"
    exponent = math.floor(math.log10(abs(value)))
    if -3 <= exponent <= 4:
        rounded = float(f"{value:.3g}")
        return f"{rounded:,.0f}" if abs(rounded) >= 1000 else f"{rounded:g}"
    mantissa = value / 10**exponent
    return power_label(exponent) if math.isclose(mantissa, 1.0) else f"{mantissa:.2g}\u00b7{power_label(exponent)}"


@dataclass
class Axis:
    """One axis: data range, scale and label; ``ticks`` gives labelled major and unlabelled minor positions."""

    lo: float
    hi: float
    label: str
    log: bool = True
    integer: bool = False
    """Linear axis of whole numbers (e.g. versions): ticks only at integers."""

    def __post_init__(self) -> None:
        if not (math.isfinite(self.lo) and math.isfinite(self.hi)) or (self.log and self.lo <= 0):
            self.lo, self.hi = (1.0, 10.0) if self.log else (0.0, 1.0)
        if self.hi <= self.lo:
            self.lo, self.hi = (self.lo / 2, self.lo * 2) if self.log else (self.lo - 0.5, self.lo + 0.5)

    def fraction(self, value: float) -> float:
        """Where ``value`` sits between lo (0) and hi (1)."""
        if self.log:
            return (math.log10(value) - math.log10(self.lo)) / (math.log10(self.hi) - math.log10(self.lo))
        return (value - self.lo) / (self.hi - self.lo)

    def ticks(self) -> tuple[list[tuple[float, str]], list[float]]:
        """(value, label) of the labelled ticks and the values of the minor ticks inside the range."""
        return self._log_ticks() if self.log else (self._linear_ticks(), [])

    def _inside(self, v: float) -> bool:
        return self.lo * (1 - 1e-9) <= v <= self.hi * (1 + 1e-9)

    def _log_ticks(self) -> tuple[list[tuple[float, str]], list[float]]:
        first, last = math.floor(math.log10(self.lo)), math.ceil(math.log10(self.hi))
        decades = [(10.0**e, power_label(e)) for e in range(first, last + 1) if self._inside(10.0**e)]
        steps = [m * 10.0**e for e in range(first, last + 1) for m in range(2, 10) if self._inside(m * 10.0**e)]
        if len(decades) >= 2:
            if len(decades) > 8:  # many decades: label every other one, the rest become minor ticks
                return decades[::2], [v for v, _ in decades[1::2]] + steps
            return decades, steps
        # Less than a decade: label the 1..9 x 10^e steps (thinned), or linear steps when those are too few.
        values = sorted([v for v, _ in decades] + steps)
        major = values[::max(1, math.ceil(len(values) / 6))]
        if len(major) < 4:
            major = [v for v, _ in self._linear_ticks() if v > 0]
        return [(v, number_label(v)) for v in major], [v for v in values if v not in major]

    def _linear_ticks(self) -> list[tuple[float, str]]:
        raw = (self.hi - self.lo) / 5
        step = 10 ** math.floor(math.log10(raw))
        step *= next(m for m in (1, 2, 2.5, 5, 10) if m * step >= raw)
        if self.integer:
            step = max(1.0, float(math.ceil(step)))
        start = math.ceil(self.lo / step - 1e-9) * step
        count = int(math.floor((self.hi - start) / step + 1e-9)) + 1
        return [(start + i * step, f"{start + i * step:.6g}") for i in range(count)]


def span(values: Iterable[float], log: bool = True, pad: float = 0.06) -> tuple[float, float]:
    """A padded (lo, hi) around the finite (and, on a log axis, positive) values; (nan, nan) when none."""
    vals = [v for v in values if math.isfinite(v) and (v > 0 or not log)]
    if not vals:
        return math.nan, math.nan
    lo, hi = min(vals), max(vals)
    if log:
        width = max(math.log10(hi / lo), 0.1)
        return lo / 10 ** (pad * width), hi * 10 ** (pad * width)
    width = (hi - lo) or abs(hi) or 1.0
    return lo - pad * width, hi + pad * width


@dataclass
class Chart:
    """An SVG chart of ``width`` x ``height`` px; add marks, then ``render``. Marks outside the axes are clipped."""

    x: Axis
    y: Axis
    title: str
    width: int = 820
    height: int = 420
    css_class: str = "chart"
    margin: tuple[int, int, int, int] = (34, 210, 52, 72)  # top, right (the legend), bottom, left
    standalone: bool = False
    """Write the caption under the chart too (a file viewed alone, e.g. in MLflow's artifact view)."""
    _marks: list[str] = field(default_factory=list)
    _legend: list[tuple[str, str, str]] = field(default_factory=list)
    _clip: str = ""

    def __post_init__(self) -> None:
        self._clip = f"clip{id(self):x}"

    def px(self, x: float, y: float) -> tuple[float, float]:
        """Pixel position of a data point."""
        top, right, bottom, left = self.margin
        return (left + self.x.fraction(x) * (self.width - left - right),
                self.height - bottom - self.y.fraction(y) * (self.height - top - bottom))

    def _ok(self, x: float, y: float) -> bool:
        return all(math.isfinite(v) for v in (x, y)) and (x > 0 or not self.x.log) and (y > 0 or not self.y.log)

    def _path(self, xs: Sequence[float], ys: Sequence[float]) -> str:
        pts = [self.px(x, y) for x, y in zip(xs, ys, strict=True) if self._ok(x, y)]
        return " ".join(f"{'M' if i == 0 else 'L'}{a:.1f},{b:.1f}" for i, (a, b) in enumerate(pts))

    def line(self, xs: Sequence[float], ys: Sequence[float], colour: str, width: float = 2.0, dash: str = "",
             css: str = "line") -> None:
        """A polyline through the finite points."""
        d = self._path(xs, ys)
        if d:
            extra = f' stroke-dasharray="{dash}"' if dash else ""
            self._marks.append(f'<path class="{css}" d="{d}" fill="none" stroke="{colour}" stroke-width="{width}"'
                               f'{extra} clip-path="url(#{self._clip})"/>')

    def band(self, xs: Sequence[float], low: Sequence[float], high: Sequence[float], colour: str) -> None:
        """A light fill between ``low`` and ``high`` with dashed outlines (readable where bands overlap)."""
        keep = [i for i in range(len(xs)) if self._ok(xs[i], low[i]) and self._ok(xs[i], high[i])]
        if len(keep) < 2:
            return
        upper = [self.px(xs[i], high[i]) for i in keep]
        lower = [self.px(xs[i], low[i]) for i in reversed(keep)]
        d = "M" + " L".join(f"{a:.1f},{b:.1f}" for a, b in upper + lower) + " Z"
        self._marks.append(f'<path class="band" d="{d}" fill="{colour}" fill-opacity="0.12" stroke="none" '
                           f'clip-path="url(#{self._clip})"/>')
        for edge in (low, high):
            self.line([xs[i] for i in keep], [edge[i] for i in keep], colour, width=1.0, dash="4 3", css="band-edge")

    def marker(self, x: float, y: float, colour: str, kind: str = "filled", attrs: dict[str, str] | None = None,
               tooltip: str = "", css: str = "pt") -> None:
        """A point: ``filled`` or ``hollow`` circle, or ``cross``; ``attrs`` become data attributes."""
        if not self._ok(x, y):
            return
        a, b = self.px(x, y)
        extra = "".join(f' {k}="{escape(v)}"' for k, v in (attrs or {}).items())
        title = f"<title>{escape(tooltip)}</title>" if tooltip else ""
        if kind == "cross":
            self._marks.append(f'<path class="{css} cross" d="M{a - 4:.1f},{b - 4:.1f} L{a + 4:.1f},{b + 4:.1f} '
                               f'M{a - 4:.1f},{b + 4:.1f} L{a + 4:.1f},{b - 4:.1f}" stroke="{colour}" '
                               f'stroke-width="2"{extra}>{title}</path>')
            return
        fill = "#ffffff" if kind == "hollow" else colour
        self._marks.append(f'<circle class="{css} {kind}" cx="{a:.1f}" cy="{b:.1f}" r="4.5" fill="{fill}" '
                           f'stroke="{colour}" stroke-width="1.6"{extra}>{title}</circle>')

    def whisker(self, x: float, low: float, high: float, colour: str) -> None:
        """A vertical interval bar at ``x`` from ``low`` to ``high``, with short caps."""
        if not (self._ok(x, low) and self._ok(x, high)):
            return
        (a, b), (_, c) = self.px(x, low), self.px(x, high)
        self._marks.append(f'<path class="whisker" d="M{a:.1f},{b:.1f} L{a:.1f},{c:.1f} M{a - 3:.1f},{b:.1f} '
                           f'L{a + 3:.1f},{b:.1f} M{a - 3:.1f},{c:.1f} L{a + 3:.1f},{c:.1f}" stroke="{colour}" '
                           f'stroke-width="1.2" stroke-opacity="0.7" clip-path="url(#{self._clip})"/>')

    def arrow(self, x0: float, x1: float, y: float, label: str) -> None:
        """A horizontal double-headed arrow from x0 to x1 at height y, labelled above its middle."""
        if not (self._ok(x0, y) and self._ok(x1, y)):
            return
        (a, b), (c, _) = self.px(x0, y), self.px(x1, y)
        self._marks.append(
            f'<g class="gap"><path d="M{a + 6:.1f},{b:.1f} L{c - 1:.1f},{b:.1f}" stroke="{INK}" stroke-width="1.6" '
            f'marker-start="url(#{self._clip}-head)" marker-end="url(#{self._clip}-head)"/>'
            f'<text x="{(a + c) / 2:.1f}" y="{b - 8:.1f}" text-anchor="middle" font-size="12" fill="{INK}" '
            f'stroke="#ffffff" stroke-width="3" paint-order="stroke">{escape(label)}</text></g>')

    def edge_arrow(self, x: float, up: bool, colour: str, tooltip: str = "") -> None:
        """A filled arrow head at the top (``up``) or bottom edge at ``x``: something runs off the axis there."""
        if not (math.isfinite(x) and (x > 0 or not self.x.log)):
            return
        top, _, bottom, _ = self.margin
        a = self.px(x, self.y.lo)[0]
        tip, base = (top, top + 11) if up else (self.height - bottom, self.height - bottom - 11)
        title = f"<title>{escape(tooltip)}</title>" if tooltip else ""
        self._marks.append(f'<path class="off-axis" d="M{a:.1f},{tip:.1f} L{a - 6:.1f},{base:.1f} '
                           f'L{a + 6:.1f},{base:.1f} Z" fill="{colour}" stroke="#ffffff" stroke-width="1">{title}'
                           "</path>")

    def legend(self, kind: str, colour: str, label: str) -> None:
        """A legend entry: ``line``, ``filled``, ``hollow``, ``cross``, ``band`` or ``arrow``."""
        self._legend.append((kind, colour, label))

    def _axes(self) -> list[str]:
        top, right, bottom, left = self.margin
        x0, x1, y0, y1 = left, self.width - right, self.height - bottom, top
        out = []
        xmajor, xminor = self.x.ticks()
        ymajor, yminor = self.y.ticks()
        # Minor grid lines only while they stay sparse (a few decades); past that, tick marks alone.
        for v in xminor:
            a = self.px(v, self.y.lo)[0]
            grid = f'<line class="minor" x1="{a:.1f}" y1="{y1}" x2="{a:.1f}" y2="{y0}" stroke="{MINOR_GRID}"/>'
            out.append((grid if len(xminor) <= 40 else "")
                       + f'<line x1="{a:.1f}" y1="{y0}" x2="{a:.1f}" y2="{y0 + 3}" stroke="{INK}"/>')
        for v in yminor:
            b = self.px(self.x.lo, v)[1]
            grid = f'<line class="minor" x1="{x0}" y1="{b:.1f}" x2="{x1}" y2="{b:.1f}" stroke="{MINOR_GRID}"/>'
            out.append((grid if len(yminor) <= 40 else "")
                       + f'<line x1="{x0 - 3}" y1="{b:.1f}" x2="{x0}" y2="{b:.1f}" stroke="{INK}"/>')
        for v, text in xmajor:
            a = self.px(v, self.y.lo)[0]
            out.append(f'<line x1="{a:.1f}" y1="{y1}" x2="{a:.1f}" y2="{y0}" stroke="{GRID}"/>'
                       f'<line x1="{a:.1f}" y1="{y0}" x2="{a:.1f}" y2="{y0 + 6}" stroke="{INK}"/>'
                       f'<text class="tick x" x="{a:.1f}" y="{y0 + 19}" text-anchor="middle">{text}</text>')
        for v, text in ymajor:
            b = self.px(self.x.lo, v)[1]
            out.append(f'<line x1="{x0}" y1="{b:.1f}" x2="{x1}" y2="{b:.1f}" stroke="{GRID}"/>'
                       f'<line x1="{x0 - 6}" y1="{b:.1f}" x2="{x0}" y2="{b:.1f}" stroke="{INK}"/>'
                       f'<text class="tick y" x="{x0 - 9}" y="{b + 4:.1f}" text-anchor="end">{text}</text>')
        out.append(f'<rect x="{x0}" y="{y1}" width="{x1 - x0}" height="{y0 - y1}" fill="none" stroke="{INK}"/>')
        out.append(f'<text class="axis-label" x="{(x0 + x1) / 2}" y="{self.height - 10}" text-anchor="middle" '
                   f'font-size="13">{escape(self.x.label)}</text>')
        out.append(f'<text class="axis-label" x="16" y="{(y0 + y1) / 2}" text-anchor="middle" font-size="13" '
                   f'transform="rotate(-90 16 {(y0 + y1) / 2})">{escape(self.y.label)}</text>')
        out.append(f'<text class="title" x="{x0}" y="{top - 12}" font-size="14" font-weight="600">'
                   f"{escape(self.title)}</text>")
        return out

    def _legend_svg(self) -> list[str]:
        if not self._legend:
            return []
        top, right, _, _ = self.margin
        width = right - 14
        x, y = self.width - right + 8, top
        out = [f'<g class="legend"><rect x="{x}" y="{y}" width="{width}" height="{8 + 17 * len(self._legend)}" '
               f'fill="#ffffff" fill-opacity="0.92" stroke="{GRID}" rx="3"/>']
        for i, (kind, colour, label) in enumerate(self._legend):
            cy = y + 13 + 17 * i
            if kind in ("line", "band"):
                dash = ' stroke-dasharray="4 3"' if kind == "band" else ""
                out.append(f'<line x1="{x + 6}" y1="{cy}" x2="{x + 24}" y2="{cy}" stroke="{colour}" '
                           f'stroke-width="2"{dash}/>')
            elif kind == "cross":
                out.append(f'<path d="M{x + 11},{cy - 4} L{x + 19},{cy + 4} M{x + 11},{cy + 4} L{x + 19},{cy - 4}" '
                           f'stroke="{colour}" stroke-width="2"/>')
            elif kind == "arrow":
                out.append(f'<path d="M{x + 8},{cy} L{x + 22},{cy}" stroke="{colour}" stroke-width="1.6" '
                           f'marker-start="url(#{self._clip}-head)" marker-end="url(#{self._clip}-head)"/>')
            else:
                fill = "#ffffff" if kind == "hollow" else colour
                out.append(f'<circle cx="{x + 15}" cy="{cy}" r="4.5" fill="{fill}" stroke="{colour}" '
                           'stroke-width="1.6"/>')
            out.append(f'<text x="{x + 30}" y="{cy + 4}" font-size="12">{escape(label)}</text>')
        out.append("</g>")
        return out

    def render(self, caption: str = "") -> str:
        """The chart as an ``<svg>`` element (with a ``<desc>`` holding the caption)."""
        top, right, bottom, left = self.margin
        defs = (f'<defs><clipPath id="{self._clip}"><rect x="{left}" y="{top}" width="{self.width - left - right}" '
                f'height="{self.height - top - bottom}"/></clipPath>'
                f'<marker id="{self._clip}-head" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" '
                f'markerHeight="7" orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" fill="{INK}"/></marker>'
                "</defs>")
        lines = textwrap.wrap(caption, width=int((self.width - left - 16) / 7)) if self.standalone and caption else []
        height = self.height + (18 * len(lines) + 8 if lines else 0)
        head = (f'<svg xmlns="http://www.w3.org/2000/svg" class="{self.css_class}" viewBox="0 0 {self.width} '
                f'{height}" width="{self.width}" height="{height}" role="img" font-family=\'{FONT}\' '
                f'font-size="12" fill="{INK}">')
        desc = f"<desc>{escape(caption)}</desc>" if caption else ""
        notes = [f'<text class="caption" x="{left}" y="{self.height + 8 + 18 * i}" font-size="12" fill="#5f7281">'
                 f"{escape(line)}</text>" for i, line in enumerate(lines)]
        body = [f'<rect class="frame" width="{self.width}" height="{height}" fill="#ffffff"/>', *self._axes(),
                *self._marks, *self._legend_svg(), *notes]
        return head + desc + defs + "".join(body) + "</svg>"
