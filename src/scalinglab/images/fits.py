"""The image fits: log(loss) and log(accuracy) against log N by quantile regression, both epoch
rules side by side, and the report caption.

Epoch rules:
  - "all":   every epoch of every run is a point, as Liu fitted the TensorBoard logs. Early
             epochs of large models sit among late epochs of small ones, so this measures a mix of
             size and training time; the quantiles pick the envelope.
  - "final": one point per run, its last epoch: the loss of the trained model, which is what the
             theory's L(N) means.
CIs come from a bootstrap that resamples seeds, all widths (and epochs) of a drawn seed together,
because the runs of one seed share their training subset and batch order.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from scalinglab.core.divergence import describe, mark_diverged
from scalinglab.core.errors import UserError
from scalinglab.core.rst import simple_table
from scalinglab.dimension.table import x_estimates

# metric column -> (split, kind); accuracy grows with N (slope +4/d in Liu's replication), loss falls
METRICS = {
    "train_loss": ("train", "loss"),
    "val_loss": ("validation", "loss"),
    "train_acc": ("train", "accuracy"),
    "val_acc": ("validation", "accuracy"),
}
EPOCH_RULES = ("all", "final")
RUN_COLS = ["dataset", "P", "width", "seed"]


def usable_rows(table: pd.DataFrame) -> tuple[pd.DataFrame, list[str]]:
    """The rows of runs that did not diverge, and a note on what was left out.

    The divergence rule is applied again on the train loss (what training lowers; the validation loss of
    a healthy run may rise), from each run's first epoch, so a table written before the rule is read right."""
    table = mark_diverged(table, RUN_COLS, "epoch", "train_loss")
    bad = table[table["status"] != "ok"][RUN_COLS].drop_duplicates()
    notes = []
    if len(bad):
        cells = ", ".join(f"{r.dataset} P={r.P} c={r.width} seed={r.seed}" for r in bad.itertuples())
        notes.append(f"excluded {len(bad)} diverged run(s) ({describe('train loss')}): {cells}")
    return table[table["status"] == "ok"], notes


def fit_images(table: pd.DataFrame, *, quantiles, bootstrap: int, seed: int = 0) -> pd.DataFrame:
    """One quantile regression per (dataset, P, metric, epoch rule, quantile) of log(metric) on log(N).

    Columns: the group keys, split (train/validation), kind (loss/accuracy), then fits_to_frame's
    (slope, ci_lo/ci_hi, dim = 4/|slope| with dim_lo/dim_hi, n_points, diagnostics, ...).
    """
    from scalinglab.laws.inputs import select_epochs
    from scalinglab.laws.power_law import DIAGNOSTICS_SEPARATOR, fit_groups, fits_to_frame

    ok, notes = usable_rows(table)
    if ok.empty:
        raise UserError(f"images: every run diverged ({describe('train loss')}); lower images.lr")
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
                    # each width's seeds resampled: a seed shares its batch order across widths, a
                    # common shift that leaves the slope alone, so resampling within widths errs wide
                    cluster="seed",
                    strata="N",
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


def _cell(fit: pd.Series, accuracy: bool) -> str:
    """4/alpha of a loss (slope of an accuracy) with its CI, or the reason there is none."""
    names = ("slope", "ci_lo", "ci_hi") if accuracy else ("dim", "dim_lo", "dim_hi")
    value, lo, hi = (fit[name] for name in names)
    text = f"{value:+.3f}" if accuracy else f"{value:.1f}"
    if np.isfinite(lo) and np.isfinite(hi):
        return f"{text} [{lo:.3g}, {hi:.3g}]"
    return f"{text} (CI n/a)"  # the diagnostics below say why


def caption(fits: pd.DataFrame, dims: pd.DataFrame | None, k: int) -> str:
    """RST: 4/alpha per dataset, metric and epoch rule at every quantile, beside the estimated d."""
    from scalinglab.laws.power_law import collapse_diagnostics

    qs = sorted(fits["quantile"].unique())
    est = estimated_dims(dims, k).set_index("dataset")
    lines = [
        "Liu's ConvNet family (conv c, 2c, 2c; FC 64) on image data: slope of log(metric) against",
        "log N by quantile regression at q = " + ", ".join(f"{q:g}" for q in qs) + ", with epoch rule *all*",
        "(every epoch of every run, as Liu fitted) and *final* (each run's last epoch). For the losses",
        "4/alpha = 4/\\|slope\\|, which Sharma & Kaplan predict to be d; the accuracies give their slope",
        "only (their 4/alpha means nothing near 100%). Brackets: 95% CI from a bootstrap over each width's seeds.",
        "",
    ]
    header = ["dataset", "P", "metric", "rule"] + [f"q={q:g}: 4/alpha or slope [CI]" for q in qs]
    rows = []
    for (dataset, P, metric, rule), group in fits.groupby(["dataset", "P", "metric", "epoch_rule"], sort=True):
        by_q = group.set_index("quantile")
        cells = [_cell(by_q.loc[q], "acc" in metric) for q in qs]
        rows.append([dataset, str(int(P)), metric, rule, *cells])
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
    labelled = [(f"{r.dataset} {r.metric} {r.epoch_rule} q={r.quantile:g}", r.diagnostics) for r in fits.itertuples()]
    notes = collapse_diagnostics(labelled, len(fits))
    if notes:
        lines += ["", "Diagnostics:", ""] + [f"- {note}" for note in notes]
    return "\n".join(lines) + "\n"
