"""The teacher/student fits: alpha per (d, P) by least squares and median regression of final test
MSE on N, bootstrap CIs over seeds, 4/alpha beside the manifold dimension and its estimates d-hat."""

from __future__ import annotations

import math

import pandas as pd

from scalinglab.core.divergence import describe, mark_diverged
from scalinglab.core.errors import UserError
from scalinglab.core.rst import simple_table
from scalinglab.dimension.table import reference_estimates
from scalinglab.laws.power_law import DIAGNOSTICS_SEPARATOR, collapse_diagnostics, fit_groups, fits_to_frame

CELL = ["d", "P", "width", "seed"]


def final_rows(table: pd.DataFrame) -> tuple[pd.DataFrame, list[str]]:
    """Each cell's last logged step, without diverged cells; also notes on what was excluded.

    The divergence rule is applied again here, so a table written before it (every finite blow-up
    marked "ok") is read right too; a one-line UserError when every cell diverged."""
    notes = []
    table = mark_diverged(table, CELL, "step", "test_loss")
    diverged = table[table["status"] != "ok"][CELL].drop_duplicates()
    ok = table[table["status"] == "ok"]
    if len(diverged) and ok.empty:
        raise UserError(
            f"teacher_student: every cell diverged ({describe('test MSE')}); "
            "lower teacher_student.schedule.max_lr (or its phases' lr)"
        )
    if len(diverged):
        cells = ", ".join(f"d={r.d} P={r.P:g} n={r.width} seed={r.seed}" for r in diverged.itertuples())
        notes.append(f"excluded {len(diverged)} diverged cell(s) ({describe('test MSE')}): {cells}")
    last = ok.loc[ok.groupby(CELL)["step"].idxmax()]
    return last.reset_index(drop=True), notes


def convergence_notes(final: pd.DataFrame, tolerance: float) -> tuple[pd.Series, dict]:
    """Which final cells failed the convergence check (their test MSE still fell by more than
    `tolerance`, relatively, over the last 20% of training: the `late_change` column), and one note
    per (d, P) that has any. Tables from before the check (no such column) pass."""
    if "late_change" not in final:
        return pd.Series(False, index=final.index), {}
    failed = final["late_change"] > tolerance
    notes = {}
    for (d, P), rows in final[failed].groupby(["d", "P"]):
        widths = ", ".join(f"n={w} ({k})" for w, k in rows.groupby("width").size().items())
        total = int(((final["d"] == d) & (final["P"] == P)).sum())
        notes[d, P] = (
            f"{len(rows)} of {total} cells not converged: their test MSE still fell by more than "
            f"{tolerance:.0%} over the last 20% of training (largest {rows['late_change'].max():.0%}; {widths})"
        )
    return failed, notes


def fit_exponents(
    table: pd.DataFrame,
    bootstrap: int = 1000,
    quantile: float = 0.5,
    seed: int = 0,
    convergence_tolerance: float = 0.3,
    drop_unconverged: bool = False,
) -> pd.DataFrame:
    """Per (d, P): alpha from least squares and from quantile regression of final test MSE on N.

    CIs come from a bootstrap that resamples the cells of each width (its seeds, with replacement;
    with n seeds per width the resampled variance is (n-1)/n of the true one). Not whole seeds across
    widths: a student's init and batches derive from its width (stage.train_bundle), so seed s at two
    widths shares no randomness, and resampling "seed s at every width" would assume a correlation
    that is not there. `dim` is 4/alpha, to compare with `manifold_dim` = min(d, embedding width).
    Cells that fail the convergence check (convergence_notes) are named in each (d, P)'s diagnostics
    and, with `drop_unconverged`, left out of its fit (the theory holds for converged students only).
    """
    final, notes = final_rows(table)
    failed, unconverged = convergence_notes(final, convergence_tolerance)
    checked = final[["d", "P"]]
    if drop_unconverged:
        final = final[~failed]
        unconverged = {key: note + "; left out of the fit" for key, note in unconverged.items()}
    frames = []
    for method_quantile in (None, quantile):
        results = fit_groups(
            final,
            "N",
            "test_loss",
            group=["d", "P"],
            quantile=method_quantile,
            cluster="seed",
            strata="N",
            bootstrap=bootstrap,
            seed=seed,
            expect_sign=-1,
        )
        frames.append(fits_to_frame(results))
    fits = pd.concat(frames, ignore_index=True)
    meta = final.groupby(["d", "P"])[["manifold_dim", "embedding_width"]].first().reset_index()
    fits = fits.merge(meta, on=["d", "P"], how="left")
    fits["dim_rel_error"] = fits["dim"] / fits["manifold_dim"] - 1
    counts = failed.groupby([checked["d"], checked["P"]]).sum()
    fits["n_unconverged"] = [int(counts.get((r.d, r.P), 0)) for r in fits.itertuples()]
    fits["diagnostics"] = [
        DIAGNOSTICS_SEPARATOR.join(filter(None, [r.diagnostics, unconverged.get((r.d, r.P), ""), *notes]))
        for r in fits.itertuples()
    ]
    return fits.sort_values(["method", "P", "d"]).reset_index(drop=True)


