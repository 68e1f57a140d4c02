"""The teacher/student figures: loss against N with the fitted and theory lines, 4/alpha against d beside
the data's d-hat, learning curves. Each writes a PNG and its PDF twin and returns the (closed) figure."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from scalinglab.core.plotting import SINGLE, figure_legend, log_axes, plain_number, plt, ramp, save_figure

MODEL = "MLP student"


def _fmt_p(P: float) -> str:
    return "∞" if math.isinf(P) else f"{int(P):,}"


def estimator_label(name: str | None) -> str:
    """'mle_k20' -> 'MLE, k = 20'; 'twonn' -> 'TwoNN'; None -> 'estimated'."""
    if not name:
        return "estimated"
    if name.startswith("mle_k"):
        return f"MLE, k = {name[5:]}"
    return {"twonn": "TwoNN", "mle": "MLE"}.get(name, name)


def _estimates(dim_estimates) -> dict:
    """{d: d-hat} from a dict or a frame with columns d and one estimate column."""
    if dim_estimates is None:
        return {}
    if isinstance(dim_estimates, pd.DataFrame):
        column = [c for c in dim_estimates.columns if c != "d"][-1]
        dim_estimates = dict(zip(dim_estimates["d"], dim_estimates[column]))
    return {int(d): float(v) for d, v in dim_estimates.items() if v is not None and np.isfinite(v) and v > 0}


def loss_vs_n(
    final: pd.DataFrame,
    fits: pd.DataFrame,
    path,
    theory_dims: dict | None = None,
    *,
    estimator: str | None = None,
    model: str = MODEL,
):
    """Final test MSE against N per d (points: seeds), with the least-squares fit lines and the band of
    their slope's 95% CI.

    theory_dims maps d to a dimension estimate d-hat (`estimator` names it, e.g. 'mle_k20'); its line
    N^(-4/d-hat) is drawn dashed through the fitted line's geometric centre.
    """
    theory = _estimates(theory_dims)
    P_values = sorted(final["P"].unique())
    fig, axes = plt.subplots(1, len(P_values), figsize=(SINGLE[0] * len(P_values), SINGLE[1] + 0.4), squeeze=False)
    ols = fits[fits["method"] == "ols"]
    d_values = sorted(final["d"].unique())
    colors = ramp(len(d_values))
    for ax, P in zip(axes[0], P_values):
        banded = False
        for color, d in zip(colors, d_values):
            cells = final[(final["d"] == d) & (final["P"] == P)]
            ax.scatter(cells["N"], cells["test_loss"], s=14, color=color, alpha=0.7, linewidths=0)
            fit = ols[(ols["d"] == d) & (ols["P"] == P)]
            if fit.empty or cells.empty:
                continue
            fit = fit.iloc[0]
            n_grid = np.geomspace(cells["N"].min(), cells["N"].max(), 50)
            log_mid = np.log(n_grid).mean()
            centre = fit["intercept"] + fit["slope"] * log_mid
            ax.plot(
                n_grid,
                np.exp(fit["intercept"]) * n_grid ** fit["slope"],
                color=color,
                label=f"d = {d}: fit α = {fit['alpha']:.2f}, 4/α = {fit['dim']:.1f} "
                + (
                    f"[{fit['dim_lo']:.1f}, {fit['dim_hi']:.1f}]"
                    if np.isfinite(fit["dim_lo"]) and np.isfinite(fit["dim_hi"])
                    else "(CI n/a)"
                ),
            )
            if np.isfinite(fit["ci_lo"]) and np.isfinite(fit["ci_hi"]):
                ends = [np.exp(centre + s * (np.log(n_grid) - log_mid)) for s in (fit["ci_lo"], fit["ci_hi"])]
                ax.fill_between(
                    n_grid,
                    np.minimum(*ends),
                    np.maximum(*ends),
                    color=color,
                    alpha=0.15,
                    linewidth=0,
                )
                banded = True
            if d in theory:
                ax.plot(
                    n_grid,
                    np.exp(centre - 4 / theory[d] * (np.log(n_grid) - log_mid)),
                    color=color,
                    linestyle="--",
                    linewidth=1.2,
                    label=f"d = {d}: theory N^(−4/d̂), d̂ = {theory[d]:.1f} ({estimator_label(estimator)})",
                )
        if banded:
            ax.fill_between([], [], [], color="0.5", alpha=0.3, lw=0, label="95% CI of the fitted slope")
        ax.scatter([], [], s=14, color="0.45", alpha=0.7, linewidths=0, label="seeds (final step)")
        log_axes(ax)
        ax.set_xlabel("parameters N (log)")
        ax.set_ylabel("test MSE, final step (log)")
        ax.set_title(f"{model} on teacher data, P = {_fmt_p(P)}", loc="left")
        ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.2), fontsize=7)
    return save_figure(fig, path)


def dim_vs_d(fits: pd.DataFrame, path, *, dim_estimates=None, estimator: str | None = None, model: str = MODEL):
    """4/alpha against the teacher's manifold dimension d, with 95% CI bars, the line 4/alpha = d and,
    given `dim_estimates` ({d: d-hat} or the frame of dimension.table.reference_estimates), the data's
    estimated dimension d-hat at each d: the value 4/alpha should take if 4/alpha = d-hat."""
    fig, ax = plt.subplots(figsize=SINGLE)
    markers = {"ols": ("o", "least squares"), "quantile": ("s", "median regression")}
    offset = {"ols": -0.08, "quantile": 0.08}
    finite = []
    for n, (method, group) in enumerate(fits.groupby("method", sort=False)):
        marker, label = markers.get(method, ("^", method))
        for m, (P, sub) in enumerate(group.groupby("P")):
            x = sub["manifold_dim"].to_numpy(float) + offset.get(method, 0)
            y = sub["dim"].to_numpy(float)
            lo = np.nan_to_num(np.clip(y - sub["dim_lo"].to_numpy(float), 0, None))
            upper = sub["dim_hi"].to_numpy(float)
            hi = np.nan_to_num(np.clip(upper - y, 0, None), posinf=0.0)  # no CI (NaN): no bar
            hi = np.where(np.isposinf(upper), 1e6, hi)  # an open upper bound runs off the top of the axes
            finite += [*y, *sub["dim_lo"], *sub["dim_hi"]]
            color = f"C{(n * 3 + m) % 7}"
            ax.errorbar(x, y, yerr=[lo, hi], fmt=marker, color=color, label=f"4/α, {label}, P = {_fmt_p(P)}")
    d_values = sorted(fits["manifold_dim"].unique())
    estimates = _estimates(dim_estimates)
    if estimates:
        ds = [d for d in d_values if d in estimates]
        label = f"d̂ of the data ({estimator_label(estimator)})"
        ax.plot(ds, [estimates[d] for d in ds], "D", mfc="none", mec="black", ms=7, mew=1.3, ls="none", label=label)
        finite += [estimates[d] for d in ds]
    values = np.array([v for v in [*finite, *d_values] if np.isfinite(v)], float)
    lo, hi = float(values.min()), float(values.max())
    pad = 0.08 * (hi - lo) + 0.3
    ax.set_xlim(min(d_values) - 0.6, max(d_values) + 0.6)
    ax.set_ylim(max(lo - pad, 0), hi + pad)
    span = np.array([min(d_values) - 0.6, max(d_values) + 0.6])
    ax.plot(span, span, color="grey", linestyle=":", label="4/α = d (Sharma & Kaplan)")
    ax.set_xticks(d_values, [str(int(d)) for d in d_values])
    ax.set_xlabel("teacher manifold dimension d")
    ax.set_ylabel("4/α (95% CI)")
    ax.set_title(f"{model} on teacher data: 4/α against d", loc="left")
    figure_legend(fig)
    return save_figure(fig, path)


def learning_curves(table: pd.DataFrame, path, *, model: str = MODEL):
    """Test MSE against step for every width, one panel per d at the largest P (median over seeds,
    band: the seeds' range): the convergence check."""
    table = table[table["status"] == "ok"]
    d_values = sorted(table["d"].unique())
    cols = min(len(d_values), 4)
    rows = math.ceil(len(d_values) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(2.9 * cols + 1.4, 2.6 * rows + 0.5), squeeze=False, sharex=True)
    P = table["P"].max()
    widths = sorted(table["width"].unique())
    colors = dict(zip(widths, ramp(len(widths), "plasma")))
    for i, (ax, d) in enumerate(zip(axes.flat, d_values)):
        sub = table[(table["d"] == d) & (table["P"] == P) & (table["step"] > 0)]
        for width in sorted(sub["width"].unique()):
            runs = sub[sub["width"] == width].groupby("step")["test_loss"]
            curve, low, high = runs.median(), runs.min(), runs.max()
            N = sub.loc[sub["width"] == width, "N"].iloc[0] if "N" in sub else None
            label = f"width {width}" + ("" if N is None else f" (N = {plain_number(N)})")
            ax.plot(curve.index, curve.values, color=colors[width], label=label if i == 0 else "_")
            ax.fill_between(low.index, low.values, high.values, color=colors[width], alpha=0.15, linewidth=0)
        log_axes(ax)
        ax.set_title(f"teacher d = {d}")
        if i % cols == 0:
            ax.set_ylabel("test MSE (log)")
        if i // cols == rows - 1 or i + cols >= len(d_values):
            ax.set_xlabel("training step (log)")
    for ax in list(axes.flat)[len(d_values) :]:
        ax.axis("off")
    figure_legend(fig, axes.flat[0], title="student width (parameters); lines: median over seeds, bands: their range")
    fig.suptitle(f"{model} on teacher data, P = {_fmt_p(P)}: test MSE during training")
    return save_figure(fig, path)
