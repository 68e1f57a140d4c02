"""The implicit-bias figures, drawn alike for the perceptron and the deep nets: error against norm
per P, the collapse on a master curve, and the learning curve predicted against measured."""

from __future__ import annotations

import numpy as np
import pandas as pd

from scalinglab.core.plotting import plt, save_figure


def error_vs_norm(curves: pd.DataFrame, path, xlabel: str = "norm λ", ylabel: str = "error") -> None:
    """Seed-averaged error against the norm, one curve per P, minimum marked."""
    fig, ax = plt.subplots(figsize=(5.6, 4.4))
    cmap = plt.get_cmap("viridis")
    ps = sorted(curves["P"].unique())
    for i, P in enumerate(ps):
        sub = curves[(curves["P"] == P) & np.isfinite(curves["lam"])].sort_values("lam")
        if sub.empty:
            continue
        color = cmap(0.85 * i / max(len(ps) - 1, 1))
        ax.plot(sub["lam"], sub["error"], color=color, label=f"P = {P:,.0f}")
        best = sub.loc[sub["error"].idxmin()]
        ax.plot(best["lam"], best["error"], "o", color=color)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title("error against norm (dots: λ_opt)")
    ax.legend(fontsize=7)
    save_figure(fig, path)


def collapse(collapse: pd.DataFrame, window, path) -> None:
    """ε/ε_opt against λ/λ_opt for every P: the master curve; the points γ1 is fitted on drawn thick
    (column `in_fit`), and the window shaded when γ1 used one (window None: the robust method's
    error band, which sits at a different λ/λ_opt on each curve)."""
    fig, ax = plt.subplots(figsize=(5.6, 4.4))
    cmap = plt.get_cmap("viridis")
    ps = sorted(collapse["P"].unique())
    for i, P in enumerate(ps):
        sub = collapse[(collapse["P"] == P) & np.isfinite(collapse["u"])].sort_values("u")
        color = cmap(0.85 * i / max(len(ps) - 1, 1))
        ax.plot(sub["u"], sub["v"], color=color, linewidth=0.8, label=f"P = {P:,.0f}")
        if "in_fit" in sub:
            fit = sub[sub["in_fit"].astype(bool)]
            ax.plot(fit["u"], fit["v"], "o", color=color, markersize=2.5)
    if window is not None:
        hi = window[1] if np.isfinite(window[1]) else collapse["u"].max()
        lo = window[0] if window[0] > 0 else collapse["u"].min()
        ax.axvspan(lo, hi, color="grey", alpha=0.15, label="γ1 window")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("λ / λ_opt")
    ax.set_ylabel("ε / ε_opt")
    ax.set_title("collapse on a master curve (dots: γ1's points)")
    ax.legend(fontsize=7)
    save_figure(fig, path)


def learning_curve(result, path) -> None:
    """ε_opt(P) measured, with the measured slope -γ_meas and the predicted slope -γ1·γ2."""
    lc = result.learning_curve
    fig, ax = plt.subplots(figsize=(5.6, 4.4))
    cens = lc["censored"].astype(bool) if "censored" in lc else np.zeros(len(lc), bool)
    ax.plot(lc["P"][~cens], lc["eps_opt"][~cens], "o", color="black", label="ε_opt(P)")
    if cens.any():
        ax.plot(lc["P"][cens], lc["eps_opt"][cens], "v", mfc="none", color="black", label="censored: ε_opt ≤ this")
    ax.plot(lc["P"], lc["eps_opt_fit"], color="C0", label=f"measured: γ = {result.gamma_meas:.3f}")
    centre = np.exp(np.log(lc["eps_opt"]).mean())
    p_mid = np.exp(np.log(lc["P"]).mean())
    ax.plot(
        lc["P"],
        centre * (lc["P"] / p_mid) ** (-result.gamma_pred),
        color="C3",
        linestyle="--",
        label=f"predicted γ1·γ2 = {result.gamma_pred:.3f}",
    )
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("P")
    ax.set_ylabel("ε_opt")
    ax.set_title("learning curve: predicted against measured")
    ax.legend(fontsize=7)
    save_figure(fig, path)
