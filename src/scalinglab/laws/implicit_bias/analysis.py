"""Two norm-based scaling laws and their product (D'Amico, Bocchi & Negri, arXiv:2505.13230), for any
model: early in training eps ~ k1 lambda^-gamma1 (independent of P), the norm at the error minimum
lambda_opt ~ k2 P^gamma2, and the curves collapse, eps/eps_opt = phi(lambda/lambda_opt), so that
eps_opt ~ P^-(gamma1 gamma2). Input: rows of (P, seed, norm lambda, test error eps), several per run
(a deep net logs many epochs along which its norm grows; the perceptron sweep gives one row per
fixed norm).

Two methods:
- "robust" (the default, robust.py): no hand-set window; censored minima handled as bounds; a
  bootstrap over seeds and a sensitivity table;
- "authors" (authors.py): the authors' published procedure exactly, with their hand-set window.
"""

from __future__ import annotations

import math

import pandas as pd

from scalinglab.core.errors import UserError
from scalinglab.laws.implicit_bias.authors import analyse_authors
from scalinglab.laws.implicit_bias.common import ImplicitBiasResult, LineFit, fit_line, prepare
from scalinglab.laws.implicit_bias.robust import BAND, Options, analyse_robust

__all__ = ["METHODS", "ImplicitBiasResult", "LineFit", "analyse", "authors_cross_check", "fit_line", "upper_min_p"]
METHODS = ("robust", "authors")


def analyse(
    frame: pd.DataFrame,
    *,
    method: str = "robust",
    p: str = "P",
    seed: str = "seed",
    norm: str = "norm",
    error: str = "error",
    norm_is_log: bool = False,
    window: tuple[float, float] | None = None,
    gamma1_min_p: float | None = None,
    gamma2_min_p: float | None = None,
    grid: int = 50,
    band: tuple[float, float] = BAND,
    min_seeds: int | None = None,
    opt_halfwidth: float = 2.0,
    bootstrap: int = 200,
    bootstrap_seed: int = 0,
    sensitivity: bool = True,
) -> ImplicitBiasResult:
    """gamma1, gamma2, lambda_opt(P) and gamma_pred against gamma_meas (see the module doc).

    Both methods: `norm_is_log` (the norm column holds ln lambda, as deep nets log it), `window`
    (gamma1 fitted over lo <= lambda/lambda_opt <= hi; 0 and inf leave an end open), `gamma1_min_p`
    and `gamma2_min_p` (only P at or above these enter gamma1, gamma2).
    authors: `grid`, the number of log-spaced norms of the common grid; `window` is required.
    robust: `band` (gamma1's points by the fraction of each curve's error drop, used when `window`
    is None), `min_seeds` (grid points need this many seeds; default a strict majority of the P's
    seeds), `opt_halfwidth` (the parabola at the minimum spans +- this many grid steps),
    `bootstrap` resamples (0: none) with `bootstrap_seed`, and `sensitivity`.
    """
    if method not in METHODS:
        raise UserError(f"unknown method '{method}'; choose one of {', '.join(METHODS)}")
    curves = prepare(frame, p=p, seed=seed, norm=norm, error=error, norm_is_log=norm_is_log)
    if method == "authors":
        if window is None:
            raise UserError("method authors needs a window LO HI in lambda/lambda* (the authors set it by hand)")
        return analyse_authors(
            curves, window=window, gamma1_min_p=gamma1_min_p, gamma2_min_p=gamma2_min_p, grid=grid, p_name=p
        )
    opts = Options(
        band=tuple(band),
        window=None if window is None else (float(window[0]), float(window[1])),
        gamma1_min_p=gamma1_min_p,
        gamma2_min_p=gamma2_min_p,
        min_seeds=min_seeds,
        halfwidth=opt_halfwidth,
    )
    return analyse_robust(
        curves, opts, bootstrap=bootstrap, bootstrap_seed=bootstrap_seed, sensitivity=sensitivity, p_name=p
    )


def upper_min_p(ps, fraction: float) -> float:
    """The smallest P of the largest `fraction` of the P values (at least two): the authors' P_min
    that averages gamma1 over the upper part of the sweep."""
    if not (0 < fraction <= 1):
        raise UserError(f"upper_fraction must lie in (0, 1], got {fraction}")
    ps = sorted(set(float(v) for v in ps))
    return ps[-min(len(ps), max(2, math.ceil(fraction * len(ps))))]


def authors_cross_check(frame: pd.DataFrame, *, window, upper_fraction: float, p: str = "P", **columns) -> dict:
    """The authors' procedure beside the default, as a stage records it: their window, gamma1 over
    the upper `upper_fraction` of P (gamma1_min_p), gamma2 over all P, G = 50; {'status':
    'unresolved', 'message'} instead of an error when it cannot be measured."""
    try:
        min_p = upper_min_p(pd.to_numeric(frame[p], errors="coerce").dropna(), upper_fraction)
        result = analyse(frame, method="authors", p=p, window=tuple(window), gamma1_min_p=min_p, **columns)
    except UserError as exc:
        return {"method": "authors", "status": "unresolved", "message": str(exc)}
    return {**result.to_dict(), "status": "ok", "message": ""}
