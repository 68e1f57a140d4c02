"""When a training run counts as diverged: the one rule that every stage which trains applies to its runs.

A run blew up when a loss it logged is NaN/inf or above CEILING, or its final loss is above FACTOR x
its initial one (the loss at step 0, before any update). Why these numbers:
  - a run that learns ends below its initial loss; one that ends a little above it is overfitting or
    stuck (the test MSE of a teacher/student cell with P = 10 and max_lr 0.1 ends 6x above it), a result,
    not a blow-up, so the factor leaves room: 10x. A blow-up ends far higher (max_lr 1e6: ~1e30). The
    default and test configs' runs end at most 0.55x their initial loss and never log above it (checked);
  - only the final loss is held to the factor: a healthy run may spike early (Sharma & Kaplan's
    constant lr 0.01 on width 130 logs 25x its initial MSE at step 1, then learns);
  - the initial loss is O(1) in every stage (MSE on O(1) targets, cross-entropy ln K at chance), so no
    healthy run logs 1e6 at any step: the ceiling catches runs that blew up and came back (their rows
    would enter an every-epoch fit) and runs without a usable initial loss.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

FACTOR = 10.0
CEILING = 1e6


def describe(loss: str = "loss") -> str:
    """The rule in words, for notes and errors: describe("test MSE")."""
    return f"{loss} NaN/inf, above {CEILING:g} or ending over {FACTOR:g}x its initial value"


def _broken(loss: np.ndarray, ceiling: float) -> np.ndarray:
    with np.errstate(invalid="ignore"):
        return ~np.isfinite(loss) | (loss > ceiling)


def diverged(initial, final, *, factor: float = FACTOR, ceiling: float = CEILING) -> np.ndarray:
    """True where a run's `final` loss is NaN/inf, above `ceiling` or above `factor` x its `initial` loss
    (scalars or arrays, broadcast). A NaN initial loss leaves only the first two tests."""
    initial, final = np.asarray(initial, dtype=float), np.asarray(final, dtype=float)
    with np.errstate(invalid="ignore"):
        return _broken(final, ceiling) | (final > factor * initial)


def series_diverged(losses, initial=None, *, factor: float = FACTOR, ceiling: float = CEILING) -> np.ndarray:
    """Per series of logged losses (axis 0 is time: shape (T,) or (T, E) for E seeds): True where any loss
    is NaN/inf or above `ceiling`, or the last is above `factor` x `initial` (default: the first, step 0's)."""
    losses = np.asarray(losses, dtype=float)
    if losses.shape[0] == 0:
        return np.zeros(losses.shape[1:], dtype=bool)
    start = losses[0] if initial is None else initial
    return _broken(losses, ceiling).any(axis=0) | diverged(start, losses[-1], factor=factor, ceiling=ceiling)


def mark_diverged(
    frame: pd.DataFrame,
    runs: Sequence[str],
    order: str,
    loss: str,
    initial: float | None = None,
    *,
    factor: float = FACTOR,
    ceiling: float = CEILING,
) -> pd.DataFrame:
    """`frame` with status "diverged" on every row of each run (one combination of the `runs` columns)
    whose series of `loss`, in the order of column `order`, diverged (`series_diverged`); other statuses
    kept. initial: every run's reference loss (default: the loss of its first row)."""
    status = frame["status"].to_numpy(dtype=object) if "status" in frame else np.full(len(frame), "ok", dtype=object)
    if frame.empty:
        return frame.assign(status=status)
    codes = frame.groupby(list(runs), sort=False, dropna=False).ngroup().to_numpy()
    position = np.lexsort((frame[order].to_numpy(), codes))  # by run, then in time order
    run, values = codes[position], frame[loss].to_numpy(dtype=float, na_value=np.nan)[position]
    starts = np.flatnonzero(np.r_[True, run[1:] != run[:-1]])
    ends = np.r_[starts[1:], len(run)] - 1
    start = values[starts] if initial is None else initial
    bad = np.zeros(codes.max() + 1, dtype=bool)
    bad[run[starts]] = np.logical_or.reduceat(_broken(values, ceiling), starts) | diverged(
        start, values[ends], factor=factor, ceiling=ceiling
    )
    return frame.assign(status=np.where(bad[codes], "diverged", status))
