"""Figures of the image stage: Liu's 2x2 scaling figure and 4/alpha against the estimated d."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from scalinglab.core.plotting import plt, save_figure
from scalinglab.images.fits import middle_quantile

PANELS = [
    ("train_loss", "train loss"),
    ("train_acc", "train accuracy"),
    ("val_loss", "validation loss"),
    ("val_acc", "validation accuracy"),
]
METRIC_COLORS = {"train_loss": "tab:blue", "val_loss": "tab:orange", "train_acc": "tab:green", "val_acc": "tab:red"}


def scaling_grid(rows: pd.DataFrame, fits: pd.DataFrame, path, title: str = "") -> None:
    """Train/validation x loss/accuracy in log10-log10 axes: violins of every epoch of every seed
    per size N (the points of the "all" rule), black dots for each run's final epoch, a line per
    quantile fitted on all epochs (solid) and the middle quantile on final epochs (dashed)."""
    fig, axes = plt.subplots(2, 2, figsize=(11, 8.5))
    sizes = np.sort(rows["N"].unique())
    log_n = np.log10(sizes)
    spacing = np.min(np.diff(log_n)) if len(log_n) > 1 else 0.2
    qs = sorted(fits["quantile"].unique())
    middle = middle_quantile(qs)
    shades = plt.get_cmap("viridis")
    last = rows.loc[rows.groupby(["width", "seed"])["epoch"].idxmax()]
    for ax, (metric, label) in zip(axes.flat, PANELS):
        values = [np.log10(rows.loc[rows["N"] == n, metric].to_numpy()) for n in sizes]
        parts = ax.violinplot(values, positions=log_n, widths=0.8 * spacing, showextrema=False)
        for body in parts["bodies"]:
            body.set_alpha(0.35)
        ax.scatter(np.log10(last["N"]), np.log10(last[metric]), s=10, color="black", zorder=3, label="final epochs")
        grid = np.linspace(log_n.min(), log_n.max(), 50)
        pieces = []
        for i, q in enumerate(qs):
            fit = _fit(fits, metric, "all", q)
            if fit is None:
                continue
            color = shades(i / max(len(qs) - 1, 1))
            ax.plot(
                grid,
                (fit["intercept"] + fit["slope"] * grid * math.log(10)) / math.log(10),
                color=color,
                label=f"q={q:g}, all epochs",
            )
            if q == middle:
                pieces.append(f"all: slope {fit['slope']:+.3f}, 4/α {fit['dim']:.1f}")
        final = _fit(fits, metric, "final", middle)
        if final is not None:
            ax.plot(
                grid,
                (final["intercept"] + final["slope"] * grid * math.log(10)) / math.log(10),
                color="black",
                linestyle="--",
                label=f"q={middle:g}, final epoch",
            )
            pieces.append(f"final: {final['slope']:+.3f}, {final['dim']:.1f}")
        ax.set_title(f"{label}\n" + "; ".join(pieces), fontsize=9)
        ax.set_xlabel("log10 N (parameters)")
        ax.set_ylabel(f"log10 {label}")
    axes.flat[0].legend(fontsize=7)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    save_figure(fig, path)


def _fit(fits: pd.DataFrame, metric: str, rule: str, q: float):
    hit = fits[(fits["metric"] == metric) & (fits["epoch_rule"] == rule) & np.isclose(fits["quantile"], q)]
    return None if hit.empty else hit.iloc[0]


def dim_vs_estimate(fits: pd.DataFrame, estimates: pd.DataFrame, k: int, path) -> None:
    """4/alpha (middle quantile, 95% CI) of each metric against the dataset's estimated dimension:
    circles at MLE(k) d-hat, squares at TwoNN d-hat; one panel per epoch rule; the line 4/alpha = d-hat.
    Without estimates (dimension stage off) the datasets are placed side by side instead."""
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.6), sharey=True)
    known = estimates.set_index("dataset") if len(estimates) else None
    datasets = sorted(fits["dataset"].unique())
    for ax, rule in zip(axes, ("final", "all")):
        sub = fits[fits["epoch_rule"] == rule]
        xs_all = []
        for i, name in enumerate(datasets):
            if known is not None and name in known.index:
                where = [(known.loc[name, f"mle_k{k}"], "o"), (known.loc[name, "twonn"], "s")]
            else:
                where = [(float(i + 1), "o")]
            for metric, color in METRIC_COLORS.items():
                row = sub[(sub["dataset"] == name) & (sub["metric"] == metric)]
                if row.empty:
                    continue
                row = row.iloc[0]
                err = [
                    [max(row["dim"] - row["dim_lo"], 0)],
                    [max(row["dim_hi"] - row["dim"], 0) if math.isfinite(row["dim_hi"]) else 0],
                ]
                for x, marker in where:
                    ax.errorbar(
                        [x],
                        [row["dim"]],
                        yerr=err,
                        color=color,
                        marker=marker,
                        capsize=2,
                        linestyle="none",
                        label=metric if (i == 0 and marker == "o") else None,
                    )
                    xs_all.append(x)
            if known is None or name not in known.index:
                ax.annotate(name, (float(i + 1), sub["dim"].min()), fontsize=8)
            else:
                ax.annotate(name, (known.loc[name, f"mle_k{k}"], sub["dim"].min()), fontsize=8)
        if known is not None and xs_all:
            span = np.array([min(xs_all) * 0.8, max(xs_all) * 1.2])
            ax.plot(span, span, color="gray", linestyle=":", label="4/α = d̂")
            ax.set_xlabel(f"estimated d̂ (○ MLE k={k}, □ TwoNN)")
        else:
            ax.set_xticks(range(1, len(datasets) + 1), datasets)
            ax.set_xlabel("dataset (no dimension estimates: the dimension stage is off)")
        ax.set_yscale("log")
        ax.set_title(f"epoch rule: {rule}")
    axes[0].set_ylabel("4/α (middle quantile, 95% CI)")
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    save_figure(fig, path)
