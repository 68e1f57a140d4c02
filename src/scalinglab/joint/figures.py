"""Figures of the joint-law stage: loss against N per P and against P per N with the fitted law,
the compute-optimal frontier, and an isoFLOP view. Each function writes one PNG and its PDF twin
atomically and returns the (closed) figure."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from matplotlib.colors import LinearSegmentedColormap, LogNorm

from scalinglab.core.plotting import (
    SINGLE,
    WIDE,
    figure_legend,
    log_axes,
    log_axis,
    plain_number,
    plt,
    ramp,
    save_figure,
)

MODEL = "MLP student"


def subject(cells: pd.DataFrame, model: str = MODEL, dataset: str | None = None) -> str:
    """'MLP student on teacher d = 2': the model and the data the cells were trained on."""
    if dataset is None:
        ds = sorted(cells["d"].unique()) if "d" in cells else []
        dataset = "teacher d = " + ", ".join(str(int(d)) for d in ds) if ds else "teacher data"
    return f"{model} on {dataset}"


def _ci(fit, name: str) -> str:
    lo, hi = (fit.ci or {}).get(name, (math.nan, math.nan))
    return f" [{lo:.2f}, {hi:.2f}]" if math.isfinite(lo) and math.isfinite(hi) else ""


def _sweep(cells, fit, path, x: str, other: str, xlabel: str, model: str, dataset: str | None):
    fig, ax = plt.subplots(figsize=SINGLE)
    groups = sorted(cells[other].unique())
    colors = ramp(len(groups))
    grid = np.geomspace(cells[x].min(), cells[x].max(), 100)
    shown = [cells["test_loss"].to_numpy(float)]
    for color, value in zip(colors, groups):
        part = cells[cells[other] == value]
        ax.scatter(part[x], part["test_loss"], s=14, color=color, alpha=0.6, linewidths=0)
        N, P = (grid, value) if x == "N" else (value, grid)
        law = fit.predict(N, P)
        shown.append(law)
        ax.plot(grid, law, color=color, label=f"{other} = {plain_number(value)}")
    ax.scatter([], [], s=14, color="0.45", alpha=0.6, linewidths=0, label="seeds (final step)")
    values = np.concatenate(shown)
    values = values[np.isfinite(values) & (values > 0)]
    lo, hi = values.min(), values.max()
    near = fit.E > 0 and lo / 3 <= fit.E <= hi  # a floor within half a decade below the data is shown
    lo = min(lo, fit.E) if near else lo
    pad = (hi / lo) ** 0.06
    ylo, yhi = lo / pad, hi * pad
    if near:
        ax.axhline(fit.E, color="0.4", ls=":", lw=1.2, label=f"fitted floor E = {fit.E:.3g}{_ci(fit, 'E')}")
    elif fit.E < lo / 100:  # the floor is far below the data (not identified): say so, not stretch the axis
        ax.plot([], [], " ", label=f"E ≈ 0 (fit: {fit.E:.1g})")
    else:
        ax.plot([], [], " ", label=f"fitted floor E = {fit.E:.3g}{_ci(fit, 'E')}, below the axis")
    log_axes(ax)
    ax.set_ylim(ylo, yhi)
    ax.set_xlabel(f"{xlabel} (log)")
    ax.set_ylabel("final test MSE (log)")
    ax.set_title(subject(cells, model, dataset), loc="left")
    figure_legend(
        fig,
        ax,
        title=f"L = E + A/N^α + B/P^β ({fit.method}): α = {fit.alpha:.2f}{_ci(fit, 'alpha')}, "
        f"β = {fit.beta:.2f}{_ci(fit, 'beta')}",
    )
    return save_figure(fig, path)


def loss_vs_n(cells: pd.DataFrame, fit, path, *, model: str = MODEL, dataset: str | None = None):
    """Points: seeds; lines: the fitted law at each P; the fitted floor E only inside the data's range."""
    return _sweep(cells, fit, path, "N", "P", "parameters N", model, dataset)


def loss_vs_p(cells: pd.DataFrame, fit, path, *, model: str = MODEL, dataset: str | None = None):
    """Points: seeds; lines: the fitted law at each N; the fitted floor E only inside the data's range."""
    return _sweep(cells, fit, path, "P", "N", "training-set size P", model, dataset)


