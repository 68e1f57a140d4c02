"""The intrinsic-dimension stage of the workflow: estimates per teacher manifold and per image
dataset, a table, a figure.

For each teacher d the stage estimates the dimension of x alone and of (x, y) on the d's test set.
Because x = W t is linear, for d >= embedding width the x manifold has the width's dimension, and
that is what the estimators measure and what the table reports as `manifold_dim`.
Image datasets have no known dimension: their rows hold d, embedding_width and manifold_dim as NA.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import torch

from scalinglab.io import concat_parquet, write_parquet
from scalinglab.rst import simple_table


def estimate_teacher(
    test_path,
    *,
    d: int,
    estimators: list[str],
    ks: list[int],
    subsample: int | None,
    bootstrap: int,
    seed: int,
    out_path,
    mle_unbiased: bool = False,
) -> pd.DataFrame:
    """TwoNN and MLE(k) of one teacher manifold: rows for points x and for points (x, y)."""
    from scalinglab.dimension import estimate

    data = torch.load(test_path)
    x, y = data["x"].double().numpy(), data["y"].double().numpy()
    width = int(data["width"])
    frames = []
    for target, points in (("x", x), ("xy", np.column_stack([x, y]))):
        est = estimate(
            points,
            estimators=estimators,
            ks=ks,
            subsample=subsample,
            seed=seed,
            bootstrap=bootstrap,
            mle_unbiased=mle_unbiased,
        )
        est.insert(0, "target", target)
        frames.append(est)
    frame = pd.concat(frames, ignore_index=True)
    frame.insert(0, "dataset", f"teacher d={d}")
    frame.insert(1, "d", d)
    frame.insert(2, "embedding_width", width)
    frame.insert(3, "manifold_dim", min(d, width))
    frame["note"] = "d >= embedding width: the manifold is the width's" if d >= width else ""
    write_parquet(frame, out_path, {"d": d, "estimators": estimators, "ks": ks, "subsample": subsample})
    return frame


def estimate_images(
    data_path,
    *,
    dataset: str,
    estimators: list[str],
    ks: list[int],
    subsample: int | None,
    bootstrap: int,
    seed: int,
    out_path,
    mle_unbiased: bool = False,
) -> pd.DataFrame:
    """TwoNN and MLE(k) of one image dataset: flattened pixels scaled to [0, 1], train and test
    images together, at their stored resolution (digits' 8x8, not the ConvNet's upsampled 16x16:
    repeating pixels scales every distance by the same factor, which these estimators ignore)."""
    from scalinglab import datasets
    from scalinglab.dimension import estimate

    data = datasets.read(data_path)
    x = torch.cat([data.train_x, data.test_x]).flatten(1)
    points = x.double().numpy() / (255.0 if x.dtype == torch.uint8 else 1.0)
    frame = estimate(
        points,
        estimators=estimators,
        ks=ks,
        subsample=subsample,
        seed=seed,
        bootstrap=bootstrap,
        mle_unbiased=mle_unbiased,
    )
    frame.insert(0, "target", "x")
    frame.insert(0, "manifold_dim", pd.array([pd.NA] * len(frame), dtype="Int64"))
    frame.insert(0, "embedding_width", pd.array([pd.NA] * len(frame), dtype="Int64"))
    frame.insert(0, "d", pd.array([pd.NA] * len(frame), dtype="Int64"))
    frame.insert(0, "dataset", dataset)
    frame = frame[["dataset", "d", "embedding_width", "manifold_dim", "target", *frame.columns[5:]]]
    frame["note"] = ""  # non-empty notes flag teachers whose d >= the embedding width
    write_parquet(
        frame,
        out_path,
        {
            "dataset": dataset,
            "estimators": estimators,
            "ks": ks,
            "subsample": subsample,
            "dataset_md5": data.meta.get("content_md5"),
        },
    )
    return frame


def x_estimates(dims: pd.DataFrame, k: int, by: str) -> pd.DataFrame:
    """TwoNN and MLE(k) with its CI, of x (the inputs): one row per teacher manifold (by="d") or per
    image dataset (by="dataset"; they have no true d)."""
    x = dims[(dims["target"] == "x") & (dims["d"].notna() if by == "d" else dims["d"].isna())]
    if by == "d":
        x = x.assign(d=x["d"].astype("int64"))
    twonn = x[x["estimator"] == "twonn"].set_index(by)["dimension"].rename("twonn")
    mle = x[(x["estimator"] == "mle") & (x["k"] == k)].set_index(by)[["dimension", "ci_lo", "ci_hi"]]
    mle.columns = [f"mle_k{k}", f"mle_k{k}_lo", f"mle_k{k}_hi"]
    return pd.concat([twonn, mle], axis=1).rename_axis(by).reset_index()


def reference_estimates(dims: pd.DataFrame, k: int) -> pd.DataFrame:
    """One row per teacher d: TwoNN and MLE(k) of x, the estimates the theory lines use."""
    return x_estimates(dims, k, "d")[["d", "twonn", f"mle_k{k}"]]


def plot_dimension_vs_k(dims: pd.DataFrame, path) -> None:
    """MLE estimate against k per dataset (TwoNN as a dashed level), the true d dotted for teachers."""
    import matplotlib.pyplot as plt

    from scalinglab.plots import save_figure

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


def comparison_table(fits: pd.DataFrame, dims: pd.DataFrame | None, k: int) -> pd.DataFrame:
    """d, manifold dimension, d-hat (TwoNN, MLE(k)) and 4/alpha (OLS, median) side by side."""
    ols = fits[fits["method"] == "ols"][["d", "P", "manifold_dim", "dim", "dim_lo", "dim_hi"]]
    ols = ols.rename(columns={"dim": "4/alpha", "dim_lo": "4/alpha lo", "dim_hi": "4/alpha hi"})
    med = fits[fits["method"] == "quantile"][["d", "P", "dim"]].rename(columns={"dim": "4/alpha median"})
    table = ols.merge(med, on=["d", "P"], how="left")
    if dims is not None and len(dims):
        table = table.merge(reference_estimates(dims, k), on="d", how="left")
    return table.sort_values(["P", "d"]).reset_index(drop=True)


def comparison_rst(table: pd.DataFrame, k: int) -> str:
    cols = ["P", "d", "manifold", "TwoNN d-hat", f"MLE(k={k}) d-hat", "4/alpha OLS [95% CI]", "4/alpha median"]
    rows = []
    for i in range(len(table)):
        row = table.iloc[i]
        rows.append(
            [
                "inf" if math.isinf(row["P"]) else str(int(row["P"])),
                str(int(row["d"])),
                str(int(row["manifold_dim"])),
                f"{row['twonn']:.2f}" if "twonn" in table and pd.notna(row["twonn"]) else "-",
                f"{row[f'mle_k{k}']:.2f}" if f"mle_k{k}" in table and pd.notna(row[f"mle_k{k}"]) else "-",
                f"{row['4/alpha']:.2f} [{row['4/alpha lo']:.2f}, {row['4/alpha hi']:.2f}]",
                f"{row['4/alpha median']:.2f}" if pd.notna(row["4/alpha median"]) else "-",
            ]
        )
    return "\n".join(simple_table(cols, rows)) + "\n"


def aggregate_and_plot(paths: list, table_path, figure_path) -> pd.DataFrame:
    frame = concat_parquet(paths, table_path)
    plot_dimension_vs_k(frame, figure_path)
    return frame
