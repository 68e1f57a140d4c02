"""The headline numbers of a run, one row each, read from the experiments' fit files: what was
measured, its 95% CI (or why there is none), what theory predicts, and the distance between them.
`results/summary.tsv` is the report's first category and the centre of its landing page.

Distances: for an exponent against a predicted number, (value - theory) / theory; for
gamma_pred = gamma1 gamma2 against the measured gamma, (gamma_pred - gamma_meas) in units of their
combined standard error. Each experiment's rows come from the files its fit rule writes (their
columns are that experiment's public output), so this module reads files and imports no experiment.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import pandas as pd

from scalinglab.core.io import write_text
from scalinglab.core.rst import simple_table

COLUMNS = [
    "experiment",
    "setting",
    "quantity",
    "value",
    "ci_lo",
    "ci_hi",
    "ci_note",
    "theory",
    "theory_source",
    "difference",
    "relative_difference",
    "sigma_distance",
]


def _row(experiment, setting, quantity, value, ci=(math.nan, math.nan), ci_note="", theory=math.nan, source=""):
    value, theory = float(value), float(theory)
    lo, hi = (math.nan, math.nan) if ci is None else (float(ci[0]), float(ci[1]))
    if not ci_note and not (math.isfinite(lo) and math.isfinite(hi)):
        ci_note = "no CI"
    diff = value - theory if math.isfinite(theory) else math.nan
    return {
        "experiment": experiment,
        "setting": setting,
        "quantity": quantity,
        "value": value,
        "ci_lo": lo,
        "ci_hi": hi,
        "ci_note": ci_note,
        "theory": theory,
        "theory_source": source,
        "difference": diff,
        "relative_difference": diff / theory if math.isfinite(theory) and theory != 0 else math.nan,
        "sigma_distance": math.nan,
    }


def _ci_note(diagnostics) -> str:
    """'CI n/a: k distinct resamples' when a fit's diagnostics say so."""
    found = re.search(r"CI n/a: \d+ distinct resamples", str(diagnostics or ""))
    return found.group(0) if found else ""


def teacher_student(path) -> list[dict]:
    fits = pd.read_parquet(path)
    rows = []
    for r in fits.sort_values(["P", "d", "method"]).itertuples():
        P = "inf" if math.isinf(r.P) else f"{r.P:g}"
        how = "least squares" if r.method == "ols" else f"quantile regression, q = {getattr(r, 'quantile', 0.5):g}"
        rows.append(
            _row(
                "teacher/student",
                f"d = {r.d}, P = {P}",
                f"4/alpha ({how})",
                r.dim,
                (r.dim_lo, r.dim_hi),
                _ci_note(r.diagnostics),
                r.manifold_dim,
                "manifold dimension d (Sharma & Kaplan: alpha = 4/d)",
            )
        )
    return rows


def dimension(path, reference_k: int) -> list[dict]:
    table = pd.read_parquet(path)
    table = table[(table["target"] == "x") | table["target"].isna()] if "target" in table else table
    rows = []
    for r in table.itertuples():
        k = getattr(r, "k", None)
        if r.estimator == "mle" and (k is None or pd.isna(k) or int(k) != reference_k):
            continue
        name = "TwoNN" if r.estimator == "twonn" else f"MLE (k = {int(k)})"
        truth = getattr(r, "manifold_dim", math.nan)
        rows.append(
            _row(
                "intrinsic dimension",
                str(r.dataset),
                f"d-hat, {name}",
                r.dimension,
                (r.ci_lo, r.ci_hi),
                "point bootstrap (runs narrow)" if math.isfinite(r.ci_lo) else "",
                truth if truth is not None and not pd.isna(truth) else math.nan,
                "the teacher's d" if truth is not None and not pd.isna(truth) else "",
            )
        )
    return rows


def images(path, dims_path=None, reference_k: int = 20) -> list[dict]:
    fits = pd.read_parquet(path)
    rows = []
    keep = (fits["metric"] == "val_loss") & (fits["epoch_rule"] == "final")
    quantiles = sorted(fits.loc[keep, "quantile"].unique(), key=lambda q: abs(q - 0.5))
    estimates = {}
    if dims_path is not None and Path(dims_path).exists():
        dims = pd.read_parquet(dims_path)
        mle = dims[(dims["estimator"] == "mle") & (dims["k"] == reference_k)]
        estimates = dict(zip(mle["dataset"], mle["dimension"]))
    for r in fits[keep & (fits["quantile"] == quantiles[0])].itertuples():
        rows.append(
            _row(
                "images",
                f"{r.dataset}, P = {r.P}",
                f"4/alpha of the validation loss (final epoch, q = {r.quantile:g})",
                r.dim,
                (r.dim_lo, r.dim_hi),
                _ci_note(r.diagnostics),
                estimates.get(r.dataset, math.nan),
                f"MLE (k = {reference_k}) d-hat of the images" if r.dataset in estimates else "",
            )
        )
    return rows


