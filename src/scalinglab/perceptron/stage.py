"""The perceptron stage of the workflow (D'Amico, Bocchi & Negri, arXiv:2505.13230): sweep, analysis, figures."""

from __future__ import annotations

import json
import os
import sys

import numpy as np
import pandas as pd
import torch

from scalinglab.core.config import number_name
from scalinglab.core.errors import UserError
from scalinglab.core.io import read_concat, write_parquet, write_text


def lambda_grid(alpha: float, low: float, high: float, count: int) -> np.ndarray:
    """The norms (the paper's lambda = |w|^2/N) of one alpha: log-spaced over [low*alpha^2, high*alpha^2],
    following lambda_opt ~ alpha^2."""
    return np.geomspace(low * alpha**2, high * alpha**2, count)


def check_memory(N: int, alpha: float) -> None:
    """Refuse an alpha whose data cannot fit in this machine's memory, before allocating it: the
    inputs and the signed inputs are two float64 (P, N) arrays, plus one more while they are built."""
    need = 3 * 8 * round(alpha * N) * N
    have = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    if need > have:
        raise UserError(
            f"perceptron: alpha = {number_name(alpha)} means P = {round(alpha * N):,} examples of N = {N}, about "
            f"{need / 2**30:,.0f} GiB, more than this machine's {have / 2**30:,.0f} GiB of memory; use a smaller alpha"
        )


def sweep_alpha(*, N: int, alpha: float, seeds: list[int], lambdas: dict, threads: int, solutions) -> pd.DataFrame:
    """Fixed-norm solutions for every lambda and seed at one alpha (one job), written to `solutions`."""
    from scalinglab.perceptron.fixed_norm import sweep

    check_memory(N, alpha)
    torch.set_num_threads(threads)
    grid = lambda_grid(alpha, lambdas["low"], lambdas["high"], lambdas["count"])
    # the solver takes margin scales, sqrt(lambda)
    frame = sweep(N, [alpha], np.sqrt(grid), seeds, label=f"perceptron N = {N}, alpha = {alpha:g}")
    unconverged = int((~frame["converged"]).sum())
    if unconverged:
        print(f"warning: {unconverged} of {len(frame)} solutions did not converge", file=sys.stderr)
    write_parquet(frame, solutions, {"N": N, "alpha": alpha, "seeds": seeds, "lambdas": lambdas})
    return frame


# the CLI line that gives this stage's numbers from its own sweep files (tests check it does, exactly)
PERCEPTRON_CLI = "scalinglab implicit-bias results/runs/perceptron/alpha~*.parquet --error {error} --json"


def analyse_and_plot(*, sweeps: list, fits_json, caption, curves, collapse, learning, window, upper_fraction: float):
    """gamma1, gamma2, gamma_pred vs gamma_meas on the relative error of the sweeps (the default,
    robust method; the authors' procedure with `window` and `upper_fraction` beside it, under
    `authors`), the absolute learning curve's exponent, the three figures and the report caption.

    Two exponents, named for what they are: the theory's laws are stated for eps_rel = eps/eps_Hebb
    (eps_Hebb the lambda -> 0 error of the same data; the talk's definition), so gamma1 gamma2
    predicts gamma_meas_rel, the exponent of eps_rel,opt(P) ~ P^-gamma (about 1/2 at large alpha);
    the absolute learning curve eps_opt(P) falls about as P^-1 (gamma_meas_abs), since eps_Hebb
    itself falls as alpha^-1/2. `gamma_meas` is gamma_meas_rel, the number gamma_pred predicts."""
    from scalinglab.laws.implicit_bias import figures as implicit_bias_figures
    from scalinglab.laws.implicit_bias.analysis import analyse, authors_cross_check

    frame = read_concat(sweeps)
    # `norm` is the paper's lambda = |w|^2/N (the sweep's `lam` is the margin scale sqrt(lambda))
    result = analyse(frame, p="P", seed="seed", norm="norm", error="rel_error")
    absolute = analyse(frame, p="P", seed="seed", norm="norm", error="error", sensitivity=False)
    summary = result.to_dict()
    summary.update(
        {
            "error": "rel_error",
            "error_meaning": "eps/eps_Hebb: the generalisation error over the lambda -> 0 (Hebb) error of its data",
            "gamma_meas_rel": result.gamma_meas,
            "gamma_meas_rel_se": result.gamma_meas_se,
            "gamma_meas_rel_ci": summary["gamma_meas_ci"],
            "gamma_meas_abs": absolute.gamma_meas,
            "gamma_meas_abs_se": absolute.gamma_meas_se,
            "gamma_meas_abs_ci": absolute.details["gamma_meas_ci"],
            "eps_opt_abs": absolute.to_dict()["eps_opt"],
            "reproduce": PERCEPTRON_CLI.format(error="rel_error")
            + "; gamma_meas_abs: the same with --error error; authors: add --method authors --window LO HI "
            "--gamma1-min-p P with authors.gamma1_window and authors.gamma1_min_p",
            "authors": authors_cross_check(
                frame, window=window, upper_fraction=upper_fraction, seed="seed", norm="norm", error="rel_error"
            ),
        }
    )
    summary["N"] = int(frame["N"].iloc[0])
    summary["alphas"] = sorted(float(a) for a in frame["alpha"].unique())
    summary["unconverged"] = int((~frame["converged"]).sum())
    write_text(fits_json, json.dumps(summary, indent=1, default=float))
    subject = f"perceptron, N = {summary['N']}"
    implicit_bias_figures.error_vs_norm(
        result.curves, curves, xlabel="norm λ = |w|²/N", ylabel="ε / ε(λ=0)", subject=subject
    )
    band = result.details.get("gamma1_band")
    implicit_bias_figures.collapse(result.collapse, result.window, collapse, band=band, subject=subject)
    implicit_bias_figures.learning_curve(result, learning, subject=subject)
    text = _caption(summary, frame)
    write_text(caption, text)
    print(text)
    return result


