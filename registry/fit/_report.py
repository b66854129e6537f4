"""A law's report folder: its four SVG charts (each carrying its caption) and ``index.html`` that inlines them,
explains the law with its numbers and lists its runs. What a refit logs and ``transfer-laws report`` writes."""

from __future__ import annotations

from pathlib import Path

from ._html import write_report
from ._model import TransferLaw
from ._svg_plots import SVG_CAPTIONS, SVG_PLOTS


def plot_law(law: TransferLaw, folder: str | Path, title: str = "Transfer law") -> list[Path]:
    """Write the charts and ``index.html`` into ``folder``; returns their paths, the page last. The charts are
    drawn without a plotting library: milliseconds whatever the run count."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths, figures = [], []
    for name, draw in SVG_PLOTS.items():
        svg = draw(law)
        (folder / name).write_text(svg)
        paths.append(folder / name)
        figures.append((svg, SVG_CAPTIONS[name]))
    return [*paths, write_report(law, figures, folder / "index.html", title)]
