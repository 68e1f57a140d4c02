"""Which rows of a runs table a fit reads (`scalinglab fit` and `scalinglab report`): diverged runs
left out, and each run's final row where a run has several, its step column found by name."""

from __future__ import annotations

import pandas as pd

from scalinglab.core.errors import UserError

# a table's step column and run column, found by name when --epoch / --run are not given
EPOCH_NAMES = ("step", "epoch", "_step", "global_step", "iteration", "iter")
RUN_NAMES = ("seed", "run_id", "run")


def without_diverged(frame: pd.DataFrame, filters: list[str], notes: list) -> pd.DataFrame:
    """Leave out the rows whose `status` is not "ok" (runs the workflow marked diverged), with a note."""
    if "status" not in frame.columns or any(f.split("=", 1)[0].strip() == "status" for f in filters):
        return frame
    bad = frame["status"].astype(str) != "ok"
    if bad.any():
        notes.append(
            f"left out {int(bad.sum())} of {len(frame)} rows whose status is not 'ok' (diverged runs); "
            "--filter status=VALUE chooses rows by status instead"
        )
    return frame[~bad]


def epoch_rule(frame: pd.DataFrame, epoch: str | None, rule: str | None, run_cols: list, notes: list):
    """(rule, epoch column, run identity columns) for --epoch and --epoch-rule (None: not given).
    Without a rule, where rows repeat per run (after telling runs apart by a seed/run column when the
    given columns do not): each run's final row by the step column, given or found by name; a
    one-line refusal where none is found."""
    identity = list(run_cols)
    if rule != "all" and frame.duplicated(subset=identity).any():
        extra = next((c for c in RUN_NAMES if c in frame.columns and c not in identity), None)
        if extra is not None:
            identity.append(extra)
            notes.append(f"runs told apart by '{extra}' (--run COL names other run columns)")
    if rule is not None:
        if epoch is not None and not pd.api.types.is_numeric_dtype(frame[epoch]):
            raise UserError(
                f"the step column '{epoch}' is not numeric (dtype {frame[epoch].dtype}); it would sort as text"
            )
        return rule, epoch, identity
    if not frame.duplicated(subset=identity).any():
        return ("final" if epoch else "all"), epoch, identity  # one row per run: the rows are the runs
    if epoch is None:
        epoch = next((c for c in EPOCH_NAMES if c in frame.columns and c not in identity), None)
    if epoch is None:
        example = frame.loc[frame.duplicated(subset=identity, keep=False), identity].iloc[0].to_dict()
        raise UserError(
            f"several rows share {', '.join(identity)} (e.g. {example}) and no step column was found: "
            "name it with --epoch COL to fit each run's final row, or fit every row with --epoch-rule all"
        )
    if not pd.api.types.is_numeric_dtype(frame[epoch]) or pd.api.types.is_bool_dtype(frame[epoch]):
        raise UserError(f"the step column '{epoch}' is not numeric (dtype {frame[epoch].dtype}); it would sort as text")
    notes.append(
        f"several rows per run: fitted each run's final row by '{epoch}' "
        "(--epoch-rule all fits every row, best each run's best)"
    )
    return "final", epoch, identity
