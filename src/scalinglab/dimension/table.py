"""Reading the dimension table (results/tables/dimension.parquet): the estimates of the inputs x,
one row per teacher manifold or per image dataset, that other experiments set beside 4/alpha."""

from __future__ import annotations

import pandas as pd


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
