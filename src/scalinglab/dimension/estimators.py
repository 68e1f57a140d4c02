"""Intrinsic-dimension estimators, scikit-learn style, from one k-NN pass (knn.py).

- `TwoNN` (Facco et al. 2017) and `MLE` (Levina & Bickel 2005 with MacKay–Ghahramani averaging;
  (k-1) normalisation, or (k-2) with unbiased=True, as in Pope et al. ICLR 2021, github.com/ppope/dimensions):
  `fit(X)` or `fit_distances(dist)` (so one k-NN pass serves both estimators and a whole k sweep),
  results in `dimension_`, `ci_` (95% bootstrap over points), `n_points_`.
- `estimate(X, ...)`: both estimators and a k sweep from one k-NN pass, as a DataFrame.

Both estimators agree with scikit-dimension (skdim.id.TwoNN(discard_fraction=f) and
skdim.id.MLE(unbiased=...).fit(X, n_neighbors=k, comb="mle")) on the same points.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from scalinglab.dimension.knn import knn_distances
from scalinglab.dimension.points import as_points, drop_duplicates

ESTIMATORS = ("twonn", "mle")


def _check_distances(dist, need: int) -> np.ndarray:
    dist = np.asarray(dist, dtype=np.float64)
    if dist.ndim != 2 or dist.shape[1] < need:
        raise ValueError(f"need an (n, >={need}) array of sorted neighbour distances, got shape {dist.shape}")
    if len(dist) < 3:
        raise ValueError(f"need at least 3 points, got {len(dist)}")
    if not (dist[:, 0] > 0).all():
        raise ValueError("some nearest-neighbour distances are 0 (duplicate points); knn_distances drops duplicates")
    if not (np.diff(dist[:, :need], axis=1) >= 0).all():
        raise ValueError("neighbour distances must be sorted ascending along each row")
    return dist


def _bootstrap_ci(values: np.ndarray, statistic, n_boot: int, seed: int) -> tuple[float, float]:
    """95% percentile interval of statistic over resamples (with replacement) of the points' values.

    A point bootstrap: it treats the per-point values (TwoNN's ratios, MLE's local estimates) as
    independent, but mutual neighbours share distances and k-neighbourhoods overlap, so the interval
    is too narrow. On repeated samples of 2- and 5-spheres (n = 2,000-4,000) a nominal 95% covered
    80-90%: read it as a lower bound on the sampling uncertainty. It also leaves out the estimator's
    bias (MLE reads about 10% low at d = 10)."""
    if n_boot <= 0:
        return (float("nan"), float("nan"))
    rng = np.random.default_rng(seed)
    n = len(values)
    batch = max(1, (1 << 23) // n)  # bounds the (batch, n) resample array to 64 MiB
    estimates = [
        statistic(values[rng.integers(0, n, size=(min(batch, n_boot - done), n))]) for done in range(0, n_boot, batch)
    ]
    lo, hi = np.percentile(np.concatenate(estimates), [2.5, 97.5])
    return (float(lo), float(hi))


def _twonn_slopes(mu: np.ndarray, discard_fraction: float) -> np.ndarray:
    """Facco's fit for each row of mu (b, N): slope through the origin of -log(1 - F_emp) on log(mu),
    over the smallest int(N (1 - discard_fraction)) ratios, with F_emp(i-th smallest) = i / N."""
    n = mu.shape[1]
    n_keep = int(n * (1 - discard_fraction))
    x = np.log(np.sort(mu, axis=1)[:, :n_keep])
    y = -np.log(1 - np.arange(1, n_keep + 1) / n)
    return (x @ y) / (x**2).sum(axis=1)


class TwoNN:
    """TwoNN (Facco et al. 2017): mu = r2 / r1 is Pareto(d); the largest discard_fraction of mu are dropped."""

    def __init__(self, discard_fraction: float = 0.1, bootstrap: int = 200, seed: int = 0):
        self.discard_fraction = discard_fraction
        self.bootstrap = bootstrap
        self.seed = seed

    def fit(self, X, y=None, device=None) -> TwoNN:
        return self.fit_distances(knn_distances(X, 2, device=device))

    def fit_distances(self, dist) -> TwoNN:
        """Fit from an (n, >=2) array of ascending neighbour distances (from knn_distances)."""
        if not 0 < self.discard_fraction < 1:  # 0 would put F_emp = 1 on the largest ratio: log(0)
            raise ValueError(f"discard_fraction must be in (0, 1), got {self.discard_fraction}")
        dist = _check_distances(dist, need=2)
        if int(len(dist) * (1 - self.discard_fraction)) < 2:
            raise ValueError(
                f"{len(dist)} points leave fewer than 2 ratios after discarding {self.discard_fraction:.0%}"
            )
        mu = dist[:, 1] / dist[:, 0]
        slopes = lambda m: _twonn_slopes(m, self.discard_fraction)  # noqa: E731
        self.dimension_ = float(slopes(mu[None, :])[0])
        self.ci_ = _bootstrap_ci(mu, slopes, self.bootstrap, self.seed)
        self.n_points_ = len(mu)
        return self


class MLE:
    """Levina–Bickel MLE with k neighbours, MacKay–Ghahramani averaging: local inverse estimates
    sum_{j<k} log(T_k / T_j) / (k - 1) (kept in `inverse_local_`), averaged over points, then
    inverted. That average is the maximum-likelihood estimate of 1/d pooled over points and is
    unbiased for it (each sum is Gamma(k - 1, d)), so the estimate converges to d.

    unbiased=True divides by k - 2 instead: Levina & Bickel's correction, which makes each local
    estimate unbiased for d when those are averaged, but combined with the averaging of inverses
    it converges to d (k-2)/(k-1) (5% low at k = 20). It is what skdim.id.MLE(unbiased=True) and
    early versions of Pope et al.'s code compute; the default matches skdim.id.MLE() and the
    current ppope/dimensions default."""

    def __init__(self, k: int = 20, bootstrap: int = 200, seed: int = 0, unbiased: bool = False):
        self.k = k
        self.bootstrap = bootstrap
        self.seed = seed
        self.unbiased = unbiased

    def fit(self, X, y=None, device=None) -> MLE:
        return self.fit_distances(knn_distances(X, self.k, device=device))

    def fit_distances(self, dist) -> MLE:
        """Fit from an (n, >=k) array of ascending neighbour distances; uses the first k columns."""
        k = self.k
        if k < 3:
            raise ValueError(f"MLE needs k >= 3 neighbours, got k={k}")
        dist = _check_distances(dist, need=k)
        inverse = np.log(dist[:, k - 1 : k] / dist[:, : k - 1]).sum(axis=1) / (k - 2 if self.unbiased else k - 1)
        self.inverse_local_ = inverse
        self.dimension_ = float(1 / inverse.mean())
        self.ci_ = _bootstrap_ci(inverse, lambda v: 1 / v.mean(axis=1), self.bootstrap, self.seed)
        self.n_points_ = len(inverse)
        return self


def estimate(
    X,
    estimators=ESTIMATORS,
    ks=(5, 10, 20, 50),
    subsample: int | None = None,
    seed: int = 0,
    bootstrap: int = 200,
    discard_fraction: float = 0.1,
    device=None,
    mle_unbiased: bool = False,
) -> pd.DataFrame:
    """TwoNN and MLE for every k in ks from one k-NN pass with max(ks) neighbours.

    subsample: estimate on this many distinct points drawn without replacement (seeded), for large data.
    Returns columns estimator, k (<NA> for twonn), dimension, ci_lo, ci_hi (a point bootstrap of
    `bootstrap` draws: too narrow, see _bootstrap_ci), n_points.
    """
    estimators = [estimators] if isinstance(estimators, str) else list(estimators)
    unknown = [e for e in estimators if e not in ESTIMATORS]
    if unknown or not estimators:
        raise ValueError(f"unknown estimator(s) {unknown}; choose from {', '.join(ESTIMATORS)}")
    ks = sorted({int(k) for k in ks}) if "mle" in estimators else []
    if "mle" in estimators and (not ks or ks[0] < 3):
        raise ValueError(f"MLE needs k >= 3 neighbours, got ks={ks}")
    X = drop_duplicates(as_points(X))  # before subsampling, so that `subsample` points remain
    if subsample is not None and subsample < len(X):
        if subsample < 3:
            raise ValueError(f"subsample must be at least 3 points, got {subsample}")
        X = X[np.sort(np.random.default_rng(seed).choice(len(X), subsample, replace=False))]
    dist = knn_distances(X, max([2, *ks]), device=device)
    fitted = []
    if "twonn" in estimators:
        fitted.append(("twonn", None, TwoNN(discard_fraction, bootstrap, seed).fit_distances(dist)))
    for k in ks:
        fitted.append(("mle", k, MLE(k, bootstrap, seed, unbiased=mle_unbiased).fit_distances(dist)))
    return pd.DataFrame(
        {
            "estimator": [name for name, _, _ in fitted],
            "k": pd.array([k for _, k, _ in fitted], dtype="Int64"),
            "dimension": [est.dimension_ for _, _, est in fitted],
            "ci_lo": [est.ci_[0] for _, _, est in fitted],
            "ci_hi": [est.ci_[1] for _, _, est in fitted],
            "n_points": [est.n_points_ for _, _, est in fitted],
        }
    )
