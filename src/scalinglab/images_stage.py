"""The image stage of the workflow (seed 000's CIFAR-10 experiment on any image dataset).

One function per rule: train a bundle (all seeds of one dataset, P, width) into one Parquet per
cell; fit log(loss) and log(accuracy) against log N by quantile regression with both epoch rules
side by side; write the fits table, its JSON and the report caption. Figures: images_plots.py.

Epoch rules (the issue asks for both, side by side):
  - "all":   every epoch of every run is a point, as the seed fitted its TensorBoard logs. Early
             epochs of large models sit among late epochs of small ones, so this measures a mix of
             size and training time; the quantiles pick the envelope.
  - "final": one point per run, its last epoch: the loss of the trained model, which is what the
             theory's L(N) means.
CIs come from a bootstrap that resamples seeds, all widths (and epochs) of a drawn seed together,
because the runs of one seed share their training subset and batch order.
"""

from __future__ import annotations

import json
import time

import pandas as pd
import torch

from scalinglab.checkpoint import discard
from scalinglab.dimension_stage import x_estimates
from scalinglab.errors import UserError
from scalinglab.io import write_parquet, write_text
from scalinglab.rst import simple_table

EXPERIMENT = "images"
# The seed's flip + crop suits natural images and clothes; a mirrored digit is another symbol.
AUTO_AUGMENT = {
    "cifar10": "flip_crop",
    "cifar100": "flip_crop",
    "fashion-mnist": "flip_crop",
    "mnist": "crop",
    "digits": "crop",
}
# metric column -> (split, kind); accuracy grows with N (slope +4/d in the seed), loss falls
METRICS = {
    "train_loss": ("train", "loss"),
    "val_loss": ("validation", "loss"),
    "train_acc": ("train", "accuracy"),
    "val_acc": ("validation", "accuracy"),
}
EPOCH_RULES = ("all", "final")
RUN_COLS = ["dataset", "P", "width", "seed"]


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
    from scalinglab import datasets, images
    from scalinglab.engine import pick_device
    from scalinglab.gpu_slots import device_for_job
    from scalinglab.provenance import provenance

    if len(out_paths) != len(seeds):
        raise ValueError("one output path per seed")
    torch.set_num_threads(threads)
    data = datasets.read(data_path)
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


# ---------------------------------------------------------------- fit


def usable_rows(table: pd.DataFrame) -> tuple[pd.DataFrame, list[str]]:
    """The rows of runs that did not diverge, and a note on what was left out."""
    bad = table[table["status"] != "ok"][RUN_COLS].drop_duplicates()
    notes = []
    if len(bad):
        cells = ", ".join(f"{r.dataset} P={r.P} c={r.width} seed={r.seed}" for r in bad.itertuples())
        notes.append(f"excluded {len(bad)} diverged run(s): {cells}")
    return table[table["status"] == "ok"], notes


def fit_images(table: pd.DataFrame, *, quantiles, bootstrap: int, seed: int = 0) -> pd.DataFrame:
    """One quantile regression per (dataset, P, metric, epoch rule, quantile) of log(metric) on log(N).

    Columns: the group keys, split (train/validation), kind (loss/accuracy), then fits_to_frame's
    (slope, ci_lo/ci_hi, dim = 4/|slope| with dim_lo/dim_hi, n_points, diagnostics, ...).
    """
    from scalinglab.fits import DIAGNOSTICS_SEPARATOR, fit_groups, fits_to_frame, select_epochs

    ok, notes = usable_rows(table)
    if ok.empty:
        raise UserError("images: every run diverged; lower images.lr")
    frames = []
    for metric, (split, kind) in METRICS.items():
        for rule in EPOCH_RULES:
            rows = select_epochs(ok, metric, RUN_COLS, epoch="epoch", rule=rule)
            for q in quantiles:
                results = fit_groups(
                    rows,
                    "N",
                    metric,
                    group=["dataset", "P"],
                    quantile=float(q),
                    cluster="seed",
                    bootstrap=bootstrap,
                    seed=seed,
                    expect_sign=-1 if kind == "loss" else 1,
                )
                part = fits_to_frame(results)
                part.insert(2, "metric", metric)
                part.insert(3, "split", split)
                part.insert(4, "kind", kind)
                part.insert(5, "epoch_rule", rule)
                frames.append(part)
    fits = pd.concat(frames, ignore_index=True)
    epochs = ok.groupby(["dataset", "P"])["epoch"].max().rename("epochs").reset_index()
    seeds = ok.groupby(["dataset", "P"])["seed"].nunique().rename("n_seeds").reset_index()
    fits = fits.merge(epochs, on=["dataset", "P"]).merge(seeds, on=["dataset", "P"])
    if notes:
        fits["diagnostics"] = [DIAGNOSTICS_SEPARATOR.join(filter(None, [diag, *notes])) for diag in fits["diagnostics"]]
    return fits


