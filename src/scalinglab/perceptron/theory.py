"""The perceptron against theory: gradient descent follows the fixed-norm path, and the large-alpha
envelope of the early-training curve.

Gradient descent on the unconstrained loss from a small start (gd_trajectory) grows the norm
lambda(t) = |w(t)|/sqrt(N) slowly (logarithmically once the data are separated) while the
direction relaxes quickly on the sphere, so the direction tracks the fixed-norm minimiser at
lambda(t) (Ji et al. 2020, "Gradient descent follows the regularization path for general losses").
"""

import math

import numpy as np
import pandas as pd
import torch

from scalinglab.perceptron.problem import DTYPE, generalisation_error, generator, make_data

# ----------------------------------------------------------------------------- gradient descent


def gd_trajectory(
    n: int,
    alpha: float,
    seed: int,
    steps: int,
    lr: float | None = None,
    *,
    init_scale: float = 1e-3,
    records: int = 60,
    return_weights: bool = False,
):
    """Plain gradient descent on the unconstrained loss sum_mu [log 2cosh(Delta_mu) - Delta_mu],
    Delta_mu = y_mu w . x_mu / sqrt(N), from a small random start (|w|/sqrt(N) = init_scale).

    The norm lambda(t) = |w(t)|/sqrt(N) grows with time. `lr` defaults to 1/L with L the largest
    eigenvalue of sum_mu A_mu A_mu^T (A_mu = y_mu x_mu / sqrt(N)), the loss's smoothness constant
    since phi'' <= 1: every step then lowers the loss. Returns about `records` rows logged at
    log-spaced steps: step, time (= step * lr), lam, norm (= lam^2, the paper's lambda), error, loss;
    attrs hold P, N, seed, lr.
    With return_weights, returns (frame, weights (records, N)) instead.
    """
    p = int(round(alpha * n))
    data = make_data(n, p, seed)
    a = data.signed
    if lr is None:
        lr = 1.0 / float(torch.linalg.matrix_norm(a, ord=2)) ** 2
    gen = generator(seed, 10_000_000)
    w = torch.randn(n, generator=gen, dtype=DTYPE)
    w *= init_scale * math.sqrt(n) / w.norm()
    marks = set(np.unique(np.geomspace(1, steps, records).astype(int)).tolist()) | {0}
    rows, kept = [], []
    for step in range(steps + 1):
        margins = a @ w
        if step in marks:
            kept.append(w.clone())
            loss = float(torch.nn.functional.softplus(-2.0 * margins).sum())
            lam = float(w.norm()) / math.sqrt(n)
            rows.append(
                {
                    "step": step,
                    "time": step * lr,
                    "lam": lam,
                    "norm": lam**2,
                    "error": float(generalisation_error(w[None], data.teacher)[0]),
                    "loss": loss,
                }
            )
        if step == steps:
            break
        # phi'(Delta) = -2 sigmoid(-2 Delta)
        w = w + (2.0 * lr) * (torch.sigmoid(-2.0 * margins) @ a)
    out = pd.DataFrame(rows)
    out.attrs.update({"P": p, "N": n, "seed": seed, "alpha": alpha, "lr": lr})
    return (out, torch.stack(kept)) if return_weights else out


# ----------------------------------------------------------------------------- large-alpha theory


def envelope_relative_error(lam) -> np.ndarray:
    """alpha -> infinity limit of eps(lambda) / eps(0) at fixed lambda (the P-independent early curve).

    At large alpha the fixed-norm minimiser fluctuates around the teacher direction with angle^2
    ~ G / (alpha H^2) (the sandwich covariance): with z ~ N(0,1) the teacher's field,
    G = lambda^2 E[phi'(lambda|z|)^2], H = lambda^2 E[phi''(lambda|z|)] + lambda E[-phi'(lambda|z|)|z|]
    (the last term is the sphere's multiplier). Normalised by the Hebbian value (lambda -> 0,
    angle^2 = pi / (2 alpha)), eps(lambda)/eps(0) -> sqrt(2 G / (pi H^2)): 1 at lambda = 0, and
    ~ lambda^(-1/2) for lambda >> 1 (lambda the margin scale here). In the paper's norm lambda^2 that
    is why gamma1 -> 1/4 (and, with the optimum eps_opt ~ 1/alpha over eps(0) ~ alpha^(-1/2),
    lambda_opt ~ alpha^2, gamma2 -> 2; gamma = 1/2) as alpha grows.
    """
    lam = np.atleast_1d(np.asarray(lam, dtype=float))
    z = np.linspace(0.0, 40.0, 400_001)[1:]
    weight = np.sqrt(2.0 / np.pi) * np.exp(-0.5 * z**2) * (z[1] - z[0])  # density of |z|
    out = np.empty_like(lam)
    for i, lam_i in enumerate(lam):
        one_minus_tanh = 2.0 * np.exp(-np.logaddexp(0.0, 2.0 * lam_i * z))  # -phi'(l z) = 1 - tanh(l z)
        g = lam_i**2 * np.sum(one_minus_tanh**2 * weight)
        h = lam_i**2 * np.sum(one_minus_tanh * (2.0 - one_minus_tanh) * weight)
        h += lam_i * np.sum(one_minus_tanh * z * weight)
        out[i] = math.sqrt(2.0 * g / (math.pi * h**2))
    return out
