"""The fixed-norm minimiser of the perceptron's loss, for a grid of norms at once.

Why the fixed-norm minimiser is unique and certified: L_lambda is convex in w, and with
separable labels it has no finite unconstrained minimiser, so its minimum over the ball |w|^2 <= N
lies on the sphere. A point w on the sphere whose Euclidean gradient points inwards,
grad L = -c w with c > 0, satisfies the KKT conditions of that convex ball problem and is therefore
a global minimiser. It is unique: L is strictly convex on the span of the inputs (phi'' > 0) and
the minimiser lies in that span (a component outside it would waste norm). The solver reports c
("multiplier") and counts a lambda as converged only when the Riemannian gradient is small and
c > 0. Numerics: Riemannian Newton with preconditioned truncated CG (Hessian products in float32,
gradients, losses and the convergence test in float64), batched over lambdas.
"""

from __future__ import annotations

import math
import time
import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from scalinglab.perceptron.problem import (
    DTYPE,
    PerceptronData,
    generalisation_error,
    hebbian,
    log_loss_per_row,
    make_data,
    scaled_slopes,
)


@dataclass
class FixedNormSolution:
    lambdas: np.ndarray  # (L,)
    weights: torch.Tensor  # (L, N), each row with |w|^2 = N
    grad_norm: np.ndarray  # |Riemannian gradient| / (c sqrt(N)): bound (radians) on the angle left
    multiplier: np.ndarray  # c in grad log L = -c w; > 0 certifies the global minimum
    converged: np.ndarray  # bool per lambda: c > 0 and grad_norm <= tol
    newton_steps: np.ndarray  # Newton steps taken per lambda
    cg_products: int  # batched Hessian-vector products, all lambdas together
    seconds: float


