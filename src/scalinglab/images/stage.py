"""The image stage of the workflow (seed 000's CIFAR-10 experiment on any image dataset).

One function per rule: train a bundle (all seeds of one dataset, P, width) into one Parquet per
cell; fit log(loss) and log(accuracy) against log N by quantile regression with both epoch rules
side by side (fits.py); write the fits table, its JSON and the report caption; draw the figures
(figures.py).
"""

from __future__ import annotations

import json
import time

import pandas as pd
import torch

from scalinglab.core.checkpoint import discard
from scalinglab.core.errors import UserError
from scalinglab.core.io import write_parquet, write_text
from scalinglab.images.fits import caption as fits_caption
from scalinglab.images.fits import estimated_dims, fit_images, headline, usable_rows

EXPERIMENT = "images"
# The seed's flip + crop suits natural images and clothes; a mirrored digit is another symbol.
AUTO_AUGMENT = {
    "cifar10": "flip_crop",
    "cifar100": "flip_crop",
    "fashion-mnist": "flip_crop",
    "mnist": "crop",
    "digits": "crop",
}


def augmentation(dataset: str, mode: str) -> str:
    """The augmentation of one dataset: `mode` ("auto" or a mode) is its entry in images.augment,
    which the workflow looks up (common.smk, img_augment); "auto" picks the dataset's usual one."""
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
    data_path,
    *,
    dataset: str,
    P,
    width: int,
    seeds: list[int],
    epochs: int,
    batch: int,
    lr: float,
    weight_decay: float,
    augment,
    device: str = "auto",
    threads: int = 1,
    out_paths: list,
    checkpoint=None,
    checkpoint_every_s: float = 300.0,
) -> pd.DataFrame:
    """ConvNet(width) for every seed on a seeded subset of P images of one dataset; one Parquet per seed.
    checkpoint: a file for the state after an epoch (every checkpoint_every_s seconds); a rerun resumes it."""
    from scalinglab.core.devices import device_for_job, pick_device
    from scalinglab.core.provenance import provenance
    from scalinglab.datasets.image_data import read
    from scalinglab.images import training as images

    if len(out_paths) != len(seeds):
        raise ValueError("one output path per seed")
    torch.set_num_threads(threads)
    data = read(data_path)
    mode = augmentation(dataset, augment)
    started = time.perf_counter()
    with device_for_job(pick_device(device)) as dev:
        frame = images.train_cells(
            data,
            widths=[width],
            seeds=seeds,
            P=parse_P(P),
            epochs=epochs,
            augment=mode,
            batch=batch,
            lr=lr,
            weight_decay=weight_decay,
            device=dev,
            progress=_progress(f"{dataset} P={P} c={width}"),
            checkpoint=checkpoint,
            checkpoint_every_s=checkpoint_every_s,
        )
    seconds = time.perf_counter() - started
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
        "dataset_md5": data.meta.get("content_md5"),
    }
    for seed, path in zip(seeds, out_paths):
        cell = frame[frame["seed"] == seed].reset_index(drop=True)
        write_parquet(cell, path, provenance({**settings, "seed": seed}, str(dev), seconds))
    discard(checkpoint)  # every cell is written: the run is complete
    return frame


def _progress(label: str):
    def report(row: dict) -> None:
        print(
            f"{label} seed={row['seed']} epoch {row['epoch']}: train loss {row['train_loss']:.4f} "
            f"acc {row['train_acc']:.3f}, val loss {row['val_loss']:.4f} acc {row['val_acc']:.3f}",
            flush=True,
        )

    return report


def fit_and_write(
    table_path,
    *,
    quantiles,
    bootstrap: int,
    table_out,
    json_out,
    caption_out,
    dimension_path=None,
    reference_k: int = 20,
) -> pd.DataFrame:
    """The fit rule: fits table (Parquet), the same as JSON, and the report caption."""
    table = pd.read_parquet(table_path)
    fits = fit_images(table, quantiles=quantiles, bootstrap=bootstrap)
    write_parquet(fits, table_out, {"quantiles": list(quantiles), "bootstrap": bootstrap})
    write_text(json_out, json.dumps(json.loads(fits.to_json(orient="records")), indent=1))
    dims = pd.read_parquet(dimension_path) if dimension_path else None
    text = fits_caption(fits, dims, reference_k)
    write_text(caption_out, text)
    print(text)
    return fits


def plot_scaling(table_path, fits_path, *, dataset: str, P, path) -> None:
    """The seed's 2x2 figure (train/validation x loss/accuracy) of one dataset and train size."""
    from scalinglab.images import figures

    table, _ = usable_rows(pd.read_parquet(table_path))
    rows = table[(table["dataset"] == dataset) & (table["train_size"] == str(P))]
    if rows.empty:
        raise UserError(f"images: no runs of {dataset} at P={P} in {table_path}")
    fits = pd.read_parquet(fits_path)
    count = int(rows["P"].iloc[0])
    sub = fits[(fits["dataset"] == dataset) & (fits["P"] == count)]
    seeds, epochs = rows["seed"].nunique(), int(rows["epoch"].max())
    figures.scaling_grid(rows, sub, path, title=f"{dataset}: P = {count:,} images, {seeds} seeds, {epochs} epochs")


def plot_dims(fits_path, *, path, dimension_path=None, reference_k: int = 20) -> None:
    """4/alpha of every dataset against its estimated intrinsic dimension."""
    from scalinglab.images import figures

    fits = pd.read_parquet(fits_path)
    dims = pd.read_parquet(dimension_path) if dimension_path else None
    figures.dim_vs_estimate(headline(fits), estimated_dims(dims, reference_k), reference_k, path)