def fits_caption(fits: pd.DataFrame) -> str:
    """RST for the report: 4/alpha against d with CIs, from the fits table."""
    lines = [
        "Sharma & Kaplan's prediction alpha = 4/d, tested per teacher dimension d: alpha is the slope of",
        "log final test MSE against log N, by least squares (OLS) and median regression, with 95% CIs",
        "from a bootstrap that resamples the seeds of each width. The manifold dimension is min(d, embedding width).",
        "",
        "=====  ========  ========  =====================  =====================  ========",
        "P      d         manifold  4/alpha OLS [95% CI]   4/alpha median [CI]    OLS err",
        "=====  ========  ========  =====================  =====================  ========",
    ]
    ols = fits[fits["method"] == "ols"].set_index(["P", "d"])
    qr = fits[fits["method"] == "quantile"].set_index(["P", "d"])
    for (P, d), row in ols.iterrows():
        q = qr.loc[(P, d)] if (P, d) in qr.index else None
        p_text = "inf" if math.isinf(P) else str(int(P))
        ols_text = f"{row['dim']:.2f} [{row['dim_lo']:.2f}, {row['dim_hi']:.2f}]"
        q_text = f"{q['dim']:.2f} [{q['dim_lo']:.2f}, {q['dim_hi']:.2f}]" if q is not None else "-"
        lines.append(
            f"{p_text:<5}  {d:<8}  {row['manifold_dim']:<8}  {ols_text:<21}  {q_text:<21}  {row['dim_rel_error']:+.0%}"
        )
    lines.append(lines[4])
    # each kind of diagnostic once, with how many fits it concerns
    labelled = [
        (f"d={r.d} {r.method}" + ("" if math.isinf(r.P) else f" P={int(r.P)}"), r.diagnostics)
        for r in fits.itertuples()
    ]
    notes = collapse_diagnostics(labelled, len(fits))
    if notes:
        lines += ["", "Diagnostics:", ""] + [f"- {note}" for note in notes]
    return "\n".join(lines) + "\n"


def comparison_table(fits: pd.DataFrame, dims: pd.DataFrame | None, k: int) -> pd.DataFrame:
    """d, manifold dimension, d-hat (TwoNN, MLE(k)) and 4/alpha (OLS, median) side by side."""
    ols = fits[fits["method"] == "ols"][["d", "P", "manifold_dim", "dim", "dim_lo", "dim_hi"]]
    ols = ols.rename(columns={"dim": "4/alpha", "dim_lo": "4/alpha lo", "dim_hi": "4/alpha hi"})
    med = fits[fits["method"] == "quantile"][["d", "P", "dim"]].rename(columns={"dim": "4/alpha median"})
    table = ols.merge(med, on=["d", "P"], how="left")
    if dims is not None and len(dims):
        table = table.merge(reference_estimates(dims, k), on="d", how="left")
    return table.sort_values(["P", "d"]).reset_index(drop=True)


def comparison_rst(table: pd.DataFrame, k: int) -> str:
    """The comparison table as RST for the report caption."""
    cols = ["P", "d", "manifold", "TwoNN d-hat", f"MLE(k={k}) d-hat", "4/alpha OLS [95% CI]", "4/alpha median"]
    rows = []
    for i in range(len(table)):
        row = table.iloc[i]
        rows.append(
            [
                "inf" if math.isinf(row["P"]) else str(int(row["P"])),
                str(int(row["d"])),
                str(int(row["manifold_dim"])),
                f"{row['twonn']:.2f}" if "twonn" in table and pd.notna(row["twonn"]) else "-",
                f"{row[f'mle_k{k}']:.2f}" if f"mle_k{k}" in table and pd.notna(row[f"mle_k{k}"]) else "-",
                f"{row['4/alpha']:.2f} [{row['4/alpha lo']:.2f}, {row['4/alpha hi']:.2f}]",
                f"{row['4/alpha median']:.2f}" if pd.notna(row["4/alpha median"]) else "-",
            ]
        )
    return "\n".join(simple_table(cols, rows)) + "\n"
