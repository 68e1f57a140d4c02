"""The solvable linear random-feature model of neural scaling laws (Bahri et al. 2021; Bordelon,
Atanasov & Pehlevan 2024), simulated exactly and batched in torch.

The model
---------
- Features psi in R^M, psi ~ N(0, Lambda), Lambda = diag(lambda_k), lambda_k = k^-b (k = 1..M, b > 1).
- Teacher y = w*·psi with task power lambda_k (w*_k)^2 = k^-a (a > 1), i.e. w*_k = k^((b-a)/2).
- Student f(psi) = w·A psi / sqrt(N): a random projection A in R^(N x M), A_ij ~ N(0, 1), M >> N;
  only w in R^N is trained. N = inf means the student sees every feature (A^T A / N -> I).
- P training points; gradient descent from w = 0 with learning rate eta on (1/2P)·||Z w - y||^2,
  Z = Psi A^T / sqrt(N); time t = eta · steps. P = inf means GD on the population loss.

Exact test loss (no test sampling). With H = A Lambda A^T / N and h = A Lambda w* / sqrt(N), the
student's best weights are beta* = H^-1 h and
    L(w) = E (f - y)^2 = (w - beta*)^T H (w - beta*) + sigma^2,   sigma^2 = w*^T Lambda w* - h^T beta*,
sigma^2 = L(N, P = inf, t = inf) being the model-bottleneck (approximation) error.

Exact sampling. Given A, the student features z = A psi / sqrt(N) and the target are jointly Gaussian:
z ~ N(0, H) and y = z·beta* + r with r ~ N(0, sigma^2) independent of z (uncorrelated Gaussians).
So a training set is drawn as Z = G H^(1/2), y = Z beta* + sigma·eps, exactly in distribution, at cost
P·N^2 instead of P·M·N (for N = inf: Z = G Lambda^(1/2), y = Z w*, sigma = 0). When P >= N, GD needs
only S = Z^T Z / P and c = Z^T y / P, and these are drawn exactly at cost N^3 for any P (Bartlett's
Wishart factor, see `_draw`): P = 10^9 costs what P = N costs.

Exact GD. GD from zero is linear in the data: with Z^T Z / P = V diag(mu) V^T and c = V^T Z^T y / P,
    w_s = V diag(g_s(mu)) c,   g_s(mu) = (1 - (1 - eta mu)^s) / mu   (= s·eta at mu = 0),
so one eigendecomposition per run gives every step s, including s = inf (g = 1/mu on mu > 0, 0 on
the null space: the minimum-norm interpolant, ridgeless). When P < N the dual form (eigenvectors of
Z Z^T / P) is used; `gd_steps` runs the plain iteration to check this closed form.

Theory (bottlenecks; kappa ~ n^-b is the effective ridge that n samples or n random features
impose on the spectrum, Lambda (Lambda + kappa)^-1 the learned fraction per mode)
- time, N, P -> inf: L(t) = sum_k k^-a (1 - eta k^-b)^(2 s)  ~  t^-(a-1)/b, from the modes not yet
  learned, k > k_t = (2t)^(1/b). This needs t >> 1, k_t << M (with M = 1024 the pair (2.0, 1.5)
  reads 0.673 on t = 3..300, 0.699 on t = 10..1000: the truncated tail sum_{k>M} k^-a is missing), and,
  when a > 2b, a very large P: at finite P the top mode's large weight leaks into empirical directions
  of small curvature (squared overlap ~ lambda_j / P), a term ~ k_t^-(2b-1) / P that decays only as
  t^-(2b-1)/b; it stays below the law only while P >> k_t^(a-2b). Measured for (5.5, 1.5), M = 512,
  t = 10..1000 (k_t up to ~126): exponent 2.34 at P = 10^4, 2.80 at 10^5, 2.95 at 10^6 (theory 3).
- data, N, t -> inf (ridgeless regression): L ~ kappa^2 sum_k k^-a k^2b / (1 + kappa k^b)^2
  ~ P^-min(a-1, 2b): the bias saturates at 2b when the task is too easy (a - 1 > 2b);
- model, P, t -> inf (projection of w* onto the span of A, measured in the Lambda norm):
  L ~ kappa sum_k k^-a k^b / (1 + kappa k^b) ~ N^-min(a-1, b). Why one power of kappa: with
  v = Lambda^(1/2) w* and B = A Lambda^(1/2), L = v^T (I - P_B) v, P_B the orthogonal projection onto
  the row space of B, whose deterministic equivalent is Lambda (Lambda + kappa)^-1 (N plays the part
  of the sample count). Ridgeless regression on P samples instead has the error (I - P_X) w* measured
  in the Lambda norm, w*^T (I - P_X) Lambda (I - P_X) w* ~ kappa^2 sum k^-a k^2b / (1 + kappa k^b)^2:
  two powers, hence 2b on the data axis. Bordelon et al. quote N^-min(a-1, 2b) for the
  N axis as well; for this model (the random-feature model of Bahri et al., Bordelon et al. and the
  power-law random features of Paquette et al. 2024, whose limit loss D^(-2 alpha + max(0, 1 - 2 beta))
  is D^-min(a-1, b) with b = 2 alpha, a = 2 alpha + 2 beta) the exact N exponent saturates at b; the
  simulation and an exact QR computation of the projection residual agree (both ~b, not 2b, when
  a - 1 > b; tests). Both agree when a - 1 < b.
- variance-limited (Bahri et al.): at fixed N < P, t = inf, the student is least squares on N
  Gaussian features with independent noise sigma^2, so L(N, P) - L(N, inf) = sigma^2 N / (P - N - 1)
  ~ 1/P exactly (in expectation) for P >> N.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from scalinglab.core.errors import UserError

INF = math.inf
_DTYPE = torch.float64  # losses span many decades; float32 rounding would bend the power laws
_EIG_FLOOR = 1e-12  # relative: eigenvalues below this times the largest count as the null space


@dataclass(frozen=True)
class Spectrum:
    """lambda_k = k^-b and task power lambda_k w*_k^2 = k^-a on M features."""

    a: float
    b: float
    M: int

    def __post_init__(self):
        if not self.a > 1:
            raise UserError(f"random features: a = {self.a} must exceed 1 (the task power k^-a must be summable)")
        if not self.b > 1:
            raise UserError(f"random features: b = {self.b} must exceed 1 (the spectrum k^-b must be summable)")
        if int(self.M) != self.M or self.M < 2:
            raise UserError(f"random features: M = {self.M} must be a whole number >= 2")

    def tensors(self) -> tuple[torch.Tensor, torch.Tensor]:
        k = torch.arange(1, int(self.M) + 1, dtype=_DTYPE)
        return k**-self.b, k ** ((self.b - self.a) / 2)

    def theory_exponents(self) -> dict[str, float]:
        a, b = self.a, self.b
        return {
            "time": (a - 1) / b,
            "data": min(a - 1, 2 * b),
            "model": min(a - 1, b),
            "model_bordelon": min(a - 1, 2 * b),
            "variance": 1.0,
        }


def _sizes_ok(name: str, value) -> float:
    value = float(value)
    if not (value == INF or (value >= 1 and value == int(value))):
        raise UserError(f"random features: {name} = {value} must be a whole number >= 1 or inf")
    return value


def _g(mu: torch.Tensor, steps: list[float], lr: float) -> torch.Tensor:
    """g_s(mu) for every step s: (..., n) -> (len(steps), ..., n); mu below the floor is the null space."""
    top = mu.amax(-1, keepdim=True).clamp_min(1e-300)
    null = mu <= _EIG_FLOOR * top
    safe = torch.where(null, torch.ones_like(mu), mu)
    out = []
    for s in steps:
        if s == INF:
            out.append(torch.where(null, torch.zeros_like(mu), 1.0 / safe))
        else:
            decay = torch.pow(1.0 - lr * safe, float(s))
            out.append(torch.where(null, torch.full_like(mu, lr * s), (1.0 - decay) / safe))
    return torch.stack(out)


@dataclass
class _Draw:
    """One random instance per seed (stacked): H (the student's feature covariance; for N = inf the
    diagonal Lambda, shared), beta* and sigma^2, and the training data, either as samples (Z, y) or as
    the sufficient statistics of GD (S = Z^T Z / P, c = Z^T y / P)."""

    H: torch.Tensor
    beta: torch.Tensor
    sigma2: torch.Tensor
    Z: torch.Tensor | None = None
    y: torch.Tensor | None = None
    S: torch.Tensor | None = None
    c: torch.Tensor | None = None


def _draw(spectrum: Spectrum, N: float, P: float, seeds: list[int]) -> _Draw:
    lam, wstar = spectrum.tensors()
    S = len(seeds)
    gens = [torch.Generator().manual_seed(int(s) * 1_000_003 + 17) for s in seeds]

    def randn(*shape):  # per-seed streams, so a seed's run does not depend on which others ride along
        return torch.stack([torch.randn(*shape, dtype=_DTYPE, generator=g) for g in gens])

    if N == INF:
        n_feat, H, beta, sigma2 = spectrum.M, lam, wstar.expand(S, -1), torch.zeros(S, dtype=_DTYPE)

        def rooted(X):  # H^(1/2) X for H = Lambda (diagonal)
            return lam.sqrt()[:, None] * X
    else:
        n_feat = int(N)
        A = randn(n_feat, spectrum.M)
        B = A * lam.sqrt() / math.sqrt(N)
        H = B @ B.transpose(1, 2)
        h = (A * (lam * wstar)).sum(-1) / math.sqrt(N)
        beta = torch.linalg.solve(H, h)
        sigma2 = (float((lam * wstar * wstar).sum()) - (beta * h).sum(-1)).clamp_min(0.0)
        root = torch.linalg.cholesky(H)

        def rooted(X):  # C X with C C^T = H
            return root @ X

    draw = _Draw(H=H, beta=beta, sigma2=sigma2)
    if P == INF:
        return draw
    n_pts = int(P)
    if n_pts < n_feat:  # the samples themselves: Z = G H^(1/2)^T, y = Z beta* + sigma eps
        draw.Z = rooted(randn(n_pts, n_feat).transpose(1, 2)).transpose(1, 2)
        draw.y = (draw.Z @ beta[..., None])[..., 0] + sigma2.sqrt()[:, None] * randn(n_pts)
        return draw
    # P >= n: draw (Z^T Z, Z^T eps) exactly without the P x n matrix. G^T G ~ Wishart(I_n, P) is L L^T
    # with L lower triangular (Bartlett: L_ii^2 ~ chi2(P - i), L_ij ~ N(0, 1) below the diagonal), and
    # given G, G^T eps ~ N(0, G^T G), i.e. L g with g ~ N(0, I_n). Cost n^3 for any P, so P can be huge.
    chi2 = np.stack([np.random.default_rng([int(s), 7]).chisquare(n_pts - np.arange(n_feat)) for s in seeds])
    L = torch.tril(randn(n_feat, n_feat), diagonal=-1) + torch.diag_embed(torch.from_numpy(chi2).sqrt())
    K = rooted(L) / math.sqrt(n_pts)  # Z^T Z / P = K K^T
    draw.S = K @ K.transpose(1, 2)
    draw.c = (draw.S @ beta[..., None])[..., 0] + (sigma2.sqrt() / math.sqrt(n_pts))[:, None] * (
        K @ randn(n_feat)[..., None]
    )[..., 0]
    return draw


def simulate(spectrum: Spectrum, N, P, steps, seeds: list[int], lr: float = 0.5) -> pd.DataFrame:
    """Exact test loss of GD on the random-feature model for every seed at one (N, P), at each step.

    N and P may be inf; steps may contain inf (the GD limit). Seeds are trained together as stacked
    tensors (batched matmul and eigendecomposition). Returns one row per (seed, step): loss,
    excess = loss - sigma^2 (the part a larger P or t could remove), sigma2 (= L(N, inf, inf)).
    """
    N, P = _sizes_ok("N", N), _sizes_ok("P", P)
    steps = [float(s) for s in steps]
    if any(not (s == INF or s >= 0) for s in steps):
        raise UserError("random features: steps must be >= 0 or inf")
    if not lr > 0:
        raise UserError(f"random features: lr = {lr} must be > 0")
    if N != INF and N > spectrum.M / 2:
        raise UserError(f"random features: N = {N:g} is not << M = {spectrum.M}; raise M (the theory needs M >> N)")
    draw = _draw(spectrum, N, P, seeds)
    beta, sigma2, H = draw.beta, draw.sigma2, draw.H
    if P == INF:
        if N == INF:
            mu, V, c = H.expand(len(seeds), -1), None, (H * draw.beta[0]).expand(len(seeds), -1)  # diagonal: V = I
        else:
            mu, V = torch.linalg.eigh(H)
            c = (V.transpose(1, 2) @ (H @ beta[..., None]))[..., 0]
        coef = _g(mu, steps, lr) * c  # (T, S, n)
        w = coef if V is None else torch.einsum("sij,tsj->tsi", V, coef)
    elif draw.Z is None:  # primal: eigenvectors of S = Z^T Z / P
        mu, V = torch.linalg.eigh(draw.S)
        c = (V.transpose(1, 2) @ draw.c[..., None])[..., 0]
        w = torch.einsum("sij,tsj->tsi", V, _g(mu, steps, lr) * c)
    else:  # dual: w = Z^T alpha with alpha = Q g(mu) Q^T y / P, Q the eigenvectors of Z Z^T / P
        Z, y = draw.Z, draw.y
        mu, Q = torch.linalg.eigh(Z @ Z.transpose(1, 2) / P)
        c = (Q.transpose(1, 2) @ y[..., None])[..., 0] / P
        alpha = torch.einsum("sij,tsj->tsi", Q, _g(mu, steps, lr) * c)
        w = torch.einsum("spi,tsp->tsi", Z, alpha)
    top = float(mu.max())
    if lr * top >= 2.0 and any(s != INF for s in steps):  # the GD limit itself does not depend on lr
        raise UserError(
            f"random features: lr = {lr} diverges (lr x largest curvature = {lr * top:.3g} >= 2); "
            f"lower lr below {2 / top:.3g}"
        )
    err = w - beta[None]
    if N == INF:
        excess = (err * err * H).sum(-1)
    else:
        excess = torch.einsum("tsi,sij,tsj->ts", err, H, err)
    rows = []
    for t_index, s in enumerate(steps):
        for k, seed in enumerate(seeds):
            e = float(excess[t_index, k])
            rows.append(
                {
                    "a": spectrum.a,
                    "b": spectrum.b,
                    "M": spectrum.M,
                    "N": N,
                    "P": P,
                    "seed": int(seed),
                    "step": s,
                    "time": s * lr,
                    "loss": e + float(sigma2[k]),
                    "excess": e,
                    "sigma2": float(sigma2[k]),
                }
            )
    return pd.DataFrame(rows)


def gd_steps(spectrum: Spectrum, N, P: int, steps: int, seed: int, lr: float = 0.5) -> np.ndarray:
    """The plain GD iteration w <- w - lr (Z^T Z w - Z^T y) / P on the same draw as `simulate`
    (one seed, finite P; with P >= the feature count it runs on S = Z^T Z / P and c = Z^T y / P, which
    is the same iteration): its test loss after every step, to check the closed form."""
    draw = _draw(spectrum, _sizes_ok("N", N), _sizes_ok("P", P), [seed])
    beta, sigma2, H = draw.beta[0], float(draw.sigma2[0]), draw.H if N == INF else draw.H[0]
    w = torch.zeros_like(beta)
    losses = []
    for _ in range(steps):
        if draw.Z is None:
            w = w - lr * (draw.S[0] @ w - draw.c[0])
        else:
            w = w - lr * (draw.Z[0].T @ (draw.Z[0] @ w - draw.y[0])) / P
        e = w - beta
        losses.append(float((e * e * H).sum() if N == INF else e @ H @ e) + sigma2)
    return np.array(losses)


# --------------------------------------------------------------------------------------------
# Theory curves (infinite-size limits of the deterministic equivalents), for the figures


def _kappa(lam: np.ndarray, n: float) -> float:
    """Effective ridge of n samples (or features), ridgeless: sum_k lambda_k / (lambda_k + kappa) = n."""
    lo, hi = 1e-300, float(lam.sum()) / max(n, 1e-300) + lam.max()
    for _ in range(200):  # bisection in log space
        mid = math.sqrt(lo * hi)
        if (lam / (lam + mid)).sum() > n:
            lo = mid
        else:
            hi = mid
    return math.sqrt(lo * hi)


def theory_curve(spectrum: Spectrum, axis: str, values) -> np.ndarray:
    """Deterministic-equivalent loss along one bottleneck: axis 'time' (t = values, N = P = inf),
    'data' (P = values, ridgeless, N = inf) or 'model' (N = values, P = t = inf)."""
    lam, wstar = (x.numpy() for x in spectrum.tensors())
    power = lam * wstar * wstar
    out = []
    for v in np.atleast_1d(values).astype(float):
        if axis == "time":
            out.append(float((power * np.exp(-2 * lam * v)).sum()))
            continue
        kappa = _kappa(lam, v)
        if axis == "data":
            gamma = (lam * lam / (lam + kappa) ** 2).sum() / v
            out.append(float((power * (kappa / (lam + kappa)) ** 2).sum() / (1 - gamma)))
        elif axis == "model":
            out.append(float((power * kappa / (lam + kappa)).sum()))
        else:
            raise ValueError(axis)
    return np.array(out)


# --------------------------------------------------------------------------------------------
# Sweeps and exponent fits


def sweep(
    a: float,
    b: float,
    *,
    Ns,
    Ps,
    times,
    time_P,
    time_M: int,
    variance_N: int,
    variance_Ps,
    seeds_for,
    feature_ratio: int = 8,
    lr: float = 0.5,
) -> pd.DataFrame:
    """The four sweeps of one (a, b):
    'time' (N = inf, P = time_P (may be inf), M = time_M; GD for each t in `times` (rounded to whole
    steps of lr) and the GD limit), 'model' (each N, P = t = inf), 'data' (each P, N = inf, t = inf),
    'variance' (N = variance_N, each P >> N, t = inf).

    The model and data sweeps run on M = feature_ratio x their size on purpose: truncating the
    spectrum at a fixed M steepens the measured exponents as the size nears M (at M = 4096 the model
    slope of (5.5, 1.5) reads 1.60 at N = 128..256, not 1.5), whereas M = c x size keeps the model
    scale-free, so truncation changes the loss by a size-independent factor and leaves the exponent
    alone. The time sweep needs instead M >> k_t and (when a > 2b) P >> k_t^(a-2b): see the module
    docstring. `seeds_for(size)` lists the seeds of a size (small sizes fluctuate more and cost less).
    """

    def spec(size):
        return Spectrum(a, b, int(feature_ratio * size))

    if not lr > 0 or any(not t > 0 for t in times):
        raise UserError("random features: times and lr must be > 0")
    steps = sorted({max(1, round(float(t) / lr)) for t in times}) + [INF]
    time_P = _sizes_ok("time_P", time_P)
    frames = [simulate(Spectrum(a, b, int(time_M)), INF, time_P, steps, seeds_for(time_P), lr).assign(sweep="time")]
    frames += [simulate(spec(n), n, INF, [INF], seeds_for(n), lr).assign(sweep="model") for n in Ns]
    frames += [simulate(spec(p), INF, p, [INF], seeds_for(p), lr).assign(sweep="data") for p in Ps]
    # given A, the variance law is exact least squares on Gaussian features for any M: no need to grow M
    frames += [
        simulate(spec(variance_N), variance_N, p, [INF], seeds_for(variance_N), lr).assign(sweep="variance")
        for p in variance_Ps
    ]
    return pd.concat(frames, ignore_index=True)


def sweep_values(frame: pd.DataFrame, name: str) -> tuple[str, pd.DataFrame]:
    """(size column, table size x seed) of what one sweep's exponent is fitted to.

    time: L(t) - L(t = inf) of the same run (the part that more training removes; the data-limited
    floor of a finite P would otherwise bend the curve); variance: L(N, P) - L(N, inf); others: L."""
    part = frame[frame["sweep"] == name]
    if name == "time":
        floor = part[part["step"] == INF].set_index("seed")["loss"]
        part = part[part["step"] != INF].assign(value=lambda f: f["loss"] - f["seed"].map(floor))
    elif name == "variance":
        part = part.assign(value=part["excess"])
    else:
        part = part.assign(value=part["loss"])
    axis = _AXIS[name]
    return axis, part.pivot_table(index=axis, columns="seed", values="value", aggfunc="first").sort_index()


_AXIS = {"time": "time", "model": "N", "data": "P", "variance": "P"}


def fit_exponents(frame: pd.DataFrame, confidence: float = 0.95, bootstrap: int = 200, seed: int = 0) -> pd.DataFrame:
    """Per (a, b, sweep): -slope of log(mean over seeds) on log(size), with a seed-bootstrap CI
    (percentile), beside the theory exponent. What is averaged per sweep: see `sweep_values`."""
    rng = np.random.default_rng(seed)
    rows = []
    for (a, b), pair in frame.groupby(["a", "b"], sort=True):
        theory = Spectrum(a, b, 2).theory_exponents()
        for name in [n for n in ("time", "model", "data", "variance") if n in set(pair["sweep"])]:
            axis, table = sweep_values(pair, name)
            x = np.log(table.index.to_numpy(dtype=float))
            values = table.to_numpy()
            if len(x) < 3:
                raise UserError(
                    f"random features: the {name} sweep of (a={a:g}, b={b:g}) has {len(x)} sizes; give >= 3"
                )
            if np.any(np.nanmean(values, axis=1) <= 0):
                raise UserError(
                    f"random features: the {name} sweep of (a={a:g}, b={b:g}) reached zero loss; "
                    "shorten it (the loss fell to rounding level)"
                )

            def slope(cols):
                return float(np.polyfit(x, np.log(np.nanmean(values[:, cols], axis=1)), 1)[0])

            point = slope(np.arange(values.shape[1]))
            draws = np.array([slope(rng.integers(0, values.shape[1], values.shape[1])) for _ in range(bootstrap)])
            draws = draws[np.isfinite(draws)]
            tail = 50 * (1 - confidence)
            lo, hi = np.percentile(draws, [tail, 100 - tail]) if len(draws) >= 2 else (math.nan, math.nan)
            rows.append(
                {
                    "a": a,
                    "b": b,
                    "sweep": name,
                    "axis": axis,
                    "exponent": -point,
                    "exponent_lo": -hi,
                    "exponent_hi": -lo,
                    "theory": theory[name],
                    "error": -point - theory[name],
                    "bordelon": theory["model_bordelon"] if name == "model" else theory[name],
                    "sizes": int(len(x)),
                    "min_size": float(np.exp(x.min())),
                    "max_size": float(np.exp(x.max())),
                    "seeds": int(values.shape[1]),
                }
            )
    return pd.DataFrame(rows)
