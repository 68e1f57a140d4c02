"""The teacher/student data-manifold experiment (Sharma & Kaplan 2022), one function per workflow rule.

teacher -> datasets (train set of P points, or a stream pool for P = inf; a fixed test set)
-> train (packing.py: a job of bundles, each all seeds of one (d, P, width)) -> one Parquet per cell.
"""

from __future__ import annotations

import math
import sys
import time

import pandas as pd
import torch

from scalinglab.core.io import atomic_path, write_parquet, write_text
from scalinglab.core.seeding import derive_seed
from scalinglab.dimension.table import reference_estimates
from scalinglab.teacher_student.fits import comparison_rst, comparison_table, final_rows, fit_exponents, fits_caption
from scalinglab.teacher_student.packing import train_pack
from scalinglab.teacher_student.teacher import Teacher


def save_tensors(obj: dict, path) -> None:
    with atomic_path(path) as tmp:
        torch.save(obj, tmp)


def make_teacher(*, d: int, embedding_width: int, teacher_seed: int, teacher) -> None:
    """The random teacher of dimension d, its weights seeded by (teacher_seed, d), saved to `teacher`."""
    net = Teacher.create(d, embedding_width, derive_seed("teacher", teacher_seed, d))
    save_tensors(net.state_dict(), teacher)


def make_dataset(*, teacher, n_points: int, stream: list, points) -> None:
    """Sample n_points (x, y) from the teacher file with a seed derived from the keys `stream`."""
    net = Teacher.load(teacher)
    started = time.perf_counter()
    x, y = net.sample(n_points, derive_seed(*stream))
    save_tensors({"x": x, "y": y, "d": net.d, "embedding_width": net.embedding_width}, points)
    print(f"sampled {n_points:,} points of d={net.d} in {time.perf_counter() - started:.1f}s", file=sys.stderr)


def train_bundle(
    *,
    train,
    test,
    cells: list,
    d: int,
    width: int,
    P,
    seeds: list[int],
    schedule: dict,
    n_evals: int,
    device: str,
    compile,
    threads: int,
    checkpoint=None,
    checkpoint_every_s: float = 300.0,
) -> None:
    """Train the students of every seed for one (d, P, width) as one ensemble on the points of the
    files `train` and `test`; one Parquet per seed, `cells` (in the order of `seeds`): a packed job
    of one bundle (packing.train_pack, which the workflow's training rule calls).

    checkpoint: a file where the run's state is saved every checkpoint_every_s seconds; a killed job
    rerun with the same settings resumes there (bit-identical results) and removes it when done."""
    if len(cells) != len(seeds):
        raise ValueError("one output path per seed")
    train_pack(
        train=[train],
        test=[test],
        cells=cells,
        bundles=[[d, width]],
        P=P,
        seeds=seeds,
        schedules={int(d): schedule},
        n_evals=n_evals,
        device=device,
        compile=compile,
        threads=threads,
        checkpoint=checkpoint,
        checkpoint_every_s=checkpoint_every_s,
    )


def fit_and_write(
    *,
    table,
    dimension,
    fits_table,
    fits_json,
    caption,
    bootstrap: int,
    quantile: float,
    reference_k: int,
    convergence: dict | None = None,
) -> pd.DataFrame:
    """The fit rule: the fits of the runs table `table` as Parquet and JSON, and the report caption.

    With a dimension table (a path; None without one), the caption also sets the estimated d-hat
    beside d and 4/alpha.
    """
    import json

    convergence = convergence or {}
    fits = fit_exponents(
        pd.read_parquet(table),
        bootstrap=bootstrap,
        quantile=quantile,
        convergence_tolerance=convergence.get("tolerance", 0.3),
        drop_unconverged=convergence.get("drop_unconverged", False),
    )
    write_parquet(fits, fits_table, {"bootstrap": bootstrap, "quantile": quantile})
    records = json.loads(fits.to_json(orient="records"))
    for record, P in zip(records, fits["P"] if "P" in fits else []):
        if math.isinf(P):  # P = inf: "inf" as in the file names and the config, not null (JSON has no inf)
            record["P"] = "inf"
    write_text(fits_json, json.dumps(records, indent=1))
    text = fits_caption(fits)
    if dimension is not None:
        dims = pd.read_parquet(dimension)
        text += (
            f"\nThe data-manifold check side by side: the true manifold dimension, the estimates d-hat of the"
            f" inputs x (TwoNN and MLE with k = {reference_k}), and 4/alpha.\n\n"
            + comparison_rst(comparison_table(fits, dims, reference_k), reference_k)
        )
        if (dims["note"] != "").any():
            text += (
                "\nWhere d >= the embedding width, x = W t spans only the width's dimensions: "
                "the measured dimension is the width, not d.\n"
            )
    write_text(caption, text)
    print(text)
    return fits


def plot_all(*, table, fits, dimension, loss, dim, curves, reference_k: int) -> None:
    """The plot rule: the figures `loss` (loss against N), `dim` (4/alpha against d) and `curves`
    (learning curves); with a dimension table the loss figure also draws the theory line N^(-4/d-hat)."""
    from scalinglab.teacher_student import figures

    runs = pd.read_parquet(table)
    fitted = pd.read_parquet(fits)
    final, _ = final_rows(runs)
    theory, column = None, None
    if dimension is not None:
        ref = reference_estimates(pd.read_parquet(dimension), reference_k)
        mle = f"mle_k{reference_k}"
        column = mle if mle in ref and ref[mle].notna().any() else "twonn"  # dimension.estimators: [twonn]
        theory = dict(zip(ref["d"], ref[column]))
    figures.loss_vs_n(final, fitted, loss, theory_dims=theory, estimator=column)
    figures.dim_vs_d(fitted, dim, dim_estimates=theory, estimator=column)
    figures.learning_curves(runs, curves)