def _gamma_rows(experiment, setting, pred, pred_se, meas, meas_se, ci, measured_name) -> dict:
    row = _row(
        experiment,
        setting,
        "gamma_pred = gamma1 gamma2",
        pred,
        ci,
        "",
        meas,
        f"measured {measured_name} (D'Amico, Bocchi & Negri: gamma = gamma1 gamma2)",
    )
    spread = math.hypot(pred_se, meas_se)
    row["sigma_distance"] = (pred - meas) / spread if spread > 0 and math.isfinite(spread) else math.nan
    return row


def _law_rows(experiment, setting, fit: dict) -> list[dict]:
    """gamma1, gamma2 and gamma_meas of an implicit-bias fit, each with its CI (no prediction)."""
    rows = []
    for name, what in (
        ("gamma1", "early law eps ~ lambda^-gamma1"),
        ("gamma2", "lambda_opt ~ P^gamma2"),
        ("gamma_meas", "eps_opt ~ P^-gamma_meas"),
    ):
        ci = fit.get(f"{name}_ci") or (fit.get(f"{name}_lo", math.nan), fit.get(f"{name}_hi", math.nan))
        value = fit.get(name)
        if value is None:
            continue
        rows.append(_row(experiment, setting, f"{name} ({what})", value, [math.nan if v is None else v for v in ci]))
    return rows


def perceptron(path) -> list[dict]:
    s = json.loads(Path(path).read_text())
    ci = s.get("gamma_pred_ci") or (math.nan, math.nan)
    return _law_rows("implicit bias", f"perceptron, N = {s.get('N')}", s) + [
        _gamma_rows(
            "implicit bias",
            f"perceptron, N = {s.get('N')}",
            s["gamma_pred"],
            s["gamma_pred_se"],
            s["gamma_meas"],
            s["gamma_meas_se"],
            [math.nan if v is None else v for v in ci],
            "gamma of eps/eps_Hebb",
        )
    ]


def deep_nets(path) -> list[dict]:
    rows = []
    for r in json.loads(Path(path).read_text()):
        if r["model"] == "perceptron" or r.get("status") != "ok":
            continue
        rows += _law_rows("implicit bias", f"{r['model']} on {r['dataset']} ({r['error']})", r)
        rows.append(
            _gamma_rows(
                "implicit bias",
                f"{r['model']} on {r['dataset']} ({r['error']})",
                r["gamma_pred"],
                r["gamma_pred_se"],
                r["gamma_meas"],
                r["gamma_meas_se"],
                (r.get("gamma_pred_lo", math.nan), r.get("gamma_pred_hi", math.nan)),
                "gamma",
            )
        )
    return rows


def joint(path, d=None) -> list[dict]:
    s = json.loads(Path(path).read_text())
    rows = []
    for method, fit in s["fits"].items():
        note = "CI n/a: {} distinct resamples".format(fit.get("distinct_resamples")) if _few(fit) else ""
        for name, axis in (("alpha", "N"), ("beta", "P")):
            lo, hi = (math.nan if v is None else v for v in fit[name]["ci"])
            rows.append(
                _row(
                    "joint law",
                    f"{method}, d = {d}" if d is not None else method,
                    f"{name} (L ~ {axis}^-{name})",
                    fit[name]["value"] if fit[name]["value"] is not None else math.nan,
                    (lo, hi),
                    note,
                    4.0 / d if d else math.nan,
                    "4/d, resolution-limited scaling (Bahri et al.)" if d else "",
                )
            )
        a = (fit.get("allocation") or {}).get("a")
        if a is not None:
            lo, hi = (math.nan if v is None else v for v in a["ci"])
            rows.append(
                _row(
                    "joint law",
                    f"{method}, d = {d}" if d is not None else method,
                    "a (compute-optimal N* ~ C^a)",
                    a["value"],
                    (lo, hi),
                    note,
                    0.5,
                    "1/2: alpha = beta (both 4/d, Bahri et al.) makes a = beta / (alpha + beta) = 1/2",
                )
            )
    return rows


def _few(fit: dict) -> bool:
    distinct = fit.get("distinct_resamples")
    return distinct is not None and distinct < 20


def random_features(path) -> list[dict]:
    fits = pd.read_parquet(path)
    return [
        _row(
            "random features",
            f"(a, b) = ({r.a:g}, {r.b:g})",
            f"{r.sweep} exponent (L ~ {r.axis}^-exponent)",
            r.exponent,
            (r.exponent_lo, r.exponent_hi),
            "",
            r.theory,
            "deterministic equivalent of the model (Bahri et al.; Bordelon et al.)",
        )
        for r in fits.itertuples()
    ]


def summarize(
    *,
    teacher_student_fits=None,
    dimension_table=None,
    images_fits=None,
    perceptron_fits=None,
    deep_nets_fits=None,
    joint_fits=None,
    joint_d=None,
    random_features_fits=None,
    reference_k: int = 20,
) -> pd.DataFrame:
    """Every headline row of the fit files given (None: that experiment is off)."""
    rows = []
    if teacher_student_fits:
        rows += teacher_student(teacher_student_fits)
    if dimension_table:
        rows += dimension(dimension_table, reference_k)
    if images_fits:
        rows += images(images_fits, dimension_table, reference_k)
    if joint_fits:
        rows += joint(joint_fits, joint_d)
    if random_features_fits:
        rows += random_features(random_features_fits)
    if perceptron_fits:
        rows += perceptron(perceptron_fits)
    if deep_nets_fits:
        rows += deep_nets(deep_nets_fits)
    return pd.DataFrame(rows, columns=COLUMNS)


