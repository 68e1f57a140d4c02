"""Exact k-nearest-neighbour distances, the one pass both dimension estimators share.

`knn_distances(X, k)`: exact distances to the k nearest other points (torch, GPU when present,
chunked so memory stays bounded). Exact duplicate points are dropped first, with a warning. On
large, high-dimensional data with a decaying spectrum it prunes (pruning.py): a lower bound from the
top principal directions rules out most pairs before any distance is computed (same result).
"""

from __future__ import annotations

from contextlib import contextmanager

import numpy as np
import torch

from scalinglab.core.devices import pick_device
from scalinglab.dimension.points import as_points, drop_duplicates
from scalinglab.dimension.pruning import pruned_candidates, worth_trying_pruning
from scalinglab.dimension.tiles import (
    BLOCK_ELEMENTS,
    ERROR_FACTOR,
    TILE_CPU,
    TILE_CUDA,
    augment_rows,
    nearest_by_blocks,
    tiled_candidates,
)

METHODS = ("auto", "full", "pruned")
# Rows whose squared distances could be off by more than this fraction get exact distances.
REFINE_RTOL = 1e-4


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
    device = pick_device("auto" if device is None else str(device))
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
        if method == "pruned" or (method == "auto" and worth_trying_pruning(n, X.shape[1])):
            pruned = pruned_candidates(
                exact, centre, left, right, sq, k, n_candidates, tile, info, check=method == "auto"
            )
        if pruned is None:
            cand_d2, cand_idx = tiled_candidates(left, right, n_candidates, tile)
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
    return augment_rows(
        len(exact), exact.shape[1], exact.device, rows_per_block, lambda rows: (exact[rows] - centre).float()
    )  # any fixed shift keeps distances


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
    return nearest_by_blocks(rows, len(exact), n_candidates, cols_per_block, block_d2, torch.float64)[1]
