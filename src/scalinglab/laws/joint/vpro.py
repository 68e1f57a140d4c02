"""The variable-projection ("vpro") fitter of the joint law L(N, P) = E + A·N^-alpha + B·P^-beta.

For fixed (alpha, beta) the law is linear in (E, A, B) >= 0, which `nnls3` solves exactly; a grid
and a pattern search over the exponents find the rest (`vpro_draws`, vectorised over bootstrap
draws), and `vpro_point` polishes the full-data fit. `nnls3` also serves the broken power law.
"""

from __future__ import annotations

import numpy as np
from scipy import optimize

from scalinglab.laws.joint.data import JointData

EXPONENT_BOUNDS = (0.02, 4.0)  # vpro searches alpha and beta here; 4/d reaches 2 at d = 2

# Variable-projection grid: log-spaced exponents, then a pattern search that halves its step.
_GRID_SIZE = 32
_PATTERN_STEPS = 26
_PATTERN_OFFSETS = np.array([-1.0, -0.5, 0.0, 0.5, 1.0])


# --------------------------------------------------------------------------------------------
# Variable projection: for fixed (alpha, beta) the law is linear in (E, A, B) >= 0


# Relative least squares: minimise sum_i w_i ((L̂_i - L_i) / L_i)^2. Seed-to-seed noise in a loss is
# multiplicative (its spread scales with the loss), and losses span decades across the grid, so
# plain least squares in L would let the largest-loss (smallest) configurations decide the fit and
# leave E to the few rows near the floor. (L̂ - L)/L ≈ log L̂ - log L, the log-normal likelihood,
# while staying linear in (E, A, B), which variable projection needs. (Weighting by the observed L
# scales the fitted L̂ by about exp(-1.5 σ²), 0.4% at σ = 5%; that changes E, A, B equally and
# leaves both exponents alone.)


def nnls3(g, h, yy):
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
    return nnls3((g00, g01, g02, g11, g12, g22), (h0, h1, h2), yy)


def vpro_draws(data: JointData, W: np.ndarray, bounds=EXPONENT_BOUNDS) -> np.ndarray:
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


def _relative_residuals(data: JointData, params: np.ndarray) -> np.ndarray:
    E, A, B, alpha, beta = params
    return (E + A * data.N**-alpha + B * data.P**-beta - data.y) / data.y


def vpro_point(data: JointData, bounds=EXPONENT_BOUNDS) -> np.ndarray:
    """The full-data vpro fit, polished by least squares on all five parameters from the search's optimum."""
    start = vpro_draws(data, np.ones((1, len(data.y))), bounds)[0]
    n0, p0 = np.exp(data.log_n0), np.exp(data.log_p0)

    def residuals(q):  # centred coefficients, for conditioning
        E, Ac, Bc, alpha, beta = q
        return (E + Ac * (data.N / n0) ** -alpha + Bc * (data.P / p0) ** -beta - data.y) / data.y

    q0 = np.array([start[0], start[1] * n0 ** -start[3], start[2] * p0 ** -start[4], start[3], start[4]])
    lower, upper = [0, 0, 0, bounds[0], bounds[0]], [np.inf, np.inf, np.inf, bounds[1], bounds[1]]
    try:
        polished = optimize.least_squares(
            residuals,
            np.clip(q0, lower, upper),
            bounds=(lower, upper),
            xtol=1e-15,
            ftol=1e-15,
            gtol=1e-15,
            max_nfev=2000,
        ).x
    except (ValueError, np.linalg.LinAlgError):
        return start
    candidate = np.array(
        [polished[0], polished[1] * n0 ** polished[3], polished[2] * p0 ** polished[4], polished[3], polished[4]]
    )
    better = np.sum(_relative_residuals(data, candidate) ** 2) < np.sum(_relative_residuals(data, start) ** 2)
    return candidate if better else start
