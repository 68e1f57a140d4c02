"""Intrinsic dimension of a point cloud: TwoNN and Levina–Bickel MLE from one exact k-NN pass.

- `knn_distances(X, k)`: exact distances to the k nearest other points (torch, GPU when present,
  chunked so memory stays bounded). Exact duplicate points are dropped first, with a warning. On
  large, high-dimensional data with a decaying spectrum it prunes: a lower bound from the top
  principal directions rules out most pairs before any distance is computed (same result).
- `TwoNN` (Facco et al. 2017) and `MLE` (Levina & Bickel 2005 with MacKay–Ghahramani averaging;
  (k-1) normalisation, or (k-2) with unbiased=True, as in Pope et al. ICLR 2021, github.com/ppope/dimensions):
  scikit-learn style, `fit(X)` or `fit_distances(dist)` (so one k-NN pass serves both estimators
  and a whole k sweep), results in `dimension_`, `ci_` (95% bootstrap over points), `n_points_`.
- `estimate(X, ...)`: both estimators and a k sweep from one k-NN pass, as a DataFrame.

Both estimators agree with scikit-dimension (skdim.id.TwoNN(discard_fraction=f) and
skdim.id.MLE(unbiased=...).fit(X, n_neighbors=k, comb="mle")) on the same points.
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
# Pruning (method "pruned"): a lower bound on distances from this many principal directions, found on a
# subsample of PRUNE_SAMPLE points. "auto" prunes only where the full pass would be long and a sample of
# rows predicts that pruning at least halves its cost.
PRUNE_DIMS = 256
PRUNE_SAMPLE = 4096
PRUNE_MIN_POINTS = 16_384
PRUNE_CHECK_ROWS = 256
# Candidates by the bound per row, beyond the full pass's: PRUNE_EXTRA_CANDIDATES * k more. Longer lists
# cost gathers in every row but complete more rows in pass 1 (the second pass over a row costs far more).
PRUNE_EXTRA_CANDIDATES = 3
# One pair's distance from gathered rows costs about this many times the same pair inside a matmul tile
# (memory-bound gathers at a few GB/s against a 100+ GFLOP/s matmul, measured on the 2-core CPU).
GATHER_COST = 48
# Gathered rows per batch on CPU: at most 512 KiB, so that a batch is still in a core's L2 cache when
# its dot products are taken (measured: twice as fast as 1 to 16 MiB batches).
GATHER_BYTES = 1 << 19
METHODS = ("auto", "full", "pruned")


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


def knn_distances(
    X, k: int, chunk: int | None = None, device=None, method: str = "auto", info: dict | None = None
) -> np.ndarray:
    """(n, k) float64 distances from each point to its k nearest other points, ascending.

    Exact duplicates are dropped first (with a warning), so n counts distinct points. The pass is
    exact and chunked: float32 matmul tiles (`chunk` x `chunk` points; default 1,024 on CPU, 8,192
    on GPU) of the upper triangle of the squared distances give each point its nearest
    candidates, so memory stays O(n (D + k)); where float32 rounding could matter (tiny
    distances between points far from the data's mean) the candidates' distances are recomputed
    from direct differences, and where rounding could even have chosen the wrong candidates, the
    whole row is redone in float64 first.

    method: "full" computes every pair's distance as above; "pruned" first finds candidates with a
    cheap lower bound from the data's top principal directions and computes the distances of only
    the pairs that bound cannot rule out (same neighbours, same distances); "auto" (default) prunes
    where that pays: many points, many coordinates, and a spectrum that decays (tried on a sample).
    info: a dict to fill with what the pass did ("method", "exact_pairs", "pair_fraction", ...).
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {', '.join(METHODS)}, got {method!r}")
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
    info = {} if info is None else info
    info.update(method="full", exact_pairs=n * (n - 1) // 2, all_pairs=n * (n - 1) // 2)
    with torch.no_grad(), _full_precision_matmul():
        exact = torch.from_numpy(X).to(device)
        # Centring shrinks |x|^2, and with it the rounding error of |x|^2 + |y|^2 - 2 x.y.
        centre = exact.mean(0, dtype=torch.float64)
        left, right = _augmented(exact, centre, tile)
        sq = left[:, -2].double()
        pruned = None
        if method == "pruned" or (method == "auto" and _worth_trying_pruning(n, X.shape[1])):
            pruned = _pruned_candidates(
                exact, centre, left, right, sq, k, n_candidates, tile, info, check=method == "auto"
            )
        if pruned is None:
            cand_d2, cand_idx = _candidates(left, right, n_candidates, tile)
        else:
            cand_d2, cand_idx = pruned
        del left, right
        cand_d2 = _make_exact(exact, centre, sq, cand_d2, cand_idx, k, tile)
    info["pair_fraction"] = info["exact_pairs"] / max(1, info["all_pairs"])
    return cand_d2[:, :k].clamp_min(0).sqrt().double().cpu().numpy()


def _augmented(exact, centre, rows_per_block):
    """float32 [x, |x|^2, 1] and [-2x, 1, |x|^2] (x = centred points): one matmul of the two gives
    |x|^2 + |y|^2 - 2 x.y, the squared distances, without extra passes over the block."""
    centre = centre.to(exact.dtype)
    return _augment_rows(
        len(exact), exact.shape[1], exact.device, rows_per_block, lambda rows: (exact[rows] - centre).float()
    )  # any fixed shift keeps distances


def _augment_rows(n, width, device, rows_per_block, vectors):
    """float32 [v, |v|^2, 1] and [-2v, 1, |v|^2] of the float32 vectors v = vectors(rows) (width
    columns), built a block of rows at a time; |v|^2 is summed in float64."""
    left = torch.empty(n, width + 2, device=device)
    right = torch.empty(n, width + 2, device=device)
    for rows in torch.arange(n, device=device).split(rows_per_block):
        v = vectors(rows)
        left[rows, :width] = v
        right[rows, :width] = -2 * v
        sq = (v.double() ** 2).sum(1).float()
        left[rows, width], left[rows, width + 1] = sq, 1.0
        right[rows, width], right[rows, width + 1] = 1.0, sq
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


def _merge_pairs(best_d2, best_idx, targets, target, source, d2):
    """Merge (target, source, d2) pairs (target 0-based within `targets`, a slice or a tensor of rows)
    into the targets' lists."""
    if len(target) == 0:
        return
    n_targets = targets.stop - targets.start if isinstance(targets, slice) else len(targets)
    n_keep = best_d2.shape[1]
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

    def block_d2(start, stop):
        cols = exact[start:stop].double() - centre
        return torch.addmm((cols**2).sum(1)[None, :], query, cols.T, alpha=-2.0) + query_sq[:, None]

    cols_per_block = max(n_candidates, BLOCK_ELEMENTS // 2 // len(rows))
    return _nearest_by_blocks(rows, len(exact), n_candidates, cols_per_block, block_d2, torch.float64)[1]


def _nearest_by_blocks(rows, n, n_keep, cols_per_block, block_d2, dtype):
    """Squared distances and indices of the n_keep nearest others of `rows` among all n points,
    ascending; block_d2(start, stop) gives the rows' squared distances to points start..stop-1."""
    best_d2 = torch.full((len(rows), n_keep), float("inf"), dtype=dtype, device=rows.device)
    best_idx = torch.full((len(rows), n_keep), -1, dtype=torch.long, device=rows.device)
    for start in range(0, n, cols_per_block):
        d2 = block_d2(start, min(start + cols_per_block, n))
        own = rows - start
        mine = (own >= 0) & (own < d2.shape[1])
        d2[mine.nonzero(as_tuple=True)[0], own[mine]] = float("inf")  # a point is not its own neighbour
        top_d2, top_idx = d2.topk(min(n_keep, d2.shape[1]), dim=1, largest=False)
        _merge(best_d2, best_idx, slice(None), top_d2, top_idx + start)
    return best_d2, best_idx


# ----------------------------------------------------------------------------- pruned k-NN
#
# For centred points x, y and an orthonormal basis Q of m principal directions (R = I - Q Q^T):
#     |x - y|^2 = |Q^T (x - y)|^2 + |R (x - y)|^2 >= |Q^T x - Q^T y|^2 + (|R x| - |R y|)^2,
# the squared distance between w(x) = (Q^T x, |R x|) and w(y): a lower bound from m + 1 coordinates.
# Pass 1 runs the tiled search on w (m + 1 columns instead of D) for each point's nearest by the
# bound, takes their true distances, and so an upper bound U on its k-th neighbour's squared
# distance: only pairs whose bound is below U can hold a neighbour. A row whose candidate list
# already ends above U is complete; the others get a second pass over the bound for their rows
# alone, which lists exactly the pairs left to compute. The true distances of listed pairs come from
# gathered rows (memory-bound, so worth it only when few pairs are listed).


def _worth_trying_pruning(n: int, dim: int) -> bool:
    """Small inputs take seconds anyway; with few coordinates the bound saves little arithmetic."""
    return n >= PRUNE_MIN_POINTS and dim >= 4 * PRUNE_DIMS


def _pruned_candidates(exact, centre, left, right, sq, k, n_candidates, tile, info, check):
    """Like _candidates (each row's n_candidates nearest by float32 distance, ascending) from far fewer
    pairs; None when `check` finds on a sample of rows that pruning would not halve the cost."""
    n, dim = exact.shape
    m = min(PRUNE_DIMS, max(1, dim // 4))
    threads = torch.get_num_threads()
    _set_cpu_threads(exact.device, 1)  # LAPACK on small matrices: a busy second thread only slows it
    try:
        basis = _principal_basis(left[:, :dim], m)
    finally:
        _set_cpu_threads(exact.device, threads)
    low_left, low_right = _lower_bound_points(exact, centre, basis, tile)
    # Rounding: a float32 squared distance is off by at most `error` (see ERROR_FACTOR); the bound's
    # float32 tiles, its float32 copy of w and the float64 |R x| add at most another 2 `error`, so
    # a pair can be a neighbour only if its computed bound is below (k-th float32 distance) + 4 error.
    error = ERROR_FACTOR * 2.0**-24 * (sq + sq.max())
    n_lower = min(n - 1, n_candidates + PRUNE_EXTRA_CANDIDATES * k)
    info.update(method="pruned", projection_dims=basis.shape[1], exact_pairs=0)
    if check:
        ratio = _predicted_cost_ratio(left, right, low_left, low_right, error, k, n_lower, tile, info)
        info["predicted_cost_ratio"] = ratio
        if ratio > 0.5:
            info.update(method="full", exact_pairs=n * (n - 1) // 2)
            return None
    # Pass 1: each row's n_lower nearest by the bound, and their float32 distances (a pair listed by
    # both of its points is computed once).
    low_d2, idx = _candidates(low_left, low_right, n_lower, tile)
    rows = torch.arange(n, device=exact.device)[:, None].expand_as(idx)
    keys = torch.minimum(rows, idx) * n + torch.maximum(rows, idx)
    unique, inverse = torch.unique(keys, return_inverse=True)
    d2 = _pairs_d2(left, right, unique // n, unique % n)[inverse]
    info["exact_pairs"] += len(unique)
    del rows, keys, unique, inverse
    d2, order = d2.sort(dim=1)
    idx = idx.gather(1, order)
    threshold = d2[:, k - 1].double() + 4 * error
    # Pass 2: rows whose list does not yet end above the threshold.
    open_rows = torch.nonzero(low_d2[:, -1].double() <= threshold, as_tuple=True)[0]
    info["open_rows"] = len(open_rows)
    del low_d2
    # Row blocks as large as the tiles (skinny matmuls are slow); the known-pairs mask stays within BLOCK_ELEMENTS.
    for block in open_rows.split(max(1, min(tile, BLOCK_ELEMENTS // n))):
        _complete_rows(left, right, low_left, low_right, block, threshold[block], d2, idx, tile, info)
    return d2[:, :n_candidates].contiguous(), idx[:, :n_candidates].contiguous()


def _principal_basis(x: torch.Tensor, m: int) -> torch.Tensor:
    """(D, m') float64 orthonormal basis of the top principal directions of centred points x, from a
    seeded subsample (randomized range finder with two power iterations); m' = min(m, sample, D)."""
    gen = torch.Generator(device=x.device).manual_seed(0)
    sample = x[torch.randperm(len(x), generator=gen, device=x.device)[:PRUNE_SAMPLE]].contiguous()
    width = min(m + 16, *sample.shape)
    basis = sample @ torch.randn(sample.shape[1], width, generator=gen, device=x.device)
    for _ in range(2):  # power iterations sharpen the directions of a decaying spectrum
        basis = torch.linalg.qr(basis).Q
        basis = sample @ (sample.T @ basis)
    basis = torch.linalg.qr(basis).Q
    # Top right singular vectors of the (width, D) projection, from its small Gram matrix.
    projected = (basis.T @ sample).double()
    _, vectors = torch.linalg.eigh(projected @ projected.T)
    directions = vectors[:, -min(m, width) :].T @ projected
    # Orthonormal to float64 precision, so that |Q^T v| <= |v| holds for the bound.
    return torch.linalg.qr(directions.T).Q


def _lower_bound_points(exact, centre, basis, rows_per_block):
    """float32 [w, |w|^2, 1] and [-2w, 1, |w|^2] for w(x) = (Q^T x, |R x|), computed in float64
    (so |w| = |x|): one matmul of the two gives the bound for a tile, as _augmented does for distances."""

    def w(rows):
        x = exact[rows].double() - centre
        z = x @ basis
        return torch.cat([z, ((x**2).sum(1) - (z**2).sum(1)).clamp_min(0).sqrt()[:, None]], dim=1).float()

    return _augment_rows(len(exact), basis.shape[1] + 1, exact.device, rows_per_block, w)


def _pairs_d2(left, right, row, col):
    """float32 squared distances of the pairs (row[p], col[p]) by the tiles' formula, from gathered rows.

    Pairs are grouped by row: a row's vector stays in cache while its partners are gathered, a few
    rows at a time (a batch fits a core's cache). Rows are bucketed by their count of pairs rounded
    up to a multiple of 8, so that the padding of a bucket's table wastes few gathers.
    """
    out = torch.empty(len(row), device=left.device)
    if len(row) == 0:
        return out
    n = len(left)
    order = torch.argsort(row, stable=True)
    col = col[order]
    counts = torch.bincount(row, minlength=n)
    first = torch.cumsum(counts, 0) - counts
    owners = torch.nonzero(counts, as_tuple=True)[0]
    widths = (counts[owners] + 7) // 8 * 8
    budget = GATHER_BYTES if left.device.type == "cpu" else 4 * BLOCK_ELEMENTS
    threads = torch.get_num_threads()
    _set_cpu_threads(left.device, 1)  # small memory-bound ops: a second thread mostly waits (see _candidates)
    try:
        for width in torch.unique(widths).tolist():
            bucket = owners[widths == width]
            slot = torch.arange(width, device=left.device)
            filled = slot[None, :] < counts[bucket][:, None]
            where = (first[bucket][:, None] + slot[None, :])[filled]
            table = bucket[:, None].repeat(1, width)  # padding: the row itself, dropped below
            table[filled] = col[where]
            dots = torch.empty(len(bucket), width, device=left.device)
            per_batch = max(1, budget // (4 * left.shape[1] * width))
            for start in range(0, len(bucket), per_batch):
                stop = start + per_batch
                gathered = right.index_select(0, table[start:stop].reshape(-1)).view(-1, width, right.shape[1])
                dots[start:stop] = torch.bmm(gathered, left.index_select(0, bucket[start:stop])[:, :, None])[..., 0]
            out[order[where]] = dots[filled]
    finally:
        _set_cpu_threads(left.device, threads)
    return out


def _pairs_below(low_left, low_right, rows, threshold, tile, limit=None):
    """(position in rows, column) of every pair whose computed bound is below the row's threshold,
    and which rows have more than `limit` such pairs (their pairs are left out: memory stays bounded)."""
    n = len(low_right)
    bound_limit = threshold.float()
    bound_limit = torch.where(
        bound_limit.double() < threshold,
        torch.nextafter(bound_limit, torch.full_like(bound_limit, float("inf"))),
        bound_limit,
    )
    queries = low_left[rows]
    counts = torch.zeros(len(rows), dtype=torch.long, device=rows.device)
    found_rows, found_cols = [], []
    threads = torch.get_num_threads()
    try:
        for start in range(0, n, tile):
            _set_cpu_threads(queries.device, threads)
            bound = queries @ low_right[start : start + tile].T
            _set_cpu_threads(queries.device, 1)
            row, col = _below(bound, bound_limit[:, None])
            row, col = row.to(rows.device), col.to(rows.device) + start
            if limit is not None:
                counts += torch.bincount(row, minlength=len(rows))
                keep = counts[row] <= limit
                row, col = row[keep], col[keep]
            found_rows.append(row)
            found_cols.append(col)
    finally:
        _set_cpu_threads(queries.device, threads)
    pos, col = torch.cat(found_rows), torch.cat(found_cols)
    crowded = counts > limit if limit is not None else torch.zeros_like(counts, dtype=torch.bool)
    keep = ~crowded[pos]
    return pos[keep], col[keep], crowded


def _complete_rows(left, right, low_left, low_right, rows, threshold, d2, idx, tile, info):
    """Merge into rows' lists (d2, idx: ascending, updated in place) every pair the bound cannot rule out."""
    n, n_keep = len(left), idx.shape[1]
    # A row with many pairs left (beyond its known ones) is cheaper as a full row of matmul than as gathers.
    pos, col, dense = _pairs_below(low_left, low_right, rows, threshold, tile, limit=n // GATHER_COST + n_keep + 1)
    if bool(dense.any()):
        dense_rows = rows[dense]
        d2[dense_rows], idx[dense_rows] = _dense_rows(left, right, dense_rows, n_keep, tile)
        info["exact_pairs"] += len(dense_rows) * (n - 1)
    # Pairs already known (pass 1's candidates) and the point itself need no distance.
    known = torch.zeros(len(rows), n, dtype=torch.bool, device=left.device)
    known[torch.arange(len(rows), device=left.device)[:, None], idx[rows]] = True
    known[torch.arange(len(rows), device=left.device), rows] = True
    new = ~known[pos, col]
    pos, col = pos[new], col[new]
    info["exact_pairs"] += len(pos)
    _merge_pairs(d2, idx, rows, pos, col, _pairs_d2(left, right, rows[pos], col))


def _dense_rows(left, right, rows, n_keep, tile):
    """The n_keep nearest others of `rows` by float32 distance over all points, ascending."""
    queries = left[rows]
    return _nearest_by_blocks(
        rows, len(left), n_keep, max(n_keep, tile), lambda start, stop: queries @ right[start:stop].T, torch.float32
    )


def _predicted_cost_ratio(left, right, low_left, low_right, error, k, n_lower, tile, info):
    """Cost of the pruned pass over the full one, predicted from PRUNE_CHECK_ROWS random rows: how
    many pairs the bound leaves them, and how many of them pass 1 alone would complete."""
    n, dim = len(left), left.shape[1] - 2
    m = low_left.shape[1] - 3
    gen = torch.Generator(device=left.device).manual_seed(1)
    rows = torch.randperm(n, generator=gen, device=left.device)[: min(n, PRUNE_CHECK_ROWS)]
    low_d2, low_idx = _dense_rows(low_left, low_right, rows, n_lower, tile)
    pair_rows = rows[:, None].expand_as(low_idx).reshape(-1)
    d2 = _pairs_d2(left, right, pair_rows, low_idx.reshape(-1)).view_as(low_d2).sort(dim=1).values
    threshold = d2[:, k - 1].double() + 4 * error[rows]
    pos, _, _ = _pairs_below(low_left, low_right, rows, threshold, tile)
    left_over = (torch.bincount(pos, minlength=len(rows)) - 1 - n_lower).clamp_min(0)  # minus itself
    left_over = torch.where(low_d2[:, -1].double() > threshold, 0, left_over).clamp_max(n / GATHER_COST)
    open_fraction = float((low_d2[:, -1].double() <= threshold).double().mean())
    gathered = n * (n_lower + float(left_over.double().mean())) * GATHER_COST * (dim + 2)
    pruned = n * n / 2 * (m + 3) + open_fraction * n * n * (m + 3) + gathered + n * dim * m * 4
    info["predicted_open_fraction"] = open_fraction
    return pruned / (n * n / 2 * (dim + 2))


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
