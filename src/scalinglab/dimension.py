"""Intrinsic dimension of a point cloud: TwoNN and Levina–Bickel MLE from one exact k-NN pass.

- `knn_distances(X, k)`: exact distances to the k nearest other points (torch, GPU when present,
  chunked so memory stays bounded). Exact duplicate points are dropped first, with a warning.
- `TwoNN` (Facco et al. 2017) and `MLE` (Levina & Bickel 2005 with the (k-2) normalisation and
  MacKay–Ghahramani averaging, as in Pope et al. ICLR 2021, github.com/ppope/dimensions):
  scikit-learn style, `fit(X)` or `fit_distances(dist)` (so one k-NN pass serves both estimators
  and a whole k sweep), results in `dimension_`, `ci_` (95% bootstrap over points), `n_points_`.
- `estimate(X, ...)`: both estimators and a k sweep from one k-NN pass, as a DataFrame.

Both estimators agree with scikit-dimension (skdim.id.TwoNN(discard_fraction=f) and
skdim.id.MLE(unbiased=True).fit(X, n_neighbors=k, comb="mle")) on the same points.
"""

from __future__ import annotations

import warnings
from contextlib import contextmanager

import numpy as np
import pandas as pd
import torch

ESTIMATORS = ("twonn", "mle")

# Tiles of the distance matrix: small on CPU so that searching a tile stays in cache.
TILE_CPU = 1024
TILE_CUDA = 8192
# Temporary arrays outside the tiles hold at most this many entries (128 MiB in float32).
BLOCK_ELEMENTS = 1 << 25
# Bound on the float32 rounding of one squared distance: ERROR_FACTOR * u * (|x|^2 + max |y|^2), u = 2^-24.
# Measured on centred data in 2 to 3,072 dimensions: at most 10 u (|x|^2 + |y|^2), 6 u (|x|^2 + max |y|^2).
ERROR_FACTOR = 16.0
# Rows whose squared distances could be off by more than this fraction get exact distances.
REFINE_RTOL = 1e-4


# ----------------------------------------------------------------------------- points and k-NN


def as_points(X) -> np.ndarray:
    """X (numpy, torch or pandas; (n, D), or (n,) for one dimension) as a finite float array."""
    if isinstance(X, torch.Tensor):
        X = X.detach().cpu().numpy()
    X = np.asarray(X)
    if X.ndim == 1:
        X = X[:, None]
    if X.ndim != 2:
        raise ValueError(f"points must be a 2-D array (n points, D coordinates), got shape {X.shape}")
    if X.dtype == bool or not np.issubdtype(X.dtype, np.number) or np.issubdtype(X.dtype, np.complexfloating):
        raise ValueError(f"points must be real numbers, got dtype {X.dtype}")
    if X.dtype not in (np.float32, np.float64):
        # Small integers and float16 are exact in float32; anything wider keeps float64.
        X = X.astype(np.float32 if X.dtype.itemsize <= 2 else np.float64)
    if not np.isfinite(X).all():
        bad = int((~np.isfinite(X)).any(axis=1).sum())
        raise ValueError(f"points contain {bad} row(s) with NaN or infinity; drop them first")
    return X


def drop_duplicates(X: np.ndarray) -> np.ndarray:
    """Rows of X without exact repeats (first occurrences, original order); warns with the count.

    A repeated point has a nearest-neighbour distance of zero, which makes both estimators undefined.
    """
    hashes = _row_hashes(X)
    order = np.argsort(hashes, kind="stable")
    same = hashes[order[1:]] == hashes[order[:-1]]
    suspects = np.unique(np.concatenate([order[1:][same], order[:-1][same]]))
    if len(suspects) == 0:
        return X
    # Equal hashes: compare those rows byte for byte (+ 0.0 turns -0.0 into 0.0).
    rows = np.ascontiguousarray(X[suspects]) + 0.0
    _, first = np.unique(rows.view(np.dtype((np.void, rows.strides[0]))).ravel(), return_index=True)
    keep = np.ones(len(X), dtype=bool)
    keep[suspects] = False
    keep[suspects[first]] = True
    n_dropped = len(X) - int(keep.sum())
    if n_dropped:
        warnings.warn(
            f"dropped {n_dropped} duplicate point(s) of {len(X)}: a repeated point has distance 0 to its "
            f"nearest neighbour, which leaves the dimension undefined; {len(X) - n_dropped} distinct points remain",
            stacklevel=3,
        )
    return X[keep] if n_dropped else X