class _Problem:
    """The batch of L sphere problems sharing one data set; rows of w are the L students."""

    def __init__(self, signed: torch.Tensor, lam: torch.Tensor):
        self.signed = signed
        self.lam = lam
        self.n = signed.shape[1]
        self.sqrt_n = math.sqrt(self.n)
        self.hess_products = 0
        self.signed32 = signed.float()
        self._uniform = None

    def preconditioner(self, weights: torch.Tensor):
        """Eigen-decomposition of the weighted Gram matrix sum_mu weights_mu A_mu A_mu^T, for the
        CG preconditioner; returns (basis, eigenvalues, sum of weights). In float32: a
        preconditioner only needs to be close. Nearly uniform weights (small lambda, effective
        fraction of examples above 0.7) reuse the unweighted Gram matrix, decomposed once."""
        total = float(weights.sum())
        if total**2 / (len(weights) * float((weights**2).sum())) > 0.7:
            if self._uniform is None:
                s, u = torch.linalg.eigh(self.signed32.T @ self.signed32)
                self._uniform = (u.double(), s.double().clamp(min=0.0), float(len(weights)))
            return self._uniform
        keep = weights > 1e-17 * weights.max()  # the rest would add nothing at float precision
        scaled = self.signed32[keep] * weights[keep].float().sqrt()[:, None]
        s, u = torch.linalg.eigh(scaled.T @ scaled)
        return u.double(), s.double().clamp(min=0.0), total

    def evaluate(self, w: torch.Tensor, rows: torch.Tensor, margins: torch.Tensor | None = None):
        """For the given rows: log L, phi'' / L (for the Hessian), the multiplier c, the
        Riemannian gradient (the last two of log L, i.e. of L divided by L) and the margins
        (w . A_mu, computed unless given)."""
        lam = self.lam[rows]
        if margins is None:
            margins = w @ self.signed.T
        z = lam[:, None] * margins
        log_loss = log_loss_per_row(z)
        d1, d2, shift = scaled_slopes(z)
        norm = torch.exp(log_loss + shift)[:, None]  # the scaled loss, so that d1/norm = phi'/L
        euclid = lam[:, None] * ((d1 / norm) @ self.signed)
        c = -(w * euclid).sum(1) / self.n
        return log_loss, d2 / norm, c, euclid + c[:, None] * w, margins

    def gap(self, grad: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        """|grad| / (c sqrt N): the Newton step's angle bound (inf where c <= 0)."""
        g = grad.norm(dim=1) / self.sqrt_n
        return torch.where(c > 0, g / c.clamp(min=1e-300), torch.full_like(g, math.inf))


def _newton_direction(prob: _Problem, rows, w, d2, c, grad, max_cg: int, eta: torch.Tensor, precond):
    """Preconditioned truncated CG on the Riemannian Hessian P H P + c I (P: tangent projector).

    Preconditioner for row j: (lambda_j^2 (sum phi''_j / sum g) G + c_j I)^-1 with G = sum_mu g_mu
    A_mu A_mu^T a weighted Gram matrix shared by the batch (g: the batch rows' phi'', each
    normalised to sum 1, averaged), diagonal in G's eigenbasis: it captures the Marchenko-Pastur spread
    of the Hessian and, at large
    lambda, its concentration on the examples near the margin. A row stops at relative residual
    eta or at negative curvature (then it keeps its current iterate, or -grad at k = 0).
    """
    lam = prob.lam[rows]
    n = prob.n
    u, s, total = precond
    damp = (lam**2) * d2.sum(1) / total
    # at large lambda, phi''(lambda Delta) underflows (relative to its row's largest value) for
    # most examples: the Hessian products skip them, which changes nothing at double precision
    active = (d2 > 1e-17 * d2.amax(dim=1, keepdim=True)).any(0)
    if bool(active.all()):
        a_act, d2_act = prob.signed32, d2
    else:
        a_act, d2_act = prob.signed32[active], d2[:, active]
    # the products run in float32 (half the memory traffic): CG only has to reach a relative
    # residual eta >= 1e-3 here, far above float32 rounding; gradients and the final convergence
    # test stay in float64, so the returned minimiser is exact to float64 tolerance
    d2_act = (d2_act * (lam**2)[:, None]).float()

    def project(v):
        return v - w * ((w * v).sum(1, keepdim=True) / n)

    def hess(v):
        prob.hess_products += 1
        hv = ((d2_act * (v.float() @ a_act.T)) @ a_act).double()
        return project(hv) + c[:, None] * v

    def precondition(r):
        coeffs = (r @ u) / (damp[:, None] * s[None, :] + c.clamp(min=1e-300)[:, None])
        return project(coeffs @ u.T)

    v = torch.zeros_like(grad)
    r = -grad
    zr = precondition(r)
    p = zr
    rz = (r * zr).sum(1)
    target = eta * grad.norm(dim=1)
    live = torch.ones(len(rows), dtype=torch.bool)
    for k in range(max_cg):
        hp = hess(p)
        curv = (p * hp).sum(1)
        neg = live & (curv <= 0)
        if bool(neg.any()):
            if k == 0:
                v[neg] = -grad[neg]
            live = live & ~neg
        a = torch.where(live, rz / torch.where(curv > 0, curv, torch.ones_like(curv)), torch.zeros_like(rz))
        v = v + a[:, None] * p
        r = r - a[:, None] * hp
        live = live & (r.norm(dim=1) > target)
        if not bool(live.any()):
            break
        zr = precondition(r)
        rz_new = (r * zr).sum(1)
        beta = torch.where(live, rz_new / rz, torch.zeros_like(rz))
        p = torch.where(live[:, None], zr + beta[:, None] * p, p)
        rz = torch.where(live, rz_new, rz)
    return project(v)


def _solve_rows(prob: _Problem, w: torch.Tensor, rows: torch.Tensor, *, tol: float, max_newton: int, max_cg: int):
    """Riemannian Newton with Armijo backtracking for the given rows; returns (w, gap, c, steps)."""
    steps = torch.zeros(len(rows), dtype=torch.long)
    w = w.clone()
    log_loss, d2, c, grad, margins = prob.evaluate(w, rows)
    # one preconditioner for the batch, from the rows' phi'' at the start, each normalised to
    # sum 1 and averaged (so the Gram matrix covers every row's examples near its margin)
    precond = prob.preconditioner((d2 / d2.sum(1, keepdim=True)).mean(0))
    for _ in range(max_newton):
        gap = prob.gap(grad, c)
        if len(rows) > 1:
            # path following inside the batch (rows sorted by lambda): an unconverged row takes
            # its lower neighbour's current point when that is better for its own loss
            offer = log_loss_per_row(prob.lam[rows[1:], None] * margins[:-1])
            take = ((offer < log_loss[1:] - 1e-12 * log_loss[1:].abs()) & (gap[1:] > tol)).nonzero().squeeze(1) + 1
            if len(take):
                w[take] = w[take - 1]
                new = prob.evaluate(w[take], rows[take])
                log_loss, d2, c, grad, margins = (x.clone() for x in (log_loss, d2, c, grad, margins))
                log_loss[take], d2[take], c[take], grad[take], margins[take] = new
                gap = prob.gap(grad, c)
        act = (gap > tol).nonzero().squeeze(1)
        if len(act) == 0:
            break
        sub = rows[act]
        eta = torch.clamp(gap[act].sqrt(), max=0.1)  # forcing term: superlinear near the solution
        step = _newton_direction(prob, sub, w[act], d2[act], c[act], grad[act], max_cg, eta, precond)
        # Armijo on log L along the retraction (grad is the gradient of log L). The margins of
        # w + t v are m + t (v . A): one matrix product serves every trial step length
        slope = (grad[act] * step).sum(1)
        step_margins = step @ prob.signed.T
        t = torch.ones(len(act), dtype=DTYPE)
        pending = torch.ones(len(act), dtype=torch.bool)
        new_margins = margins[act].clone()
        for _ in range(50):
            i = pending.nonzero().squeeze(1)
            trial = w[act[i]] + t[i, None] * step[i]
            scale = prob.sqrt_n / trial.norm(dim=1, keepdim=True)
            trial_margins = (margins[act[i]] + t[i, None] * step_margins[i]) * scale
            # the last term forgives rounding: near the minimum a Newton step changes log L by
            # less than its last bits, and must not be rejected for that
            bound = log_loss[act[i]] + 1e-4 * t[i] * slope[i] + 1e-14 * log_loss[act[i]].abs().clamp(min=1.0)
            ok = log_loss_per_row(prob.lam[sub[i], None] * trial_margins) <= bound
            w[act[i[ok]]] = trial[ok] * scale[ok]
            new_margins[i[ok]] = trial_margins[ok]
            pending[i[ok]] = False
            if not bool(pending.any()):
                break
            t[pending] *= 0.5
        steps[act] += 1
        new = prob.evaluate(w[act], sub, new_margins)
        log_loss, d2, c, grad, margins = (x.clone() for x in (log_loss, d2, c, grad, margins))
        log_loss[act], d2[act], c[act], grad[act], margins[act] = new
    return w, prob.gap(grad, c), c, steps


def _warm_start(data, lam, solved, lo, rows):
    """Starting points for `rows`: the Hebbian vector for the first block; after that a linear
    extrapolation in log lambda along the solution path through the last two solved lambdas,
    put back on the sphere (error O(step^2) instead of O(step) for a plain restart)."""
    if lo == 0:
        return hebbian(data).expand(len(rows), -1).clone()
    if lo == 1:
        return solved[0].expand(len(rows), -1).clone()
    a, b = solved[lo - 1], solved[lo - 2]
    la, lb = math.log(lam[lo - 1]), math.log(lam[lo - 2])
    t = (torch.log(lam[rows]) - la) / (la - lb)
    w0 = a + t[:, None] * (a - b)
    return w0 * (math.sqrt(data.n) / w0.norm(dim=1, keepdim=True))


def solve_fixed_norm(
    data: PerceptronData,
    lambdas,
    *,
    tol: float = 1e-6,
    block: int = 6,
    max_newton: int = 100,
    max_cg: int = 500,
    warn: bool = True,
) -> FixedNormSolution:
    """Minimise L_lambda on the sphere for every lambda, with warm starts along increasing lambda.

    The lambdas are sorted and cut into blocks of `block` consecutive values; each block is solved
    as one batch (shared matrix products), its rows started by extrapolating the solution path
    through the two largest lambdas already solved (the first block from the Hebbian vector, the
    lambda -> 0 solution), and each unconverged row may take its lower neighbour's point.
    Damped Newton is slow far from the minimiser at large lambda, so the path is followed on an
    internal grid: if the smallest lambda exceeds 1, or two consecutive lambdas differ by more
    than a factor 2, intermediate norms (ratio <= 1.5) are solved too and not returned.
    `tol` bounds, to first order, the angle (radians) between each returned w and the exact
    minimiser: |Riemannian gradient| / (c sqrt N), c the KKT multiplier (the smallest curvature).
    """
    start = time.perf_counter()
    lam = np.asarray(lambdas, dtype=float).ravel()
    if lam.size == 0 or not np.all(np.isfinite(lam)) or np.any(lam <= 0):
        raise ValueError("lambdas must be a non-empty array of positive finite numbers")
    grid, where = _path_grid(lam)
    prob = _Problem(data.signed, torch.tensor(grid, dtype=DTYPE))
    n_lam = grid.size
    weights = torch.empty(n_lam, data.n, dtype=DTYPE)
    gap = torch.empty(n_lam, dtype=DTYPE)
    mult = torch.empty(n_lam, dtype=DTYPE)
    steps = torch.zeros(n_lam, dtype=torch.long)
    for lo in range(0, n_lam, block):
        rows = torch.arange(lo, min(lo + block, n_lam))
        w0 = _warm_start(data, prob.lam, weights, lo, rows)
        w, g, c, s = _solve_rows(prob, w0, rows, tol=tol, max_newton=max_newton, max_cg=max_cg)
        weights[rows], gap[rows], mult[rows], steps[rows] = w, g, c, s
    converged = ((gap <= tol) & (mult > 0)).numpy()[where]
    if warn and not converged.all():
        bad = ", ".join(f"{x:.3g}" for x in lam[~converged])
        warnings.warn(f"perceptron: not converged to tol={tol:g} at lambda = {bad}", RuntimeWarning, stacklevel=2)
    return FixedNormSolution(
        lambdas=lam,
        weights=weights[torch.as_tensor(where)],
        grad_norm=gap.numpy()[where],
        multiplier=mult.numpy()[where],
        converged=converged,
        newton_steps=steps.numpy()[where],
        cg_products=prob.hess_products,
        seconds=time.perf_counter() - start,
    )


def _path_grid(lam: np.ndarray, first: float = 1.0, max_gap: float = 2.0, ratio: float = 1.5):
    """Sorted unique solve grid containing `lam`, with a ladder from `first` up to lam.min() and
    fillers where consecutive values differ by more than max_gap; and the index of each lam."""
    values = np.unique(lam)
    points = [values]
    if values[0] > first:
        points.append(np.geomspace(first, values[0], int(np.ceil(np.log(values[0] / first) / np.log(ratio))) + 1)[:-1])
    for a, b in zip(values[:-1], values[1:]):
        if b / a > max_gap:
            points.append(np.geomspace(a, b, int(np.ceil(np.log(b / a) / np.log(ratio))) + 1)[1:-1])
    grid = np.unique(np.concatenate(points))
    return grid, np.searchsorted(grid, lam)


def sweep(
    n: int,
    alphas,
    lambdas,
    seeds,
    *,
    tol: float = 1e-6,
    block: int = 6,
    label: str | None = None,
) -> pd.DataFrame:
    """Fixed-norm error curves: one row per (alpha, seed, lambda); `label` names the job in progress
    lines on stderr (rate and ETA per solved (alpha, seed), core/progress.py; None: silent).

    `lambdas` (margin scales) is an array shared by every alpha, or a function alpha -> array (to
    follow lambda_opt, which grows with alpha). Columns: alpha, P, N, seed, lam, norm (= lam^2, the
    the paper's lambda = |weights|^2 / N), error, grad_norm (bound,
    in radians, on the angle to the exact minimiser), converged, error_hebb (the lambda -> 0 error
    of that data set), rel_error = error / error_hebb (the error the theory's laws are stated for),
    multiplier, newton_steps, seconds (per alpha and seed).
    """
    from scalinglab.core.progress import Progress

    rows = []
    watch = Progress(label, len(alphas) * len(seeds), "data sets")
    for alpha in alphas:
        p = int(round(alpha * n))
        grid = lambdas(alpha) if callable(lambdas) else lambdas
        for seed in seeds:
            data = make_data(n, p, seed)
            sol = solve_fixed_norm(data, grid, tol=tol, block=block)
            err = generalisation_error(sol.weights, data.teacher).numpy()
            err_hebb = float(generalisation_error(hebbian(data)[None], data.teacher)[0])
            rows.append(
                pd.DataFrame(
                    {
                        "alpha": float(alpha),
                        "P": p,
                        "N": n,
                        "seed": int(seed),
                        "lam": sol.lambdas,
                        "norm": sol.lambdas**2,
                        "error": err,
                        "grad_norm": sol.grad_norm,
                        "converged": sol.converged,
                        "error_hebb": err_hebb,
                        "rel_error": err / err_hebb,
                        "multiplier": sol.multiplier,
                        "newton_steps": sol.newton_steps,
                        "seconds": sol.seconds,
                    }
                )
            )
            watch.update(len(rows), f"alpha {alpha:g}, seed {seed}: {len(grid)} norms solved")
    watch.finish()
    return pd.concat(rows, ignore_index=True)