def estimated_dims(dims: pd.DataFrame | None, k: int) -> pd.DataFrame:
    """Per image dataset: TwoNN and MLE(k) [CI] of its pixels, from the dimension table (empty if none)."""
    columns = ["dataset", "twonn", f"mle_k{k}", f"mle_k{k}_lo", f"mle_k{k}_hi"]
    if dims is None or dims.empty:
        return pd.DataFrame(columns=columns)
    return x_estimates(dims, k, "dataset")[columns]


def middle_quantile(quantiles) -> float:
    """The fitted quantile closest to the median (the headline one); 0.5 when there is none."""
    return min(quantiles, key=lambda q: abs(q - 0.5), default=0.5)


def headline(fits: pd.DataFrame) -> pd.DataFrame:
    """The median (or middle quantile) fits, one row per (dataset, P, metric, epoch rule)."""
    return fits[fits["quantile"] == middle_quantile(fits["quantile"].unique())]


def caption(fits: pd.DataFrame, dims: pd.DataFrame | None, k: int) -> str:
    """RST: 4/alpha per dataset, metric and epoch rule at every quantile, beside the estimated d."""
    from scalinglab.fits import DIAGNOSTICS_SEPARATOR

    qs = sorted(fits["quantile"].unique())
    middle = middle_quantile(qs)
    est = estimated_dims(dims, k).set_index("dataset")
    lines = [
        "The seed's ConvNet family (conv c, 2c, 2c; FC 64) on image data: slope of log(metric) against",
        "log N by quantile regression at q = " + ", ".join(f"{q:g}" for q in qs) + ", with epoch rule *all*",
        "(every epoch of every run, as the seed fitted) and *final* (each run's last epoch). 4/alpha =",
        "4/\\|slope\\|; brackets: 95% CI from a bootstrap over seeds. Sharma & Kaplan predict 4/alpha = d.",
        "",
    ]
    header = ["dataset", "P", "metric", "rule"] + [f"4/alpha q={q:g} [CI]" for q in qs] + ["slope (median q)"]
    rows = []
    for (dataset, P, metric, rule), group in fits.groupby(["dataset", "P", "metric", "epoch_rule"], sort=True):
        by_q = group.set_index("quantile")
        cells = [f"{by_q.loc[q, 'dim']:.1f} [{by_q.loc[q, 'dim_lo']:.1f}, {by_q.loc[q, 'dim_hi']:.1f}]" for q in qs]
        rows.append([dataset, str(int(P)), metric, rule, *cells, f"{by_q.loc[middle, 'slope']:+.4f}"])
    lines += simple_table(header, rows)
    if len(est):
        lines += [
            "",
            f"Estimated intrinsic dimension of each dataset's pixels (dimension stage; MLE with k = {k}; "
            "its CI is a point bootstrap, which runs narrow):",
            "",
        ]
        lines += simple_table(
            ["dataset", "TwoNN d-hat", f"MLE(k={k}) d-hat [CI]"],
            [
                [
                    name,
                    f"{row['twonn']:.2f}",
                    f"{row[f'mle_k{k}']:.2f} [{row[f'mle_k{k}_lo']:.2f}, {row[f'mle_k{k}_hi']:.2f}]",
                ]
                for name, row in est.iterrows()
            ],
        )
    where: dict[str, list[str]] = {}
    for row in fits.itertuples():
        for note in filter(None, str(row.diagnostics).split(DIAGNOSTICS_SEPARATOR)):
            where.setdefault(note, []).append(f"{row.dataset} {row.metric} {row.epoch_rule} q={row.quantile:g}")
    if where:
        lines += ["", "Diagnostics:", ""]
        for note, labels in where.items():
            scope = "every fit" if len(labels) == len(fits) else f"{len(labels)} fits, e.g. {labels[0]}"
            lines.append(f"- {note} ({scope})")
    return "\n".join(lines) + "\n"


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
    text = caption(fits, dims, reference_k)
    write_text(caption_out, text)
    print(text)
    return fits


def plot_scaling(table_path, fits_path, *, dataset: str, P, path) -> None:
    """The seed's 2x2 figure (train/validation x loss/accuracy) of one dataset and train size."""
    from scalinglab import images_plots

    table, _ = usable_rows(pd.read_parquet(table_path))
    rows = table[(table["dataset"] == dataset) & (table["train_size"] == str(P))]
    if rows.empty:
        raise UserError(f"images: no runs of {dataset} at P={P} in {table_path}")
    fits = pd.read_parquet(fits_path)
    count = int(rows["P"].iloc[0])
    sub = fits[(fits["dataset"] == dataset) & (fits["P"] == count)]
    seeds, epochs = rows["seed"].nunique(), int(rows["epoch"].max())
    images_plots.scaling_grid(rows, sub, path, title=f"{dataset}: P = {count:,} images, {seeds} seeds, {epochs} epochs")


def plot_dims(fits_path, *, path, dimension_path=None, reference_k: int = 20) -> None:
    """4/alpha of every dataset against its estimated intrinsic dimension."""
    from scalinglab import images_plots

    fits = pd.read_parquet(fits_path)
    dims = pd.read_parquet(dimension_path) if dimension_path else None
    images_plots.dim_vs_estimate(headline(fits), estimated_dims(dims, reference_k), reference_k, path)
