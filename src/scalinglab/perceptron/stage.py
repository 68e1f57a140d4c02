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
    frame = sweep(N, [alpha], np.sqrt(grid), seeds)  # the solver takes margin scales, sqrt(lambda)
    unconverged = int((~frame["converged"]).sum())
    if unconverged:
        print(f"warning: {unconverged} of {len(frame)} solutions did not converge", file=sys.stderr)
    write_parquet(frame, solutions, {"N": N, "alpha": alpha, "seeds": seeds, "lambdas": lambdas})
    return frame


def analyse_and_plot(*, sweeps: list, fits_json, caption, curves, collapse, learning, window, upper_fraction: float):
    """gamma1, gamma2, gamma_pred vs gamma_meas on the relative error of the sweeps; the three
    figures `curves`, `collapse` and `learning`; the report caption."""
    from scalinglab.laws.implicit_bias import figures as implicit_bias_figures
    from scalinglab.laws.implicit_bias.analysis import analyse

    frame = read_concat(sweeps)
    # the paper's norm lambda = |w|^2/N; the parabola at each minimum spans +-1 in ln lambda
    # (+-0.5 in the margin scale sqrt(lambda), as the analysis was tuned)
    result = analyse(
        frame,
        p="P",
        seed="seed",
        norm="norm",
        error="rel_error",
        window=tuple(window),
        upper_fraction=upper_fraction,
        opt_halfwidth=1.0,
    )
    summary = result.to_dict()
    summary["N"] = int(frame["N"].iloc[0])
    summary["alphas"] = sorted(float(a) for a in frame["alpha"].unique())
    summary["unconverged"] = int((~frame["converged"]).sum())
    write_text(fits_json, json.dumps(summary, indent=1, default=float))
    implicit_bias_figures.error_vs_norm(result.curves, curves, xlabel="norm λ = |w|²/N", ylabel="ε / ε(λ=0)")
    implicit_bias_figures.collapse(result.collapse, result.window, collapse)
    implicit_bias_figures.learning_curve(result, learning)
    gap = result.gamma_pred - result.gamma_meas
    text = (
        f"Perceptron (N = {summary['N']}, α = P/N in {summary['alphas'][0]:g}…{summary['alphas'][-1]:g}, "
        f"{frame['seed'].nunique()} seeds, "
        f"{frame['norm'].nunique() // frame['alpha'].nunique()} norms λ = ‖w‖²/N per α), "
        "relative error ε/ε(λ=0) of the fixed-norm minimiser of the cross-entropy loss.\n\n"
        f"- early-training law ε ≈ k1 λ^-γ1: γ1 = {result.gamma1:.3f} ± {result.gamma1_se:.3f} "
        f"(window λ/λ_opt in {result.window[0]:g}…{result.window[1]:g}, averaged over the larger P; its ± is the "
        "spread of those per-P values, which share data; the window moves γ1 by more, see docs/reproduction.md)\n"
        f"- optimal norm λ_opt ≈ k2 P^γ2: γ2 = {result.gamma2:.3f} ± {result.gamma2_se:.3f}\n"
        f"- prediction γ_pred = γ1·γ2 = {result.gamma_pred:.3f} ± {result.gamma_pred_se:.3f}; "
        f"measured from ε_opt(P): γ_meas = {result.gamma_meas:.3f} ± {result.gamma_meas_se:.3f}; "
        f"difference {gap:+.3f}\n"
    )
    if result.edge_minima:
        text += f"- minima on the grid's edge (left out): P = {result.edge_minima}\n"
    write_text(caption, text)
    print(text)
    return result
