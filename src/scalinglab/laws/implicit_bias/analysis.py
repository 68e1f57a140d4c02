"""Two norm-based scaling laws and their product (D'Amico, Bocchi & Negri), for any model.

Input: rows of (P, seed, norm lambda, test error eps), several per run (a deep net logs many epochs
and its norm grows with them; the perceptron sweep gives one row per fixed norm). Per P:

1. each seed's eps(lambda) is sorted by lambda, interpolated linearly in log lambda onto a common
   log-spaced grid that every seed covers (no extrapolation), and averaged over seeds;
2. lambda_opt(P) is the minimum of that mean curve, refined by a least-squares parabola in
   log lambda over +-opt_halfwidth around the grid minimum; eps_opt(P) the parabola's value there;
   a minimum on the grid's edge is not resolved and that P is left out of the fits (listed in
   `edge_minima`);
3. gamma2: least-squares slope of log lambda_opt against log P, with its standard error;
4. gamma1: the normalised curves eps/eps_opt against u = lambda/lambda_opt, slope of log eps
   against log u over the window lo <= u <= hi, negated; computed for the largest P (the upper
   `upper_fraction` of the resolved P values, at least two) and averaged; its SE is the spread of
   those per-P values over sqrt(count) (the per-P fit residuals are not independent: the grid
   points are interpolated). The window must stay in the early regime: towards u = 1 every curve
   flattens into its minimum (slope 0 there by definition), so a window reaching u = 1 biases
   gamma1 low (perceptron, alpha 16-64, lambda = |w|^2/N: window 0.01-1 gives 0.13, 0.0004-0.01
   gives 0.22; the workflow uses 0.0004-0.04 there and 0.02-0.2 for deep nets' spectral norm);
5. gamma_pred = gamma1 * gamma2 (SE by first-order propagation) against gamma_meas, the negated
   slope of log eps_opt against log P (with SE).
The theory: early eps ~ k1 lambda^-gamma1 (independent of P), lambda_opt ~ k2 P^gamma2 and the
curves collapse, eps/eps_opt = phi(lambda/lambda_opt), so eps_opt ~ P^-(gamma1 gamma2).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from scalinglab.core.errors import UserError


@dataclass
class LineFit:
    slope: float
    intercept: float
    slope_se: float  # nan with fewer than three points
    n: int


def fit_line(x: np.ndarray, y: np.ndarray) -> LineFit:
    """Ordinary least squares y = intercept + slope x, with the usual slope standard error."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    n = x.size
    if n < 2 or np.ptp(x) == 0:
        raise UserError(f"need at least two distinct x values for a slope, got {n}")
    xm = x - x.mean()
    slope = float((xm * (y - y.mean())).sum() / (xm**2).sum())
    intercept = float(y.mean() - slope * x.mean())
    if n > 2:
        resid = y - intercept - slope * x
        se = math.sqrt((resid**2).sum() / (n - 2) / (xm**2).sum())
    else:
        se = float("nan")
    return LineFit(slope, intercept, se, n)


@dataclass
class ImplicitBiasResult:
    gamma1: float
    gamma1_se: float
    gamma2: float
    gamma2_se: float
    gamma_pred: float
    gamma_pred_se: float
    gamma_meas: float
    gamma_meas_se: float
    lambda_opt: dict  # P -> lambda_opt
    eps_opt: dict  # P -> eps_opt
    gamma1_by_p: dict  # P -> gamma1 from that P's normalised curve (only the P used for gamma1)
    window: tuple
    edge_minima: list  # P whose minimum sits on the grid's edge (left out of the fits)
    curves: pd.DataFrame = field(repr=False)  # P, lam, error (seed mean), error_sem, n_seeds
    collapse: pd.DataFrame = field(repr=False)  # P, u = lam/lambda_opt, v = error/eps_opt
    learning_curve: pd.DataFrame = field(repr=False)  # P, lambda_opt, eps_opt, used, fit lines

    def to_dict(self) -> dict:
        return {
            "gamma1": self.gamma1,
            "gamma1_se": self.gamma1_se,
            "gamma2": self.gamma2,
            "gamma2_se": self.gamma2_se,
            "gamma_pred": self.gamma_pred,
            "gamma_pred_se": self.gamma_pred_se,
            "gamma_meas": self.gamma_meas,
            "gamma_meas_se": self.gamma_meas_se,
            "lambda_opt": {_key(p): v for p, v in self.lambda_opt.items()},
            "eps_opt": {_key(p): v for p, v in self.eps_opt.items()},
            "gamma1_by_p": {_key(p): v for p, v in self.gamma1_by_p.items()},
            "gamma1_window": list(self.window),
            "edge_minima": [_key(p) for p in self.edge_minima],
        }

    def summary(self) -> str:
        used = ", ".join(_key(p) for p in self.gamma1_by_p)
        lines = [
            "Implicit-bias scaling laws (D'Amico, Bocchi & Negri)",
            f"  gamma1     = {self.gamma1:.4f} +- {self.gamma1_se:.4f}   (early eps ~ lambda^-gamma1; "
            f"window {self.window[0]:g} <= lambda/lambda_opt <= {self.window[1]:g}; P = {used})",
            f"  gamma2     = {self.gamma2:.4f} +- {self.gamma2_se:.4f}   (lambda_opt ~ P^gamma2)",
            f"  gamma_pred = {self.gamma_pred:.4f} +- {self.gamma_pred_se:.4f}   (gamma1 * gamma2)",
            f"  gamma_meas = {self.gamma_meas:.4f} +- {self.gamma_meas_se:.4f}   (eps_opt ~ P^-gamma)",
            "  P        lambda_opt   eps_opt",
        ]
        for p in self.lambda_opt:
            flag = "  (minimum at grid edge: not used)" if p in self.edge_minima else ""
            lines.append(f"  {_key(p):<8} {self.lambda_opt[p]:<12.5g} {self.eps_opt[p]:.5g}{flag}")
        return "\n".join(lines)


