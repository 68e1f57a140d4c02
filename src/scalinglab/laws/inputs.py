"""What enters a fit: which rows of each run (its final epoch, its best, or all), the groups fitted
one by one, and the checks every law makes of a column before taking its logarithm."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import pandas as pd

from scalinglab.core.errors import UserError
from scalinglab.core.io import require_columns

EPOCH_RULES = ("final", "best", "all")


def select_epochs(
    frame: pd.DataFrame,
    y: str,
    run_cols: Sequence[str],
    epoch: str | None = None,
    rule: str = "final",
    maximize: bool = False,
) -> pd.DataFrame:
    """Keep one row per run (`final`: its largest epoch; `best`: its minimum of y, maximum when
    `maximize`) or every row (`all`). A run is one combination of `run_cols` values."""
    if rule not in EPOCH_RULES:
        raise UserError(f"unknown epoch rule '{rule}'; use one of {', '.join(EPOCH_RULES)}")
    run_cols = list(dict.fromkeys(run_cols))
    if rule == "all":
        require_columns(frame, run_cols, "runs table")
        return frame.copy()
    if rule == "final" and epoch is None:
        raise UserError(
            "epoch rule 'final' needs the epoch column, to find each run's last row; name it, or use the rule 'all'"
        )
    needed = run_cols + ([epoch] if epoch is not None else []) + ([y] if rule == "best" else [])
    require_columns(frame, needed, "runs table")

    if epoch is not None:
        # Two rows of one run at one epoch mean the run columns do not identify runs (a seed
        # column left out, say); picking either row would silently mix runs.
        duplicated = frame.duplicated(subset=run_cols + [epoch], keep=False)
        if duplicated.any():
            example = frame.loc[duplicated, run_cols + [epoch]].iloc[0].to_dict()
            raise UserError(
                f"{int(duplicated.sum())} rows share their run and epoch (e.g. {example}); "
                f"name the column that tells those runs apart (scalinglab fit: --group or --run COL)"
            )

    if rule == "final":
        ordered = frame.sort_values(epoch, kind="mergesort", na_position="first")
        chosen = ordered.drop_duplicates(subset=run_cols, keep="last") if run_cols else ordered.tail(1)
    else:  # best; NaN losses sort last, so a run that is NaN throughout keeps a NaN row and the fit reports it
        ordered = frame.sort_values(y, ascending=not maximize, kind="mergesort", na_position="last")
        chosen = ordered.drop_duplicates(subset=run_cols, keep="first") if run_cols else ordered.head(1)
    return chosen.sort_index()


def per_group(frame: pd.DataFrame, group: Sequence[str], fit: Callable) -> list[tuple[dict, object]]:
    """[(labels, fit(rows))], one per combination of the `group` columns in sorted order (one
    unlabelled fit of the whole frame without groups); a fit's UserError names its group."""
    group = list(group)
    if not group:
        return [({}, fit(frame))]
    require_columns(frame, group, "runs table")
    if len(frame) == 0:
        raise UserError("no rows to fit; check the filters and the epoch rule")
    results = []
    for key, rows in frame.groupby(group, sort=True, dropna=False):
        key = key if isinstance(key, tuple) else (key,)
        labels = {column: value.item() if isinstance(value, np.generic) else value for column, value in zip(group, key)}
        try:
            results.append((labels, fit(rows)))
        except UserError as exc:
            raise UserError(f"group {', '.join(f'{k}={v}' for k, v in labels.items())}: {exc}") from None
    return results


def positive_column(frame: pd.DataFrame, column: str) -> np.ndarray:
    """A numeric, finite, positive column as floats, or a one-line UserError naming it (shared by every law)."""
    values = frame[column]
    if not pd.api.types.is_numeric_dtype(values) or pd.api.types.is_bool_dtype(values):
        raise UserError(f"column '{column}' is not numeric (dtype {values.dtype}); a scaling law needs numbers")
    values = values.to_numpy(dtype=float, na_value=np.nan)
    bad = ~np.isfinite(values)
    if bad.any():
        raise UserError(
            f"column '{column}' has {int(bad.sum())} NaN/inf value(s) in {values.size} rows; "
            f"filter those rows out (diverged or unfinished runs?) before fitting"
        )
    non_positive = values <= 0
    if non_positive.any():
        raise UserError(
            f"column '{column}' has {int(non_positive.sum())} value(s) <= 0 (min {values.min():g}); "
            f"log is impossible, so a power law needs positive values"
        )
    return values
