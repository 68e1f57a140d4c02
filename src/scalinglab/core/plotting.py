"""Matplotlib for every figure: the Agg backend, one house style, plain-number log ticks, atomic PNG + PDF writes.

Figure modules import `plt` from here, so the backend and the style are set once, before pyplot is first
used. The style is sized for figures drawn 4.6 in wide (one panel) or 7.2 in wide (a row of panels) and
shrunk to a journal column or page: 9-10 pt text stays above 6.5 pt there. `log_axes` puts plain numbers
on log axes (0.01, 0.5, 20, 300, 1000, 1e4, 2e5; never "6×10⁰"), `save_figure` writes the PNG at
200 dpi and a PDF twin beside it (x.png -> x.pdf).
"""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import matplotlib.ticker as mticker  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib import cycler  # noqa: E402  (matplotlib re-exports its own dependency)
from matplotlib.container import Container  # noqa: E402

from scalinglab.core.io import atomic_path  # noqa: E402

__all__ = [
    "COLORS",
    "DPI",
    "SINGLE",
    "WIDE",
    "PlainFormatter",
    "PlainLogLocator",
    "apply_style",
    "figure_legend",
    "log_axis",
    "log_axes",
    "model_label",
    "plain_number",
    "plt",
    "ramp",
    "save_figure",
]

DPI = 200
SINGLE = (4.6, 3.5)  # one panel: a journal column at ~75%
WIDE = (7.2, 3.3)  # a row of two panels: a page width
# Okabe & Ito's colour-blind-safe palette (yellow left out: unreadable on white)
COLORS = ["#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000"]

STYLE = {
    "font.size": 10,
    "axes.titlesize": 10,
    "axes.labelsize": 10,
    "xtick.labelsize": 9,
    "ytick.labelsize": 9,
    "legend.fontsize": 8,
    "legend.title_fontsize": 8,
    "figure.titlesize": 11,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "axes.grid.which": "major",
    "grid.color": "0.88",
    "grid.linewidth": 0.6,
    "axes.axisbelow": True,
    "axes.prop_cycle": cycler(color=COLORS),
    "lines.linewidth": 1.5,
    "lines.markersize": 5,
    "errorbar.capsize": 2,
    "legend.frameon": True,
    "legend.framealpha": 0.85,
    "legend.edgecolor": "0.85",
    "figure.dpi": 100,
    "figure.figsize": SINGLE,
    "figure.constrained_layout.use": True,
    "savefig.dpi": DPI,
    "pdf.fonttype": 42,  # TrueType in the PDF: text stays text, editable in a journal's tools
    "ps.fonttype": 42,
    "axes.formatter.use_mathtext": False,
}


def apply_style() -> None:
    """Set the house style (idempotent; done once at import)."""
    matplotlib.rcParams.update(STYLE)


apply_style()

MODEL_NAMES = {"cnn": "CNN", "resnet": "ResNet", "vit": "ViT", "mlp": "MLP", "convnet": "ConvNet"}


def model_label(name: str) -> str:
    """A model's display name: 'cnn' -> 'CNN', 'resnet' -> 'ResNet'; other names unchanged."""
    return MODEL_NAMES.get(str(name).lower(), str(name))


def plain_number(x: float) -> str:
    """A tick value as a reader writes it: 0.001 ... 9999 positionally (0.05, 2, 300, 1000), beyond that
    mantissa-e-exponent (1e4, 2e5, 5e-5), with at most three significant digits."""
    if x == 0 or not math.isfinite(x):
        return "0" if x == 0 else str(x)
    sign = "−" if x < 0 else ""
    x = abs(x)
    if 1e-3 <= float(f"{x:.3g}") < 1e4:
        return sign + np.format_float_positional(float(f"{x:.3g}"), trim="-")
    exponent = math.floor(math.log10(x))
    mantissa = float(f"{x / 10**exponent:.2g}")
    if mantissa >= 10:
        mantissa, exponent = mantissa / 10, exponent + 1
    return f"{sign}{mantissa:g}e{exponent}"


class PlainFormatter(mticker.Formatter):
    """Every tick labelled as a plain number (see plain_number); nothing at zero or below."""

    def __call__(self, x, pos=None):
        return "" if x <= 0 else self.fix_minus(plain_number(x))


