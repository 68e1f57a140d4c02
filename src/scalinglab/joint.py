"""Joint scaling laws L(N, P) = E + A·N^-alpha + B·P^-beta, broken power laws, compute-optimal allocation.

Pure functions over pandas DataFrames and arrays (numpy and scipy only):

- `fit_joint`             the joint law, by variable projection ("vpro") or the Chinchilla recipe
                          ("chinchilla"), with cluster-bootstrap CIs and an extrapolation check;
- `fit_broken_power_law`  Caballero et al.'s one-break law for a single-axis curve;
- `compute_optimal`       the frontier N*(C), D*(C) of a fitted joint law at compute C = 6·N·D;
- `allocation_exponents`  its exponents a = beta/(alpha+beta), b = alpha/(alpha+beta), with CIs;
- `empirical_frontier`    the best (N, D) cell per compute bucket of a table, and a power law N*(C).

Both joint fitters are vectorised over bootstrap draws (every draw is a weight vector over rows:
how many times its cluster was drawn), so a bootstrap costs a few point fits, not one per draw.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import pandas as pd
from scipy import optimize, stats

from scalinglab.errors import UserError
from scalinglab.fits import positive_column
from scalinglab.io import require_columns

METHODS = ("vpro", "chinchilla")
PARAMS = ("E", "A", "B", "alpha", "beta")
EXPONENT_BOUNDS = (0.02, 4.0)  # vpro searches alpha and beta here; 4/d reaches 2 at d = 2
HUBER_DELTA = 1e-3  # Hoffmann et al. 2022

# Variable-projection grid: log-spaced exponents, then a pattern search that halves its step.
_GRID_SIZE = 32
_PATTERN_STEPS = 26
_PATTERN_OFFSETS = np.array([-1.0, -0.5, 0.0, 0.5, 1.0])
# Chinchilla's grid of L-BFGS starts (Hoffmann et al. 2022, appendix D.2): e, a, b, alpha, beta.
_CHINCHILLA_GRID = (
    np.arange(-1.0, 1.01, 0.5),
    np.arange(0.0, 25.1, 5.0),
    np.arange(0.0, 25.1, 5.0),
    np.arange(0.0, 2.01, 0.5),
    np.arange(0.0, 2.01, 0.5),
)
# L-BFGS runs from the 8 grid starts of lowest initial objective, not all 4500: on 6 x 6-configuration
# data 35 of the best 64 starts reached the same optimum, and the best 8 always included one.
_CHINCHILLA_STARTS = 8
_CHINCHILLA_DRAW_STARTS = 3  # per bootstrap draw: the full-data optimum and the two best grid starts
_DRAW_CHUNK = 256  # bootstrap draws solved together; bounds the memory of the vectorised grids


# --------------------------------------------------------------------------------------------
# Result


def _json_float(value) -> float | None:
    value = float(value)
    return value if math.isfinite(value) else None


@dataclass
class JointFit:
    """L(N, P) = E + A·N^-alpha + B·P^-beta with percentile bootstrap CIs (`ci[name] = (lo, hi)`)."""

    E: float
    A: float
    B: float
    alpha: float
    beta: float
    ci: dict[str, tuple[float, float]]
    method: str
    n_points: int
    n_configs: int
    n_clusters: int
    confidence: float
    bootstrap: int
    draws: np.ndarray  # (successful draws, 5): E, A, B, alpha, beta of each bootstrap refit
    extrapolation_error: dict[str, float | None]
    diagnostics: list[str] = field(default_factory=list)
    columns: tuple[str, str, str] = ("N", "P", "L")

    @property
    def params(self) -> dict[str, float]:
        return {name: getattr(self, name) for name in PARAMS}

    def predict(self, N, P) -> np.ndarray:
        N, P = np.asarray(N, dtype=float), np.asarray(P, dtype=float)
        return self.E + self.A * N ** -self.alpha + self.B * P ** -self.beta

    def summary(self) -> str:
        n, p, y = self.columns
        label = {"vpro": "variable projection, relative least squares", "chinchilla": "Chinchilla: Huber on log L, L-BFGS"}
        lines = [f"{y} = E + A*{n}^-alpha + B*{p}^-beta   ({label[self.method]})"]
        for name in PARAMS:
            lo, hi = self.ci[name]
            lines.append(f"  {name:<6} {getattr(self, name):<12.5g} [{self.confidence:.0%} CI {lo:.5g}, {hi:.5g}]")
        lines.append(
            f"{self.n_points} points, {self.n_configs} configurations, {self.n_clusters} clusters, "
            f"{len(self.draws)}/{self.bootstrap} bootstrap draws"
        )
        extrapolation = ", ".join(
            f"{key} {value:.4g}" if value is not None else f"{key} n/a" for key, value in self.extrapolation_error.items()
        ) or "not computed"
        lines.append(f"extrapolation error (mean |log error| on held-out rows): {extrapolation}")
        lines += [f"diagnostic: {text}" for text in self.diagnostics]
        return "\n".join(lines)

    def to_dict(self) -> dict:
        """JSON-safe: plain floats, non-finite values as None."""
        out = {
            name: {"value": _json_float(getattr(self, name)), "ci": [_json_float(v) for v in self.ci[name]]}
            for name in PARAMS
        }
        out.update(
            extrapolation_error={k: (None if v is None else _json_float(v)) for k, v in self.extrapolation_error.items()},
            method=self.method,
            n_points=int(self.n_points),
            n_configs=int(self.n_configs),
            n_clusters=int(self.n_clusters),
            confidence=float(self.confidence),
            bootstrap={"requested": int(self.bootstrap), "succeeded": int(len(self.draws))},
            columns=list(self.columns),
            diagnostics=list(self.diagnostics),
        )
        return out


# --------------------------------------------------------------------------------------------
# Input checks


def _check_options(method: str, bootstrap: int, confidence: float) -> None:
    if method not in METHODS:
        raise UserError(f"unknown joint-fit method '{method}'; use one of {', '.join(METHODS)}")
    if int(bootstrap) != bootstrap or bootstrap < 0:
        raise UserError(f"bootstrap {bootstrap} must be a whole number >= 0; use 0 for no CIs or e.g. 200")
    if not 0.0 < confidence < 1.0:
        raise UserError(f"confidence {confidence} is outside (0, 1); use e.g. 0.95")


@dataclass
class _Data:
    """The rows of a joint fit: sizes centred at their geometric means (better-conditioned fits)."""

    N: np.ndarray
    P: np.ndarray
    y: np.ndarray
    clusters: np.ndarray  # cluster code of each row, 0..n_clusters-1
    n_clusters: int
    ranked_starts: np.ndarray | None = field(default=None, repr=False)  # see _chinchilla_grid

    @property
    def log_n0(self) -> float:
        return float(np.mean(np.log(self.N)))

    @property
    def log_p0(self) -> float:
        return float(np.mean(np.log(self.P)))

    @property
    def u(self) -> np.ndarray:
        return np.log(self.N) - self.log_n0

    @property
    def v(self) -> np.ndarray:
        return np.log(self.P) - self.log_p0

    def subset(self, mask: np.ndarray) -> "_Data":
        codes, clusters = np.unique(self.clusters[mask], return_inverse=True)
        return _Data(self.N[mask], self.P[mask], self.y[mask], clusters, len(codes))


def _design_counts(N: np.ndarray, P: np.ndarray, weights: np.ndarray | None = None) -> tuple[int, int, int]:
    """Distinct N, distinct P and distinct (N, P) configurations among rows of positive weight."""
    keep = slice(None) if weights is None else weights > 0
    n, p = N[keep], P[keep]
    return len(np.unique(n)), len(np.unique(p)), len(set(zip(n.tolist(), p.tolist())))


def _enough(counts: tuple[int, int, int]) -> bool:
    n_sizes, p_sizes, configs = counts
    return n_sizes >= 2 and p_sizes >= 2 and configs >= len(PARAMS)


def _read(frame: pd.DataFrame, n: str, p: str, y: str, cluster: str | None) -> _Data:
    if not isinstance(frame, pd.DataFrame):
        raise UserError(f"expected a table (pandas DataFrame), got {type(frame).__name__}")
    require_columns(frame, [n, p, y] + ([cluster] if cluster is not None else []), "joint fit")
    N, P, Y = (positive_column(frame, c) for c in (n, p, y))
    if cluster is None:
        clusters = np.arange(len(frame))
    else:
        labels = frame[cluster]
        if labels.isna().any():
            raise UserError(f"cluster column '{cluster}' has {int(labels.isna().sum())} missing value(s); label every row")
        clusters = pd.factorize(labels, sort=True)[0]
    counts = _design_counts(N, P)
    if not _enough(counts):
        raise UserError(
            f"joint fit needs >= 2 distinct '{n}', >= 2 distinct '{p}' and >= 5 ({n}, {p}) configurations; "
            f"got {counts[0]}, {counts[1]} and {counts[2]}; add runs at more sizes"
        )
    return _Data(N, P, Y, clusters, int(clusters.max()) + 1)


# --------------------------------------------------------------------------------------------
# Variable projection: for fixed (alpha, beta) the law is linear in (E, A, B) >= 0


# Relative least squares: minimise sum_i w_i ((L̂_i - L_i) / L_i)^2. Seed-to-seed noise in a loss is
# multiplicative (its spread scales with the loss), and losses span decades across the grid, so
# plain least squares in L would let the largest-loss (smallest) configurations decide the fit and
# leave E to the few rows near the floor. (L̂ - L)/L ≈ log L̂ - log L, the log-normal likelihood,
# while staying linear in (E, A, B), which variable projection needs. (Weighting by the observed L
# scales the fitted L̂ by about exp(-1.5 σ²), 0.4% at σ = 5%; that changes E, A, B equally and
# leaves both exponents alone.)


def _nnls3(g, h, yy):
    """Exact non-negative least squares for 3 coefficients, vectorised over any leading shape.

    g: the six distinct Gram entries (g00, g01, g02, g11, g12, g22), h: (h0, h1, h2), yy: sum w y².
    The NNLS optimum is the unconstrained optimum on its support, so the best non-negative
    solution among the 7 supports is exact. Returns (theta (..., 3), objective (...)).
    """
    g00, g01, g02, g11, g12, g22 = g
    h0, h1, h2 = h
    shape = np.broadcast(g00, g11, g22, g12).shape
    best = np.broadcast_to(np.asarray(yy, dtype=float), shape).copy()  # empty support, theta = 0
    theta = np.zeros(shape + (3,))
    tiny = 1e-12
    G = {(0, 0): g00, (0, 1): g01, (0, 2): g02, (1, 1): g11, (1, 2): g12, (2, 2): g22}
    H = (h0, h1, h2)

    def gram(i, j):
        return G[(min(i, j), max(i, j))]

    def consider(support, coef, ok):
        objective = yy - sum(H[i] * c for i, c in zip(support, coef))
        ok = ok & np.all([c >= 0 for c in coef], axis=0) & (objective < best)
        np.copyto(best, objective, where=ok)
        for i in range(3):
            value = coef[support.index(i)] if i in support else 0.0
            theta[..., i] = np.where(ok, value, theta[..., i])

    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        for i in range(3):
            d = gram(i, i)
            consider((i,), [H[i] / d], d > 0)
        for i, j in ((0, 1), (0, 2), (1, 2)):
            a, b, c = gram(i, i), gram(i, j), gram(j, j)
            det = a * c - b * b
            ok = det > tiny * a * c
            consider((i, j), [(c * H[i] - b * H[j]) / det, (a * H[j] - b * H[i]) / det], ok)
        # all three: adjugate of the symmetric Gram matrix
        c00 = g11 * g22 - g12 * g12
        c01 = g02 * g12 - g01 * g22
        c02 = g01 * g12 - g02 * g11
        c11 = g00 * g22 - g02 * g02
        c12 = g01 * g02 - g00 * g12
        c22 = g00 * g11 - g01 * g01
        det = g00 * c00 + g01 * c01 + g02 * c02
        ok = det > tiny * g00 * g11 * g22
        coef = [
            (c00 * h0 + c01 * h1 + c02 * h2) / det,
            (c01 * h0 + c11 * h1 + c12 * h2) / det,
            (c02 * h0 + c12 * h1 + c22 * h2) / det,
        ]
        consider((0, 1, 2), coef, ok)
    return theta, best


def _vpro_on_grid(W, y, X1, X2):
    """NNLS for every draw and every (alpha, beta) pair.

    W (D, n) row weights of D draws; X1 (D or 1, K, n) and X2 (D or 1, M, n) the N and P columns.
    Returns theta (D, K, M, 3) and objective (D, K, M).
    """
    Wy = W * y
    w, wy = W[:, :, None], Wy[:, :, None]  # (D, n, 1): matmul broadcasts the draw axis

    def weighted_sums(X, weights):  # sum_i weights[d, i] X[d, k, i] -> (D, K)
        return np.matmul(X, weights)[..., 0]

    g00 = W.sum(1)[:, None, None]
    g01 = weighted_sums(X1, w)[:, :, None]
    g11 = weighted_sums(X1 * X1, w)[:, :, None]
    g02 = weighted_sums(X2, w)[:, None, :]
    g22 = weighted_sums(X2 * X2, w)[:, None, :]
    g12 = np.matmul(W[:, None, :] * X1, np.swapaxes(X2, 1, 2))
    h0 = Wy.sum(1)[:, None, None]
    h1 = weighted_sums(X1, wy)[:, :, None]
    h2 = weighted_sums(X2, wy)[:, None, :]
    yy = (Wy * y).sum(1)[:, None, None]
    return _nnls3((g00, g01, g02, g11, g12, g22), (h0, h1, h2), yy)


def _vpro_draws(data: _Data, W: np.ndarray, bounds=EXPONENT_BOUNDS) -> np.ndarray:
    """Variable-projection fits for the weight vectors W (D, n): (D, 5) rows of E, A, B, alpha, beta.

    A log-spaced grid over (alpha, beta) locates the basin; a pattern search in (log alpha, log beta)
    then polishes each draw, halving its step only when the best point is not on the edge of its
    5 × 5 local grid (so a long valley is followed, not cut short), down to a relative step of ~1e-8.
    """
    u, v, y = data.u, data.v, data.y
    W = W / y**2  # relative least squares (see above)
    lo, hi = np.log(bounds[0]), np.log(bounds[1])
    grid = np.linspace(lo, hi, _GRID_SIZE)
    X1 = np.exp(-np.exp(grid)[:, None] * u)[None]
    X2 = np.exp(-np.exp(grid)[:, None] * v)[None]
    _, objective = _vpro_on_grid(W, y, X1, X2)
    flat = objective.reshape(len(W), -1).argmin(1)
    la, lb = grid[flat // _GRID_SIZE], grid[flat % _GRID_SIZE]
    step = np.full(len(W), grid[1] - grid[0])
    k = len(_PATTERN_OFFSETS)
    for _ in range(_PATTERN_STEPS):
        cand_a = np.clip(la[:, None] + step[:, None] * _PATTERN_OFFSETS, lo, hi)  # (D, k)
        cand_b = np.clip(lb[:, None] + step[:, None] * _PATTERN_OFFSETS, lo, hi)
        X1 = np.exp(-np.exp(cand_a)[:, :, None] * u)
        X2 = np.exp(-np.exp(cand_b)[:, :, None] * v)
        _, objective = _vpro_on_grid(W, y, X1, X2)
        # ties go to the centre, so a flat direction (say A = 0) does not wander to a bound
        objective = objective.reshape(len(W), -1)
        centre = (k // 2) * k + k // 2
        best = objective.argmin(1)
        best = np.where(objective[np.arange(len(W)), best] < objective[:, centre], best, centre)
        i, j = best // k, best % k
        la, lb = cand_a[np.arange(len(W)), i], cand_b[np.arange(len(W)), j]
        on_edge = (np.abs(_PATTERN_OFFSETS[i]) == 1.0) | (np.abs(_PATTERN_OFFSETS[j]) == 1.0)
        step = np.where(on_edge, step, step / 2)
    X1 = np.exp(-np.exp(la)[:, None, None] * u)
    X2 = np.exp(-np.exp(lb)[:, None, None] * v)
    theta, _ = _vpro_on_grid(W, y, X1, X2)
    theta = theta[:, 0, 0]
    alpha, beta = np.exp(la), np.exp(lb)
    # back from centred columns: A_c (N/N0)^-alpha = A_c N0^alpha N^-alpha
    return np.column_stack(
        [theta[:, 0], theta[:, 1] * np.exp(alpha * data.log_n0), theta[:, 2] * np.exp(beta * data.log_p0), alpha, beta]
    )


def _relative_residuals(data: _Data, params: np.ndarray) -> np.ndarray:
    E, A, B, alpha, beta = params
    return (E + A * data.N ** -alpha + B * data.P ** -beta - data.y) / data.y


def _vpro_point(data: _Data, bounds=EXPONENT_BOUNDS) -> np.ndarray:
    """The full-data vpro fit, polished by least squares on all five parameters from the search's optimum."""
    start = _vpro_draws(data, np.ones((1, len(data.y))), bounds)[0]
    n0, p0 = np.exp(data.log_n0), np.exp(data.log_p0)

    def residuals(q):  # centred coefficients, for conditioning
        E, Ac, Bc, alpha, beta = q
        return (E + Ac * (data.N / n0) ** -alpha + Bc * (data.P / p0) ** -beta - data.y) / data.y

    q0 = np.array([start[0], start[1] * n0 ** -start[3], start[2] * p0 ** -start[4], start[3], start[4]])
    lower, upper = [0, 0, 0, bounds[0], bounds[0]], [np.inf, np.inf, np.inf, bounds[1], bounds[1]]
    try:
        polished = optimize.least_squares(
            residuals, np.clip(q0, lower, upper), bounds=(lower, upper), xtol=1e-15, ftol=1e-15, gtol=1e-15, max_nfev=2000
        ).x
    except (ValueError, np.linalg.LinAlgError):
        return start
    candidate = np.array([polished[0], polished[1] * n0 ** polished[3], polished[2] * p0 ** polished[4], polished[3], polished[4]])
    better = np.sum(_relative_residuals(data, candidate) ** 2) < np.sum(_relative_residuals(data, start) ** 2)
    return candidate if better else start


