"""The image stage of the workflow (Liu's CIFAR-10 replication of Sharma & Kaplan, on any image dataset).

One function per rule: train a bundle (all seeds of one dataset, P, width) into one Parquet per
cell; fit log(loss) and log(accuracy) against log N by quantile regression with both epoch rules
side by side (fits.py); write the fits table, its JSON and the report caption; draw the figures
(figures.py).
"""

from __future__ import annotations

import json
import math
import time

import pandas as pd
import torch

from scalinglab.core.checkpoint import discard
from scalinglab.core.divergence import mark_diverged
from scalinglab.core.errors import UserError
from scalinglab.core.io import write_parquet, write_text
from scalinglab.images.fits import caption as fits_caption
from scalinglab.images.fits import estimated_dims, fit_images, headline, usable_rows

EXPERIMENT = "images"
# Liu's flip + crop suits natural images and clothes; a mirrored digit is another symbol.
AUTO_AUGMENT = {
    "cifar10": "flip_crop",
    "cifar100": "flip_crop",
    "fashion-mnist": "flip_crop",
    "mnist": "crop",
    "digits": "crop",
}


def augmentation(dataset: str, mode: str) -> str:
    """The augmentation of one dataset: `mode` ("auto" or a mode) is its entry in images.augment,
    which the workflow looks up (images.smk, img_augment); "auto" picks the dataset's usual one."""
    if mode != "auto":
        return mode
    if dataset not in AUTO_AUGMENT:
        raise UserError(f"images: no automatic augmentation for {dataset!r}; set images.augment: {{{dataset}: crop}}")
    return AUTO_AUGMENT[dataset]


def parse_P(P) -> int | None:
    """A train-size setting: "all" (None: the whole training split) or an integer."""
    return None if str(P) == "all" else int(P)


# ---------------------------------------------------------------- train


def train_bundle(
    *,
    data,
    cells: list,
    dataset: str,
    P,
    width: int,
    seeds: list[int],
    epochs: int,
    batch: int,
    lr: float,
    weight_decay: float,
    augment,
    device: str,
    threads: int,
    checkpoint=None,
    checkpoint_every_s: float = 300.0,
) -> pd.DataFrame:
    """ConvNet(width) for every seed on a seeded subset of P images of one dataset (the prepared file
    `data`); one Parquet per seed, `cells` (in the order of `seeds`).
    checkpoint: a file for the state after an epoch (every checkpoint_every_s seconds); a rerun resumes it."""
    from scalinglab.core.devices import device_for_job, pick_device
    from scalinglab.core.provenance import provenance
    from scalinglab.datasets.image_data import read
    from scalinglab.images.training import train_cells

    if len(cells) != len(seeds):
        raise ValueError("one output path per seed")
    torch.set_num_threads(threads)
    images = read(data)
    mode = augmentation(dataset, augment)
    started = time.perf_counter()
    with device_for_job(pick_device(device)) as dev:
        frame = train_cells(
            images,
            widths=[width],
            seeds=seeds,
            P=parse_P(P),
            epochs=epochs,
            augment=mode,
            batch=batch,
            lr=lr,
            weight_decay=weight_decay,
            device=dev,
            progress=_progress(f"{dataset} P={P} c={width}", epochs * len(seeds)),
            checkpoint=checkpoint,
            checkpoint_every_s=checkpoint_every_s,
        )
    seconds = time.perf_counter() - started
    # finite blow-ups too (training marks only NaN/inf); the train loss, as training lowers it, against
    # ln K, the cross-entropy of a net at chance (its loss at step 0: the frame logs no epoch 0)
    frame = mark_diverged(frame, ["width", "seed"], "epoch", "train_loss", initial=math.log(images.n_classes))
    frame.insert(0, "dataset", dataset)
    frame.insert(0, "experiment", EXPERIMENT)
    frame.insert(2, "train_size", str(P))  # the setting ("all" or a number); P holds the count
    frame["augment"] = mode
    settings = {
        "dataset": dataset,
        "P": str(P),
        "width": width,
        "seeds": seeds,
        "epochs": epochs,
        "batch": batch,
        "lr": lr,
        "weight_decay": weight_decay,
        "augment": mode,
        "dataset_md5": images.meta.get("content_md5"),
    }
    for seed, path in zip(seeds, cells):
        cell = frame[frame["seed"] == seed].reset_index(drop=True)
        write_parquet(cell, path, provenance({**settings, "seed": seed}, str(dev), seconds))
    discard(checkpoint)  # every cell is written: the run is complete
    return frame


def _progress(label: str, total: int):
    """A callback for train_cells that says the rate and ETA (core/progress.py) with the last epoch's
    numbers, and when the job is done."""
    from scalinglab.core.progress import Progress

    watch = Progress(label, total, "cell-epochs")
    count = [0]

    def report(row: dict) -> None:
        count[0] += 1

        def note():
            return (
                f"seed {row['seed']} epoch {row['epoch']}: train loss {row['train_loss']:.4f} acc "
                f"{row['train_acc']:.3f}, val loss {row['val_loss']:.4f} acc {row['val_acc']:.3f}"
            )

        watch.update(count[0], note)
        if count[0] == total:
            watch.finish(note)

    return report


def fit_and_write(
    *,
    table,
    dimension,
    fits_table,
    fits_json,
    caption,
    quantiles,
    bootstrap: int,
    reference_k: int,
) -> pd.DataFrame:
    """The fit rule: the fits of the runs table `table` as Parquet and JSON, and the report caption
    (with the datasets' estimated dimensions when `dimension`, the dimension table, is given)."""
    fits = fit_images(pd.read_parquet(table), quantiles=quantiles, bootstrap=bootstrap)
    write_parquet(fits, fits_table, {"quantiles": list(quantiles), "bootstrap": bootstrap})
    write_text(fits_json, json.dumps(json.loads(fits.to_json(orient="records")), indent=1))
    dims = pd.read_parquet(dimension) if dimension else None
    text = fits_caption(fits, dims, reference_k)
    write_text(caption, text)
    print(text)
    return fits


def plot_scaling(*, table, fits, figure, dataset: str, P) -> None:
    """Liu's 2x2 figure (train/validation x loss/accuracy) of one dataset and train size."""
    from scalinglab.images import figures

    runs, _ = usable_rows(pd.read_parquet(table))
    rows = runs[(runs["dataset"] == dataset) & (runs["train_size"] == str(P))]
    if rows.empty:
        raise UserError(f"images: no runs of {dataset} at P={P} in {table}")
    fitted = pd.read_parquet(fits)
    count = int(rows["P"].iloc[0])
    sub = fitted[(fitted["dataset"] == dataset) & (fitted["P"] == count)]
    seeds, epochs = rows["seed"].nunique(), int(rows["epoch"].max())
    figures.scaling_grid(rows, sub, figure, title=f"{dataset}: P = {count:,} images, {seeds} seeds, {epochs} epochs")


def plot_dims(*, fits, dimension, figure, reference_k: int) -> None:
    """4/alpha of every dataset against its estimated intrinsic dimension (from the dimension table)."""
    from scalinglab.images import figures

    fitted = pd.read_parquet(fits)
    dims = pd.read_parquet(dimension) if dimension else None
    figures.dim_vs_estimate(headline(fitted), estimated_dims(dims, reference_k), reference_k, figure)