def _key(p) -> str:
    p = float(p)
    return str(int(p)) if p.is_integer() else repr(p)


def _seed_mean_curve(group: pd.DataFrame, norm: str, error: str, seed: str, n_grid: int, min_seeds: int | None):
    """Interpolate each seed's error onto a common log-lambda grid and average (see module doc)."""
    per_seed = []
    for _, run in group.groupby(seed, sort=True):
        # several rows at one norm (or a norm revisited by training): average them first
        curve = run.groupby(norm, sort=True)[error].mean()
        if len(curve) < 2:
            continue
        per_seed.append((np.log(curve.index.to_numpy(float)), curve.to_numpy(float)))
    if not per_seed:
        return None
    need = len(per_seed) if min_seeds is None else min(min_seeds, len(per_seed))
    # the span where at least `need` seeds have data: from the need-th smallest start to the
    # need-th largest end (then each grid point is checked, as the spans need not nest)
    lo = np.sort([c[0][0] for c in per_seed])[need - 1]
    hi = np.sort([c[0][-1] for c in per_seed])[::-1][need - 1]
    if not hi > lo:
        return None
    grid = np.linspace(lo, hi, n_grid)
    values = np.stack([np.interp(grid, x, y, left=np.nan, right=np.nan) for x, y in per_seed])
    count = np.isfinite(values).sum(0)
    keep = count >= need
    grid, values, count = grid[keep], values[:, keep], count[keep]
    mean = np.nanmean(values, axis=0)
    sem = (
        np.where(count > 1, np.nanstd(values, axis=0, ddof=1) / np.sqrt(count), np.nan)
        if len(per_seed) > 1
        else np.full_like(mean, np.nan)
    )
    return grid, mean, sem, count


def _minimum(log_lam: np.ndarray, eps: np.ndarray, halfwidth: float) -> tuple[float, float, bool]:
    """(log lambda_opt, eps_opt, on_edge): a least-squares parabola in log lambda through the mean
    curve within +-halfwidth of its grid minimum (which smooths over seed noise and over the kinks
    of the piecewise-linear interpolation); the grid minimum itself if that parabola is not convex
    or puts its vertex outside the fitted span."""
    i = int(np.argmin(eps))
    if i == 0 or i == len(eps) - 1:
        return float(log_lam[i]), float(eps[i]), True
    near = np.abs(log_lam - log_lam[i]) <= halfwidth
    x, y = log_lam[near], eps[near]
    if near.sum() >= 3:
        a, b, c = np.polyfit(x - log_lam[i], y, 2)
        if a > 0:
            x0 = -b / (2 * a)
            if x[0] - log_lam[i] <= x0 <= x[-1] - log_lam[i]:
                return float(log_lam[i] + x0), float(np.polyval([a, b, c], x0)), False
    return float(log_lam[i]), float(eps[i]), False


