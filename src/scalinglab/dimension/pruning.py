"""The pruned k-NN pass: most pairs ruled out by a cheap lower bound before any distance is computed."""

from __future__ import annotations

import torch

from scalinglab.dimension.tiles import (
    BLOCK_ELEMENTS,
    ERROR_FACTOR,
    augment_rows,
    below,
    merge_pairs,
    nearest_by_blocks,
    set_cpu_threads,
    tiled_candidates,
)

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

# For centred points x, y and an orthonormal basis Q of m principal directions (R = I - Q Q^T):
#     |x - y|^2 = |Q^T (x - y)|^2 + |R (x - y)|^2 >= |Q^T x - Q^T y|^2 + (|R x| - |R y|)^2,
# the squared distance between w(x) = (Q^T x, |R x|) and w(y): a lower bound from m + 1 coordinates.
# Pass 1 runs the tiled search on w (m + 1 columns instead of D) for each point's nearest by the
# bound, takes their true distances, and so an upper bound U on its k-th neighbour's squared
# distance: only pairs whose bound is below U can hold a neighbour. A row whose candidate list
# already ends above U is complete; the others get a second pass over the bound for their rows
# alone, which lists exactly the pairs left to compute. The true distances of listed pairs come from
# gathered rows (memory-bound, so worth it only when few pairs are listed).


def worth_trying_pruning(n: int, dim: int) -> bool:
    """Small inputs take seconds anyway; with few coordinates the bound saves little arithmetic."""
    return n >= PRUNE_MIN_POINTS and dim >= 4 * PRUNE_DIMS


def pruned_candidates(exact, centre, left, right, sq, k, n_candidates, tile, info, check):
    """Like tiled_candidates (each row's n_candidates nearest by float32 distance, ascending) from far fewer
    pairs; None when `check` finds on a sample of rows that pruning would not halve the cost."""
    n, dim = exact.shape
    m = min(PRUNE_DIMS, max(1, dim // 4))
    threads = torch.get_num_threads()
    set_cpu_threads(exact.device, 1)  # LAPACK on small matrices: a busy second thread only slows it
    try:
        basis = _principal_basis(left[:, :dim], m)
    finally:
        set_cpu_threads(exact.device, threads)
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
    low_d2, idx = tiled_candidates(low_left, low_right, n_lower, tile)
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

    return augment_rows(len(exact), basis.shape[1] + 1, exact.device, rows_per_block, w)


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
    set_cpu_threads(left.device, 1)  # small memory-bound ops: a second thread mostly waits (see tiled_candidates)
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
        set_cpu_threads(left.device, threads)
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
            set_cpu_threads(queries.device, threads)
            bound = queries @ low_right[start : start + tile].T
            set_cpu_threads(queries.device, 1)
            row, col = below(bound, bound_limit[:, None])
            row, col = row.to(rows.device), col.to(rows.device) + start
            if limit is not None:
                counts += torch.bincount(row, minlength=len(rows))
                keep = counts[row] <= limit
                row, col = row[keep], col[keep]
            found_rows.append(row)
            found_cols.append(col)
    finally:
        set_cpu_threads(queries.device, threads)
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
    merge_pairs(d2, idx, rows, pos, col, _pairs_d2(left, right, rows[pos], col))


def _dense_rows(left, right, rows, n_keep, tile):
    """The n_keep nearest others of `rows` by float32 distance over all points, ascending."""
    queries = left[rows]
    return nearest_by_blocks(
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
