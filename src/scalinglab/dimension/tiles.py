"""The tiled nearest-neighbour search that the exact and the pruned k-NN passes share.

Squared distances come from one float32 matmul of augmented rows [x, |x|^2, 1] and [-2y, 1, |y|^2]
per tile; each tile offers its entries to running per-row lists of the nearest candidates.
"""

from __future__ import annotations

import numpy as np
import torch

# Tiles of the distance matrix: small on CPU so that searching a tile stays in cache.
TILE_CPU = 1024
TILE_CUDA = 8192
# Temporary arrays outside the tiles hold at most this many entries (128 MiB in float32).
BLOCK_ELEMENTS = 1 << 25
# Bound on the float32 rounding of one squared distance: ERROR_FACTOR * u * (|x|^2 + max |y|^2), u = 2^-24.
# Measured on centred data in 2 to 3,072 dimensions: at most 10 u (|x|^2 + |y|^2), 6 u (|x|^2 + max |y|^2).
ERROR_FACTOR = 16.0


def augment_rows(n, width, device, rows_per_block, vectors):
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


def tiled_candidates(left: torch.Tensor, right: torch.Tensor, n_candidates: int, tile: int):
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
                set_cpu_threads(left.device, threads)
                d2 = rows @ right[col_start : col_start + tile].T
                # The bookkeeping below is many small ops: on a busy CPU, waiting for a second
                # thread in each of them costs far more than it saves, so they run on one.
                set_cpu_threads(left.device, 1)
                if col_start == row_start:
                    d2.fill_diagonal_(float("inf"))  # a point is not its own neighbour
                _offer_to_rows(best_d2, best_idx, d2, row_start, col_start)
                if col_start > row_start:
                    _offer_to_columns(best_d2, best_idx, d2, row_start, col_start)
    finally:
        set_cpu_threads(left.device, threads)
    return best_d2, best_idx


def set_cpu_threads(device, threads: int) -> None:
    if device.type == "cpu" and torch.get_num_threads() != threads:
        torch.set_num_threads(threads)


def _offer_to_rows(best_d2, best_idx, block, row_start, col_start):
    """Offer block[i, j] (squared distance of rows row_start + i and col_start + j) to the rows' lists."""
    n_rows, n_cols = block.shape
    rows = slice(row_start, row_start + n_rows)
    threshold = best_d2[rows, -1]  # an entry at or above a row's current worst cannot enter its list
    if not bool(torch.isinf(threshold).any()):
        row, col = below(block, threshold[:, None])
        if len(row) <= 4 * best_d2.shape[1] * n_rows:  # few hits, the usual case once lists are full
            merge_pairs(best_d2, best_idx, rows, row, col + col_start, block[row, col])
            return
    top_d2, top_col = block.topk(min(best_d2.shape[1], n_cols), dim=1, largest=False)
    merge(best_d2, best_idx, rows, top_d2, top_col + col_start)


def _offer_to_columns(best_d2, best_idx, block, row_start, col_start):
    """Offer block[i, j] (squared distance of rows row_start + i and col_start + j) to the columns' lists."""
    n_rows, n_cols = block.shape
    columns = slice(col_start, col_start + n_cols)
    threshold = best_d2[columns, -1]
    if not bool(torch.isinf(threshold).any()):
        row, col = below(block, threshold[None, :])
        if len(row) <= 4 * best_d2.shape[1] * n_cols:
            merge_pairs(best_d2, best_idx, columns, col, row + row_start, block[row, col])
            return
    # Lists not yet full (the first block): a dense top-k down each column.
    top_d2, top_row = block.T.contiguous().topk(min(best_d2.shape[1], n_rows), dim=1, largest=False)
    merge(best_d2, best_idx, columns, top_d2, top_row + row_start)


def below(block, threshold):
    """(row, column) of the entries of block below the (broadcast) threshold, in row-major order."""
    if block.device.type != "cpu":
        return (block < threshold).nonzero(as_tuple=True)
    # numpy's comparison and flatnonzero are several times faster than torch's on CPU.
    flat = torch.from_numpy(np.flatnonzero(block.numpy() < threshold.numpy()))
    return flat // block.shape[1], flat % block.shape[1]


def merge_pairs(best_d2, best_idx, targets, target, source, d2):
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
    merge(best_d2, best_idx, targets, table_d2, table_idx)


def merge(best_d2, best_idx, rows, new_d2, new_idx):
    """Keep, for each of `rows`, the smallest entries among its current list and the new ones."""
    all_d2 = torch.cat([best_d2[rows], new_d2], dim=1)
    all_idx = torch.cat([best_idx[rows], new_idx], dim=1)
    top_d2, pos = all_d2.topk(best_d2.shape[1], dim=1, largest=False)
    best_d2[rows] = top_d2
    best_idx[rows] = all_idx.gather(1, pos)


def nearest_by_blocks(rows, n, n_keep, cols_per_block, block_d2, dtype):
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
        merge(best_d2, best_idx, slice(None), top_d2, top_idx + start)
    return best_d2, best_idx
