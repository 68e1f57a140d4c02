"""The deep-net figures beyond the shared implicit-bias ones: the raw curves when the laws could not
be measured, a message figure in place of a plot, and gamma_pred against gamma_meas. Each writes a PNG
and its PDF twin and returns the (closed) figure."""

from __future__ import annotations

import math
import textwrap

import numpy as np
import pandas as pd

from scalinglab.core.plotting import SINGLE, figure_legend, model_label, plt, save_figure
from scalinglab.laws.implicit_bias import figures as implicit_bias_figures

ERRORS = {"rel_error": "ε/ε_Hebb", "test_error": "test error", "error": "error", "test_loss": "test loss"}


def raw_curves(frame: pd.DataFrame, error: str, path, *, subject: str | None = None):
    """Fallback figure: the seed-mean error against R at each log point, one line per P (band: ±1.96
    s.e.m. over seeds). `subject` names the model and data, e.g. 'CNN on digits'."""
    grouped = frame.groupby(["P", "step"])
    mean = grouped.agg(lam=("log_norm", "mean"), error=(error, "mean")).reset_index()
    sem = grouped[error].sem().reset_index(drop=True)
    mean["error_sem"] = sem.to_numpy()
    mean["lam"] = np.exp(mean["lam"])
    mean = mean[mean["error"] > 0]
    return implicit_bias_figures.error_vs_norm(
        mean[["P", "lam", "error", "error_sem"]],
        path,
        xlabel="spectral complexity R",
        ylabel=error.replace("_", " "),
        subject=subject,
    )


def message_figure(text: str, path):
    """A figure that only says why there is nothing to draw."""
    fig, ax = plt.subplots(figsize=(5.6, 2.0))
    ax.axis("off")
    ax.text(0.5, 0.5, text, ha="center", va="center", wrap=True, fontsize=9)
    return save_figure(fig, path)


def _interval(row, column: str) -> tuple[float, float]:
    """The 95% CI of `column` of a row: its _lo/_hi columns where finite, else ±1.96 SE, else none."""
    lo, hi = getattr(row, f"{column}_lo", math.nan), getattr(row, f"{column}_hi", math.nan)
    value = getattr(row, column)
    if not (math.isfinite(lo) and math.isfinite(hi)):
        se = getattr(row, f"{column}_se", math.nan)
        lo, hi = (value - 1.96 * se, value + 1.96 * se) if math.isfinite(se) else (value, value)
    return max(value - lo, 0.0), max(hi - value, 0.0)


def gamma_figure(table: pd.DataFrame, path):
    """γ_pred against the γ_meas it predicts (column `compare_with`: the perceptron's is that of
    ε/ε_Hebb), with 95% CIs (the bootstrap's, else ±1.96 SE), the diagonal, the talk's values as open
    squares; every point labelled with its model and dataset; the rows not measured listed below."""
    fig, ax = plt.subplots(figsize=SINGLE)
    done = table[np.isfinite(table["gamma_pred"])].copy()
    compare = done["compare_with"] if "compare_with" in done else pd.Series("gamma_meas", index=done.index)
    done["measured"] = [getattr(r, c) for r, c in zip(done.itertuples(), compare)]
    values = []
    for i, (r, column) in enumerate(zip(done.itertuples(), compare)):
        color = f"C{i % 7}"
        name = f"{model_label(r.model)} / {r.dataset}"
        xerr, yerr = _interval(r, column), _interval(r, "gamma_pred")
        what = ERRORS.get(getattr(r, "error", "error"), getattr(r, "error", "error"))
        ax.errorbar(
            [r.measured],
            [r.gamma_pred],
            xerr=[[xerr[0]], [xerr[1]]],
            yerr=[[yerr[0]], [yerr[1]]],
            fmt="o",
            ms=6,
            color=color,
            label=f"{name} ({what})",
        )
        ax.annotate(name, (r.measured, r.gamma_pred), xytext=(7, 6), textcoords="offset points", fontsize=8)
        values += [r.measured - xerr[0], r.measured + xerr[1], r.gamma_pred - yerr[0], r.gamma_pred + yerr[1]]
        talk = getattr(r, "talk_gamma_pred", math.nan), getattr(r, "talk_gamma_meas", math.nan)
        if math.isfinite(talk[0]) and math.isfinite(talk[1]):
            ax.plot(talk[1], talk[0], "s", mfc="none", ms=7, color=color, label=f"talk's value: {name}")
            values += [talk[0], talk[1]]
    values = [v for v in values if math.isfinite(v)]
    if values:
        lo, hi = min(values), max(values)
        pad = 0.12 * (hi - lo) + 0.05
        lo, hi = lo - pad, hi + pad
    else:
        lo, hi = 0.0, 1.0
        ax.text(0.5, 0.5, "no (model, dataset) measured", ha="center", va="center", transform=ax.transAxes)
    ax.plot([lo, hi], [lo, hi], color="grey", linestyle=":", label="γ_pred = γ_meas")
    ax.set_xlim(lo, hi)
    ax.set_ylim(lo, hi)
    ax.set_aspect("equal")
    ax.set_xlabel("γ_meas: slope of ε_opt(P) (95% CI)")
    ax.set_ylabel("γ_pred = γ1·γ2 (95% CI)")
    ax.set_title("Implicit bias: predicted against measured γ", loc="left")
    for r in table[~np.isfinite(table["gamma_pred"])].itertuples():
        why = textwrap.shorten(str(getattr(r, "message", "") or "unresolved"), 60, placeholder=" …")
        ax.plot([], [], " ", label=f"not measured: {model_label(r.model)} / {r.dataset} ({why})")
    figure_legend(fig, ncol=1)
    return save_figure(fig, path)
