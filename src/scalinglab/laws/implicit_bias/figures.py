"""The implicit-bias figures, drawn alike for the perceptron and the deep nets: error against norm
per P, the collapse on a master curve, and the learning curve predicted against measured. Each writes a
PNG and its PDF twin and returns the (closed) figure; `subject` names the model and data in the title
(e.g. "CNN on digits", "perceptron, N = 500")."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from scalinglab.core.plotting import SINGLE, figure_legend, log_axes, plt, ramp, save_figure


def _finish(ax, xlabel: str, ylabel: str, what: str, subject: str | None, path):
    """Every figure's last steps: log axes, labels, a title naming `subject`, the legend, and the
    PNG + PDF written; returns the closed figure."""
    log_axes(ax)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(f"{subject}: {what}" if subject else what, loc="left")
    figure_legend(ax.figure)
    return save_figure(ax.figure, path)


def error_vs_norm(
    curves: pd.DataFrame, path, xlabel: str = "norm λ", ylabel: str = "error", *, subject: str | None = None
):
    """Seed-averaged error against the norm, one curve per P (band: ±1.96 s.e.m. over seeds, where the
    frame has `error_sem`), each curve's minimum marked."""
    fig, ax = plt.subplots(figsize=SINGLE)
    ps = sorted(curves["P"].unique())
    banded = False
    for color, P in zip(ramp(len(ps)), ps):  # bands unlabelled: one grey legend entry for them all
        sub = curves[(curves["P"] == P) & np.isfinite(curves["lam"])].sort_values("lam")
        if sub.empty:
            continue
        ax.plot(sub["lam"], sub["error"], color=color, label=f"P = {P:,.0f}")
        if "error_sem" in sub and np.isfinite(sub["error_sem"]).any():
            half = 1.96 * sub["error_sem"].fillna(0).to_numpy(float)
            low = np.clip(sub["error"] - half, sub["error"].min() * 0.5, None)
            ax.fill_between(sub["lam"], low, sub["error"] + half, color=color, alpha=0.15, lw=0)
            banded = True
        best = sub.loc[sub["error"].idxmin()]
        ax.plot(best["lam"], best["error"], "o", color=color)
    if banded:
        ax.fill_between([], [], [], color="0.5", alpha=0.3, lw=0, label="±1.96 s.e.m. over seeds")
    ax.plot([], [], "o", color="0.3", label="each curve's minimum")
    return _finish(ax, f"{xlabel} (log)", f"{ylabel} (log)", "error against norm", subject, path)


def collapse(collapse: pd.DataFrame, window, path, *, band=None, subject: str | None = None):
    """ε/ε_opt against λ/λ_opt for every P: the master curve. The points γ1 is fitted on (column
    `in_fit`) are drawn as dots: the region actually used. A window is shaded only when γ1 used one
    (`window`, in λ/λ_opt; the authors' method); the robust method has none (window None), its points are
    chosen by an error band (`band`: fractions of each curve's error drop), at a different λ/λ_opt on
    each curve."""
    fig, ax = plt.subplots(figsize=SINGLE)
    ps = sorted(collapse["P"].unique())
    finite = collapse[np.isfinite(collapse["u"]) & np.isfinite(collapse["v"])]
    used = False
    for color, P in zip(ramp(len(ps)), ps):
        sub = finite[finite["P"] == P].sort_values("u")
        ax.plot(sub["u"], sub["v"], color=color, linewidth=1.0, label=f"P = {P:,.0f}")
        if "in_fit" in sub:
            fit = sub[sub["in_fit"].astype(bool)]
            ax.plot(fit["u"], fit["v"], "o", color=color, markersize=4)
            used = used or len(fit) > 0
    if used:
        how = f"error band {band[0]:g}–{band[1]:g} of each drop" if band is not None else "points used"
        ax.plot([], [], "o", color="0.3", markersize=4, label=f"γ1 fitted on these ({how})")
    if window is not None and len(finite):
        data_lo, data_hi = finite["u"].min(), finite["u"].max()
        lo = window[0] if window[0] > 0 else data_lo
        hi = window[1] if np.isfinite(window[1]) else data_hi
        text = f"γ1 window {window[0]:g} ≤ λ/λ_opt ≤ {window[1]:g}"
        if hi < data_lo or lo > data_hi:
            ax.plot([], [], " ", label=f"{text} (outside the data)")
        else:
            ax.axvspan(max(lo, data_lo), min(hi, data_hi), color="grey", alpha=0.15, lw=0, label=text)
    ax.axhline(1.0, color="0.6", linewidth=0.8, linestyle=":", label="ε = ε_opt")
    return _finish(ax, "λ / λ_opt (log)", "ε / ε_opt (log)", "collapse on a master curve", subject, path)


def _gamma_text(result, name: str) -> str:
    value = getattr(result, name)
    ci = (result.details or {}).get(f"{name}_ci")
    if ci is not None and all(v is not None and math.isfinite(v) for v in ci):
        return f"{value:.3f} [{ci[0]:.3f}, {ci[1]:.3f}]"
    se = getattr(result, f"{name}_se", math.nan)
    return f"{value:.3f} ± {1.96 * se:.3f}" if math.isfinite(se) else f"{value:.3f}"


def learning_curve(result, path, *, subject: str | None = None):
    """ε_opt(P) measured, with the measured slope -γ_meas and the predicted slope -γ1·γ2 (95% CIs in the
    legend: the bootstrap's where the result has one, else ±1.96 SE)."""
    lc = result.learning_curve
    fig, ax = plt.subplots(figsize=SINGLE)
    cens = lc["censored"].astype(bool) if "censored" in lc else np.zeros(len(lc), bool)
    ax.plot(lc["P"][~cens], lc["eps_opt"][~cens], "o", color="black", label="ε_opt(P)")
    if cens.any():
        ax.plot(lc["P"][cens], lc["eps_opt"][cens], "v", mfc="none", color="black", label="censored: ε_opt ≤ this")
    ax.plot(lc["P"], lc["eps_opt_fit"], color="C0", label=f"measured: γ = {_gamma_text(result, 'gamma_meas')}")
    centre = np.exp(np.log(lc["eps_opt"]).mean())
    p_mid = np.exp(np.log(lc["P"]).mean())
    ax.plot(
        lc["P"],
        centre * (lc["P"] / p_mid) ** (-result.gamma_pred),
        color="C1",
        linestyle="--",
        label=f"predicted: γ1·γ2 = {_gamma_text(result, 'gamma_pred')}",
    )
    return _finish(ax, "training-set size P (log)", "optimal error ε_opt (log)", "learning curve", subject, path)