class PlainLogLocator(mticker.LogLocator):
    """Major ticks of a log axis that give at least three labels: matplotlib's decades when three or
    more are in view; else the first of 1-3, 1-2-5, 1-2-3-5, 1-1.5-2-3-4-5-6-8, ... x a decade that puts
    three ticks in view (linear nice numbers for a very narrow view)."""

    MANTISSAS = (
        (1, 3),
        (1, 2, 5),
        (1, 2, 3, 5),
        (1, 1.5, 2, 3, 4, 5, 6, 8),
        (1, 1.2, 1.5, 2, 2.5, 3, 4, 5, 6, 7, 8, 9),
    )

    def __init__(self):
        super().__init__(base=10.0)

    def tick_values(self, vmin, vmax):
        vmin, vmax = sorted((vmin, vmax))
        if not (vmin > 0 and math.isfinite(vmax)):
            return super().tick_values(vmin, vmax)
        lo, hi = vmin * (1 - 1e-9), vmax * (1 + 1e-9)
        exponents = range(math.floor(math.log10(vmin)), math.ceil(math.log10(vmax)) + 1)
        if sum(lo <= 10.0**e <= hi for e in exponents) >= 3:
            return super().tick_values(vmin, vmax)
        for mantissas in self.MANTISSAS:
            ticks = np.array([m * 10.0**e for e in exponents for m in mantissas])
            if ((ticks >= lo) & (ticks <= hi)).sum() >= 3:
                return ticks
        return mticker.MaxNLocator(4).tick_values(vmin, vmax)


def log_axis(axis) -> None:
    """Plain-number ticks on one log-scaled Axis (an axes' xaxis/yaxis or a colorbar's long axis)."""
    axis.set_major_locator(PlainLogLocator())
    axis.set_major_formatter(PlainFormatter())
    axis.set_minor_formatter(mticker.NullFormatter())


def log_axes(ax, x: bool = True, y: bool = True) -> None:
    """Log scale on the chosen axes with plain-number labels (10, 100, 1000, 1e4; 0.2, 0.5; never
    "6×10⁰"), at least three of them: decades over wide views, 1-3, 1-2-5 or finer steps over narrow ones."""
    for wanted, axis, set_scale in ((x, ax.xaxis, ax.set_xscale), (y, ax.yaxis, ax.set_yscale)):
        if wanted:
            set_scale("log")
            log_axis(axis)


def ramp(n: int, cmap: str = "viridis", stop: float = 0.85) -> list:
    """n colours along a sequential colour map for ordered series (P, d, widths); `stop` keeps
    viridis' pale yellow end off white paper."""
    colours = plt.get_cmap(cmap)
    return [colours(stop * i / max(n - 1, 1)) for i in range(n)]


def figure_legend(fig, axes=None, *, where: str = "below", ncol: int | None = None, **kwargs):
    """One legend for the figure outside its axes (constrained layout makes room): `where` 'below'
    (keeps a column figure's width) or 'right'. Handles come from `axes` (default: all), one per label,
    data with error bars first (matplotlib lists them last), then in drawing order; below, in up to three
    columns as the labels' length allows."""
    handles, labels = [], []
    for ax in fig.axes if axes is None else np.atleast_1d(axes).ravel():
        pairs = list(zip(*ax.get_legend_handles_labels()))
        for handle, label in sorted(pairs, key=lambda pair: not isinstance(pair[0], Container)):
            if label not in labels:
                handles.append(handle)
                labels.append(label)
    if ncol is None and where == "below" and labels:  # as many columns as the figure's width holds
        column = 0.06 * max(len(label) for label in labels) + 0.5  # inches at the legend's 8 pt
        ncol = int(max(1, min(len(labels), 3, fig.get_figwidth() // column)))
    loc = "outside lower center" if where == "below" else "outside right upper"
    return fig.legend(handles, labels, loc=loc, ncol=ncol or 1, **kwargs)


def save_figure(fig, path):
    """Write `fig` as a PNG at 200 dpi at `path` and as a PDF twin beside it (same stem, `.pdf`), each
    atomically (a crash never leaves a partial file); close the figure and return it (its axes stay
    readable, for tests)."""
    path = Path(path)
    raster = path if path.suffix.lower() != ".pdf" else path.with_suffix(".png")
    vector = raster.with_suffix(".pdf")
    try:
        with atomic_path(raster) as tmp:
            fig.savefig(tmp, format="png", dpi=DPI, bbox_inches="tight")
        with atomic_path(vector) as tmp:
            fig.savefig(tmp, format="pdf", bbox_inches="tight", metadata={"CreationDate": None})
    finally:
        plt.close(fig)
    return fig