# --------------------------------------------------------------------------------------------
# The Chinchilla recipe: Huber(delta = 1e-3) on log L, log L̂ = LSE(e, a - alpha log N, b - beta log P)


class _HuberProblem:
    """Weighted Huber loss of log residuals, and its gradient, for many parameter vectors at once.

    theta (K, 5) = (e, a_c, b_c, alpha, beta) with a_c = a - alpha log N0 and b_c = b - beta log P0
    (centred sizes: the same objective, better conditioned). Predictions are computed once per
    (N, P) configuration, not per row: seeds share them.
    """

    def __init__(self, data: _Data):
        configs, row_config = np.unique(np.column_stack([data.u, data.v]), axis=0, return_inverse=True)
        self.order = np.argsort(row_config.ravel(), kind="stable")  # rows grouped by configuration
        self.row_config = row_config.ravel()[self.order]
        self.group_starts = np.flatnonzero(np.r_[True, np.diff(self.row_config) > 0])
        self.u, self.v = configs[:, 0], configs[:, 1]
        self.log_y = np.log(data.y)[self.order]

    def sorted_weights(self, W: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(np.atleast_2d(W)[:, self.order])

    def __call__(self, theta: np.ndarray, W: np.ndarray):
        """f (K,) and grad (K, 5) for parameter rows theta (K, 5) and row weights W (K or 1, n), the
        rows in the problem's order (`sorted_weights`).

        Plain ufuncs only: BLAS calls on matrices this small lose more to thread start-up than they gain."""
        e, a, b, alpha, beta = np.split(theta, 5, axis=1)
        t1, t2 = a - alpha * self.u, b - beta * self.v
        top = np.maximum(np.maximum(t1, t2), e)  # log-sum-exp, shifted so that nothing overflows
        x0, x1, x2 = np.exp(e - top), np.exp(t1 - top), np.exp(t2 - top)
        total = x0 + x1 + x2
        pred = top + np.log(total)
        r = pred[:, self.row_config] - self.log_y
        clipped = np.clip(r, -HUBER_DELTA, HUBER_DELTA)
        weighted = W * clipped
        f = (weighted * (r - 0.5 * clipped)).sum(1)  # Huber: r²/2 inside ±delta, linear outside
        dr = np.add.reduceat(weighted, self.group_starts, axis=1) / total  # times x_j: d loss / d term j
        d1, d2 = dr * x1, dr * x2
        grad = np.empty((len(theta), 5))
        grad[:, 0] = (dr * x0).sum(1)
        grad[:, 1] = d1.sum(1)
        grad[:, 2] = d2.sum(1)
        grad[:, 3] = -(d1 * self.u).sum(1)
        grad[:, 4] = -(d2 * self.v).sum(1)
        return f, grad


def _lbfgs(
    fun: Callable,
    x0: np.ndarray,
    memory: int = 6,
    max_iter: int = 5000,
    ftol: float = 1e-11,
    gtol: float = 1e-12,
    patience: int = 5,
    window: int = 50,
    window_tol: float = 1e-9,
):
    """Minimise K independent smooth problems at once with L-BFGS (two-loop recursion, Armijo backtracking).

    fun(x (k, d), idx (k,)) -> (f (k,), grad (k, d)) for the problems idx. A problem stops when
    `patience` iterations in a row each lower its objective by less than ftol relative, `window`
    iterations together lower it by less than window_tol relative (a crawl towards an asymptote,
    such as A -> 0, that never ends), its largest gradient entry is below gtol, or no step along its
    direction (nor along steepest descent) lowers the objective at all (machine precision). The
    tolerances are tight on purpose: the Chinchilla fit stopped early (Besiroglu et al. 2024).
    Returns x, f, and whether each problem stopped before max_iter.
    """
    x = np.array(x0, dtype=float)
    K, d = x.shape
    f, g = fun(x, np.arange(K))
    # curvature pairs in a ring shared by all problems; a problem that skips an update stores a null pair
    S, Y, rho = np.zeros((K, memory, d)), np.zeros((K, memory, d)), np.zeros((K, memory))
    gamma = np.zeros(K)  # s·y / y·y of the newest pair: the scale of the initial inverse Hessian
    slot = 0
    active, stalls = np.isfinite(f), np.zeros(K, dtype=int)
    done = ~active
    checkpoint = f.copy()
    for iteration in range(1, max_iter + 1):
        idx = np.flatnonzero(active)
        if idx.size == 0:
            break
        gi = g[idx]
        q = gi.copy()
        Si, Yi, ri = S[idx], Y[idx], rho[idx]
        newest_first = [(slot - 1 - j) % memory for j in range(memory)]
        coef = np.zeros((idx.size, memory))
        for j in newest_first:
            coef[:, j] = ri[:, j] * np.einsum("kd,kd->k", Si[:, j], q)
            q -= coef[:, j, None] * Yi[:, j]
        first = 1.0 / np.maximum(np.abs(gi).max(1), 1e-300)  # no pairs yet: a unit step in the largest coordinate
        r = np.where(gamma[idx] > 0, gamma[idx], first)[:, None] * q
        for j in reversed(newest_first):
            r += Si[:, j] * (coef[:, j] - ri[:, j] * np.einsum("kd,kd->k", Yi[:, j], r))[:, None]
        direction = -r
        slope = np.einsum("kd,kd->k", gi, direction)
        restart = ~(slope < 0) | ~np.isfinite(slope)
        if restart.any():  # not a descent direction: forget the curvature pairs, take steepest descent
            direction[restart] = -gi[restart] * first[restart, None]
            slope[restart] = np.einsum("kd,kd->k", gi[restart], direction[restart])
            S[idx[restart]], Y[idx[restart]], rho[idx[restart]], gamma[idx[restart]] = 0.0, 0.0, 0.0, 0.0
        step = np.ones(idx.size)
        new_x, new_f, new_g = x[idx].copy(), f[idx].copy(), g[idx].copy()
        accepted = np.zeros(idx.size, dtype=bool)
        pending = np.arange(idx.size)
        for _ in range(60):
            trial = x[idx[pending]] + step[pending, None] * direction[pending]
            ft, gt = fun(trial, idx[pending])
            ok = np.isfinite(ft) & (ft <= f[idx[pending]] + 1e-4 * step[pending] * slope[pending])
            took = pending[ok]
            new_x[took], new_f[took], new_g[took], accepted[took] = trial[ok], ft[ok], gt[ok], True
            failed, f_failed = pending[~ok], ft[~ok]
            pending = failed
            if pending.size == 0:
                break
            # backtrack to the minimum of the quadratic through f, the slope and the failed trial
            t, base = step[failed], f[idx[failed]]
            with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
                curvature = (f_failed - base - slope[failed] * t) / t**2
                proposal = -slope[failed] / (2 * curvature)
            proposal = np.where(np.isfinite(proposal), proposal, 0.1 * t)
            step[failed] = np.clip(proposal, 0.1 * t, 0.5 * t)
        # No decrease along the direction: retry once with steepest descent; if even that fails,
        # the problem has converged to machine precision.
        stuck = idx[~accepted]
        fresh = stuck[~(rho[stuck] > 0).any(1)]
        done[fresh], active[fresh] = True, False
        S[stuck], Y[stuck], rho[stuck], gamma[stuck] = 0.0, 0.0, 0.0, 0.0
        moved = idx[accepted]
        s, yv = new_x[accepted] - x[moved], new_g[accepted] - g[moved]
        curvature = np.einsum("kd,kd->k", s, yv)
        keep = curvature > 1e-12 * np.linalg.norm(s, axis=1) * np.linalg.norm(yv, axis=1)
        S[idx, slot], Y[idx, slot], rho[idx, slot] = 0.0, 0.0, 0.0
        upd = moved[keep]
        S[upd, slot], Y[upd, slot], rho[upd, slot] = s[keep], yv[keep], 1.0 / curvature[keep]
        gamma[upd] = curvature[keep] / np.einsum("kd,kd->k", yv[keep], yv[keep])
        slot = (slot + 1) % memory
        decrease = f[moved] - new_f[accepted]
        small = decrease <= ftol * np.maximum(np.abs(f[moved]), 1e-300)
        stalls[moved] = np.where(small, stalls[moved] + 1, 0)
        x[moved], f[moved], g[moved] = new_x[accepted], new_f[accepted], new_g[accepted]
        stop = (stalls[moved] >= patience) | (np.abs(g[moved]).max(1) <= gtol)
        done[moved[stop]] = True
        active[moved[stop]] = False
        if iteration % window == 0:
            crawling = active & (checkpoint - f <= window_tol * np.abs(f))
            done[crawling], active[crawling] = True, False
            checkpoint = f.copy()
    return x, f, done


def _chinchilla_grid(data: _Data) -> np.ndarray:
    """Hoffmann et al.'s start grid in centred coordinates (a_c = a - alpha log N0), best initial
    objective on the full data first (computed once per data set)."""
    if data.ranked_starts is None:
        e, a, b, alpha, beta = (m.ravel() for m in np.meshgrid(*_CHINCHILLA_GRID, indexing="ij"))
        grid = np.column_stack([e, a - alpha * data.log_n0, b - beta * data.log_p0, alpha, beta])
        initial, _ = _HuberProblem(data)(grid, np.ones((1, len(data.y))))
        data.ranked_starts = grid[np.argsort(initial)]
    return data.ranked_starts


def _chinchilla_fit(data: _Data, W: np.ndarray, starts: np.ndarray):
    """Best L-BFGS optimum over `starts` (S, 5) for each weight vector in W (D, n)."""
    problem = _HuberProblem(data)
    D, S = len(W), len(starts)
    weights = problem.sorted_weights(np.repeat(W, S, axis=0))  # problem k: draw k // S, start k % S

    def fun(x, idx):
        return problem(x, weights[idx])

    x, f, done = _lbfgs(fun, np.tile(starts, (D, 1)))
    f = np.where(np.isfinite(f), f, np.inf).reshape(D, S)
    best = f.argmin(1)
    pick = np.arange(D) * S + best
    return x[pick], f[np.arange(D), best], done[pick]


def _chinchilla_natural(theta: np.ndarray, data: _Data) -> np.ndarray:
    """(e, a_c, b_c, alpha, beta) rows -> (E, A, B, alpha, beta) rows."""
    e, a, b, alpha, beta = np.atleast_2d(theta).T
    with np.errstate(over="ignore"):
        return np.column_stack([np.exp(e), np.exp(a + alpha * data.log_n0), np.exp(b + beta * data.log_p0), alpha, beta])


def _chinchilla_point(data: _Data):
    """Full-data Chinchilla fit: screen the start grid, L-BFGS from the best starts, then a scipy L-BFGS-B
    polish of the winner with tight tolerances. Returns (theta in centred coordinates, converged, starts)."""
    problem = _HuberProblem(data)
    ones = np.ones((1, len(data.y)))
    starts = _chinchilla_grid(data)[:_CHINCHILLA_STARTS]
    theta, f, done = _chinchilla_fit(data, ones, starts)
    theta, f, done = theta[0], f[0], bool(done[0])

    def scalar(q):
        value, grad = problem(q[None], ones)
        return value[0], grad[0]

    # scipy's ftol is relative to max(|f|, 1), and this objective is far below 1: keep it tiny
    options = dict(maxiter=20000, maxfun=40000, ftol=1e-15, gtol=1e-12, maxls=100)
    polished = optimize.minimize(scalar, theta, jac=True, method="L-BFGS-B", options=options)
    if np.isfinite(polished.fun) and polished.fun <= f:
        theta = polished.x
    return theta, done, starts


# --------------------------------------------------------------------------------------------
# Joint fit


def _point_fit(data: _Data, method: str) -> tuple[np.ndarray, list[str]]:
    """(E, A, B, alpha, beta) of the full data, and diagnostics about the optimisation."""
    if method == "vpro":
        return _vpro_point(data), []
    theta, done, _ = _chinchilla_point(data)
    notes = [] if done else ["Chinchilla L-BFGS hit its iteration limit before converging"]
    return _chinchilla_natural(theta, data)[0], notes


def _bootstrap_weights(data: _Data, draws: int, rng: np.random.Generator) -> np.ndarray:
    """(draws, n) row weights: how many times each row's cluster was drawn."""
    picks = rng.integers(0, data.n_clusters, size=(draws, data.n_clusters))
    counts = np.zeros((draws, data.n_clusters))
    np.add.at(counts, (np.arange(draws)[:, None], picks), 1.0)
    return counts[:, data.clusters]


def _bootstrap(data: _Data, method: str, point: np.ndarray, draws: int, seed: int) -> tuple[np.ndarray, list[str]]:
    """Refit every cluster-bootstrap draw; returns (successful draws (k, 5), diagnostics)."""
    if draws == 0:
        return np.empty((0, 5)), []
    W = _bootstrap_weights(data, draws, np.random.default_rng(seed))
    usable = np.array([_enough(_design_counts(data.N, data.P, w)) for w in W])
    W, notes = W[usable], []
    if data.n_clusters < 20:
        notes.append(f"only {data.n_clusters} clusters to resample: bootstrap CIs are unreliable below about 20")
    if not len(W):
        fitted = np.empty((0, 5))
    elif method == "vpro":  # in chunks: the exponent grid costs memory per draw
        fitted = np.vstack([_vpro_draws(data, W[k : k + _DRAW_CHUNK]) for k in range(0, len(W), _DRAW_CHUNK)])
    else:
        # All draws in one batch (the L-BFGS loop runs as long as its slowest problem, so chunks
        # would pay that tail again). Each draw starts from the full-data optimum and from the grid
        # starts that screen best on the full data: a few draws have local optima that one start misses.
        with np.errstate(divide="ignore"):
            optimum = np.array([np.log(point[0]), np.log(point[1]) - point[3] * data.log_n0, np.log(point[2]) - point[4] * data.log_p0, point[3], point[4]])
        optimum = np.nan_to_num(optimum, neginf=-50.0)  # E = 0 exactly
        starts = np.vstack([optimum, _chinchilla_grid(data)[: _CHINCHILLA_DRAW_STARTS - 1]])
        theta, _, done = _chinchilla_fit(data, W, starts)
        fitted = _chinchilla_natural(theta, data)
        if not done.all():
            notes.append(f"{int((~done).sum())} bootstrap refits hit the L-BFGS iteration limit")
    finite = np.all(np.isfinite(fitted), axis=1)
    failures = draws - int(finite.sum())
    if failures:
        notes.append(f"{failures} of {draws} bootstrap draws failed (too few configurations drawn or a non-finite fit)")
    return fitted[finite], notes


def _extrapolation_errors(data: _Data, method: str) -> tuple[dict[str, float | None], list[str]]:
    """Refit without the largest N (then the largest P) and score those held-out rows: mean |log error|."""
    errors, notes = {}, []
    for name, sizes in (("largest_N", data.N), ("largest_P", data.P)):
        held_out = sizes == sizes.max()
        train = data.subset(~held_out)
        if not _enough(_design_counts(train.N, train.P)):
            errors[name] = None
            notes.append(f"extrapolation to the {name[len('largest_'):]} edge not scored: too few configurations remain")
            continue
        E, A, B, alpha, beta = _point_fit(train, method)[0]
        pred = E + A * data.N[held_out] ** -alpha + B * data.P[held_out] ** -beta
        errors[name] = float(np.mean(np.abs(np.log(pred) - np.log(data.y[held_out]))))
    return errors, notes


def _diagnostics(data: _Data, params: np.ndarray, method: str, names: tuple[str, str]) -> list[str]:
    n_name, p_name = names
    notes = []
    n_sizes, p_sizes, configs = _design_counts(data.N, data.P)
    if n_sizes < 5 or p_sizes < 5 or configs < 3 * len(PARAMS):
        notes.append(
            f"too few configurations: {n_sizes} distinct {n_name}, {p_sizes} distinct {p_name}, {configs} configurations "
            f"(want >= 5, >= 5 and >= {3 * len(PARAMS)}); the five parameters are poorly determined"
        )
    E, A, B, alpha, beta = params
    if method == "vpro":
        lo, hi = EXPONENT_BOUNDS
        for name, value in (("alpha", alpha), ("beta", beta)):
            if value <= lo * 1.001 or value >= hi * 0.999:
                notes.append(f"{name} = {value:.4g} is at the search bound [{lo}, {hi}]; the law is not identified")
    for name, value, size in (("alpha", alpha, n_name), ("beta", beta, p_name)):
        if value <= 0:  # the Chinchilla parameterisation leaves exponents free
            notes.append(f"{name} = {value:.4g} <= 0: the fitted loss does not fall with {size}")
    floor = 1e-6 * data.y.min()
    if E < floor:
        notes.append("E is ~0: the data do not reach the irreducible loss, so E is not identified")
    if A * data.N.min() ** -alpha < floor:
        notes.append(f"A is ~0: no dependence on {n_name} detected, so alpha is meaningless")
    if B * data.P.min() ** -beta < floor:
        notes.append(f"B is ~0: no dependence on {p_name} detected, so beta is meaningless")
    return notes


def fit_joint(
    frame: pd.DataFrame,
    n: str,
    p: str,
    y: str,
    method: str = "vpro",
    bootstrap: int = 200,
    cluster: str | None = None,
    seed: int = 0,
    confidence: float = 0.95,
    extrapolation: bool = True,
) -> JointFit:
    """Fit y = E + A·n^-alpha + B·p^-beta to the rows of `frame`.

    method "vpro": relative least squares by variable projection (exponent search with exact NNLS
    for E, A, B >= 0). method "chinchilla": Huber (delta 1e-3) on log y, L-BFGS from a grid of starts.
    CIs: percentile intervals from `bootstrap` refits on resampled clusters (values of `cluster`: runs
    or seeds; every row its own cluster when None). They run a little short of nominal: on 6 x 6
    configurations x 3 seeds with 5% log-normal noise, 95% intervals covered alpha/beta in 93.5%/92%
    of 400 replicates (vpro, 200 draws) and 96%/95% (chinchilla, 50 draws). `extrapolation` adds two
    refits that hold out the largest n and the largest p and score those rows (mean |log error|).
    """
    _check_options(method, bootstrap, confidence)
    data = _read(frame, n, p, y, cluster)
    params, notes = _point_fit(data, method)
    draws, bootstrap_notes = _bootstrap(data, method, params, int(bootstrap), seed)
    tail = 100 * (1 - confidence) / 2
    ci = {name: (math.nan, math.nan) for name in PARAMS}
    if len(draws) >= 2:
        for k, name in enumerate(PARAMS):
            lo, hi = np.percentile(draws[:, k], [tail, 100 - tail])
            ci[name] = (float(lo), float(hi))
    extrapolation_error, extrapolation_notes = _extrapolation_errors(data, method) if extrapolation else ({}, [])
    notes += _diagnostics(data, params, method, (n, p)) + bootstrap_notes + extrapolation_notes
    return JointFit(
        *map(float, params),
        ci=ci,
        method=method,
        n_points=len(data.y),
        n_configs=_design_counts(data.N, data.P)[2],
        n_clusters=data.n_clusters,
        confidence=confidence,
        bootstrap=int(bootstrap),
        draws=draws,
        extrapolation_error=extrapolation_error,
        diagnostics=notes,
        columns=(n, p, y),
    )


# --------------------------------------------------------------------------------------------
# Compute-optimal allocation: minimise L(N, D) at fixed C = 6·N·D


def _frontier(E, A, B, alpha, beta, C):
    """N*, D*, L* at compute C for laws given by (broadcastable) parameter arrays.

    dL/dN = 0 on N·D = C/6 gives alpha·A·N^-alpha = beta·B·D^-beta, hence N* = G (C/6)^(beta/(alpha+beta))
    with G = (alpha A / (beta B))^(1/(alpha+beta)), and D* = (C/6) / N*.
    """
    with np.errstate(divide="ignore", over="ignore", invalid="ignore"):
        G = (alpha * A / (beta * B)) ** (1.0 / (alpha + beta))
        N = G * (C / 6.0) ** (beta / (alpha + beta))
        D = (C / 6.0) / N
        return N, D, E + A * N ** -alpha + B * D ** -beta


def _check_frontier_law(fit: JointFit) -> None:
    if not (fit.A > 0 and fit.B > 0 and fit.alpha > 0 and fit.beta > 0):
        raise UserError(
            f"the fitted law has A = {fit.A:.3g}, B = {fit.B:.3g}, alpha = {fit.alpha:.3g}, beta = {fit.beta:.3g}; "
            f"a compute-optimal frontier needs all four > 0 (the loss must fall with both N and D)"
        )


def compute_optimal(fit: JointFit, C) -> pd.DataFrame:
    """The compute-optimal N*(C), D*(C) and loss of a fitted joint law, its second size read as D.

    D is the number of samples seen (one pass over P samples: D = P), and C = 6·N·D. With bootstrap
    draws in `fit`, the columns *_lo and *_hi give percentile intervals at `fit.confidence`.
    """
    _check_frontier_law(fit)
    C = np.atleast_1d(np.asarray(C, dtype=float))
    if C.ndim != 1 or not np.all(np.isfinite(C)) or np.any(C <= 0):
        raise UserError("compute budgets C must be finite positive numbers (FLOPs, C = 6·N·D)")
    N, D, L = _frontier(fit.E, fit.A, fit.B, fit.alpha, fit.beta, C)
    out = pd.DataFrame({"C": C, "N_opt": N, "D_opt": D, "loss_opt": L})
    draws = fit.draws[np.all(fit.draws[:, 1:] > 0, axis=1)] if len(fit.draws) else fit.draws
    if len(draws) >= 2:
        tail = 100 * (1 - fit.confidence) / 2
        E, A, B, alpha, beta = (draws[:, k, None] for k in range(5))
        for name, values in zip(("N_opt", "D_opt", "loss_opt"), _frontier(E, A, B, alpha, beta, C[None, :])):
            out[f"{name}_lo"], out[f"{name}_hi"] = np.nanpercentile(values, [tail, 100 - tail], axis=0)
    return out


def allocation_exponents(fit: JointFit) -> dict:
    """N* ∝ C^a and D* ∝ C^b with a = beta/(alpha+beta), b = alpha/(alpha+beta); CIs from the bootstrap draws."""
    _check_frontier_law(fit)
    tail = 100 * (1 - fit.confidence) / 2
    out = {}
    for name, numerator in (("a", fit.beta), ("b", fit.alpha)):
        value = numerator / (fit.alpha + fit.beta)
        ci = [None, None]
        if len(fit.draws) >= 2:
            alpha, beta = fit.draws[:, 3], fit.draws[:, 4]
            share = (beta if name == "a" else alpha) / (alpha + beta)
            ci = [_json_float(v) for v in np.percentile(share, [tail, 100 - tail])]
        out[name] = {"value": float(value), "ci": ci}
    return out


@dataclass
class EmpiricalFrontier:
    """The best (N, D) cell in each compute bucket, and N* ∝ C^exponent fitted to those cells."""

    frontier: pd.DataFrame  # bucket, C, N, D, loss (mean over rows of the cell), rows
    exponent: float
    ci: tuple[float, float]
    d_exponent: float
    d_ci: tuple[float, float]
    confidence: float
    diagnostics: list[str] = field(default_factory=list)

    def summary(self) -> str:
        lines = [
            f"empirical compute-optimal frontier over {len(self.frontier)} compute buckets (C = 6·N·D)",
            f"  N* ∝ C^{self.exponent:.4g}  [{self.confidence:.0%} CI {self.ci[0]:.4g}, {self.ci[1]:.4g}]",
            f"  D* ∝ C^{self.d_exponent:.4g}  [{self.confidence:.0%} CI {self.d_ci[0]:.4g}, {self.d_ci[1]:.4g}]",
        ]
        return "\n".join(lines + [f"diagnostic: {text}" for text in self.diagnostics])

    def to_dict(self) -> dict:
        return {
            "exponent": {"value": _json_float(self.exponent), "ci": [_json_float(v) for v in self.ci]},
            "d_exponent": {"value": _json_float(self.d_exponent), "ci": [_json_float(v) for v in self.d_ci]},
            "confidence": float(self.confidence),
            "frontier": [{k: (_json_float(v) if isinstance(v, (float, np.floating)) else int(v)) for k, v in row.items()} for row in self.frontier.to_dict("records")],
            "diagnostics": list(self.diagnostics),
        }


def _line_fit(x: np.ndarray, y: np.ndarray, confidence: float) -> tuple[float, tuple[float, float]]:
    """OLS slope of y on x with its t-interval."""
    slope, intercept, _, _, stderr = stats.linregress(x, y)
    half = stats.t.ppf(0.5 + confidence / 2, len(x) - 2) * stderr
    return float(slope), (float(slope - half), float(slope + half))


def empirical_frontier(
    frame: pd.DataFrame, n: str, d: str, y: str, buckets: int = 10, confidence: float = 0.95
) -> EmpiricalFrontier:
    """For each of `buckets` log-spaced compute ranges, the (N, D) cell of lowest loss; then log N* on log C.

    Rows of one (N, D) cell (seeds) are averaged first. D is samples seen, so rows may be points on
    training curves. The CI is the OLS t-interval over buckets: it ignores that N* can only take
    the grid's values, so a coarse N grid gives a staircase and an over-confident interval.
    """
    if not 0.0 < confidence < 1.0:
        raise UserError(f"confidence {confidence} is outside (0, 1); use e.g. 0.95")
    if int(buckets) != buckets or buckets < 3:
        raise UserError(f"buckets {buckets} must be a whole number >= 3")
    require_columns(frame, [n, d, y], "empirical frontier")
    cells = pd.DataFrame({"N": positive_column(frame, n), "D": positive_column(frame, d), "loss": positive_column(frame, y)})
    cells = cells.groupby(["N", "D"], as_index=False).agg(loss=("loss", "mean"), rows=("loss", "size"))
    cells["C"] = 6.0 * cells["N"] * cells["D"]
    edges = np.geomspace(cells["C"].min(), cells["C"].max(), int(buckets) + 1)
    cells["bucket"] = np.clip(np.searchsorted(edges, cells["C"], side="right") - 1, 0, int(buckets) - 1)
    best = cells.loc[cells.groupby("bucket")["loss"].idxmin()].sort_values("C").reset_index(drop=True)
    best = best[["bucket", "C", "N", "D", "loss", "rows"]]
    if len(best) < 3:
        raise UserError(f"only {len(best)} compute buckets hold cells; a frontier fit needs >= 3 (add runs over a wider range of C)")
    log_c = np.log(best["C"].to_numpy())
    exponent, ci = _line_fit(log_c, np.log(best["N"].to_numpy()), confidence)
    d_exponent, d_ci = _line_fit(log_c, np.log(best["D"].to_numpy()), confidence)
    notes = []
    at_edge = int(best["N"].isin([cells["N"].min(), cells["N"].max()]).sum())
    if at_edge:
        notes.append(
            f"in {at_edge} of {len(best)} buckets the best cell has the smallest or largest N of the table: "
            f"the frontier may lie outside the grid there, which biases the exponent"
        )
    if cells["N"].nunique() < 5:
        notes.append(f"only {cells['N'].nunique()} distinct N: N* is a staircase and its exponent coarse")
    return EmpiricalFrontier(best, exponent, ci, d_exponent, d_ci, confidence, notes)


# --------------------------------------------------------------------------------------------
# Broken power law (Caballero et al. 2022), one break:
# y = a + b x^-c0 (1 + (x/d1)^(1/f1))^(-c1 f1): slope -c0 well below the break d1, -(c0 + c1) well
# above it, f1 the sharpness of the turn (small f1: sharp).

_BPL_PARAMS = ("a", "b", "c0", "c1", "d1", "f1")
_BPL_C0 = np.linspace(0.0, 3.0, 21)
_BPL_C1 = np.linspace(-3.0, 3.0, 41)
_BPL_F1 = (0.1, 0.3, 1.0)
_BPL_BREAKS = 30


def _bpl_log_shape(log_x, c0, c1, log_d1, f1):
    """log of x^-c0 (1 + (x/d1)^(1/f1))^(-c1 f1), overflow-free."""
    return -c0 * log_x - c1 * f1 * np.logaddexp(0.0, (log_x - log_d1) / f1)


@dataclass
class BrokenPowerLawFit:
    """y = a + b x^-c0 (1 + (x/d1)^(1/f1))^(-c1 f1), fitted by relative least squares."""

    a: float
    b: float
    c0: float
    c1: float
    d1: float
    f1: float
    rms_relative_error: float
    n_points: int
    diagnostics: list[str] = field(default_factory=list)

    @property
    def params(self) -> dict[str, float]:
        return {name: getattr(self, name) for name in _BPL_PARAMS}

    def predict(self, x) -> np.ndarray:
        log_x = np.log(np.asarray(x, dtype=float))
        return self.a + self.b * np.exp(_bpl_log_shape(log_x, self.c0, self.c1, np.log(self.d1), self.f1))

    def summary(self) -> str:
        lines = [
            "y = a + b x^-c0 (1 + (x/d1)^(1/f1))^(-c1 f1)   (broken power law, relative least squares)",
            "  " + "  ".join(f"{k} = {v:.5g}" for k, v in self.params.items()),
            f"  y - a ∝ x^{-self.c0:.4g} below the break at x = {self.d1:.4g}, x^{-(self.c0 + self.c1):.4g} above it",
            f"  {self.n_points} points, rms relative error {self.rms_relative_error:.3g}",
        ]
        return "\n".join(lines + [f"diagnostic: {text}" for text in self.diagnostics])

    def to_dict(self) -> dict:
        out = {k: _json_float(v) for k, v in self.params.items()}
        out.update(rms_relative_error=_json_float(self.rms_relative_error), n_points=int(self.n_points), diagnostics=list(self.diagnostics))
        return out


def _bpl_inputs(x, y) -> tuple[np.ndarray, np.ndarray]:
    arrays = []
    for name, values in (("x", x), ("y", y)):
        values = np.asarray(values, dtype=float).ravel()
        if not np.all(np.isfinite(values)):
            raise UserError(f"{name} has {int((~np.isfinite(values)).sum())} NaN/inf value(s); drop those points")
        if np.any(values <= 0):
            raise UserError(f"{name} has {int((values <= 0).sum())} value(s) <= 0; a broken power law needs positive values")
        arrays.append(values)
    if len(arrays[0]) != len(arrays[1]):
        raise UserError(f"x has {len(arrays[0])} values but y has {len(arrays[1])}; give one y per x")
    if len(np.unique(arrays[0])) < 8:
        raise UserError(f"a broken power law has 6 parameters; it needs >= 8 distinct x, got {len(np.unique(arrays[0]))}")
    return arrays[0], arrays[1]


def fit_broken_power_law(x, y) -> BrokenPowerLawFit:
    """Fit Caballero et al.'s one-break law to a single-axis curve (x > 0, y > 0).

    Relative least squares (see the joint fit: noise in losses is multiplicative). A grid over the
    break position d1 (log-spaced over the observed x), the sharpness f1 and both exponents, with
    (a, b) >= 0 solved exactly at every grid point, picks the basin; least squares on all six
    parameters then polishes it.
    """
    x, y = _bpl_inputs(x, y)
    log_x, w = np.log(x), 1.0 / y**2
    breaks = np.linspace(log_x.min(), log_x.max(), _BPL_BREAKS)
    best = (np.inf, None)
    per_break = len(_BPL_C0) * len(_BPL_C1) * len(x)
    chunk = max(1, 2_000_000 // per_break)  # breaks per pass: keeps the grid arrays near 16 MB each
    for f1 in _BPL_F1:
        for first in range(0, len(breaks), chunk):
            log_d1 = breaks[first : first + chunk]
            # shape (breaks, c0, c1, points)
            logs = _bpl_log_shape(log_x, _BPL_C0[None, :, None, None], _BPL_C1[None, None, :, None], log_d1[:, None, None, None], f1)
            with np.errstate(over="ignore"):
                g = np.exp(logs)
            zero = np.zeros(g.shape[:-1])
            gram = (w.sum() + zero, (w * g).sum(-1), zero, (w * g * g).sum(-1), zero, zero)  # (a, b) only
            h = ((w * y).sum() + zero, (w * y * g).sum(-1), zero)
            theta, objective = _nnls3(gram, h, (w * y * y).sum())
            objective = np.where(np.isfinite(objective), objective, np.inf)
            k = int(np.argmin(objective))
            if objective.flat[k] < best[0]:
                i, j, l = np.unravel_index(k, objective.shape)
                best = (objective.flat[k], np.array([theta[i, j, l, 0], theta[i, j, l, 1], _BPL_C0[j], _BPL_C1[l], log_d1[i], np.log(f1)]))
    start = best[1]

    def residuals(q):  # q: a, log b, c0, c1, log d1, log f1
        return (q[0] + np.exp(q[1] + _bpl_log_shape(log_x, q[2], q[3], q[4], np.exp(q[5]))) - y) / y

    q0 = np.array([start[0], np.log(max(start[1], 1e-300)), start[2], start[3], start[4], start[5]])
    lower = [0.0, -np.inf, -np.inf, -np.inf, log_x.min() - 5.0, np.log(0.01)]
    upper = [np.inf, np.inf, np.inf, np.inf, log_x.max() + 5.0, np.log(10.0)]
    q = q0
    try:
        polished = optimize.least_squares(residuals, np.clip(q0, lower, upper), bounds=(lower, upper), xtol=1e-15, ftol=1e-15, gtol=1e-15, max_nfev=5000)
        if np.sum(polished.fun**2) <= np.sum(residuals(q0) ** 2):
            q = polished.x
    except ValueError:
        pass
    a, b, c0, c1, d1, f1 = q[0], np.exp(q[1]), q[2], q[3], np.exp(q[4]), np.exp(q[5])
    notes = []
    xs = np.sort(np.unique(x))
    if not xs[1] <= d1 <= xs[-2]:
        notes.append(f"the break d1 = {d1:.4g} lies outside the data's interior [{xs[1]:.4g}, {xs[-2]:.4g}]: no break is resolved")
    if abs(c0 + c1) < 0.02:
        notes.append("the curve is flat beyond the break: the break and the constant a describe the same floor")
    if len(x) < 12:
        notes.append(f"{len(x)} points for 6 parameters: the break is poorly determined")
    rms = float(np.sqrt(np.mean(residuals(q) ** 2)))
    return BrokenPowerLawFit(float(a), float(b), float(c0), float(c1), float(d1), float(f1), rms, len(x), notes)