def _row_hashes(X: np.ndarray) -> np.ndarray:
    """A 32-bit hash of each row's bits (wrapping integer arithmetic: equal rows, equal hashes)."""
    words_per_row = X.shape[1] * X.dtype.itemsize // 4
    multipliers = np.random.default_rng(0).integers(1, 2**32, size=words_per_row, dtype=np.uint32) | np.uint32(1)
    rows_per_chunk = max(1, (1 << 20) // words_per_row)
    hashes = np.empty(len(X), dtype=np.uint32)
    with np.errstate(over="ignore"):
        for start in range(0, len(X), rows_per_chunk):
            chunk = np.ascontiguousarray(X[start : start + rows_per_chunk]) + 0.0  # -0.0 and 0.0 hash alike
            words = chunk.view(np.uint32).reshape(len(chunk), words_per_row)
            hashes[start : start + rows_per_chunk] = (words * multipliers).sum(axis=1, dtype=np.uint32)
    return hashes


def default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


@contextmanager
def _full_precision_matmul():
    """TF32 matmuls (if a user enabled them) would make distances wrong in the third digit."""
    previous = torch.get_float32_matmul_precision()
    torch.set_float32_matmul_precision("highest")
    try:
        yield
    finally:
        torch.set_float32_matmul_precision(previous)


def knn_distances(X, k: int, chunk: int | None = None, device=None) -> np.ndarray:
    """(n, k) float64 distances from each point to its k nearest other points, ascending.

    Exact duplicates are dropped first (with a warning), so n counts distinct points. The pass is
    exact and chunked: float32 matmul tiles (`chunk` x `chunk` points; default 1,024 on CPU, 8,192
    on GPU) of the upper triangle of the squared distances give each point its nearest
    candidates, so memory stays O(n (D + k)); where float32 rounding could matter (tiny
    distances between points far from the data's mean) the candidates' distances are recomputed
    from direct differences, and where rounding could even have chosen the wrong candidates, the
    whole row is redone in float64 first.
    """
    X = drop_duplicates(as_points(X))
    n = len(X)
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    if n <= k:
        raise ValueError(f"{n} distinct points are too few for k={k} neighbours; need more than {k}")
    device = torch.device(device) if device is not None else default_device()
    # A margin of extra candidates keeps the true k nearest among them when rounding reorders close ties.
    n_candidates = min(k + 8 + k // 4, n - 1)
    tile = chunk or (TILE_CUDA if device.type == "cuda" else TILE_CPU)
    with torch.no_grad(), _full_precision_matmul():
        exact = torch.from_numpy(X).to(device)
        # Centring shrinks |x|^2, and with it the rounding error of |x|^2 + |y|^2 - 2 x.y.
        centre = exact.mean(0, dtype=torch.float64)
        left, right = _augmented(exact, centre, tile)
        sq = left[:, -2].double()
        cand_d2, cand_idx = _candidates(left, right, n_candidates, tile)
        del left, right
        cand_d2 = _make_exact(exact, centre, sq, cand_d2, cand_idx, k, tile)
    return cand_d2[:, :k].clamp_min(0).sqrt().double().cpu().numpy()


def _augmented(exact, centre, rows_per_block):
    """float32 [x, |x|^2, 1] and [-2x, 1, |x|^2] (x = centred points): one matmul of the two gives
    |x|^2 + |y|^2 - 2 x.y, the squared distances, without extra passes over the block."""
    n, dim = exact.shape
    left = torch.empty(n, dim + 2, device=exact.device)
    right = torch.empty(n, dim + 2, device=exact.device)
    for rows in torch.arange(n, device=exact.device).split(rows_per_block):
        x = (exact[rows] - centre.to(exact.dtype)).float()  # any fixed shift keeps distances
        left[rows, :dim] = x
        right[rows, :dim] = -2 * x
        sq = (x.double() ** 2).sum(1).float()
        left[rows, dim], left[rows, dim + 1] = sq, 1.0
        right[rows, dim], right[rows, dim + 1] = 1.0, sq
    return left, right


def _candidates(left: torch.Tensor, right: torch.Tensor, n_candidates: int, tile: int):
    """Approximate squared distances and indices of each row's n_candidates nearest others, ascending.

    Square tiles of the upper triangle only (half the matmul), small enough to stay in cache while
    they are searched: a tile offers its rows their candidates among its columns and, by symmetry,
    its columns their candidates among its rows, merged into running lists. Once a list is full,
    only entries below its current worst are offered, so most tiles cost a comparison and little else.
    """
    n = len(left)
    best_d2 = torch.full((n, n_candidates), float("inf"), device=left.device)
    best_idx = torch.full((n, n_candidates), -1, dtype=torch.long, device=left.device)
    threads = torch.get_num_threads()
    try:
        for row_start in range(0, n, tile):
            rows = left[row_start : row_start + tile]
            for col_start in range(row_start, n, tile):
                _set_cpu_threads(left.device, threads)
                d2 = rows @ right[col_start : col_start + tile].T
                # The bookkeeping below is many small ops: on a busy CPU, waiting for a second
                # thread in each of them costs far more than it saves, so they run on one.
                _set_cpu_threads(left.device, 1)
                if col_start == row_start:
                    d2.fill_diagonal_(float("inf"))  # a point is not its own neighbour
                _offer_to_rows(best_d2, best_idx, d2, row_start, col_start)
                if col_start > row_start:
                    _offer_to_columns(best_d2, best_idx, d2, row_start, col_start)
    finally:
        _set_cpu_threads(left.device, threads)
    return best_d2, best_idx


def _set_cpu_threads(device, threads: int) -> None:
    if device.type == "cpu" and torch.get_num_threads() != threads:
        torch.set_num_threads(threads)


def _offer_to_rows(best_d2, best_idx, block, row_start, col_start):
    """Offer block[i, j] (squared distance of rows row_start + i and col_start + j) to the rows' lists."""
    n_rows, n_cols = block.shape
    rows = slice(row_start, row_start + n_rows)
    threshold = best_d2[rows, -1]  # an entry at or above a row's current worst cannot enter its list
    if not bool(torch.isinf(threshold).any()):
        row, col = _below(block, threshold[:, None])
        if len(row) <= 4 * best_d2.shape[1] * n_rows:  # few hits, the usual case once lists are full
            _merge_pairs(best_d2, best_idx, rows, row, col + col_start, block[row, col])
            return
    top_d2, top_col = block.topk(min(best_d2.shape[1], n_cols), dim=1, largest=False)
    _merge(best_d2, best_idx, rows, top_d2, top_col + col_start)


def _offer_to_columns(best_d2, best_idx, block, row_start, col_start):
    """Offer block[i, j] (squared distance of rows row_start + i and col_start + j) to the columns' lists."""
    n_rows, n_cols = block.shape
    columns = slice(col_start, col_start + n_cols)
    threshold = best_d2[columns, -1]
    if not bool(torch.isinf(threshold).any()):
        row, col = _below(block, threshold[None, :])
        if len(row) <= 4 * best_d2.shape[1] * n_cols:
            _merge_pairs(best_d2, best_idx, columns, col, row + row_start, block[row, col])
            return
    # Lists not yet full (the first block): a dense top-k down each column.
    top_d2, top_row = block.T.contiguous().topk(min(best_d2.shape[1], n_rows), dim=1, largest=False)
    _merge(best_d2, best_idx, columns, top_d2, top_row + row_start)


def _below(block, threshold):
    """(row, column) of the entries of block below the (broadcast) threshold, in row-major order."""
    if block.device.type != "cpu":
        return (block < threshold).nonzero(as_tuple=True)
    # numpy's comparison and flatnonzero are several times faster than torch's on CPU.
    flat = torch.from_numpy(np.flatnonzero(block.numpy() < threshold.numpy()))
    return flat // block.shape[1], flat % block.shape[1]


def _merge_pairs(best_d2, best_idx, targets: slice, target, source, d2):
    """Merge (target, source, d2) pairs (target 0-based within `targets`) into the targets' lists."""
    if len(target) == 0:
        return
    n_targets, n_keep = targets.stop - targets.start, best_d2.shape[1]
    # Group by target, nearest first, and keep at most n_keep per target: hubs of high-dimensional
    # data can collect hundreds of hits, which would otherwise widen the whole table.
    order = torch.argsort(d2)
    order = order[torch.argsort(target[order], stable=True)]
    target, source, d2 = target[order], source[order], d2[order]
    counts = torch.bincount(target, minlength=n_targets)
    rank = torch.arange(len(target), device=d2.device) - (torch.cumsum(counts, 0) - counts)[target]
    kept = rank < n_keep
    target, source, d2, rank = target[kept], source[kept], d2[kept], rank[kept]
    width = int(rank.max()) + 1
    table_d2 = torch.full((n_targets, width), float("inf"), device=d2.device)
    table_idx = torch.full((n_targets, width), -1, dtype=torch.long, device=d2.device)
    table_d2[target, rank] = d2
    table_idx[target, rank] = source
    _merge(best_d2, best_idx, targets, table_d2, table_idx)


def _merge(best_d2, best_idx, rows, new_d2, new_idx):
    """Keep, for each of `rows`, the smallest entries among its current list and the new ones."""
    all_d2 = torch.cat([best_d2[rows], new_d2], dim=1)
    all_idx = torch.cat([best_idx[rows], new_idx], dim=1)
    top_d2, pos = all_d2.topk(best_d2.shape[1], dim=1, largest=False)
    best_d2[rows] = top_d2
    best_idx[rows] = all_idx.gather(1, pos)


def _make_exact(exact, centre, sq, cand_d2, cand_idx, k, rows_per_block):
    """Exact squared distances for the rows where float32 rounding could matter, sorted ascending.

    A row is left as it is when its rounding error is below REFINE_RTOL of its smallest squared
    distance. Otherwise its candidates' distances are recomputed from direct differences; and if
    rounding could have swapped a true neighbour out of the candidates (the margin between the
    k-th and the last candidate is under twice the error), its candidates are first found again in float64.
    """
    if bool((cand_idx < 0).any()):
        raise RuntimeError("k-NN pass left a point with too few candidates; this is a bug")
    n, n_candidates = cand_idx.shape
    error = ERROR_FACTOR * 2.0**-24 * (sq + sq.max())
    approx = cand_d2.double()
    inexact = error > REFINE_RTOL * approx[:, 0]
    if n_candidates < n - 1:  # with every other point a candidate, none can be missed
        redo = torch.nonzero(inexact & (approx[:, -1] - approx[:, k - 1] <= 2 * error), as_tuple=True)[0]
        for rows in redo.split(rows_per_block) if len(redo) else ():
            cand_idx[rows] = _float64_candidates(exact, centre, rows, n_candidates, rows_per_block)
    rows = torch.nonzero(inexact, as_tuple=True)[0]
    per_chunk = max(1, BLOCK_ELEMENTS // 4 // (n_candidates * exact.shape[1]))
    for chunk_rows in rows.split(per_chunk) if len(rows) else ():
        idx = cand_idx[chunk_rows]
        diff = exact[idx.reshape(-1)].view(len(chunk_rows), n_candidates, -1) - exact[chunk_rows, None, :]
        d2, order = diff.square().sum(-1, dtype=torch.float64).sort(dim=1)
        cand_d2[chunk_rows] = d2.float()
        cand_idx[chunk_rows] = idx.gather(1, order)
    return cand_d2


def _float64_candidates(exact, centre, rows, n_candidates, rows_per_block):
    """Indices of the n_candidates nearest other points of `rows`, from float64 squared distances."""
    query = exact[rows].double() - centre
    query_sq = (query**2).sum(1)
    best_d2 = torch.full((len(rows), n_candidates), float("inf"), dtype=torch.float64, device=exact.device)
    best_idx = torch.full((len(rows), n_candidates), -1, dtype=torch.long, device=exact.device)
    cols_per_block = max(n_candidates, BLOCK_ELEMENTS // 2 // len(rows))
    for start in range(0, len(exact), cols_per_block):
        cols = exact[start : start + cols_per_block].double() - centre
        d2 = torch.addmm((cols**2).sum(1)[None, :], query, cols.T, alpha=-2.0) + query_sq[:, None]
        own = rows - start
        mine = (own >= 0) & (own < len(cols))
        d2[mine.nonzero(as_tuple=True)[0], own[mine]] = float("inf")  # a point is not its own neighbour
        top_d2, top_idx = d2.topk(min(n_candidates, len(cols)), dim=1, largest=False)
        _merge(best_d2, best_idx, slice(None), top_d2, top_idx + start)
    return best_idx


# ----------------------------------------------------------------------------- estimators


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
    """95% percentile interval of statistic over resamples (with replacement) of the points."""
    if n_boot <= 0:
        return (float("nan"), float("nan"))
    rng = np.random.default_rng(seed)
    n = len(values)
    batch = max(1, (1 << 23) // n)  # bounds the (batch, n) resample array to 64 MiB
    estimates = [
        statistic(values[rng.integers(0, n, size=(min(batch, n_boot - done), n))])
        for done in range(0, n_boot, batch)
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

    def fit(self, X, y=None, device=None) -> "TwoNN":
        return self.fit_distances(knn_distances(X, 2, device=device))

    def fit_distances(self, dist) -> "TwoNN":
        """Fit from an (n, >=2) array of ascending neighbour distances (from knn_distances)."""
        if not 0 <= self.discard_fraction < 1:
            raise ValueError(f"discard_fraction must be in [0, 1), got {self.discard_fraction}")
        dist = _check_distances(dist, need=2)
        if int(len(dist) * (1 - self.discard_fraction)) < 2:
            raise ValueError(f"{len(dist)} points leave fewer than 2 ratios after discarding {self.discard_fraction:.0%}")
        mu = dist[:, 1] / dist[:, 0]
        slopes = lambda m: _twonn_slopes(m, self.discard_fraction)  # noqa: E731
        self.dimension_ = float(slopes(mu[None, :])[0])
        self.ci_ = _bootstrap_ci(mu, slopes, self.bootstrap, self.seed)
        self.n_points_ = len(mu)
        return self


class MLE:
    """Levina–Bickel MLE with k neighbours: local inverse estimates sum_{j<k} log(T_k / T_j) / (k - 2)
    (kept in `inverse_local_`), averaged over points and then inverted (MacKay–Ghahramani), as in
    Pope et al. (ICLR 2021). On a d-dimensional Poisson process this converges to d (k-2)/(k-1)."""

    def __init__(self, k: int = 20, bootstrap: int = 200, seed: int = 0):
        self.k = k
        self.bootstrap = bootstrap
        self.seed = seed

    def fit(self, X, y=None, device=None) -> "MLE":
        return self.fit_distances(knn_distances(X, self.k, device=device))

    def fit_distances(self, dist) -> "MLE":
        """Fit from an (n, >=k) array of ascending neighbour distances; uses the first k columns."""
        k = self.k
        if k < 3:
            raise ValueError(f"MLE needs k >= 3 neighbours (it divides by k - 2), got k={k}")
        dist = _check_distances(dist, need=k)
        inverse = np.log(dist[:, k - 1 : k] / dist[:, : k - 1]).sum(axis=1) / (k - 2)
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
) -> pd.DataFrame:
    """TwoNN and MLE for every k in ks from one k-NN pass with max(ks) neighbours.

    subsample: estimate on this many points drawn without replacement (seeded), for large data.
    Returns columns estimator, k (<NA> for twonn), dimension, ci_lo, ci_hi, n_points.
    """
    estimators = [estimators] if isinstance(estimators, str) else list(estimators)
    unknown = [e for e in estimators if e not in ESTIMATORS]
    if unknown or not estimators:
        raise ValueError(f"unknown estimator(s) {unknown}; choose from {', '.join(ESTIMATORS)}")
    ks = sorted({int(k) for k in ks}) if "mle" in estimators else []
    if "mle" in estimators and (not ks or ks[0] < 3):
        raise ValueError(f"MLE needs k >= 3 neighbours, got ks={ks}")
    X = as_points(X)
    if subsample is not None and subsample < len(X):
        if subsample < 3:
            raise ValueError(f"subsample must be at least 3 points, got {subsample}")
        X = X[np.sort(np.random.default_rng(seed).choice(len(X), subsample, replace=False))]
    dist = knn_distances(X, max([2, *ks]), device=device)
    fitted = []
    if "twonn" in estimators:
        fitted.append(("twonn", None, TwoNN(discard_fraction, bootstrap, seed).fit_distances(dist)))
    for k in ks:
        fitted.append(("mle", k, MLE(k, bootstrap, seed).fit_distances(dist)))
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