def _ci(ci) -> str:
    lo, hi = ci
    return f"[{lo:.3f}, {hi:.3f}]" if lo is not None and np.isfinite(lo) else "(no bootstrap)"


def _caption(s: dict, frame: pd.DataFrame) -> str:
    gap = s["gamma_pred"] - s["gamma_meas_rel"]
    text = (
        f"Perceptron (N = {s['N']}, α = P/N in {s['alphas'][0]:g}…{s['alphas'][-1]:g}, "
        f"{frame['seed'].nunique()} seeds, "
        f"{frame['norm'].nunique() // frame['alpha'].nunique()} norms λ = ‖w‖²/N per α): fixed-norm minimisers of "
        "the cross-entropy loss; the laws are measured on ε_rel = ε/ε_Hebb (ε_Hebb: the λ → 0 error), as the "
        "theory states them. Default (robust) analysis; brackets: 95% bootstrap intervals over seeds.\n\n"
        f"- early-training law ε ≈ k1 λ^-γ1: γ1 = {s['gamma1']:.3f} {_ci(s['gamma1_ci'])} "
        f"(each curve's error band {s['gamma1_band'][0]:g}–{s['gamma1_band'][1]:g} of its drop)\n"
        f"- optimal norm λ_opt ≈ k2 P^γ2: γ2 = {s['gamma2']:.3f} {_ci(s['gamma2_ci'])}\n"
        f"- prediction γ_pred = γ1·γ2 = {s['gamma_pred']:.3f} {_ci(s['gamma_pred_ci'])}, for the exponent of "
        f"ε_rel,opt(P): measured γ_meas_rel = {s['gamma_meas_rel']:.3f} {_ci(s['gamma_meas_rel_ci'])}; "
        f"difference {gap:+.3f}\n"
        f"- the absolute learning curve ε_opt(P) ∝ P^-γ: γ_meas_abs = {s['gamma_meas_abs']:.3f} "
        f"{_ci(s['gamma_meas_abs_ci'])} (not what γ1·γ2 predicts: ε_Hebb itself falls as α^-1/2)\n"
    )
    a = s["authors"]
    if a["status"] == "ok":
        text += (
            f"- the authors' procedure (window λ/λ* in {a['gamma1_window'][0]:g}…{a['gamma1_window'][1]:g}, "
            f"P ≥ {a['gamma1_min_p']:g} for γ1): γ_pred = {a['gamma_pred']:.3f}, γ_meas = {a['gamma_meas']:.3f}, "
            f"σ = {a['sigma']:.3f}\n"
        )
    else:
        text += f"- the authors' procedure: not measured ({a['message']})\n"
    if s["censored"]:
        text += f"- censored minima (the curve's edge; bounds in the fits): P = {', '.join(s['censored'])}\n"
    return text
