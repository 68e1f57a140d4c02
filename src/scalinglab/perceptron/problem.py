"""Teacher-student perceptron of D'Amico, Bocchi & Negri: error as a function of the weight norm.

Teacher w* and student w in R^N; P = alpha*N inputs x in {-1, +1}^N; labels y = sign(x . w*).
The student lives on the sphere |w|^2 = N and a scale lambda multiplies its margins
Delta_mu = y_mu w . x_mu / sqrt(N) inside the cross-entropy (pseudo-likelihood) loss

    L_lambda(w) = sum_mu [log 2cosh(lambda Delta_mu) - lambda Delta_mu] = sum_mu softplus(-2 lambda Delta_mu).

That is the paper's model with weights lambda w, whose squared norm is lambda^2 N: the paper's norm
(|w|^2 = lambda_seed N) is lambda_seed = lambda^2. In this module `lam` is the margin scale lambda;
the tables also carry `norm` = lambda^2, the paper's lambda, which the laws' exponents refer to
(in the scale, gamma1 would come out twice and gamma2 half the paper's).

lambda -> 0 gives the Hebbian rule (w ~ sum_mu y_mu x_mu), lambda -> infinity the max-margin
perceptron. The generalisation error is eps = arccos(R)/pi with R the teacher-student overlap.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

DTYPE = torch.float64


# ----------------------------------------------------------------------------- data


@dataclass
class PerceptronData:
    """One draw of the teacher-student problem. `signed` holds y_mu x_mu / sqrt(N), shape (P, N)."""

    teacher: torch.Tensor  # (N,)
    x: torch.Tensor  # (P, N), entries +-1
    y: torch.Tensor  # (P,), entries +-1
    signed: torch.Tensor  # (P, N)

    @property
    def n(self) -> int:
        return self.x.shape[1]

    @property
    def p(self) -> int:
        return self.x.shape[0]


def generator(seed: int, stream: int) -> torch.Generator:
    # One independent stream per (seed, purpose) so that data sets are nested in P: the first P
    # examples at a larger alpha are the same examples (common random numbers across alpha).
    key = np.random.SeedSequence([int(seed), int(stream)]).generate_state(1, dtype=np.uint64)[0]
    return torch.Generator().manual_seed(int(key) & 0x7FFF_FFFF_FFFF_FFFF)


def make_data(n: int, p: int, seed: int) -> PerceptronData:
    """Teacher w* ~ N(0, I_N), P random +-1 inputs, y = sign(x . w*). Deterministic in (n, seed)."""
    if n < 2 or p < 1:
        raise ValueError(f"need N >= 2 and P >= 1, got N={n}, P={p}")
    teacher = torch.randn(n, generator=generator(seed, 0), dtype=DTYPE)
    # examples come in blocks of n rows, block b from its own stream: nested in P
    blocks = []
    for b in range(math.ceil(p / n)):
        bits = torch.randint(0, 2, (n, n), generator=generator(seed, 1 + b), dtype=torch.int8)
        blocks.append(bits.to(DTYPE) * 2 - 1)
    x = torch.cat(blocks)[:p].contiguous()
    y = torch.sign(x @ teacher)
    y[y == 0] = 1.0  # measure-zero tie, kept deterministic
    return PerceptronData(teacher=teacher, x=x, y=y, signed=(y[:, None] * x) / math.sqrt(n))


def generalisation_error(w: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """eps = arccos(R)/pi for each row of w (any norm): exact for inputs with i.i.d. symmetric entries
    as N grows, and the quantity the theory describes."""
    overlap = (w @ teacher) / (w.norm(dim=-1) * teacher.norm())
    return torch.arccos(overlap.clamp(-1.0, 1.0)) / math.pi


def hebbian(data: PerceptronData) -> torch.Tensor:
    """The lambda -> 0 minimiser on the sphere: w proportional to sum_mu y_mu x_mu, with |w|^2 = N."""
    w = data.signed.sum(0)
    return w * (math.sqrt(data.n) / w.norm())


# ----------------------------------------------------------------------------- loss pieces
# phi(z) = log 2cosh z - z = softplus(-2z), phi'(z) = tanh z - 1 = -2 sigmoid(-2z),
# phi''(z) = sech^2 z = 4 sigmoid(-2z) sigmoid(2z). At large lambda every term is ~exp(-2z) and the
# loss underflows, so each row works with log L and with phi', phi'' multiplied by exp(2 m), m the
# row's smallest positive lambda*Delta: Newton directions and the ratio |grad|/c are unchanged
# by that positive factor.


def log_loss_per_row(z: torch.Tensor) -> torch.Tensor:
    """log sum_mu softplus(-2 z_mu) per row, stable for any z."""
    u = -2.0 * z
    log_terms = torch.where(u > -30.0, torch.log(torch.nn.functional.softplus(u)), u)
    return torch.logsumexp(log_terms, dim=1)


def scaled_slopes(z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """phi'(z) and phi''(z) times exp(2 m) per row, m = max(0, min_mu z_mu), shape (L, P); and 2m."""
    shift = 2.0 * z.min(dim=1, keepdim=True).values.clamp(min=0.0)
    s = torch.exp(torch.nn.functional.logsigmoid(-2.0 * z) + shift)
    return -2.0 * s, 4.0 * s * torch.sigmoid(2.0 * z), shift.squeeze(1)
