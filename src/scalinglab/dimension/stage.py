"""The intrinsic-dimension stage of the workflow: estimates per teacher manifold and per image
dataset, a table, a figure.

For each teacher d the stage estimates the dimension of x alone and of (x, y) on the d's test set.
Because x = W t is linear, for d >= embedding width the x manifold has the width's dimension, and
that is what the estimators measure and what the table reports as `manifold_dim`.
Image datasets have no known dimension: their rows hold d, embedding_width and manifold_dim as NA.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from scalinglab.core.io import concat_parquet, write_parquet
from scalinglab.dimension.figures import dimension_vs_k


def estimate_teacher(
    *,
    points,
    estimates,
    d: int,
    estimators: list[str],
    ks: list[int],
    subsample: int | None,
    bootstrap: int,
    seed: int,
    mle_unbiased: bool,
) -> pd.DataFrame:
    """TwoNN and MLE(k) of one teacher manifold from its test points (a file): rows for x and for
    (x, y), written to `estimates`."""
    from scalinglab.dimension.estimators import estimate

    data = torch.load(points)
    x, y = data["x"].double().numpy(), data["y"].double().numpy()
    width = int(data["embedding_width"])
    frames = []
    for target, cloud in (("x", x), ("xy", np.column_stack([x, y]))):
        est = estimate(
            cloud,
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
    write_parquet(frame, estimates, {"d": d, "estimators": estimators, "ks": ks, "subsample": subsample})
    return frame


def estimate_images(
    *,
    data,
    estimates,
    dataset: str,
    estimators: list[str],
    ks: list[int],
    subsample: int | None,
    bootstrap: int,
    seed: int,
    mle_unbiased: bool,
) -> pd.DataFrame:
    """TwoNN and MLE(k) of one image dataset: flattened pixels scaled to [0, 1], train and test
    images together, at their stored resolution (digits' 8x8, not the ConvNet's upsampled 16x16:
    repeating pixels scales every distance by the same factor, which these estimators ignore)."""
    from scalinglab.datasets.image_data import read
    from scalinglab.dimension.estimators import estimate

    images = read(data)
    x = torch.cat([images.train_x, images.test_x]).flatten(1)
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
        estimates,
        {
            "dataset": dataset,
            "estimators": estimators,
            "ks": ks,
            "subsample": subsample,
            "dataset_md5": images.meta.get("content_md5"),
        },
    )
    return frame


def aggregate_and_plot(*, parts: list, table, figure) -> pd.DataFrame:
    """All estimate files in one table, and the estimate-against-k figure."""
    frame = concat_parquet(parts, table)
    dimension_vs_k(frame, figure)
    return frame
