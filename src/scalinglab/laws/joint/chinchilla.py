"""The Chinchilla recipe (Hoffmann et al. 2022) for the joint law L(N, P) = E + A·N^-alpha + B·P^-beta.

Huber (delta 1e-3) on log L, with log L̂ = LSE(e, a - alpha log N, b - beta log P), minimised by a
vectorised L-BFGS (`_lbfgs`) from the best starts of Hoffmann et al.'s grid (`chinchilla_grid`);
`chinchilla_fit` solves many weightings at once; `chinchilla_point` fits the full data, `chinchilla_draws`
the bootstrap draws.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from scipy import optimize

from scalinglab.laws.joint.data import JointData

HUBER_DELTA = 1e-3  # Hoffmann et al. 2022

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
CHINCHILLA_DRAW_STARTS = 3  # per bootstrap draw: the full-data optimum and the two best grid starts


# --------------------------------------------------------------------------------------------
# The Chinchilla recipe: Huber(delta = 1e-3) on log L, log L̂ = LSE(e, a - alpha log N, b - beta log P)


class _HuberProblem:
    """Weighted Huber loss of log residuals, and its gradient, for many parameter vectors at once.

    theta (K, 5) = (e, a_c, b_c, alpha, beta) with a_c = a - alpha log N0 and b_c = b - beta log P0
    (centred sizes: the same objective, better conditioned). Predictions are computed once per
    (N, P) configuration, not per row: seeds share them.
    """

    def __init__(self, data: JointData):
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


def chinchilla_grid(data: JointData) -> np.ndarray:
    """Hoffmann et al.'s start grid in centred coordinates (a_c = a - alpha log N0), best initial
    objective on the full data first (computed once per data set)."""
    if data.ranked_starts is None:
        e, a, b, alpha, beta = (m.ravel() for m in np.meshgrid(*_CHINCHILLA_GRID, indexing="ij"))
        grid = np.column_stack([e, a - alpha * data.log_n0, b - beta * data.log_p0, alpha, beta])
        initial, _ = _HuberProblem(data)(grid, np.ones((1, len(data.y))))
        data.ranked_starts = grid[np.argsort(initial)]
    return data.ranked_starts


def chinchilla_fit(data: JointData, W: np.ndarray, starts: np.ndarray):
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


def chinchilla_natural(theta: np.ndarray, data: JointData) -> np.ndarray:
    """(e, a_c, b_c, alpha, beta) rows -> (E, A, B, alpha, beta) rows."""
    e, a, b, alpha, beta = np.atleast_2d(theta).T
    with np.errstate(over="ignore"):
        return np.column_stack(
            [np.exp(e), np.exp(a + alpha * data.log_n0), np.exp(b + beta * data.log_p0), alpha, beta]
        )


def chinchilla_centred(params: np.ndarray, data: JointData) -> np.ndarray:
    """(E, A, B, alpha, beta) -> (e, a_c, b_c, alpha, beta), the inverse of chinchilla_natural; E = 0 maps
    to e = -50 (exp(-50) ~ 0), a finite start."""
    E, A, B, alpha, beta = params
    with np.errstate(divide="ignore"):
        theta = np.array([np.log(E), np.log(A) - alpha * data.log_n0, np.log(B) - beta * data.log_p0, alpha, beta])
    return np.nan_to_num(theta, neginf=-50.0)


def chinchilla_draws(data: JointData, W: np.ndarray, point: np.ndarray) -> tuple[np.ndarray, int]:
    """Refits for the bootstrap weight vectors W (D, n): natural parameters (D, 5), and how many refits
    hit the L-BFGS iteration limit. All draws run in one batch (the L-BFGS loop runs as long as its
    slowest problem, so chunks would pay that tail again). Each draw starts from the full-data optimum
    `point` and from the grid starts that screen best on the full data: a few draws have local optima
    that one start misses."""
    starts = np.vstack([chinchilla_centred(point, data), chinchilla_grid(data)[: CHINCHILLA_DRAW_STARTS - 1]])
    theta, _, done = chinchilla_fit(data, W, starts)
    return chinchilla_natural(theta, data), int((~done).sum())


def chinchilla_point(data: JointData):
    """Full-data Chinchilla fit: screen the start grid, L-BFGS from the best starts, then a scipy L-BFGS-B
    polish of the winner with tight tolerances. Returns (theta in centred coordinates, converged, starts)."""
    problem = _HuberProblem(data)
    ones = np.ones((1, len(data.y)))
    starts = chinchilla_grid(data)[:_CHINCHILLA_STARTS]
    theta, f, done = chinchilla_fit(data, ones, starts)
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
