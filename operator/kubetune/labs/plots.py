"""PNG figures of a lab report, with matplotlib (the `labs` extra; the operator image does not carry it).

Two kinds cover every lab: lines over steps (with a band for the spread over seeds) and grouped bars.
Figures are small (about 640x360 pixels) so a committed example report stays light.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from kubetune.labs.definition import LabError
from kubetune.labs.report import Figure

WIDTH, HEIGHT, DPI = 6.4, 3.6, 100


def _pyplot() -> Any:
    try:
        import matplotlib
    except ImportError:
        raise LabError("lab reports draw their figures with matplotlib: install kubetune[labs]") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def draw(figure: Figure, directory: Path) -> Path:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(WIDTH, HEIGHT), dpi=DPI)
    if figure.kind == "lines":
        for series in figure.series:
            (line,) = ax.plot(series.x, series.y, marker="o", markersize=3, label=series.label)
            if series.spread:
                low = [y - s for y, s in zip(series.y, series.spread, strict=True)]
                high = [y + s for y, s in zip(series.y, series.spread, strict=True)]
                ax.fill_between(series.x, low, high, alpha=0.2, color=line.get_color())
    else:
        count = max(len(figure.series), 1)
        width = 0.8 / count
        for index, series in enumerate(figure.series):
            positions = [c + (index - (count - 1) / 2) * width for c in range(len(figure.categories))]
            ax.bar(positions, series.y, width, yerr=series.spread, label=series.label, capsize=3)
        ax.set_xticks(range(len(figure.categories)), figure.categories)
    if figure.log_y and any(y > 0 for series in figure.series for y in series.y):  # all missing: nothing to scale
        ax.set_yscale("log")
    ax.set_xlabel(figure.xlabel)
    ax.set_ylabel(figure.ylabel)
    ax.grid(alpha=0.3)
    if len(figure.series) > 1:
        ax.legend(fontsize=8)
    fig.tight_layout()
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / figure.file
    fig.savefig(path)
    plt.close(fig)
    return path
