"""The random-feature figure: loss against t, N and P per (a, b), with the fitted and theory slopes. It
writes a PNG and its PDF twin and returns the (closed) figure."""

from __future__ import annotations

import numpy as np
import pandas as pd

from scalinglab.core.plotting import log_axes, plt, save_figure
from scalinglab.random_features.model import sweep_values

_COLUMNS = [
    ("time", "training time t", "L(t) − L(∞)"),
    ("model", "features N", "L(N)"),
    ("data", "samples P", "L(P)"),
    ("variance", "samples P (N fixed)", "L(N, P) − L(N, ∞)"),
]
MODEL = "linear random-feature model"


def bottlenecks(frame: pd.DataFrame, fits: pd.DataFrame, path, *, model: str = MODEL):
    """One row per (a, b), one column per sweep: mean over seeds (points; bars: the seeds' min to max),
    the fitted power law (solid, its 95% CI in the legend) and the theory slope through the data's
    middle (dashed)."""
    pairs = sorted({(a, b) for a, b in zip(frame["a"], frame["b"])})
    fig, axes = plt.subplots(
        len(pairs), len(_COLUMNS), figsize=(2.45 * len(_COLUMNS), 2.5 * len(pairs) + 0.5), squeeze=False
    )
    fits = fits.set_index(["a", "b", "sweep"])
    for r, (a, b) in enumerate(pairs):
        part = frame[(frame["a"] == a) & (frame["b"] == b)]
        for c, (name, xlabel, ylabel) in enumerate(_COLUMNS):
            ax = axes[r, c]
            if (a, b, name) not in fits.index:
                ax.set_axis_off()
                continue
            _, table = sweep_values(part, name)
            x = table.index.to_numpy(dtype=float)
            mean = table.mean(axis=1).to_numpy()
            lo, hi = table.min(axis=1).to_numpy(), table.max(axis=1).to_numpy()
            ax.errorbar(x, mean, yerr=[mean - lo, hi - mean], fmt="o", ms=4, color="C0", label="seeds: mean, range")
            fit = fits.loc[(a, b, name)]
            mid_x, mid_y = np.exp(np.log(x).mean()), np.exp(np.log(mean).mean())
            ax.plot(
                x,
                mid_y * (x / mid_x) ** -fit["exponent"],
                "-",
                color="C0",
                label=f"fit {fit['exponent']:.2f} [{fit['exponent_lo']:.2f}, {fit['exponent_hi']:.2f}]",
            )
            ax.plot(x, mid_y * (x / mid_x) ** -fit["theory"], "--", color="C1", label=f"theory {fit['theory']:.3g}")
            if fit["bordelon"] != fit["theory"]:
                ax.plot(
                    x,
                    mid_y * (x / mid_x) ** -fit["bordelon"],
                    ":",
                    color="0.4",
                    label=f"min(a−1, 2b) = {fit['bordelon']:.3g}",
                )
            log_axes(ax)
            ax.set_xlabel(f"{xlabel} (log)")
            ax.set_ylabel(f"{ylabel} (log)")
            ax.legend(fontsize=6.5, loc="lower left")
            ax.set_title(f"a = {a:g}, b = {b:g}: {name}", fontsize=9)
    fig.suptitle(f"{model} (spectrum k^−b, task power k^−a): loss against time, features and samples")
    return save_figure(fig, path)
