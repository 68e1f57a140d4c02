"""The dimension figure: every estimate against the neighbour count k."""

from __future__ import annotations

import pandas as pd

from scalinglab.core.plotting import plt, save_figure


def dimension_vs_k(dims: pd.DataFrame, path) -> None:
    """MLE estimate against k per dataset (TwoNN as a dashed level), the true d dotted for teachers.
    Without MLE estimates (dimension.estimators: [twonn]) there is no k axis: TwoNN per dataset."""
    if not (dims["estimator"] == "mle").any():
        _twonn_only(dims, path)
        return
    datasets = list(dict.fromkeys(dims["dataset"]))
    fig, ax = plt.subplots(figsize=(6.4, 4.6))
    cmap = plt.get_cmap("viridis")
    for i, name in enumerate(datasets):
        color = cmap(i / max(len(datasets) - 1, 1))
        sub = dims[(dims["dataset"] == name) & (dims["target"] == "x")]
        mle = sub[sub["estimator"] == "mle"].sort_values("k")
        ax.errorbar(
            mle["k"].astype(float),
            mle["dimension"],
            yerr=[mle["dimension"] - mle["ci_lo"], mle["ci_hi"] - mle["dimension"]],
            color=color,
            marker="o",
            capsize=2,
            label=f"{name}: MLE",
        )
        twonn = sub[sub["estimator"] == "twonn"]
        if len(twonn):
            ax.axhline(twonn["dimension"].iloc[0], color=color, linestyle="--", linewidth=1)
        if "manifold_dim" in sub and sub["manifold_dim"].notna().any():
            ax.axhline(sub["manifold_dim"].iloc[0], color=color, linestyle=":", linewidth=1)
    ax.set_xscale("log")
    ax.set_xlabel("neighbours k")
    ax.set_ylabel("estimated intrinsic dimension")
    ax.set_title("dimension estimates (solid: MLE(k); dashed: TwoNN; dotted: true)")
    ax.legend(fontsize=7)
    save_figure(fig, path)


def _twonn_only(dims: pd.DataFrame, path) -> None:
    """TwoNN of x per dataset with its CI, the true dimension (teachers) as a cross."""
    x = dims[(dims["target"] == "x") & (dims["estimator"] == "twonn")]
    datasets = list(dict.fromkeys(x["dataset"]))
    fig, ax = plt.subplots(figsize=(6.4, 4.6))
    labelled = set()
    for i, name in enumerate(datasets):
        row = x[x["dataset"] == name].iloc[0]
        low, high = max(row["dimension"] - row["ci_lo"], 0.0), max(row["ci_hi"] - row["dimension"], 0.0)
        ax.errorbar([i], [row["dimension"]], yerr=[[low], [high]], color="C0", marker="o", capsize=3)
        if "manifold_dim" in row and pd.notna(row["manifold_dim"]):
            ax.plot([i], [float(row["manifold_dim"])], color="k", marker="x", linestyle="")
            labelled.add("true")
    ax.plot([], [], color="C0", marker="o", label="TwoNN (95% CI)")
    if labelled:
        ax.plot([], [], color="k", marker="x", linestyle="", label="true dimension")
    ax.set_xticks(range(len(datasets)), datasets, rotation=30, ha="right", fontsize=8)
    ax.set_ylabel("estimated intrinsic dimension")
    ax.set_title("dimension estimates (TwoNN; no MLE in dimension.estimators)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    save_figure(fig, path)
