"""The dimension figure: every estimate against the neighbour count k."""

from __future__ import annotations

import pandas as pd

from scalinglab.core.plotting import plt, save_figure


def dimension_vs_k(dims: pd.DataFrame, path) -> None:
    """MLE estimate against k per dataset (TwoNN as a dashed level), the true d dotted for teachers."""
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