def _number(value, digits=3) -> str:
    return f"{value:.{digits}g}" if isinstance(value, float) and math.isfinite(value) else "–"


def _distance(r) -> str:
    if math.isfinite(r.sigma_distance):
        return f"{r.sigma_distance:+.1f} σ"
    if math.isfinite(r.relative_difference):
        return f"{100 * r.relative_difference:+.0f}%"
    return "–"


def _landing_rows(summary: pd.DataFrame) -> list[list[str]]:
    """The landing table's rows: each test of a prediction (least squares for 4/alpha; the dimension
    checks of the teachers, the quantile fits and the unpredicted exponents left to the full table),
    the random-feature pairs one line each (their largest distance)."""
    rows = []
    for r in summary.itertuples():
        if r.experiment in ("intrinsic dimension", "random features") or not math.isfinite(r.theory):
            continue  # the landing shows the tests of a prediction; the full table has the rest
        if "quantile regression" in r.quantity:
            continue
        ci = (
            f"[{_number(r.ci_lo)}, {_number(r.ci_hi)}]"
            if math.isfinite(r.ci_lo) and math.isfinite(r.ci_hi)
            else f"({r.ci_note or 'no CI'})"
        )
        what = f"{r.experiment}, {r.setting}: {r.quantity.split(' (')[0]}"
        rows.append([what, f"{_number(r.value)} {ci}", _number(r.theory), _distance(r)])
    features = summary[summary["experiment"] == "random features"]
    for setting, part in features.groupby("setting", sort=False):
        worst = part.loc[part["relative_difference"].abs().idxmax()]
        rows.append(
            [
                f"random features, {setting}: {len(part)} exponents against theory",
                f"largest distance in {worst['quantity'].split(' (')[0]}",
                _number(worst["theory"]),
                f"{100 * worst['relative_difference']:+.0f}%",
            ]
        )
    return rows


def landing_rst(summary: pd.DataFrame) -> str:
    """The report's landing text: what the run measured against what theory predicts, as a table."""
    lines = [
        "**The answers of this run.** Each row: a measured number with its 95% CI (or why there is none),",
        "what theory predicts, and the distance (relative for exponents; in standard errors for γ_pred",
        "against γ_meas). Every headline number, the dimension estimates included, is in the first",
        "category (1. Summary, results/summary.tsv); each figure's caption has the details. How to read",
        "each experiment: docs/reproduction.md in the repository.",
        "",
    ]
    if summary.empty:
        return "\n".join(lines + ["No experiment has finished yet.", ""])
    header = ["measured", "value [95% CI]", "theory", "distance"]
    body = [[str(cell) for cell in row] for row in _landing_rows(summary)]
    return "\n".join(lines + simple_table(header, body) + [""])


def fit_table(path) -> pd.DataFrame:
    """An experiment's fit file as one table: Parquet as it is; the perceptron's JSON as one row of
    its scalar entries; the joint JSON's fits by method."""
    path = Path(path)
    if path.suffix == ".parquet":
        return pd.read_parquet(path)
    data = json.loads(path.read_text())
    if isinstance(data, list):
        return pd.DataFrame(data)
    if "fits" in data:  # joint: one row per method, each parameter's value and CI
        rows = []
        for method, fit in data["fits"].items():
            row = {"method": method}
            for name in ("E", "A", "B", "alpha", "beta"):
                row[name] = fit[name]["value"]
                row[f"{name}_lo"], row[f"{name}_hi"] = fit[name]["ci"]
            row["diagnostics"] = " | ".join(fit.get("diagnostics", []))
            rows.append(row)
        return pd.DataFrame(rows)
    return pd.DataFrame([{k: v for k, v in data.items() if isinstance(v, (int, float, str)) or v is None}])


def write_summary(*, table, landing, fit_tables=(), joint_d=None, reference_k: int = 20, **fits) -> pd.DataFrame:
    """The rule's function: results/summary.tsv, the report's landing text, and each fit file as a
    TSV (`fit_tables`, named after the experiment whose input they render)."""
    fits = {k: v for k, v in fits.items() if v not in (None, [], "")}
    summary = summarize(**fits, joint_d=joint_d, reference_k=reference_k)
    write_text(table, summary.to_csv(sep="\t", index=False, float_format="%.6g", na_rep=""))
    write_text(landing, landing_rst(summary))
    for out in [fit_tables] if isinstance(fit_tables, str) else fit_tables:
        source = next(v for k, v in fits.items() if k.rsplit("_", 1)[0] == Path(out).stem)
        write_text(out, fit_table(source).to_csv(sep="\t", index=False, float_format="%.6g", na_rep=""))
    print(landing_rst(summary))
    return summary
