"""Point clouds for the dimension estimators: any array as finite floats, and exact duplicates dropped
(a repeated point has distance 0 to its nearest neighbour, which leaves both estimators undefined)."""

from __future__ import annotations

import warnings

import numpy as np
import torch


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
    if X.shape[1] == 0:
        raise ValueError(f"points have no coordinates (shape {X.shape}); need at least 1 column")
    if not np.isfinite(X).all():
        bad = int((~np.isfinite(X)).any(axis=1).sum())
        raise ValueError(f"points contain {bad} row(s) with NaN or infinity; drop them first")
    return _rescaled(X)


def _rescaled(X: np.ndarray) -> np.ndarray:
    """X times a power of two that brings its largest |coordinate| near 1: both estimators use only
    distance ratios, so this changes no estimate, while squared distances of coordinates near 1e200
    (or 1e-200) would overflow (underflow to 0, read as duplicate points). A power of two scales
    exactly; X is returned as it is when already in range."""
    top = float(np.abs(X).max()) if X.size else 0.0
    if top == 0.0 or 2.0**-30 <= top <= 2.0**30:
        return X
    return np.ldexp(X, -np.frexp(top)[1]).astype(X.dtype)


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
