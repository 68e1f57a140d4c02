"""The teacher/student data-manifold experiment (Sharma & Kaplan 2022), one function per workflow rule.

teacher -> datasets (train set of P points, or a stream pool for P = inf; a fixed test set)
-> train one bundle (all seeds of one (d, P, width) as one ensemble) -> one Parquet per cell.
"""

from __future__ import annotations

import math
import sys
import time

import numpy as np
import pandas as pd
import torch

from scalinglab.core.checkpoint import discard
from scalinglab.core.config import format_train_size, parse_train_size
from scalinglab.core.devices import device_for_job, pick_device
from scalinglab.core.divergence import series_diverged
from scalinglab.core.io import atomic_path, write_parquet, write_text
from scalinglab.core.provenance import provenance
from scalinglab.core.seeding import derive_seed
from scalinglab.dimension.table import reference_estimates
from scalinglab.teacher_student.fits import comparison_rst, comparison_table, final_rows, fit_exponents, fits_caption
from scalinglab.teacher_student.schedules import Schedule
from scalinglab.teacher_student.teacher import Teacher, load_tensors
from scalinglab.teacher_student.training import MLPEnsemble, student_param_count, train

EXPERIMENT = "teacher_student"


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
    files `train` and `test`; one Parquet per seed, `cells` (in the order of `seeds`).

    checkpoint: a file where the run's state is saved every checkpoint_every_s seconds; a killed job
    rerun with the same settings resumes there (bit-identical results) and removes it when done."""
    if len(cells) != len(seeds):
        raise ValueError("one output path per seed")

    torch.set_num_threads(threads)
    with device_for_job(pick_device(device)) as dev:
        _train_bundle_on(
            dev,
            train,
            test,
            d=d,
            width=width,
            P=P,
            seeds=seeds,
            schedule=schedule,
            n_evals=n_evals,
            compile=compile,
            out_paths=cells,
            checkpoint=checkpoint,
            checkpoint_every_s=checkpoint_every_s,
        )


def _train_bundle_on(
    dev,
    train_path,
    test_path,
    *,
    d,
    width,
    P,
    seeds,
    schedule,
    n_evals,
    compile,
    out_paths,
    checkpoint,
    checkpoint_every_s,
):
    use_compile = dev.type == "cuda" if compile == "auto" else bool(compile)
    train_data, test_data = (
        load_tensors(path, ("x", "y", "embedding_width"), "data") for path in (train_path, test_path)
    )
    w = int(train_data["embedding_width"])
    P_value = parse_train_size(P)
    mode = "stream" if P_value == math.inf else "sample"
    sched = Schedule.from_config(schedule)
    passes = sched.samples_seen() / train_data["x"].shape[0]
    if mode == "stream" and passes > 1:
        print(
            f"note: each student sees {sched.samples_seen():,} samples from a pool of {train_data['x'].shape[0]:,} "
            f"({passes:.1f} passes); raise teacher_student.pool_size for strictly fresh samples",
            file=sys.stderr,
        )
    member_seeds = [derive_seed("student", d, format_train_size(P), width, s) for s in seeds]
    ens = MLPEnsemble.init(len(seeds), w, width, member_seeds, device=dev)
    started = time.perf_counter()
    logs = train(
        ens,
        sched,
        train_data["x"].to(dev),
        train_data["y"].to(dev),
        test_data["x"].to(dev),
        test_data["y"].to(dev),
        mode=mode,
        data_seed=derive_seed("batches", d, format_train_size(P), width, *seeds),
        n_evals=n_evals,
        compile=use_compile,
        label=f"d={d} P={format_train_size(P)} n={width}",
        checkpoint=checkpoint,
        checkpoint_every_s=checkpoint_every_s,
    )
    seconds = time.perf_counter() - started
    settings = {
        "d": d,
        "width": width,
        "P": format_train_size(P),
        "seeds": seeds,
        "schedule": schedule,
        "embedding_width": w,
        "train_points": int(train_data["x"].shape[0]),
        "data_passes": round(passes, 3),
    }
    for e, (seed, path) in enumerate(zip(seeds, out_paths)):
        frame = cell_frame(logs, e, d=d, w=w, width=width, P=P_value, seed=seed)
        write_parquet(frame, path, provenance({**settings, "seed": seed}, str(dev), seconds))
    discard(checkpoint)  # every cell is written: the run is complete


def cell_frame(logs: dict, member: int, *, d: int, w: int, width: int, P: float, seed: int) -> pd.DataFrame:
    test = logs["test_loss"][:, member]
    # test MSE, not train: it is logged at step 0 (the initial loss) and it is what the fits use
    diverged = bool(series_diverged(test))
    return pd.DataFrame(
        {
            "experiment": EXPERIMENT,
            "d": d,
            "embedding_width": w,
            "manifold_dim": min(d, w),
            "width": width,
            "N": student_param_count(width, w),
            "P": float(P),
            "seed": seed,
            "step": logs["step"].astype(np.int64),
            "samples": logs["samples"].astype(np.int64),
            "lr": logs["lr"],
            "train_loss": logs["train_loss"][:, member],
            "test_loss": test,
            "status": "diverged" if diverged else "ok",
        }
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
) -> pd.DataFrame:
    """The fit rule: the fits of the runs table `table` as Parquet and JSON, and the report caption.

    With a dimension table (a path; None without one), the caption also sets the estimated d-hat
    beside d and 4/alpha.
    """
    import json

    fits = fit_exponents(pd.read_parquet(table), bootstrap=bootstrap, quantile=quantile)
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
    theory = None
    if dimension is not None:
        ref = reference_estimates(pd.read_parquet(dimension), reference_k)
        mle = f"mle_k{reference_k}"
        column = mle if mle in ref and ref[mle].notna().any() else "twonn"  # dimension.estimators: [twonn]
        theory = dict(zip(ref["d"], ref[column]))
    figures.loss_vs_n(final, fitted, loss, theory_dims=theory)
    figures.dim_vs_d(fitted, dim)
    figures.learning_curves(runs, curves)
