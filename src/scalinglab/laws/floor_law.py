"""A power law with a floor: y = E + A * x^-alpha (E >= 0, A >= 0), the form of Hestness et al.'s
three regions and of each axis of the joint law (Kaplan et al. 2020; Hoffmann et al. 2022).

Fitted by relative least squares, sum ((yhat - y) / y)^2 (seed noise in a loss is multiplicative,
and (yhat - y)/y ~ log yhat - log y), with variable projection: for a fixed alpha the law is linear
in (E, A) >= 0, solved exactly (`_nnls2`); alpha is searched on a log grid over EXPONENT_BOUNDS and
refined by a bounded scalar minimisation around the best grid point. CIs: percentile intervals
over refits on resampled clusters (runs or seeds), as power_law's, and "CI n/a" below
MIN_DISTINCT_RESAMPLES distinct resamples.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy.optimize import minimize_scalar

from scalinglab.core.errors import UserError
from scalinglab.core.io import require_columns
from scalinglab.laws.cluster_bootstrap import (
    MIN_DISTINCT_RESAMPLES,
    Progress,
    check_draws,
    ci_unavailable,
    distinct_resamples,
)
from scalinglab.laws.inputs import positive_column

EXPONENT_BOUNDS = (0.01, 8.0)
_GRID = np.geomspace(*EXPONENT_BOUNDS, 64)
PARAMS = ("E", "A", "alpha")


@dataclass
class FloorLawFit:
    """y = E + A x^-alpha; `ci` maps each parameter to its [lo, hi] (NaN where not available)."""

    E: float
    A: float
    alpha: float
    ci: dict
    n_points: int
    n_sizes: int
    n_clusters: int
    bootstrap: int
    distinct_resamples: int | None
    rms_relative_error: float
    confidence: float = 0.95
    diagnostics: list[str] = field(default_factory=list)
    x: str | None = None
    y: str | None = None

    def ci_text(self, name: str) -> str:
        if self.distinct_resamples is not None and self.distinct_resamples < MIN_DISTINCT_RESAMPLES:
            return ci_unavailable(self.distinct_resamples)
        lo, hi = self.ci[name]
        if not (math.isfinite(lo) and math.isfinite(hi)):
            return "CI n/a" if self.bootstrap else "CI n/a (no bootstrap)"
        return f"[{self.confidence:.0%} CI {lo:.5g}, {hi:.5g}]"

    def summary(self) -> str:
        lines = [f"floor law {self.y or 'y'} = E + A * {self.x or 'x'}^-alpha   (relative least squares)"]
        lines += [f"  {name:<6} {getattr(self, name):<12.5g} {self.ci_text(name)}" for name in PARAMS]
        lines.append(
            f"  {self.n_points} points, {self.n_sizes} distinct {self.x or 'x'}, {self.n_clusters} clusters, "
            f"rms relative error {self.rms_relative_error:.3g}"
        )
        lines += [f"  diagnostic: {text}" for text in self.diagnostics]
        return "\n".join(lines)

    def to_dict(self) -> dict:
        def num(v):
            return float(v) if math.isfinite(v) else None

        out = {name: num(getattr(self, name)) for name in PARAMS}
        out.update({f"{name}_ci": [num(v) for v in self.ci[name]] for name in PARAMS})
        out.update(
            n_points=self.n_points,
            n_sizes=self.n_sizes,
            n_clusters=self.n_clusters,
            bootstrap=self.bootstrap,
            distinct_resamples=self.distinct_resamples,
            rms_relative_error=num(self.rms_relative_error),
            confidence=self.confidence,
            diagnostics=list(self.diagnostics),
            x=self.x,
            y=self.y,
        )
        return out


def _nnls2(f: np.ndarray, y: np.ndarray) -> tuple[float, float, float]:
    """min over E, A >= 0 of sum ((E + A f - y)/y)^2: (E, A, objective), exactly (the optimum of
    a convex problem lies on one of the four supports)."""
    w = 1.0 / y
    u, v, t = w, f * w, np.ones_like(y)  # residual = E u + A v - t
    uu, uv, vv, ut, vt = u @ u, u @ v, v @ v, u @ t, v @ t
    candidates = [(0.0, 0.0)]
    candidates.append((max(ut / uu, 0.0), 0.0))
    if vv > 0:
        candidates.append((0.0, max(vt / vv, 0.0)))
    det = uu * vv - uv * uv
    if det > 1e-12 * uu * vv:
        e, a = (vv * ut - uv * vt) / det, (uu * vt - uv * ut) / det
        if e >= 0 and a >= 0:
            candidates.append((e, a))
    best = min(candidates, key=lambda c: float(((c[0] * u + c[1] * v - t) ** 2).sum()))
    return best[0], best[1], float(((best[0] * u + best[1] * v - t) ** 2).sum())


def _fit_arrays(x: np.ndarray, y: np.ndarray) -> tuple[float, float, float, float]:
    """(E, A, alpha, objective) for one data set."""
    lx = np.log(x / np.exp(np.log(x).mean()))  # x in units of its geometric mean: A stays of order y

    def objective(alpha):
        return _nnls2(np.exp(-alpha * lx), y)[2]

    values = [objective(a) for a in _GRID]
    i = int(np.argmin(values))
    lo, hi = _GRID[max(i - 1, 0)], _GRID[min(i + 1, len(_GRID) - 1)]
    alpha = float(minimize_scalar(objective, bounds=(lo, hi), method="bounded", options={"xatol": 1e-7}).x)
    if objective(_GRID[i]) < objective(alpha):
        alpha = float(_GRID[i])
    e, a, obj = _nnls2(np.exp(-alpha * lx), y)
    scale = math.exp(np.log(x).mean())
    return e, a * scale**alpha, alpha, obj


def fit_floor_law(
    frame: pd.DataFrame,
    x: str,
    y: str,
    cluster: str | list[str] | None = None,
    bootstrap: int = 0,
    seed: int = 0,
    confidence: float = 0.95,
) -> FloorLawFit:
    """Fit y = E + A x^-alpha to every row of `frame` (see the module doc); CIs from `bootstrap`
    refits on resampled clusters (the `cluster` column values; each row when None)."""
    cluster_cols = [cluster] if isinstance(cluster, str) else list(cluster or [])
    check_draws(bootstrap)
    if bootstrap < 0:
        raise UserError(f"bootstrap {bootstrap} is negative; use 0 for no CI or a count such as 1000")
    if not 0.0 < confidence < 1.0:
        raise UserError(f"confidence {confidence} is outside (0, 1); use e.g. 0.95")
    require_columns(frame, [x, y] + cluster_cols, "runs table")
    xs, ys = positive_column(frame, x), positive_column(frame, y)
    n_sizes = int(np.unique(xs).size)
    if n_sizes < 4:
        raise UserError(
            f"the floor law has 3 parameters: it needs at least 4 distinct {x}, got {n_sizes}; use --law power"
        )
    E, A, alpha, obj = _fit_arrays(xs, ys)
    codes = (
        frame.groupby(cluster_cols, sort=True, dropna=False).ngroup().to_numpy() if cluster_cols else np.arange(len(xs))
    )
    n_clusters = int(codes.max()) + 1
    diagnostics = []
    ci = {name: (math.nan, math.nan) for name in PARAMS}
    distinct = distinct_resamples([n_clusters]) if bootstrap else None
    if bootstrap and distinct < MIN_DISTINCT_RESAMPLES:
        diagnostics.append(
            f"{ci_unavailable(distinct)}: a bootstrap over {n_clusters} clusters can draw only {distinct} "
            "distinct resamples; add seeds or runs"
        )
    elif bootstrap:
        rng = np.random.default_rng(seed)
        rows_of = [np.flatnonzero(codes == c) for c in range(n_clusters)]
        draws, progress = [], Progress(bootstrap, "floor-law bootstrap")
        for b in range(bootstrap):
            rows = np.concatenate([rows_of[c] for c in rng.integers(0, n_clusters, n_clusters)])
            if np.unique(xs[rows]).size >= 4:
                draws.append(_fit_arrays(xs[rows], ys[rows])[:3])
            progress.update(b + 1)
        if len(draws) < bootstrap:
            diagnostics.append(f"{bootstrap - len(draws)} of {bootstrap} draws had fewer than 4 distinct {x}")
        if draws:
            tail = 100 * (1 - confidence) / 2
            arr = np.array(draws)
            for i, name in enumerate(PARAMS):
                ci[name] = tuple(float(v) for v in np.percentile(arr[:, i], [tail, 100 - tail]))
    if E == 0.0:
        diagnostics.append("E = 0: no floor is resolved within these sizes (a plain power law fits as well)")
    if not EXPONENT_BOUNDS[0] * 1.01 < alpha < EXPONENT_BOUNDS[1] / 1.01:
        diagnostics.append(f"alpha = {alpha:.3g} sits at the search bound {EXPONENT_BOUNDS}: not identified")
    if A == 0.0:
        diagnostics.append(f"A = 0: {y} does not fall with {x}; the law reduces to a constant")
    return FloorLawFit(
        E=float(E),
        A=float(A),
        alpha=float(alpha),
        ci=ci,
        n_points=int(len(xs)),
        n_sizes=n_sizes,
        n_clusters=n_clusters,
        bootstrap=int(bootstrap),
        distinct_resamples=distinct,
        rms_relative_error=math.sqrt(obj / len(xs)),
        confidence=float(confidence),
        diagnostics=diagnostics,
        x=x,
        y=y,
    )
