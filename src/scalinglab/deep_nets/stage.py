"""The deep-nets stage of the workflow (D'Amico, Bocchi & Negri, arXiv:2505.13230): train CNN/ResNet/ViT over a
P sweep with the spectral complexity logged, measure gamma1, gamma2, gamma_pred vs gamma_meas per
(model, dataset), and tabulate them beside the talk's numbers and the perceptron's."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import pandas as pd
import torch

from scalinglab.core.checkpoint import discard
from scalinglab.core.divergence import describe, mark_diverged
from scalinglab.core.errors import UserError
from scalinglab.core.io import read_concat, write_parquet, write_text
from scalinglab.core.rst import simple_table
from scalinglab.deep_nets.figures import gamma_figure, message_figure, raw_curves

# The gamma table of D'Amico, Bocchi & Negri's talk (paper: arXiv:2505.13230):
# (model, dataset) -> (gamma_pred, gamma_meas)
TALK = {
    ("cnn", "mnist"): (0.60, 0.55),
    ("cnn", "cifar10"): (0.28, 0.25),
    ("cnn", "cifar100"): (0.16, 0.16),
    ("resnet", "mnist"): (0.57, 0.69),
    ("resnet", "cifar10"): (0.54, 0.56),
    ("resnet", "cifar100"): (0.31, 0.37),
    ("vit", "mnist"): (0.47, 0.54),
    ("vit", "cifar10"): (0.23, 0.21),
    ("vit", "cifar100"): (0.14, 0.12),
}
# the CLI line that gives analyse_pair's numbers from the stage's own run files (tests check it, exactly)
DEEP_NETS_CLI = (
    "scalinglab implicit-bias results/runs/deep_nets/model~{model}/dataset~{dataset}/P~*/seed~*.parquet "
    "--norm log_norm --norm-is-log --error {error} --filter status=ok --json"
)
GAMMA_KEYS = (
    "gamma1",
    "gamma1_se",
    "gamma2",
    "gamma2_se",
    "gamma_pred",
    "gamma_pred_se",
    "gamma_meas",
    "gamma_meas_se",
)


def train_cell(
    *,
    data,
    cells: list,
    model: str,
    dataset: str,
    P: int,
    seeds: list,
    epochs: int,
    batch: int,
    n_logs: int,
    test_size: int | None,
    lr: float,
    width: int,
    depth: int | None,
    device: str,
    threads: int,
    checkpoint=None,
    checkpoint_every_s: float = 300.0,
) -> pd.DataFrame:
    """Train every seed of one (model, dataset, P) (one job) on the prepared file `data`; one Parquet
    per seed, `cells` (in the order of `seeds`). width and depth: the family's size knobs (depth None:
    the family has none).
    checkpoint: a file for the state after an epoch (every checkpoint_every_s seconds); a rerun resumes it."""
    from scalinglab.core.devices import device_for_job, pick_device
    from scalinglab.datasets.image_data import read
    from scalinglab.deep_nets.training import train_runs

    if len(cells) != len(seeds):
        raise ValueError("one output path per seed")
    torch.set_num_threads(threads)
    images = read(data)
    settings = dict(epochs=epochs, batch=batch, n_logs=n_logs, test_size=test_size, lr=lr, width=width, depth=depth)
    with device_for_job(pick_device(device)) as dev:
        frame = train_runs(
            images,
            model=model,
            P=P,
            seeds=seeds,
            epochs=epochs,
            batch=batch,
            lr=lr,
            width=width,
            depth=depth,
            n_logs=n_logs,
            test_size=test_size,
            device=dev,
            label=f"{model} on {dataset}, P = {P}",
            checkpoint=checkpoint,
            checkpoint_every_s=checkpoint_every_s,
        )
        device_name = str(dev)
    # finite blow-ups too (training stops only at NaN/inf); the train loss, which training lowers
    # (the test loss of a healthy run may rise), against its value at step 0, the first log
    frame = mark_diverged(frame, ["seed"], "step", "train_loss")
    for seed, path in zip(seeds, cells):
        part = frame[frame["seed"] == int(seed)].reset_index(drop=True)
        if (part["status"] != "ok").any():
            print(f"warning: {model} on {dataset}, P = {P}, seed {seed} diverged", file=sys.stderr)
        write_parquet(
            part,
            path,
            {
                "model": model,
                "dataset": dataset,
                "P": int(P),
                "seed": int(seed),
                "settings": settings,
                "device": device_name,
                "torch": torch.__version__,
            },
        )
    discard(checkpoint)  # every cell is written: the run is complete
    return frame


def analyse_pair(
    *,
    runs: list,
    fits_json,
    curves,
    collapse,
    learning,
    model: str,
    dataset: str,
    window,
    upper_fraction: float,
    error: str,
) -> dict:
    """gamma1, gamma2, gamma_pred vs gamma_meas for one (model, dataset) by the default (robust)
    method, the authors' procedure with `window` and `upper_fraction` beside it (under `authors`);
    its three figures.

    When the laws cannot be measured (e.g. too few P with the error minimum inside the norm range
    reached by training), the JSON says why (`status`, `message`) instead of failing the workflow,
    and the figures show the raw curves or the reason.
    """
    from scalinglab.core.plotting import model_label
    from scalinglab.laws.implicit_bias import figures as implicit_bias_figures
    from scalinglab.laws.implicit_bias.analysis import analyse, authors_cross_check

    frame = mark_diverged(read_concat(runs), ["P", "seed"], "step", "train_loss")  # runs written before the rule too
    bad = frame[frame["status"] != "ok"][["P", "seed"]].drop_duplicates()
    if len(bad):
        print(
            f"warning: leaving out {len(bad)} diverged runs ({describe('train loss')}): {bad.to_dict('records')}",
            file=sys.stderr,
        )
    ok = frame[frame["status"] == "ok"]
    columns = dict(p="P", seed="seed", norm="log_norm", error=error, norm_is_log=True)
    summary = {
        "model": model,
        "dataset": dataset,
        "error": error,
        "train_sizes": sorted(int(p) for p in frame["P"].unique()),
        "seeds": sorted(int(s) for s in frame["seed"].unique()),
        "N": int(frame["N"].iloc[0]),
        "epochs": float(frame["epoch"].max()),
        "diverged_runs": len(bad),
        "reproduce": DEEP_NETS_CLI.format(model=model, dataset=dataset, error=error),
    }
    subject = f"{model_label(model)} on {dataset}"
    try:
        if ok.empty:
            raise UserError(
                f"deep_nets: every run of {model} on {dataset} diverged ({describe('train loss')}); "
                f"lower deep_nets.lr.{model}"
            )
        result = analyse(ok, **columns)
    except UserError as exc:
        summary.update({k: math.nan for k in GAMMA_KEYS}, status="unresolved", message=str(exc))
        print(f"note: {model} on {dataset}: the laws could not be measured: {exc}", file=sys.stderr)
        raw_curves(ok if not ok.empty else frame, error, curves, subject=subject)
        for path in (collapse, learning):
            message_figure(f"{model} on {dataset}: not measured\n{exc}", path)
    else:
        summary.update(result.to_dict(), status="ok", message="")
        implicit_bias_figures.error_vs_norm(
            result.curves, curves, xlabel="spectral complexity R", ylabel=error.replace("_", " "), subject=subject
        )
        band = result.details.get("gamma1_band")
        implicit_bias_figures.collapse(result.collapse, result.window, collapse, band=band, subject=subject)
        implicit_bias_figures.learning_curve(result, learning, subject=subject)
        print(result.summary())
    if not ok.empty:
        summary["authors"] = authors_cross_check(ok, window=window, upper_fraction=upper_fraction, **columns)
    write_text(fits_json, json.dumps(summary, indent=1, default=float))
    return summary


def gamma_table(*, fits: list, perceptron, fits_table, fits_json, caption, figure) -> pd.DataFrame:
    """All (model, dataset) results, the JSON files `fits` (and the perceptron's, if given), as one
    table laid out like the talk's, each column one quantity:
    - `error`: the error eps that gamma1, gamma2 and gamma_pred = gamma1 gamma2 are measured on
      (deep nets: the test error of the config; the perceptron: rel_error = eps/eps_Hebb);
    - `gamma_meas`: the exponent of the absolute learning curve eps_opt(P) (deep nets: of `error`;
      the perceptron: of its generalisation error eps, gamma_meas_abs of its JSON);
    - `gamma_meas_rel`: the exponent of (eps/eps_Hebb)_opt(P), the perceptron's only (NaN for deep nets);
    - `compare_with`: the column gamma_pred predicts (gamma_meas for deep nets, gamma_meas_rel for
      the perceptron), and the talk's values beside them."""
    rows = []
    for path in fits:
        s = json.loads(Path(path).read_text())
        rows.append(
            {
                "model": s["model"],
                "dataset": s["dataset"],
                "error": s.get("error", "test_error"),
                **{k: s[k] for k in GAMMA_KEYS},
                **_ci_columns(s, "gamma1"),
                **_ci_columns(s, "gamma2"),
                **_ci_columns(s, "gamma_pred"),
                **_ci_columns(s, "gamma_meas"),
                "gamma_meas_rel": math.nan,
                "gamma_meas_rel_se": math.nan,
                "compare_with": "gamma_meas",
                "status": s["status"],
                "message": s["message"],
            }
        )
    if perceptron is not None:
        s = json.loads(Path(perceptron).read_text())
        rows.append(
            {
                "model": "perceptron",
                "dataset": f"teacher N={s.get('N')}",
                "error": s.get("error", "rel_error"),
                **{k: s[k] for k in GAMMA_KEYS},
                **_ci_columns(s, "gamma1"),
                **_ci_columns(s, "gamma2"),
                **_ci_columns(s, "gamma_pred"),
                # the perceptron's gamma_meas is that of eps/eps_Hebb: it goes to its own column
                "gamma_meas": s.get("gamma_meas_abs", math.nan),
                "gamma_meas_se": s.get("gamma_meas_abs_se", math.nan),
                **_ci_columns(s, "gamma_meas_abs", "gamma_meas"),
                "gamma_meas_rel": s["gamma_meas"],
                "gamma_meas_rel_se": s["gamma_meas_se"],
                "compare_with": "gamma_meas_rel",
                "status": "ok",
                "message": "",
            }
        )
    table = pd.DataFrame(rows)
    table["talk_gamma_pred"] = [TALK.get((m, d), (math.nan, math.nan))[0] for m, d in zip(table.model, table.dataset)]
    table["talk_gamma_meas"] = [TALK.get((m, d), (math.nan, math.nan))[1] for m, d in zip(table.model, table.dataset)]
    write_parquet(table, fits_table, {"files": [str(p) for p in fits]})
    write_text(fits_json, json.dumps(table.to_dict("records"), indent=1, default=float))
    text = _caption(table)
    write_text(caption, text)
    gamma_figure(table, figure)
    print(text)
    return table


def _ci_columns(s: dict, name: str, as_name: str | None = None) -> dict:
    """`name`_ci of a fit JSON as two columns `as_name`_lo, `as_name`_hi (NaN where absent)."""
    lo, hi = s.get(f"{name}_ci") or (None, None)
    as_name = as_name or name
    return {f"{as_name}_lo": math.nan if lo is None else lo, f"{as_name}_hi": math.nan if hi is None else hi}


# ---------------------------------------------------------------- report pieces


def _num(value: float, se: float) -> str:
    if not math.isfinite(value):
        return "–"
    return f"{value:.3f} ± {se:.3f}" if math.isfinite(se) else f"{value:.3f}"


def _caption(table: pd.DataFrame) -> str:
    """An RST table of the gammas, then one line per unresolved pair."""
    header = [
        "model",
        "dataset",
        "ε",
        "γ1",
        "γ2",
        "γ_pred = γ1·γ2",
        "γ_meas (absolute ε)",
        "γ_meas (ε/ε_Hebb)",
        "talk γ_pred / γ_meas",
    ]
    body = []
    for r in table.itertuples():
        talk = f"{r.talk_gamma_pred:.2f} / {r.talk_gamma_meas:.2f}" if math.isfinite(r.talk_gamma_pred) else "–"
        body.append(
            [
                r.model,
                r.dataset,
                r.error,
                _num(r.gamma1, r.gamma1_se),
                _num(r.gamma2, r.gamma2_se),
                _num(r.gamma_pred, r.gamma_pred_se),
                _num(r.gamma_meas, r.gamma_meas_se),
                _num(r.gamma_meas_rel, r.gamma_meas_rel_se),
                talk,
            ]
        )
    out = [
        "Implicit-bias scaling laws (D'Amico, Bocchi & Negri): early-training ε ≈ k1 λ^-γ1, optimal "
        "norm λ_opt ≈ k2 P^γ2, so ε_opt ~ P^-γ with γ_pred = γ1·γ2, measured on the error ε of each row. "
        "γ_pred predicts γ_meas of that ε: for deep nets ε is their test error (absolute); for the perceptron "
        "it is ε/ε_Hebb, whose exponent has its own column, beside that of its absolute error. "
        "Deep nets: λ = Bartlett's spectral complexity, ε along training. Default (robust) method; "
        "± = bootstrap standard errors over seeds.",
        "",
        *simple_table(header, body),
        "",
    ]
    for r in table.itertuples():
        if r.status != "ok":
            out.append(f"- {r.model} on {r.dataset}: not measured ({r.message})")
    return "\n".join(out) + "\n"
