"""The dimension figure: every estimate against the neighbour count k. It writes a PNG and its PDF twin
and returns the (closed) figure."""

from __future__ import annotations

import numpy as np
import pandas as pd

from scalinglab.core.plotting import SINGLE, figure_legend, log_axes, plt, save_figure


def _styles_key(ax, with_twonn: bool, with_true: bool) -> None:
    """The estimators by line style, as legend entries after the datasets (by colour)."""
    ax.plot([], [], color="0.3", marker="o", label="MLE(k), 95% CI")
    if with_twonn:
        ax.plot([], [], color="0.3", linestyle="--", label="TwoNN (band: 95% CI)")
    if with_true:
        ax.plot([], [], color="0.3", linestyle=":", label="true manifold dimension")


def dimension_vs_k(dims: pd.DataFrame, path):
    """MLE estimate against k per dataset (TwoNN as a dashed level with its CI band), the true d dotted
    for teachers. Without MLE estimates (dimension.estimators: [twonn]) there is no k axis: TwoNN per dataset."""
    if not (dims["estimator"] == "mle").any():
        return _twonn_only(dims, path)
    datasets = list(dict.fromkeys(dims["dataset"]))
    fig, ax = plt.subplots(figsize=SINGLE)
    colors = {name: f"C{i % 7}" for i, name in enumerate(datasets)}
    with_twonn = with_true = False
    for name in datasets:
        color = colors[name]
        sub = dims[(dims["dataset"] == name) & (dims["target"] == "x")]
        mle = sub[sub["estimator"] == "mle"].sort_values("k")
        if mle.empty:
            continue
        y = mle["dimension"].to_numpy(float)
        err = [np.nan_to_num(np.clip(y - mle["ci_lo"].to_numpy(float), 0, None))]
        err.append(np.nan_to_num(np.clip(mle["ci_hi"].to_numpy(float) - y, 0, None)))
        ax.errorbar(mle["k"].astype(float), y, yerr=err, color=color, marker="o", label=name)
        twonn = sub[sub["estimator"] == "twonn"]
        if len(twonn):
            row = twonn.iloc[0]
            ax.axhline(row["dimension"], color=color, linestyle="--", linewidth=1)
            if np.isfinite(row["ci_lo"]) and np.isfinite(row["ci_hi"]):
                ax.axhspan(row["ci_lo"], row["ci_hi"], color=color, alpha=0.12, linewidth=0)
            with_twonn = True
        if "manifold_dim" in sub and sub["manifold_dim"].notna().any():
            ax.axhline(float(sub["manifold_dim"].dropna().iloc[0]), color=color, linestyle=":", linewidth=1.2)
            with_true = True
    ks = sorted(dims["k"].dropna().astype(int).unique())
    log_axes(ax, y=False)
    ax.set_xticks(ks, [str(k) for k in ks])
    ax.set_xticks([], minor=True)
    ax.set_xlim(ks[0] / 1.25, ks[-1] * 1.25)
    ax.set_xlabel("neighbours k (log)")
    ax.set_ylabel("estimated intrinsic dimension")
    ax.set_title("Intrinsic dimension of each dataset's inputs", loc="left")
    _styles_key(ax, with_twonn, with_true)
    figure_legend(fig)
    return save_figure(fig, path)


def _twonn_only(dims: pd.DataFrame, path):
    """TwoNN of x per dataset with its CI, the true dimension (teachers) as a cross."""
    x = dims[(dims["target"] == "x") & (dims["estimator"] == "twonn")]
    datasets = list(dict.fromkeys(x["dataset"]))
    fig, ax = plt.subplots(figsize=SINGLE)
    labelled = set()
    for i, name in enumerate(datasets):
        row = x[x["dataset"] == name].iloc[0]
        low, high = max(row["dimension"] - row["ci_lo"], 0.0), max(row["ci_hi"] - row["dimension"], 0.0)
        low, high = np.nan_to_num(low), np.nan_to_num(high)
        ax.errorbar([i], [row["dimension"]], yerr=[[low], [high]], color="C0", marker="o", capsize=3)
        if "manifold_dim" in row and pd.notna(row["manifold_dim"]):
            ax.plot([i], [float(row["manifold_dim"])], color="k", marker="x", linestyle="")
            labelled.add("true")
    ax.errorbar([], [], yerr=[], color="C0", marker="o", capsize=3, label="TwoNN (95% CI)")
    if labelled:
        ax.plot([], [], color="k", marker="x", linestyle="", label="true manifold dimension")
    ax.set_xticks(range(len(datasets)), datasets, rotation=30, ha="right")
    ax.set_xlim(-0.6, len(datasets) - 0.4)
    ax.set_xlabel("dataset (inputs x)")
    ax.set_ylabel("estimated intrinsic dimension")
    ax.set_title("Intrinsic dimension of each dataset's inputs (TwoNN)", loc="left")
    figure_legend(fig)
    return save_figure(fig, path)
