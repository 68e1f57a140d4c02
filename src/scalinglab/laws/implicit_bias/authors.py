"""The authors' analysis, step by step as published with their code (D'Amico, Bocchi & Negri,
arXiv:2505.13230; github Francill99/deep_norm, analysis/Main_analysis_notebook.ipynb):

1. common grid: each seed's (lambda, error) log is interpolated linearly in log10 lambda onto G
   log-spaced lambda between the table's smallest and largest norm, NaN outside the seed's range,
   and the seeds are averaged with nanmean. When every curve's norms already lie on one common set
   of values (curves averaged onto a grid elsewhere), that set is the grid and nothing moves;
2. lambda* = the mean curve's grid argmin (a minimum on the curve's edge is kept), eps* the error there;
3. gamma1 = -mean over P >= gamma1_min_p of the least-squares slopes of log10(eps/eps*) on
   log10(lambda/lambda*) over lo <= lambda/lambda* <= hi (0 and inf open an end); its error is
   sqrt(sum sigma_i^2 / n), sigma_i each slope's standard error (their np.polyfit(cov=True), whose
   sqrt(cov[0, 0]) is the ordinary sqrt(RSS/(n-2)/Sxx) in numpy >= 1.16);
4. gamma2 = least-squares slope of ln l0 on ln P (P >= gamma2_min_p), l0(P) the arithmetic mean over
   seeds of each seed's own raw argmin lambda; its error the ordinary slope standard error;
5. gamma_meas = -slope of ln eps* on ln P over all P, and
   sigma = sqrt((gamma1 gamma2 sqrt((e1/gamma1)^2 + (e2/gamma2)^2))^2 + se(gamma_meas)^2).
Two details the notebook leaves implicit: a seed's rows are sorted by norm (np.interp needs increasing
x; their logs grow along training, where this changes nothing), and rows at one norm are averaged.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pandas as pd

from scalinglab.core.errors import UserError
from scalinglab.laws.implicit_bias.common import ImplicitBiasResult, SeedCurve, exp_or_inf, fit_line, key

LN10 = math.log(10.0)
# window ends are compared in log10 lambda/lambda*; a grid point within this of an end counts as inside
# (the notebook compares lambda/lambda* in linear scale, which rounds differently by ~1e-16)
EDGE_TOL = 1e-12


def common_grid(curves: dict[float, list[SeedCurve]]) -> np.ndarray | None:
    """The table's own norm grid (ln), when every curve's norms are one contiguous run of the sorted
    set of all norms and some norm is shared by two curves; else None."""
    runs = [c.x for seeds in curves.values() for c in seeds]
    values = np.unique(np.concatenate(runs))
    if sum(len(r) for r in runs) <= len(values):
        return None  # no norm shared by two curves: not one common grid
    for r in runs:
        i = int(np.searchsorted(values, r[0]))
        if i + len(r) > len(values) or not np.array_equal(values[i : i + len(r)], r):
            return None
    return values


def analyse_authors(
    curves: dict[float, list[SeedCurve]],
    *,
    window: tuple[float, float],
    gamma1_min_p: float | None = None,
    gamma2_min_p: float | None = None,
    grid: int = 50,
    p_name: str = "P",
) -> ImplicitBiasResult:
    lo, hi = float(window[0]), float(window[1])
    if not (0 <= lo < hi):
        raise UserError(f"window must satisfy 0 <= lo < hi (0 and inf leave an end open), got {window}")
    if grid < 3:
        raise UserError(f"grid needs at least 3 points, got {grid}")
    ps = list(curves)
    own = common_grid(curves)
    if own is not None:
        grid10 = own / LN10
    else:
        every = np.concatenate([c.x for seeds in curves.values() for c in seeds])
        grid10 = np.linspace(every.min() / LN10, every.max() / LN10, grid)

    # steps 1 and 2: mean curves on the grid, lambda* and eps*
    mean = {}
    star, eps_star, edge, frames = {}, {}, [], []
    for pv in ps:
        values = np.stack([np.interp(grid10, c.x / LN10, c.y, left=np.nan, right=np.nan) for c in curves[pv]])
        count = np.isfinite(values).sum(0)
        if not count.any():
            raise UserError(f"{p_name}={key(pv)}: no seed has a norm inside the grid")
        with warnings.catch_warnings():  # grid points no seed covers stay NaN ('Mean of empty slice')
            warnings.simplefilter("ignore", RuntimeWarning)
            m = np.nanmean(values, axis=0)
        mean[pv] = m
        i = int(np.nanargmin(m))
        star[pv], eps_star[pv] = float(grid10[i]), float(m[i])
        finite = np.flatnonzero(np.isfinite(m))
        if i in (finite[0], finite[-1]):
            edge.append(pv)
        frames.append(
            pd.DataFrame({"P": pv, "log_lam": grid10 * LN10, "error": m, "error_sem": np.nan, "n_seeds": count}).dropna(
                subset=["error"]
            )
        )

    # step 3: gamma1 from the per-P slopes in the window
    log_lo = -math.inf if lo == 0 else math.log10(lo) - EDGE_TOL
    log_hi = math.inf if math.isinf(hi) else math.log10(hi) + EDGE_TOL
    g1_ps = [pv for pv in ps if gamma1_min_p is None or pv >= gamma1_min_p]
    if not g1_ps:
        raise UserError(f"no {p_name} value is >= gamma1_min_p = {gamma1_min_p:g}")
    slopes, sigmas, collapse = {}, {}, []
    for pv in ps:
        lu = grid10 - star[pv]
        m = mean[pv]
        inside = np.isfinite(m) & (lu >= log_lo) & (lu <= log_hi)
        collapse.append(
            pd.DataFrame({"P": pv, "u": 10.0**lu, "v": m / eps_star[pv], "in_fit": inside & (pv in g1_ps)}).dropna(
                subset=["v"]
            )
        )
        if pv not in g1_ps:
            continue
        if inside.sum() < 3:
            raise UserError(
                f"{p_name}={key(pv)}: the window {lo:g} <= lambda/lambda* <= {hi:g} holds {int(inside.sum())} "
                "points of the mean curve (need 3); widen --window or raise --gamma1-min-p"
            )
        fit = fit_line(lu[inside], np.log10(m[inside] / eps_star[pv]))
        slopes[pv], sigmas[pv] = -fit.slope, fit.slope_se
    g1 = np.array(list(slopes.values()))
    s1 = np.array(list(sigmas.values()))
    gamma1 = float(g1.mean())
    gamma1_se = math.sqrt(float((s1**2).sum()) / len(s1))

    # step 4: gamma2 from l0, the mean over seeds of each seed's raw argmin lambda (in log space:
    # ln l0 = logsumexp(ln lambda_s) - ln n, so that a norm logged as ln R cannot overflow)
    log_l0 = {}
    for pv in ps:
        xs = np.array([c.x_argmin for c in curves[pv]])
        top = xs.max()
        log_l0[pv] = float(top + math.log(np.exp(xs - top).sum()) - math.log(len(xs)))
    g2_ps = [pv for pv in ps if gamma2_min_p is None or pv >= gamma2_min_p]
    if len(g2_ps) < 2:
        raise UserError(f"gamma2 needs two {p_name} values >= gamma2_min_p, got {len(g2_ps)}")
    fit2 = fit_line(np.log(g2_ps), [log_l0[pv] for pv in g2_ps])
    gamma2, gamma2_se = fit2.slope, fit2.slope_se

    # step 5: gamma_meas over all P, and sigma; sqrt((g2 e1)^2 + (g1 e2)^2) is their
    # g1 g2 sqrt((e1/g1)^2 + (e2/g2)^2), written so that a zero exponent does not divide by zero
    fit_meas = fit_line(np.log(ps), np.log([eps_star[pv] for pv in ps]))
    gamma_pred = gamma1 * gamma2
    pred_se = math.hypot(gamma2 * gamma1_se, gamma1 * gamma2_se)
    sigma = math.hypot(pred_se, fit_meas.slope_se)

    p_arr = np.array(ps, float)
    learning = pd.DataFrame(
        {
            "P": p_arr,
            "lambda_opt": [exp_or_inf(star[pv] * LN10) for pv in ps],
            "eps_opt": [eps_star[pv] for pv in ps],
            "censored": False,
            "lambda_opt_fit": [exp_or_inf(fit2.intercept + fit2.slope * math.log(pv)) for pv in ps],
            "eps_opt_fit": np.exp(fit_meas.intercept + fit_meas.slope * np.log(p_arr)),
        }
    )
    details = {
        "sigma": sigma,
        "l0": {key(pv): exp_or_inf(log_l0[pv]) for pv in ps},
        "log_lambda_opt": {key(pv): star[pv] * LN10 for pv in ps},
        "gamma1_se_by_p": {key(pv): v for pv, v in sigmas.items()},
        "gamma1_min_p": gamma1_min_p,
        "gamma2_min_p": gamma2_min_p,
        "grid": "table" if own is not None else grid,
    }
    return ImplicitBiasResult(
        method="authors",
        gamma1=gamma1,
        gamma1_se=gamma1_se,
        gamma2=gamma2,
        gamma2_se=gamma2_se,
        gamma_pred=gamma_pred,
        gamma_pred_se=pred_se,
        gamma_meas=-fit_meas.slope,
        gamma_meas_se=fit_meas.slope_se,
        lambda_opt={pv: exp_or_inf(star[pv] * LN10) for pv in ps},
        eps_opt=dict(eps_star),
        gamma1_by_p=slopes,
        window=(lo, hi),
        edge_minima=edge,
        details=details,
        curves=_with_lam(pd.concat(frames, ignore_index=True)),
        collapse=pd.concat(collapse, ignore_index=True),
        learning_curve=learning,
    )


def _with_lam(frame: pd.DataFrame) -> pd.DataFrame:
    frame["lam"] = [exp_or_inf(x) for x in frame["log_lam"]]
    return frame
