"""Figures of the image stage: Liu's 2x2 scaling figure on log axes and 4/alpha of the loss against the
estimated d. Each writes a PNG and its PDF twin and returns the (closed) figure."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from matplotlib import cbook, mlab
from matplotlib.lines import Line2D

from scalinglab.core.plotting import log_axes, plt, ramp, save_figure
from scalinglab.images.fits import middle_quantile

MODEL = "ConvNet"
PANELS = [
    ("train_loss", "train loss"),
    ("train_acc", "train accuracy"),
    ("val_loss", "validation loss"),
    ("val_acc", "validation accuracy"),
]
LOSS_COLORS = {"train_loss": "C0", "val_loss": "C1"}
LOSS_NAMES = {"train_loss": "train loss", "val_loss": "validation loss"}


def _violins(ax, rows: pd.DataFrame, metric: str, sizes: np.ndarray, halfwidth: float) -> None:
    """Violins of log10(metric) per N, drawn on log axes: symmetric in log N, the density of log values."""
    labelled = False
    for n in sizes:
        values = rows.loc[rows["N"] == n, metric].to_numpy(float)
        values = np.log10(values[np.isfinite(values) & (values > 0)])
        if len(values) < 2 or np.ptp(values) == 0:
            continue
        stats = cbook.violin_stats([values], lambda x, coords: mlab.GaussianKDE(x, "scott").evaluate(coords))[0]
        width = halfwidth * stats["vals"] / stats["vals"].max()
        centre = math.log10(n)
        ax.fill_betweenx(
            10 ** stats["coords"],
            10 ** (centre - width),
            10 ** (centre + width),
            color="C5",
            alpha=0.35,
            linewidth=0,
            label="_" if labelled else "every epoch of every seed (density)",
        )
        labelled = True


def _slope_text(fit) -> str:
    ci = ""
    if math.isfinite(fit["ci_lo"]) and math.isfinite(fit["ci_hi"]):
        ci = f" [{fit['ci_lo']:+.2f}, {fit['ci_hi']:+.2f}]"
    return f"{fit['slope']:+.3f}{ci}"


def scaling_grid(rows: pd.DataFrame, fits: pd.DataFrame, path, title: str = "", *, model: str = MODEL):
    """Train/validation x loss/accuracy against N on log-log axes: violins of every epoch of every seed
    per size N (the points of the "all" rule), black dots for each run's final epoch, a line per
    quantile fitted on all epochs (solid) and the middle quantile on final epochs (dashed). Loss panels
    quote slope and 4/alpha; accuracy panels the slope only (4/alpha is a loss exponent's reading)."""
    fig, axes = plt.subplots(2, 2, figsize=(7.2, 6.4))
    sizes = np.sort(rows["N"].unique())
    log_n = np.log10(sizes)
    spacing = np.min(np.diff(log_n)) if len(log_n) > 1 else 0.2
    qs = sorted(fits["quantile"].unique())
    middle = middle_quantile(qs)
    shades = ramp(len(qs))
    last = rows.loc[rows.groupby(["width", "seed"])["epoch"].idxmax()]
    grid = np.geomspace(sizes.min(), sizes.max(), 50)
    for ax, (metric, label) in zip(axes.flat, PANELS):
        _violins(ax, rows, metric, sizes, 0.4 * spacing)
        ax.scatter(last["N"], last[metric], s=12, color="black", zorder=3, label="final epoch of each run")
        pieces = []
        for color, q in zip(shades, qs):
            fit = _fit(fits, metric, "all", q)
            if fit is None:
                continue
            ax.plot(grid, np.exp(fit["intercept"]) * grid ** fit["slope"], color=color, label=f"q = {q:g}, all epochs")
            if q == middle:
                dim = f", 4/α {fit['dim']:.1f}" if "loss" in metric else ""
                pieces.append(f"all: slope {_slope_text(fit)}{dim}")
        final = _fit(fits, metric, "final", middle)
        if final is not None:
            ax.plot(
                grid,
                np.exp(final["intercept"]) * grid ** final["slope"],
                color="black",
                linestyle="--",
                label=f"q = {middle:g}, final epochs",
            )
            dim = f", 4/α {final['dim']:.1f}" if "loss" in metric else ""
            pieces.append(f"final: slope {_slope_text(final)}{dim}")
        log_axes(ax)
        ax.set_title("\n".join([label, *pieces]), fontsize=8)
        ax.set_xlabel("parameters N (log)")
        ax.set_ylabel(f"{label} (log)")
    handles, labels = axes.flat[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncol=3)
    fig.suptitle(f"{model} on {title}" if title else model)
    return save_figure(fig, path)


def _fit(fits: pd.DataFrame, metric: str, rule: str, q: float):
    hit = fits[(fits["metric"] == metric) & (fits["epoch_rule"] == rule) & np.isclose(fits["quantile"], q)]
    return None if hit.empty else hit.iloc[0]


def _row(sub: pd.DataFrame, name: str, metric: str):
    """The dataset's fit of `metric` at its largest train size P (None without one)."""
    hit = sub[(sub["dataset"] == name) & (sub["metric"] == metric)]
    return None if hit.empty else hit.sort_values("P").iloc[-1]


def dim_vs_estimate(fits: pd.DataFrame, estimates: pd.DataFrame, k: int, path, *, model: str = MODEL):
    """4/alpha of the loss (train and validation; middle quantile, 95% CI, each dataset's largest P)
    against the dataset's estimated dimension: circles at MLE(k) d-hat, squares at TwoNN d-hat; one panel
    per epoch rule; the line 4/alpha = d-hat. Accuracy exponents are left out: 4/alpha reads a loss
    exponent. Without estimates (dimension stage off) the datasets are placed side by side instead."""
    fig, axes = plt.subplots(1, 2, figsize=(7.2, 3.6), sharex=True, sharey=True)
    known = estimates.set_index("dataset") if len(estimates) else None
    datasets = sorted(fits["dataset"].unique())
    xs, ys = [], []
    for ax, rule in zip(axes, ("final", "all")):
        sub = fits[fits["epoch_rule"] == rule]
        labelled = set()
        for i, name in enumerate(datasets):
            tops = []
            placed = known is not None and name in known.index
            where = [(known.loc[name, f"mle_k{k}"], "o"), (known.loc[name, "twonn"], "s")] if placed else [(i + 1, "o")]
            for (metric, color), side in zip(LOSS_COLORS.items(), (-1, 1)):
                row = _row(sub, name, metric)
                if row is None or not math.isfinite(row["dim"]):
                    continue
                err = [[max(np.nan_to_num(row["dim"] - row["dim_lo"]), 0)], [max(row["dim_hi"] - row["dim"], 0)]]
                err[1] = [err[1][0] if math.isfinite(err[1][0]) else 0]
                ys += [row["dim"]]
                tops.append(row["dim"] + err[1][0])
                for x, marker in where:
                    if not math.isfinite(x):
                        continue
                    label = "_" if metric in labelled else f"4/α of the {LOSS_NAMES[metric]}"
                    labelled.add(metric)
                    dodged = x * 1.02**side if placed else x + 0.06 * side  # train and validation side by side
                    ax.errorbar([dodged], [row["dim"]], yerr=err, color=color, marker=marker, ls="none", label=label)
                    xs.append(x)
            anchor = where[0][0]
            if math.isfinite(anchor) and tops:
                ax.annotate(
                    name, (anchor, max(tops)), xytext=(0, 4), textcoords="offset points", ha="center", fontsize=8
                )
        ax.set_title(f"epoch rule: {rule}")
    for ax in axes:
        if known is not None and xs:
            span = np.array([min(xs + ys) * 0.8, max(xs + ys) * 1.25])
            ax.plot(span, span, color="gray", linestyle=":", label="4/α = d̂")
            log_axes(ax)
            ax.set_xlabel("estimated dimension d̂ (log)")
        else:
            log_axes(ax, x=False)
            ax.set_xticks(range(1, len(datasets) + 1), datasets)
            ax.set_xlim(0.4, len(datasets) + 0.6)
            ax.set_xlabel("dataset (no d̂: the dimension stage is off)")
    axes[0].set_ylabel("4/α of the loss (log; 95% CI)")
    handles, labels = axes[0].get_legend_handles_labels()
    if known is not None:
        handles += [Line2D([], [], color="0.3", marker=m, linestyle="none") for m in "os"]
        labels += [f"at d̂ = MLE (k = {k})", "at d̂ = TwoNN"]
    fig.legend(handles, labels, loc="outside lower center", ncol=3)
    fig.suptitle(f"{model} on {', '.join(datasets)}: 4/α of the loss against the data's dimension")
    return save_figure(fig, path)
