"""The joint-law stage: teacher/student cells on a widths x P grid -> L(N, P) = E + A N^-alpha + B P^-beta,
the compute-optimal frontier and an isoFLOP view.

Every cell trains for the same number of passes over its P points (steps = epochs x P / batch), so the
samples it sees are D = samples ~ epochs x P and its compute is C = 6 N D: the data axis costs compute,
as in Hoffmann et al., and the law in P is the law in D with B rescaled (beta unchanged). The frontier
is reported in D and in P = D / passes.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd

from scalinglab.core.divergence import describe, mark_diverged
from scalinglab.core.errors import UserError
from scalinglab.core.io import read_concat, write_parquet, write_text

EXPERIMENT = "joint"
CELL = ["N", "P", "seed"]  # one d per grid: N tells the widths apart


def add_compute(frame: pd.DataFrame) -> pd.DataFrame:
    """C = 6 N D per row, D = samples seen so far (the training FLOPs of a dense model, Kaplan et al.)."""
    return frame.assign(C=6.0 * frame["N"].astype(float) * frame["samples"].astype(float))


def aggregate(*, parts: list, table) -> pd.DataFrame:
    """Concatenate the cells (one Parquet each), label them, add C; one tidy table."""
    frame = read_concat(parts)
    frame = add_compute(frame.assign(experiment=EXPERIMENT))
    write_parquet(frame, table, {"cells": len(parts)})
    return frame


def final_cells(table: pd.DataFrame) -> tuple[pd.DataFrame, list[str]]:
    """Each cell's last logged row (finite P only, not diverged), and notes on what was left out.

    The divergence rule is applied again here, so a table written before it (a finite blow-up marked
    "ok") is read right too; a one-line UserError when every cell diverged."""
    notes = []
    table = mark_diverged(table, CELL, "step", "test_loss")
    bad = table[table["status"] != "ok"][CELL].drop_duplicates()
    finite = np.isfinite(table["P"].astype(float))
    ok = table[(table["status"] == "ok") & finite]
    if ok.empty and (table.loc[finite, "status"] != "ok").any():
        raise UserError(f"joint: every cell diverged ({describe('test MSE')}); lower joint.schedule.max_lr")
    if len(bad):
        cells = ", ".join(f"N={r.N} P={r.P:g} seed={r.seed}" for r in bad.itertuples())
        notes.append(f"left out {len(bad)} diverged cell(s) ({describe('test MSE')}): {cells}")
    if len(ok) < len(table[table["status"] == "ok"]):
        notes.append("left out P = inf cells: the joint law needs a finite training-set size")
    last = ok.loc[ok.groupby(CELL)["step"].idxmax()].reset_index(drop=True)
    return last, notes


def _frontier_range(cells: pd.DataFrame) -> np.ndarray:
    return np.geomspace(cells["C"].min(), cells["C"].max(), 25)


def fit_stage(table: pd.DataFrame, *, methods: list[str], bootstrap: int, seed: int = 0):
    """Joint fits (every method), extrapolation errors, allocation exponents and frontiers.

    Returns (summary, fits, cells): a JSON-safe dict, the JointFit of each method, and the final
    cells that were fitted (for the figures)."""
    from scalinglab.laws.joint.fit import fit_joint
    from scalinglab.laws.joint.frontier import allocation_exponents, compute_optimal, empirical_frontier

    cells, notes = final_cells(table)
    if cells.empty:
        raise UserError("joint stage: no finished cells with a finite P; give joint.train_sizes finite values")
    passes = cells["samples"] / cells["P"]
    if passes.max() > 1.05 * passes.min():
        notes.append(
            f"cells see {passes.min():.3g} to {passes.max():.3g} passes over their data: D is not proportional to P"
        )
    out = {
        "cells": int(len(cells)),
        "passes": float(passes.median()),
        "fits": {},
        "notes": notes,
        "N": sorted(float(v) for v in cells["N"].unique()),
        "P": sorted(float(v) for v in cells["P"].unique()),
        "C_range": [float(cells["C"].min()), float(cells["C"].max())],
    }
    fits = {}
    for method in methods:
        # seeds resampled within each (N, P) cell: a cell's init and batches derive from its N and P
        fit = fit_joint(
            cells,
            "N",
            "P",
            "test_loss",
            method=method,
            bootstrap=bootstrap,
            cluster="seed",
            strata=["N", "P"],
            seed=seed,
        )
        entry = fit.to_dict()
        try:
            # the law in D = passes x P: same exponents, B_D = B passes^beta
            law_d = _law_in_samples(fit, out["passes"])
            entry["allocation"] = allocation_exponents(law_d)
            frontier = compute_optimal(law_d, _frontier_range(cells))
            frontier["P_opt"] = frontier["D_opt"] / out["passes"]
            entry["frontier"] = json.loads(frontier.to_json(orient="records"))
        except UserError as exc:
            entry["allocation"], entry["frontier"] = None, []
            entry["diagnostics"].append(f"no compute-optimal frontier: {exc}")
        out["fits"][method] = entry
        fits[method] = fit
    try:
        empirical = empirical_frontier(cells, "N", "samples", "test_loss", buckets=min(8, max(3, len(cells) // 6)))
        out["empirical_frontier"] = empirical.to_dict()
    except UserError as exc:
        out["empirical_frontier"] = None
        notes.append(f"no empirical frontier: {exc}")
    return out, fits, cells


def _law_in_samples(fit, passes: float):
    """The fitted law with its second size read as samples seen D = passes x P (B and its draws rescaled)."""
    import copy

    law = copy.copy(fit)
    law.B = fit.B * passes**fit.beta
    if len(fit.draws):
        draws = fit.draws.copy()
        draws[:, 2] = draws[:, 2] * passes ** draws[:, 4]
        law.draws = draws
    return law


def fits_caption(summary: dict) -> str:
    """RST caption with the fitted numbers of every method."""
    lines = [
        f"Joint law L(N, P) = E + A N^-alpha + B P^-beta on {summary['cells']} teacher/student cells "
        f"({len(summary['N'])} sizes N x {len(summary['P'])} training-set sizes P, final test MSE), "
        f"each trained for {summary['passes']:.3g} passes over its P points, so compute C = 6 N D with "
        f"D = samples seen. 95% CIs from a bootstrap that resamples the seeds of each (N, P) cell.",
        "",
    ]
    for method, fit in summary["fits"].items():

        def fmt(name):
            value, (lo, hi) = fit[name]["value"], fit[name]["ci"]
            ci = "" if lo is None else f" [{lo:.3g}, {hi:.3g}]"
            return f"{name} = {value:.4g}{ci}"

        ext = ", ".join(f"{k} {v:.3g}" if v is not None else f"{k} n/a" for k, v in fit["extrapolation_error"].items())
        lines.append(
            f"- {method}: "
            + ", ".join(fmt(n) for n in ("alpha", "beta", "E", "A", "B"))
            + f"; extrapolation error (mean abs log error on held-out edge) {ext}"
        )
        if fit.get("allocation"):
            a, b = fit["allocation"]["a"], fit["allocation"]["b"]

            def ci(v):
                return "" if v["ci"][0] is None else f" [{v['ci'][0]:.3f}, {v['ci'][1]:.3f}]"

            lines.append(f"  compute-optimal N* ~ C^{a['value']:.3f}{ci(a)}, D* (and P*) ~ C^{b['value']:.3f}{ci(b)}")
            if fit["allocation"]["draws_without_frontier"]:
                lines.append(
                    f"  {fit['allocation']['draws_without_frontier']} bootstrap draws have no frontier "
                    "(A, B, alpha or beta <= 0) and are left out of its CIs"
                )
        for note in fit["diagnostics"]:
            lines.append(f"  diagnostic: {note}")
    emp = summary.get("empirical_frontier")
    if emp:
        e = emp["exponent"]
        lines.append(
            f"- empirical frontier (best cell per compute bucket): N* ~ C^{e['value']:.3f} "
            f"[{e['ci'][0]:.3f}, {e['ci'][1]:.3f}] over {len(emp['frontier'])} buckets"
        )
    lines += [f"- note: {n}" for n in summary["notes"]]
    return "\n".join(lines) + "\n"


def fit_and_plot(
    *,
    table,
    fits_table,
    fits_json,
    caption,
    loss_vs_n,
    loss_vs_p,
    frontier,
    isoflop,
    methods: list[str],
    bootstrap: int,
) -> dict:
    """The fit rule: fits (Parquet + JSON), the four figures, the report caption."""
    from scalinglab.joint import figures

    summary, fits, cells = fit_stage(pd.read_parquet(table), methods=methods, bootstrap=bootstrap)
    rows = []
    for method, fit in summary["fits"].items():
        row = {"method": method}
        for name in ("E", "A", "B", "alpha", "beta"):
            row[name], (row[f"{name}_lo"], row[f"{name}_hi"]) = fit[name]["value"], fit[name]["ci"]
        for key, value in fit["extrapolation_error"].items():
            row[f"extrapolation_{key}"] = value
        alloc = fit.get("allocation") or {}
        for name in ("a", "b"):
            v = alloc.get(name) or {"value": math.nan, "ci": [math.nan, math.nan]}
            row[f"alloc_{name}"], row[f"alloc_{name}_lo"], row[f"alloc_{name}_hi"] = v["value"], *v["ci"]
        row["diagnostics"] = " | ".join(fit["diagnostics"])
        rows.append(row)
    write_parquet(
        pd.DataFrame(rows).astype({c: float for c in ("alloc_a_lo", "alloc_a_hi", "alloc_b_lo", "alloc_b_hi")}),
        fits_table,
        {"methods": methods, "bootstrap": bootstrap},
    )
    write_text(fits_json, json.dumps(summary, indent=1))
    primary = fits[methods[0]]
    figures.loss_vs_n(cells, primary, loss_vs_n)
    figures.loss_vs_p(cells, primary, loss_vs_p)
    figures.frontier(summary, methods[0], cells, frontier)
    figures.isoflop(cells, _law_in_samples(primary, summary["passes"]), summary["passes"], isoflop)
    text = fits_caption(summary)
    write_text(caption, text)
    print(text)
    return summary
