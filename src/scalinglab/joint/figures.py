"""Figures of the joint-law stage: loss against N per P and against P per N with the fitted law,
the compute-optimal frontier, and an isoFLOP view. Each function writes one PNG atomically."""

from __future__ import annotations

import numpy as np
import pandas as pd

from scalinglab.core.plotting import plt, save_figure


def _cell_means(cells: pd.DataFrame) -> pd.DataFrame:
    return cells.groupby(["N", "P"], as_index=False)["test_loss"].mean()


def _sweep(cells, fit, path, x: str, other: str, xlabel: str):
    colors = plt.get_cmap("viridis")
    fig, ax = plt.subplots(figsize=(6.5, 4.8))
    groups = sorted(cells[other].unique())
    grid = np.geomspace(cells[x].min(), cells[x].max(), 100)
    for i, value in enumerate(groups):
        color = colors(i / max(1, len(groups) - 1))
        part = cells[cells[other] == value]
        ax.scatter(part[x], part["test_loss"], s=12, color=color, alpha=0.6)
        N, P = (grid, value) if x == "N" else (value, grid)
        ax.plot(grid, fit.predict(N, P), color=color, label=f"{other} = {value:,.0f}")
    ax.axhline(fit.E, color="grey", ls=":", lw=1, label=f"E = {fit.E:.3g}")
    ax.set(
        xscale="log",
        yscale="log",
        xlabel=xlabel,
        ylabel="final test MSE",
        title=f"{fit.method}: α = {fit.alpha:.3f}, β = {fit.beta:.3f}",
    )
    ax.legend(fontsize=7)
    save_figure(fig, path)


def loss_vs_n(cells: pd.DataFrame, fit, path) -> None:
    """Points: seeds; lines: the fitted law at each P."""
    _sweep(cells, fit, path, "N", "P", "parameters N")


def loss_vs_p(cells: pd.DataFrame, fit, path) -> None:
    _sweep(cells, fit, path, "P", "N", "training-set size P")


def frontier(summary: dict, method: str, cells: pd.DataFrame, path) -> None:
    """N*(C) and P*(C) of the fitted law with bootstrap bands; the best cell per compute bucket."""
    fit = summary["fits"][method]
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.5))
    front = pd.DataFrame(fit["frontier"])
    emp = summary.get("empirical_frontier")
    emp_frame = pd.DataFrame(emp["frontier"]) if emp else pd.DataFrame()
    alloc = fit.get("allocation") or {}
    for ax, name, label, key in ((axes[0], "N_opt", "N*", "a"), (axes[1], "P_opt", "P*", "b")):
        if not front.empty:
            ax.plot(
                front["C"],
                front[name],
                color="C0",
                label=f"fitted law: {label} ∝ C^{alloc[key]['value']:.3f}"
                + ("" if alloc[key]["ci"][0] is None else f" [{alloc[key]['ci'][0]:.3f}, {alloc[key]['ci'][1]:.3f}]"),
            )
            band = name.replace("P_opt", "D_opt")
            if f"{band}_lo" in front:
                scale = 1.0 if name == "N_opt" else 1.0 / summary["passes"]
                ax.fill_between(
                    front["C"], front[f"{band}_lo"] * scale, front[f"{band}_hi"] * scale, color="C0", alpha=0.2
                )
        if not emp_frame.empty:
            y = emp_frame["N"] if name == "N_opt" else emp_frame["D"] / summary["passes"]
            ax.scatter(emp_frame["C"], y, color="C3", zorder=3, label="best cell per compute bucket")
        ax.set(xscale="log", yscale="log", xlabel="compute C = 6 N D (FLOPs)", ylabel=label)
        ax.legend(fontsize=7)
    fig.suptitle(f"compute-optimal allocation ({method})")
    save_figure(fig, path)


def isoflop(cells: pd.DataFrame, law_d, passes: float, path) -> None:
    """Loss against N along lines of constant C = 6 N D of the fitted law (D = samples), minima marked;
    the cells coloured by their own compute."""
    fig, ax = plt.subplots(figsize=(6.5, 4.8))
    budgets = np.geomspace(cells["C"].min(), cells["C"].max(), 5)
    colors = plt.get_cmap("plasma")
    lo, hi = cells["N"].min() / 2, cells["N"].max() * 2
    for i, C in enumerate(budgets):
        N = np.geomspace(lo, hi, 200)
        L = law_d.predict(N, C / (6 * N))
        color = colors(i / len(budgets))
        ax.plot(N, L, color=color, label=f"C = {C:.2g}")
        k = int(np.argmin(L))
        ax.scatter([N[k]], [L[k]], color=color, marker="*", s=80, zorder=3)
    sc = ax.scatter(
        cells["N"],
        cells["test_loss"],
        c=np.log10(cells["C"]),
        cmap="plasma",
        s=10,
        alpha=0.6,
        vmin=np.log10(budgets[0]),
        vmax=np.log10(budgets[-1]) + 0.2,
    )
    fig.colorbar(sc, ax=ax, label="log10 C of the cell")
    ax.set(
        xscale="log",
        yscale="log",
        xlabel="parameters N",
        ylabel="test MSE",
        title=f"isoFLOP curves of the fitted law ({passes:.3g} passes per cell)",
    )
    ax.legend(fontsize=7)
    save_figure(fig, path)