def analyse(
    frame: pd.DataFrame,
    *,
    p: str = "P",
    seed: str = "seed",
    norm: str = "norm",
    error: str = "error",
    window: tuple[float, float] = (0.02, 0.2),
    upper_fraction: float = 0.5,
    n_grid: int = 400,
    opt_halfwidth: float = 0.5,
    min_seeds: int | None = None,
    norm_is_log: bool = False,
) -> ImplicitBiasResult:
    """Measure gamma1, gamma2, lambda_opt(P) and gamma_pred vs gamma_meas (see the module doc).

    `norm_is_log`: the norm column holds log lambda (as deep nets log it, to avoid overflow).
    `min_seeds`: grid points need this many seeds (default: all seeds of that P).
    `opt_halfwidth`: half-width, in natural-log units of lambda, of the parabola fit at the minimum.
    """
    for name in (p, seed, norm, error):
        if name not in frame.columns:
            raise UserError(f"missing column '{name}'; available: {', '.join(map(str, frame.columns))}")
    lo_u, hi_u = float(window[0]), float(window[1])
    if not (0 < lo_u < hi_u):
        raise UserError(f"window must satisfy 0 < lo < hi, got {window}")
    if not (0 < upper_fraction <= 1):
        raise UserError(f"upper_fraction must lie in (0, 1], got {upper_fraction}")
    data = frame[[p, seed, norm, error]].copy()
    for name in (p, norm, error):
        data[name] = pd.to_numeric(data[name], errors="coerce")
    data = data.replace([np.inf, -np.inf], np.nan).dropna()
    if norm_is_log:
        data[norm] = np.exp(data[norm])
    if (data[norm] <= 0).any() or (data[error] <= 0).any() or (data[p] <= 0).any():
        raise UserError(f"columns {p}, {norm} and {error} must be positive (log scales); found zero or negative values")
    if data[p].nunique() < 3:
        raise UserError(f"need at least three distinct {p} values to fit the laws, got {data[p].nunique()}")

    curves, collapse_parts, lam_opt, eps_opt, edge = [], [], {}, {}, []
    for pv, group in data.groupby(p, sort=True):
        mean = _seed_mean_curve(group, norm, error, seed, n_grid, min_seeds)
        if mean is None:
            raise UserError(
                f"{p}={_key(pv)}: each seed needs at least two distinct norms and the seeds' norm ranges must overlap"
            )
        grid, eps, sem, count = mean
        curves.append(pd.DataFrame({"P": pv, "lam": np.exp(grid), "error": eps, "error_sem": sem, "n_seeds": count}))
        x0, e0, on_edge = _minimum(grid, eps, opt_halfwidth)
        lam_opt[pv], eps_opt[pv] = math.exp(x0), e0
        if on_edge:
            edge.append(pv)
        collapse_parts.append(pd.DataFrame({"P": pv, "u": np.exp(grid - x0), "v": eps / e0}))

    resolved = [pv for pv in lam_opt if pv not in edge]
    if len(resolved) < 3:
        raise UserError(
            f"only {len(resolved)} {p} values have their error minimum inside the norm range (need 3); "
            "extend the norm range (train longer, or a wider lambda grid)"
        )
    log_p = np.log(np.array(resolved, float))
    fit2 = fit_line(log_p, np.log([lam_opt[v] for v in resolved]))
    fit_meas = fit_line(log_p, np.log([eps_opt[v] for v in resolved]))

    n_upper = max(2, math.ceil(upper_fraction * len(resolved)))
    gamma1_by_p = {}
    collapse = pd.concat(collapse_parts, ignore_index=True)
    for pv in resolved[-n_upper:]:
        part = collapse[(collapse.P == pv) & (collapse.u >= lo_u) & (collapse.u <= hi_u)]
        if len(part) < 3 or part.u.max() / part.u.min() < 1.5:
            raise UserError(
                f"{p}={_key(pv)}: the window {lo_u:g} <= lambda/lambda_opt <= {hi_u:g} holds too little of the curve; "
                "widen the window or extend the norm range towards small norms"
            )
        gamma1_by_p[pv] = -fit_line(np.log(part.u), np.log(part.v)).slope
    g1 = np.array(list(gamma1_by_p.values()))
    gamma1 = float(g1.mean())
    gamma1_se = float(g1.std(ddof=1) / math.sqrt(len(g1)))
    gamma2, gamma2_se = fit2.slope, fit2.slope_se
    gamma_pred = gamma1 * gamma2
    gamma_pred_se = math.sqrt((gamma2 * gamma1_se) ** 2 + (gamma1 * gamma2_se) ** 2)

    ps = np.array(list(lam_opt), float)
    learning = pd.DataFrame(
        {
            "P": ps,
            "lambda_opt": [lam_opt[v] for v in lam_opt],
            "eps_opt": [eps_opt[v] for v in lam_opt],
            "used": [v not in edge for v in lam_opt],
            "lambda_opt_fit": np.exp(fit2.intercept + fit2.slope * np.log(ps)),
            "eps_opt_fit": np.exp(fit_meas.intercept + fit_meas.slope * np.log(ps)),
        }
    )
    return ImplicitBiasResult(
        gamma1=gamma1,
        gamma1_se=gamma1_se,
        gamma2=gamma2,
        gamma2_se=gamma2_se,
        gamma_pred=gamma_pred,
        gamma_pred_se=gamma_pred_se,
        gamma_meas=-fit_meas.slope,
        gamma_meas_se=fit_meas.slope_se,
        lambda_opt=lam_opt,
        eps_opt=eps_opt,
        gamma1_by_p=gamma1_by_p,
        window=(lo_u, hi_u),
        edge_minima=edge,
        curves=pd.concat(curves, ignore_index=True),
        collapse=collapse,
        learning_curve=learning,
    )
