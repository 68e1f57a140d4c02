"""Spectral complexity of a torch model (Bartlett, Foster & Telgarsky 2017), reference matrices 0:

    R = (prod_i |A_i|_sigma) * (sum_i (|A_i^T|_{2,1} / |A_i|_sigma)^(2/3))^(3/2)

|A|_sigma is the largest singular value; |B|_{2,1} is the sum of the l2 norms of the columns of B,
so |A_i^T|_{2,1} is the sum of the l2 norms of the rows of A_i (one row per output unit, with A_i
mapping inputs to outputs as torch stores it, shape (out, in)). The activations' Lipschitz
constants rho_i are taken as 1 (ReLU, GELU's is about 1.13 and is ignored, as in D'Amico et al.).

Which matrices count (the layers A_i), in module order:
- every nn.Linear weight, attention output projections included (out_proj is an nn.Linear);
- every nn.Conv1d/2d/3d weight reshaped to (out, in/groups * prod(kernel)); ConvTranspose weights
  (stored (in, out/groups, ...)) are transposed first to (out/groups, in * prod(kernel));
- nn.MultiheadAttention input projections as three matrices Q, K, V: in_proj_weight split in
  three, or q/k/v_proj_weight when the key/value dimensions differ (as the paper's code does);
- not counted: biases, normalisation layers (BatchNorm, LayerNorm, ...), embeddings, class tokens
  and positional embeddings, and any bare nn.Parameter outside these modules.
The reshaped conv kernel is the convention of the paper, not the operator norm of the convolution.

Spectral norms come from power iteration on A^T A in float64, started from a seeded random vector
or warm-started from the previous call's right singular vectors (pass `state`), which makes the
repeated evaluations along training cheap. Everything is summed in log space: log R is always
finite for nonzero weights, R itself is returned only where it fits in a float.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch
from torch import nn

_CONV = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
_CONV_T = (nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)
_LOG_FLOAT_MAX = math.log(np.finfo(np.float64).max)


def layer_matrices(model: nn.Module) -> list[tuple[str, torch.Tensor]]:
    """The (name, 2-D weight matrix (out, in)) pairs that enter the spectral complexity, detached."""
    out: list[tuple[str, torch.Tensor]] = []
    for name, module in model.named_modules():
        if isinstance(module, nn.Linear):
            out.append((f"{name}.weight", module.weight.detach()))
        elif isinstance(module, _CONV):
            w = module.weight.detach()
            out.append((f"{name}.weight", w.reshape(w.shape[0], -1)))
        elif isinstance(module, _CONV_T):
            w = module.weight.detach().transpose(0, 1)
            out.append((f"{name}.weight", w.reshape(w.shape[0], -1)))
        elif isinstance(module, nn.MultiheadAttention):
            if module.in_proj_weight is not None:
                for tag, part in zip("qkv", module.in_proj_weight.detach().chunk(3, dim=0)):
                    out.append((f"{name}.in_proj_weight[{tag}]", part))
            else:
                for tag in "qkv":
                    out.append((f"{name}.{tag}_proj_weight", getattr(module, f"{tag}_proj_weight").detach()))
            # module.out_proj is an nn.Linear and is visited by named_modules itself
    return out


def power_iteration(
    matrix: torch.Tensor,
    v0: torch.Tensor | None = None,
    *,
    seed: int = 0,
    tol: float = 1e-12,
    max_iter: int = 10_000,
) -> tuple[float, torch.Tensor, int, bool]:
    """Largest singular value of `matrix` by power iteration on A^T A, in float64.

    Stops when the estimate changes by less than tol (relative) between iterations.
    Returns (sigma, right singular vector, iterations, converged).
    """
    a = matrix.to(torch.float64)
    if v0 is None or v0.shape != (a.shape[1],):
        gen = torch.Generator(device="cpu").manual_seed(seed)
        v = torch.randn(a.shape[1], generator=gen, dtype=torch.float64).to(a.device)
    else:
        v = v0.to(device=a.device, dtype=torch.float64)
    norm = v.norm()
    if norm == 0:
        raise ValueError("power iteration: zero start vector")
    v = v / norm
    sigma = 0.0
    for it in range(1, max_iter + 1):
        u = a @ v
        w = a.T @ u
        w_norm = float(w.norm())
        if w_norm == 0.0:
            return 0.0, v, it, True
        # |A v| for unit v is a lower bound that increases to sigma_max
        new_sigma = float(u.norm())
        v = w / w_norm
        if abs(new_sigma - sigma) <= tol * new_sigma:
            return new_sigma, v, it, True
        sigma = new_sigma
    return sigma, v, max_iter, False


@dataclass
class SpectralComplexity:
    log_r: float  # natural log of R
    r: float | None  # R, or None where it overflows a float64
    layers: pd.DataFrame = field(repr=False)  # name, rows, cols, spectral_norm, norm_21, iterations, converged
    state: dict = field(repr=False)  # layer name -> right singular vector, for warm starts

    @property
    def converged(self) -> bool:
        return bool(self.layers["converged"].all())


def spectral_complexity(
    model: nn.Module,
    *,
    state: dict | None = None,
    seed: int = 0,
    tol: float = 1e-12,
    max_iter: int = 10_000,
) -> SpectralComplexity:
    """Bartlett et al.'s spectral complexity with reference matrices 0 (see the module doc).

    `state`: the `.state` of a previous call on the same model (warm start); `seed` fixes the random
    start vectors otherwise (layer k uses seed + k).
    """
    mats = layer_matrices(model)
    if not mats:
        raise ValueError("model has no Linear, Conv or MultiheadAttention weights")
    state = {} if state is None else state
    rows, new_state = [], {}
    log_sigma_sum = 0.0
    for k, (name, a) in enumerate(mats):
        sigma, v, iters, ok = power_iteration(a, state.get(name), seed=seed + k, tol=tol, max_iter=max_iter)
        if sigma == 0.0:
            raise ValueError(f"layer {name} is all zeros: spectral complexity undefined (log 0)")
        norm_21 = float(a.to(torch.float64).norm(dim=1).sum())  # |A^T|_{2,1}: l2 norms of the rows of A
        new_state[name] = v
        log_sigma_sum += math.log(sigma)
        rows.append(
            {
                "name": name,
                "rows": a.shape[0],
                "cols": a.shape[1],
                "spectral_norm": sigma,
                "norm_21": norm_21,
                "iterations": iters,
                "converged": ok,
            }
        )
    layers = pd.DataFrame(rows)
    # sum_i (|A_i^T|_21 / |A_i|_sigma)^(2/3): each ratio lies in [1, rows], no overflow possible
    ratio_sum = float(((layers.norm_21 / layers.spectral_norm) ** (2.0 / 3.0)).sum())
    log_r = log_sigma_sum + 1.5 * math.log(ratio_sum)
    r = math.exp(log_r) if log_r < _LOG_FLOAT_MAX else None
    return SpectralComplexity(log_r=log_r, r=r, layers=layers, state=new_state)
