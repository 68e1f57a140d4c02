"""The deep-net figures beyond the shared implicit-bias ones: the raw curves when the laws could not
be measured, a message figure in place of a plot, and gamma_pred against gamma_meas."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from scalinglab.core.plotting import plt, save_figure
from scalinglab.laws.implicit_bias import figures as implicit_bias_figures


def raw_curves(frame: pd.DataFrame, error: str, path) -> None:
    """Fallback figure: the seed-mean error against R at each log point, one line per P."""
    mean = frame.groupby(["P", "step"]).agg(lam=("log_norm", "mean"), error=(error, "mean")).reset_index()
    mean["lam"] = np.exp(mean["lam"])
    mean = mean[mean["error"] > 0]
    implicit_bias_figures.error_vs_norm(
        mean[["P", "lam", "error"]], path, xlabel="spectral complexity R", ylabel=error.replace("_", " ")
    )


def message_figure(text: str, path) -> None:
    """A figure that only says why there is nothing to draw."""
    fig, ax = plt.subplots(figsize=(5.6, 2.0))
    ax.axis("off")
    ax.text(0.5, 0.5, text, ha="center", va="center", wrap=True, fontsize=8)
    save_figure(fig, path)


def gamma_figure(table: pd.DataFrame, path) -> None:
    """γ_pred against the γ_meas it predicts (column `compare_with`: the perceptron's is that of
    ε/ε_Hebb), with their SEs, the diagonal, and the talk's values as open marks."""
    fig, ax = plt.subplots(figsize=(5.0, 4.6))
    done = table[np.isfinite(table["gamma_pred"])].copy()
    compare = done["compare_with"] if "compare_with" in done else pd.Series("gamma_meas", index=done.index)
    done["measured"] = [getattr(r, c) for r, c in zip(done.itertuples(), compare)]
    done["measured_se"] = [getattr(r, f"{c}_se") for r, c in zip(done.itertuples(), compare)]
    for i, r in enumerate(done.itertuples()):
        color = f"C{i % 10}"
        ax.errorbar(
            r.measured,
            r.gamma_pred,
            xerr=_finite(r.measured_se),
            yerr=_finite(r.gamma_pred_se),
            fmt="o",
            color=color,
            label=f"{r.model} / {r.dataset} ({getattr(r, 'error', 'error')})",
        )
        if math.isfinite(r.talk_gamma_pred):
            ax.plot(
                r.talk_gamma_meas,
                r.talk_gamma_pred,
                "s",
                mfc="none",
                color=color,
                label=f"talk: {r.model} / {r.dataset}",
            )
    values = np.concatenate([done[["gamma_pred", "measured"]].to_numpy(float).ravel(), [0.0, 0.8]])
    hi = float(np.nanmax(values)) * 1.15 + 0.05
    lo = min(0.0, float(np.nanmin(values)) * 1.15)
    ax.plot([lo, hi], [lo, hi], color="grey", linestyle=":", label="γ_pred = γ_meas")
    ax.set_xlim(lo, hi)
    ax.set_ylim(lo, hi)
    ax.set_xlabel("γ_meas of the row's ε (fitted to ε_opt(P))")
    ax.set_ylabel("γ_pred = γ1·γ2")
    ax.set_title("predicted against measured learning-curve exponent")
    ax.legend(fontsize=7)
    save_figure(fig, path)


def _finite(x: float) -> float:
    return x if math.isfinite(x) else 0.0
