"""The default implicit-bias analysis: the authors' laws (D'Amico, Bocchi & Negri, arXiv:2505.13230)
measured without a hand-set window, with censored minima and seed noise carried into the answer.

Per P:
1. mean curve: each seed's error is interpolated linearly in ln lambda onto a grid whose step is the
   runs' own median logging step (finer would invent resolution, coarser would waste it), and
   averaged over the seeds; the curve keeps only the span where a strict majority of that P's seeds
   has data (`min_seeds`), because where seeds drop out the mean jumps by their level differences;
2. lambda_opt: a least-squares parabola in ln lambda over +-`halfwidth` grid steps around the grid
   minimum (its width tied to the step, so a norm spanning 70 decades is treated like one spanning
   2); its vertex if convex and inside the fitted points, else the grid minimum. +-2 steps (5
   points) keeps the vertex's bias from the minimum's asymmetry small: on curves
   eps = k1 lam^-0.4 (1 + 0.4/3 u^3.4), u = lam/lambda_opt, it puts ln lambda_opt 0.075 low at +-3
   steps, 0.04 low at +-2, and a bias shared by every P cancels in gamma2 only where no bound sits
   between the biased and the true line. A minimum on the
   curve's last point, or a parabola whose vertex lies past the last point it reaches, is censored:
   lambda_opt >= the last norm reached (and eps_opt <= the error there); likewise at the first point;
3. gamma1: on each uncensored curve left of lambda_opt, the points whose error drop
   d = ln(eps/eps_opt) / ln(eps_max/eps_opt) lies in `band` (eps_max the curve's highest error left
   of the minimum); minus the least-squares slope of ln eps on ln lambda there; averaged over P.
   The band is in the error's own scale, so it needs no lambda scale: it leaves out the flattening
   into the minimum (d near 0, where every slope tends to 0) and the start (d near 1, the initial
   plateau); `window` in lambda/lambda_opt replaces it for users who want the authors' form;
4. gamma2 and gamma_meas: lines of ln lambda_opt and ln eps_opt against ln P fitted with the
   censored P as bounds (Tobit, censored.py), not dropped and not taken at face value;
5. a bootstrap over seeds: each P's seeds are resampled with replacement (independently across P:
   each (P, seed) is its own run) and steps 1-4 rerun, so gamma_pred's interval carries the
   covariance of gamma1 and gamma2. With n seeds per P its variance is low by about (n-1)/n;
   `analytic_se` gives the regression standard errors beside it;
6. `sensitivity`: gamma1, gamma2, gamma_pred and gamma_meas again over other bands (or windows) and
   P ranges.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, replace

import numpy as np
import pandas as pd

from scalinglab.core.errors import UserError
from scalinglab.laws.implicit_bias.censored import censored_line
from scalinglab.laws.implicit_bias.common import ImplicitBiasResult, SeedCurve, exp_or_inf, interpolate, key

BAND = (0.2, 0.8)
SENSITIVITY_BANDS = ((0.1, 0.7), (0.2, 0.8), (0.3, 0.9), (0.1, 0.9))
# a curve whose error falls by less than this factor left of its minimum shows no early regime
MIN_DROP = 1.05


@dataclass(frozen=True)
class Options:
    band: tuple = BAND
    window: tuple | None = None
    gamma1_min_p: float | None = None
    gamma2_min_p: float | None = None
    min_seeds: int | None = None
    halfwidth: float = 2.0


def mean_curve(seeds: list[SeedCurve], min_seeds: int | None):
    """(grid, mean, sem, count) on the span where `need` seeds have data, or None."""
    need = len(seeds) // 2 + 1 if min_seeds is None else min(min_seeds, len(seeds))
    steps = [float(np.median(np.diff(c.x))) for c in seeds if len(c.x) >= 2]
    if not steps:
        return None
    step = float(np.median(steps))
    lo = np.sort([c.x[0] for c in seeds])[need - 1]
    hi = np.sort([c.x[-1] for c in seeds])[::-1][need - 1]
    if not hi > lo or not step > 0:
        return None
    grid = np.linspace(lo, hi, max(int(math.ceil((hi - lo) / step - 1e-9)) + 1, 3))
    values = np.stack([interpolate(c, grid) for c in seeds])
    count = np.isfinite(values).sum(0)
    keep = count >= need
    if keep.sum() < 3:
        return None
    grid, values, count = grid[keep], values[:, keep], count[keep]
    mean = np.nanmean(values, axis=0)
    with warnings.catch_warnings():  # a point with one seed has no spread: its sem stays NaN
        warnings.simplefilter("ignore", RuntimeWarning)
        sem = np.where(count > 1, np.nanstd(values, axis=0, ddof=1) / np.sqrt(count), np.nan)
    return grid, mean, sem, count


def optimum(grid: np.ndarray, mean: np.ndarray, halfwidth: float):
    """(ln lambda_opt, eps_opt, side): side None, 'above' (lambda_opt >= the value) or 'below'."""
    i, last = int(np.argmin(mean)), len(mean) - 1
    if i == last:
        return float(grid[-1]), float(mean[-1]), "above"
    if i == 0:
        return float(grid[0]), float(mean[0]), "below"
    step = float(np.median(np.diff(grid)))
    near = np.abs(grid - grid[i]) <= halfwidth * step * (1 + 1e-9)
    if near.sum() >= 3:
        idx = np.flatnonzero(near)
        a, b, c = np.polyfit(grid[idx] - grid[i], mean[idx], 2)
        if a > 0:
            x0 = grid[i] - b / (2 * a)
            if grid[idx[0]] <= x0 <= grid[idx[-1]]:
                return float(x0), float(np.polyval([a, b, c], x0 - grid[i])), None
            if x0 > grid[-1] and idx[-1] == last:  # still falling where the curve ends
                return float(grid[-1]), float(mean[-1]), "above"
            if x0 < grid[0] and idx[0] == 0:
                return float(grid[0]), float(mean[0]), "below"
    return float(grid[i]), float(mean[i]), None


def _gamma1_points(grid, mean, x0, e0, opts: Options):
    """Mask of the points that gamma1 is fitted on, or a reason why there are none."""
    left = grid < x0
    if opts.window is not None:
        lu = grid - x0
        lo = -math.inf if opts.window[0] == 0 else math.log(opts.window[0])
        hi = math.inf if math.isinf(opts.window[1]) else math.log(opts.window[1])
        inside = (lu >= lo) & (lu <= hi)
    else:
        if not left.any():
            return None, "no points left of lambda_opt"
        drop = np.log(mean / e0)
        top = float(drop[left].max())
        if top < math.log(MIN_DROP):
            return None, f"the error falls by less than {MIN_DROP:g}x before its minimum"
        d = drop / top
        inside = left & (d >= opts.band[0]) & (d <= opts.band[1])
    if inside.sum() < 3:
        return None, f"{int(inside.sum())} points in the gamma1 {'window' if opts.window else 'band'} (need 3)"
    return inside, ""


def estimate(curves: dict[float, list[SeedCurve]], opts: Options, p_name: str = "P", frames: bool = False) -> dict:
    """Steps 1-4 on one set of curves (the data, a bootstrap resample, a sensitivity variant)."""
    per_p = {}
    for pv, seeds in curves.items():
        mc = mean_curve(seeds, opts.min_seeds)
        if mc is None:
            raise UserError(
                f"{p_name}={key(pv)}: the seeds' norm ranges do not overlap on three points "
                "(each seed needs at least two distinct norms)"
            )
        grid, mean, sem, count = mc
        x0, e0, side = optimum(grid, mean, opts.halfwidth)
        per_p[pv] = (grid, mean, sem, count, x0, e0, side)
    ps = list(per_p)
    g1_by_p, skipped, masks = {}, {}, {}
    for pv, (grid, mean, _, _, x0, e0, side) in per_p.items():
        if opts.gamma1_min_p is not None and pv < opts.gamma1_min_p:
            continue
        if side is not None:
            skipped[pv] = "censored minimum"
            continue
        mask, why = _gamma1_points(grid, mean, x0, e0, opts)
        if mask is None:
            skipped[pv] = why
            continue
        masks[pv] = mask
        x, y = grid[mask], np.log(mean[mask])
        xm = x - x.mean()
        g1_by_p[pv] = -float((xm * (y - y.mean())).sum() / (xm**2).sum())
    if not g1_by_p:
        reasons = "; ".join(f"{p_name}={key(p)}: {r}" for p, r in skipped.items())
        raise UserError(f"no curve has an early regime to fit gamma1 on ({reasons})")
    g1 = np.array(list(g1_by_p.values()))
    sides = {pv: per_p[pv][6] for pv in ps}
    lam_side = [{None: 0, "above": 1, "below": -1}[sides[pv]] for pv in ps]
    g2_ps = [i for i, pv in enumerate(ps) if opts.gamma2_min_p is None or pv >= opts.gamma2_min_p]
    censored = [key(ps[i]) for i in g2_ps if lam_side[i] != 0]
    try:
        fit2 = censored_line(
            np.log([ps[i] for i in g2_ps]), [per_p[ps[i]][4] for i in g2_ps], [lam_side[i] for i in g2_ps]
        )
    except UserError as exc:
        raise UserError(
            f"gamma2: {exc} ({p_name} censored: {', '.join(censored) or 'none'}; the norm stops before the "
            "error minimum: train longer, or see --method authors, which keeps edge minima)"
        ) from None
    # eps at a censored curve's edge bounds eps_opt from above on either side
    fit_meas = censored_line(np.log(ps), np.log([per_p[pv][5] for pv in ps]), [-abs(s) for s in lam_side])
    out = {
        "gamma1": float(g1.mean()),
        "gamma1_spread_se": float(g1.std(ddof=1) / math.sqrt(len(g1))) if len(g1) > 1 else math.nan,
        "fit2": fit2,
        "fit_meas": fit_meas,
        "gamma1_by_p": g1_by_p,
        "skipped": skipped,
        "per_p": per_p,
    }
    out["gamma2"] = fit2.slope
    out["gamma_meas"] = -fit_meas.slope
    out["gamma_pred"] = out["gamma1"] * out["gamma2"]
    if frames:
        out["masks"] = masks
    return out


def _bootstrap(curves, opts, resamples: int, seed: int, p_name: str):
    if resamples <= 0 or all(len(s) < 2 for s in curves.values()):
        return None, 0
    rng = np.random.default_rng(seed)
    draws, failed = [], 0
    for _ in range(resamples):
        sample = {pv: [s[j] for j in rng.integers(0, len(s), len(s))] for pv, s in curves.items()}
        try:
            e = estimate(sample, opts, p_name)
        except UserError:
            failed += 1
            continue
        draws.append((e["gamma1"], e["gamma2"], e["gamma_pred"], e["gamma_meas"]))
    return (np.array(draws) if len(draws) >= 10 else None), failed


def _sensitivity(curves, opts: Options, p_name: str) -> list:
    if opts.window is None:
        shapes = [("gamma1_band", b) for b in dict.fromkeys([tuple(opts.band), *SENSITIVITY_BANDS])]
    else:
        lo, hi = opts.window
        shapes = [
            ("gamma1_window", w)
            for w in dict.fromkeys([(lo, hi), (lo / 2, hi / 2), (lo * 2, hi * 2), (lo / 2, hi * 2)])
        ]
    ps = sorted(curves)
    ranges = {"all": ps, "without smallest P": ps[1:], "without largest P": ps[:-1], "upper half": ps[len(ps) // 2 :]}
    rows = []
    for name, shape in shapes:
        variant = replace(opts, band=shape) if name == "gamma1_band" else replace(opts, window=shape)
        for label, subset in ranges.items():
            row = {name: list(shape), "p_range": label, "p_min": subset[0], "p_max": subset[-1]}
            try:
                if len(subset) < 3:
                    raise UserError(f"{len(subset)} {p_name} values")
                e = estimate({pv: curves[pv] for pv in subset}, variant, p_name)
                row.update({k: e[k] for k in ("gamma1", "gamma2", "gamma_pred", "gamma_meas")})
            except UserError as exc:
                row["error"] = str(exc)
            rows.append(row)
    return rows


def analyse_robust(
    curves: dict[float, list[SeedCurve]],
    opts: Options,
    *,
    bootstrap: int = 200,
    bootstrap_seed: int = 0,
    sensitivity: bool = True,
    p_name: str = "P",
) -> ImplicitBiasResult:
    b0, b1 = opts.band
    if not (0 <= b0 < b1 <= 1):
        raise UserError(f"band must satisfy 0 <= lo < hi <= 1 (fractions of the error's drop), got {opts.band}")
    if opts.window is not None and not (0 <= opts.window[0] < opts.window[1]):
        raise UserError(f"window must satisfy 0 <= lo < hi (0 and inf leave an end open), got {opts.window}")
    most = max(len(seeds) for seeds in curves.values())
    if opts.min_seeds is not None and not 1 <= opts.min_seeds <= most:
        raise UserError(f"min_seeds {opts.min_seeds}: give 1 to {most}, the most seeds any {p_name} has")
    e = estimate(curves, opts, p_name, frames=True)
    draws, failed = _bootstrap(curves, opts, bootstrap, bootstrap_seed, p_name)
    names = ("gamma1", "gamma2", "gamma_pred", "gamma_meas")
    fit2, fit_meas = e["fit2"], e["fit_meas"]
    analytic = {
        "gamma1": e["gamma1_spread_se"],
        "gamma2": fit2.slope_se,
        "gamma_pred": math.hypot(e["gamma2"] * e["gamma1_spread_se"], e["gamma1"] * fit2.slope_se),
        "gamma_meas": fit_meas.slope_se,
    }
    if draws is not None:
        se = {n: float(draws[:, i].std(ddof=1)) for i, n in enumerate(names)}
        ci = {n: [float(v) for v in np.percentile(draws[:, i], [2.5, 97.5])] for i, n in enumerate(names)}
    else:
        se, ci = dict(analytic), {n: [math.nan, math.nan] for n in names}

    per_p = e["per_p"]
    curve_rows, collapse_rows, censored = [], [], {}
    for pv, (grid, mean, sem, count, x0, e0, side) in per_p.items():
        curve_rows.append(pd.DataFrame({"P": pv, "log_lam": grid, "error": mean, "error_sem": sem, "n_seeds": count}))
        in_fit = e["masks"].get(pv, np.zeros(len(grid), bool))
        collapse_rows.append(pd.DataFrame({"P": pv, "u": np.exp(grid - x0), "v": mean / e0, "in_fit": in_fit}))
        if side is not None:
            censored[key(pv)] = {"side": side, "lambda_bound": exp_or_inf(x0), "log_lambda_bound": x0, "eps_bound": e0}
    ps = list(per_p)
    curves_frame = pd.concat(curve_rows, ignore_index=True)
    curves_frame["lam"] = [exp_or_inf(x) for x in curves_frame["log_lam"]]
    learning = pd.DataFrame(
        {
            "P": np.array(ps, float),
            "lambda_opt": [exp_or_inf(per_p[pv][4]) for pv in ps],
            "eps_opt": [per_p[pv][5] for pv in ps],
            "censored": [per_p[pv][6] is not None for pv in ps],
            "lambda_opt_fit": [exp_or_inf(fit2.intercept + fit2.slope * math.log(pv)) for pv in ps],
            "eps_opt_fit": [math.exp(fit_meas.intercept + fit_meas.slope * math.log(pv)) for pv in ps],
        }
    )
    details = {
        **{f"{n}_ci": ci[n] for n in names},
        "analytic_se": analytic,
        "censored": censored,
        "gamma1_band": list(opts.band),
        "gamma1_skipped": {key(p): r for p, r in e["skipped"].items()},
        "log_lambda_opt": {key(pv): per_p[pv][4] for pv in ps},
        "gamma1_min_p": opts.gamma1_min_p,
        "gamma2_min_p": opts.gamma2_min_p,
        "min_seeds": opts.min_seeds,
        "opt_halfwidth_steps": opts.halfwidth,
        "bootstrap": {
            "resamples": bootstrap,
            "failed": failed,
            "seed": bootstrap_seed,
            "unit": "seeds, resampled within each P",
            "used": draws is not None,
        },
    }
    if sensitivity:
        details["sensitivity"] = _sensitivity(curves, opts, p_name)
    return ImplicitBiasResult(
        method="robust",
        gamma1=e["gamma1"],
        gamma1_se=se["gamma1"],
        gamma2=e["gamma2"],
        gamma2_se=se["gamma2"],
        gamma_pred=e["gamma_pred"],
        gamma_pred_se=se["gamma_pred"],
        gamma_meas=e["gamma_meas"],
        gamma_meas_se=se["gamma_meas"],
        lambda_opt={pv: exp_or_inf(per_p[pv][4]) for pv in ps},
        eps_opt={pv: per_p[pv][5] for pv in ps},
        gamma1_by_p=e["gamma1_by_p"],
        window=None if opts.window is None else tuple(opts.window),
        edge_minima=[pv for pv in ps if per_p[pv][6] is not None],
        details=details,
        curves=curves_frame,
        collapse=pd.concat(collapse_rows, ignore_index=True),
        learning_curve=learning,
    )