def frontier(summary: dict, method: str, cells: pd.DataFrame, path, *, model: str = MODEL, dataset: str | None = None):
    """N*(C) and P*(C) of the fitted law with bootstrap bands; the best cell per compute bucket."""
    fit = summary["fits"][method]
    fig, axes = plt.subplots(1, 2, figsize=WIDE)
    front = pd.DataFrame(fit["frontier"])
    emp = summary.get("empirical_frontier")
    emp_frame = pd.DataFrame(emp["frontier"]) if emp else pd.DataFrame()
    alloc = fit.get("allocation") or {}
    panels = (
        (axes[0], "N_opt", "N*", "a", "optimal parameters N*"),
        (axes[1], "P_opt", "P*", "b", "optimal samples P*"),
    )
    for ax, name, label, key, ylabel in panels:
        if not front.empty:
            part = alloc.get(key) or {"value": math.nan, "ci": [None, None]}
            ci = part["ci"]
            ci_text = "" if ci[0] is None or not math.isfinite(ci[0]) else f" [{ci[0]:.2f}, {ci[1]:.2f}]"
            ax.plot(front["C"], front[name], color="C0", label=f"fitted law: {label} ∝ C^{part['value']:.2f}{ci_text}")
            band = name.replace("P_opt", "D_opt")
            if f"{band}_lo" in front:
                scale = 1.0 if name == "N_opt" else 1.0 / summary["passes"]
                ax.fill_between(
                    front["C"],
                    front[f"{band}_lo"] * scale,
                    front[f"{band}_hi"] * scale,
                    color="C0",
                    alpha=0.2,
                    linewidth=0,
                    label="95% bootstrap band",
                )
        if not emp_frame.empty:
            y = emp_frame["N"] if name == "N_opt" else emp_frame["D"] / summary["passes"]
            ax.scatter(emp_frame["C"], y, color="C1", zorder=3, label="best cell per compute bucket")
        log_axes(ax)
        ax.set_xlabel("compute C = 6 N D (FLOPs, log)")
        ax.set_ylabel(f"{ylabel} (log)")
    figure_legend(fig)
    fig.suptitle(f"{subject(cells, model, dataset)}: compute-optimal allocation ({method})")
    return save_figure(fig, path)


def isoflop(cells: pd.DataFrame, law_d, passes: float, path, *, model: str = MODEL, dataset: str | None = None):
    """Loss against N along lines of constant C = 6 N D of the fitted law (D = samples), minima marked;
    the cells coloured by their own compute."""
    fig, ax = plt.subplots(figsize=(SINGLE[0] + 1.2, SINGLE[1]))
    budgets = np.geomspace(cells["C"].min(), cells["C"].max(), 5)
    norm = LogNorm(vmin=budgets[0], vmax=budgets[-1])
    cmap = LinearSegmentedColormap.from_list("plasma_on_white", plt.get_cmap("plasma")(np.linspace(0, 0.88, 256)))
    lo, hi = cells["N"].min() / 2, cells["N"].max() * 2
    minima = []
    for C in budgets:
        N = np.geomspace(lo, hi, 200)
        L = law_d.predict(N, C / (6 * N))
        ax.plot(N, L, color=cmap(norm(C)), label=f"law at C = {plain_number(C)}")
        k = int(np.argmin(L))
        minima.append((N[k], L[k], cmap(norm(C))))
    ax.scatter([m[0] for m in minima], [m[1] for m in minima], c=[m[2] for m in minima], marker="*", s=90, zorder=3)
    ax.plot([], [], "*", color="0.3", ms=9, ls="none", label="minimum of each curve")
    sc = ax.scatter(cells["N"], cells["test_loss"], c=cells["C"], cmap=cmap, norm=norm, s=12, alpha=0.6)
    ax.plot([], [], "o", color="0.45", alpha=0.6, ms=4, ls="none", label="cells (seeds; colour: C)")
    bar = fig.colorbar(sc, ax=ax, label="compute C of a cell (FLOPs)")
    log_axis(bar.ax.yaxis)
    log_axes(ax)
    ax.set_xlabel("parameters N (log)")
    ax.set_ylabel("test MSE (log)")
    ax.set_title(f"{subject(cells, model, dataset)}:\nisoFLOP curves of the fitted law ({passes:.3g} passes per cell)")
    figure_legend(fig)
    return save_figure(fig, path)
