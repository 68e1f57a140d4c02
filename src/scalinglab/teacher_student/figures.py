"""The teacher/student figures: loss against N with the fitted lines, 4/alpha against d, learning curves."""

from __future__ import annotations

import math

import matplotlib.ticker
import numpy as np
import pandas as pd

from scalinglab.core.plotting import plt, save_figure


def _fmt_p(P: float) -> str:
    return "∞" if math.isinf(P) else f"{int(P):,}"


def loss_vs_n(final: pd.DataFrame, fits: pd.DataFrame, path, theory_dims: dict | None = None) -> None:
    """Final test MSE against N per d (points: seeds), with the least-squares fit lines.

    theory_dims maps d to a dimension estimate d-hat; its line N^(-4/d-hat) is drawn dashed through
    the fitted line's geometric centre.
    """
    P_values = sorted(final["P"].unique())
    fig, axes = plt.subplots(1, len(P_values), figsize=(6.5 * len(P_values), 4.8), squeeze=False)
    ols = fits[fits["method"] == "ols"]
    colors = plt.get_cmap("viridis")
    d_values = sorted(final["d"].unique())
    for ax, P in zip(axes[0], P_values):
        for i, d in enumerate(d_values):
            color = colors(0.85 * i / max(len(d_values) - 1, 1))  # stop before viridis' pale yellow
            cells = final[(final["d"] == d) & (final["P"] == P)]
            ax.scatter(cells["N"], cells["test_loss"], s=12, color=color, alpha=0.7)
            fit = ols[(ols["d"] == d) & (ols["P"] == P)]
            if fit.empty:
                continue
            fit = fit.iloc[0]
            n_grid = np.geomspace(cells["N"].min(), cells["N"].max(), 50)
            ax.plot(
                n_grid,
                np.exp(fit["intercept"]) * n_grid ** fit["slope"],
                color=color,
                label=f"d={d}: α={fit['alpha']:.2f}, 4/α={fit['dim']:.1f} [{fit['dim_lo']:.1f}, {fit['dim_hi']:.1f}]",
            )
            if theory_dims and d in theory_dims and theory_dims[d] > 0:
                log_mid = np.log(n_grid).mean()
                centre = fit["intercept"] + fit["slope"] * log_mid
                ax.plot(
                    n_grid,
                    np.exp(centre - 4 / theory_dims[d] * (np.log(n_grid) - log_mid)),
                    color=color,
                    linestyle="--",
                    linewidth=1,
                )
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())  # minor labels overlap
        ax.set_xlabel("parameters N")
        ax.set_ylabel("test MSE (final step)")
        ax.set_title(f"teacher/student, P = {_fmt_p(P)}")
        ax.legend(fontsize=7)
    save_figure(fig, path)


def dim_vs_d(fits: pd.DataFrame, path) -> None:
    """4/alpha against the manifold dimension, with 95% CI bars and the line y = x."""
    fig, ax = plt.subplots(figsize=(5, 4.6))
    markers = {"ols": ("o", "least squares"), "quantile": ("s", "median regression")}
    offset = {"ols": -0.08, "quantile": 0.08}
    for method, group in fits.groupby("method"):
        marker, label = markers.get(method, ("^", method))
        for P, sub in group.groupby("P"):
            x = sub["manifold_dim"].to_numpy(float) + offset.get(method, 0)
            y = sub["dim"].to_numpy(float)
            lo = np.clip(y - sub["dim_lo"].to_numpy(float), 0, None)
            hi = np.clip(sub["dim_hi"].to_numpy(float) - y, 0, None)
            hi = np.where(np.isfinite(hi), hi, 0)
            ax.errorbar(x, y, yerr=[np.nan_to_num(lo), hi], fmt=marker, capsize=3, label=f"{label}, P={_fmt_p(P)}")
    top = max(fits["manifold_dim"].max(), np.nanmax(fits["dim"].replace(np.inf, np.nan))) * 1.15
    ax.plot([0, top], [0, top], color="grey", linestyle=":", label="4/α = d")
    ax.set_xlim(0, top)
    ax.set_ylim(0, top)
    ax.set_xlabel("manifold dimension d")
    ax.set_ylabel("4 / α")
    ax.set_title("Sharma & Kaplan check: 4/α against d")
    ax.legend(fontsize=7)
    save_figure(fig, path)


def learning_curves(table: pd.DataFrame, path) -> None:
    """Test MSE against step for every width, one panel per d (median over seeds): convergence check."""
    table = table[table["status"] == "ok"]
    d_values = sorted(table["d"].unique())
    cols = min(len(d_values), 4)
    rows = math.ceil(len(d_values) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4 * cols, 3.3 * rows), squeeze=False)
    cmap = plt.get_cmap("plasma")
    for ax, d in zip(axes.flat, d_values):
        sub = table[(table["d"] == d) & (table["P"] == table["P"].max())]
        widths = sorted(sub["width"].unique())
        for i, width in enumerate(widths):
            curve = sub[sub["width"] == width].groupby("step")["test_loss"].median()
            curve = curve[curve.index > 0]
            ax.plot(curve.index, curve.values, color=cmap(i / max(len(widths) - 1, 1)), label=f"n={width}")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_title(f"d = {d}")
        ax.set_xlabel("step")
        ax.set_ylabel("test MSE")
    for ax in list(axes.flat)[len(d_values) :]:
        ax.axis("off")
    axes.flat[0].legend(fontsize=6)
    save_figure(fig, path)
