"""`scalinglab dimension FILE`: intrinsic dimension of the points in a Parquet, CSV or .npy file.

With --json it prints a list, one object per estimate, with the keys `estimator` ("twonn" or
"mle"), `k` (null for TwoNN), `dimension`, `ci` ([lo, hi], 95% bootstrap over points; nulls with
--bootstrap 0) and `n_points` (distinct points used). Other tools parse this output: keep the keys.
"""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from pathlib import Path

from scalinglab.core.errors import UserError
from scalinglab.core.io import json_float

ESTIMATORS = ("twonn", "mle")
NOTES: list[str] = []  # said on stderr after a successful estimate, so that an error stays one line
DEFAULT_KS = (5, 10, 20, 50)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("file", help="points: Parquet or CSV table (one row per point) or a 2-D .npy array")
    parser.add_argument(
        "--columns",
        nargs="+",
        metavar="COL",
        help="table columns holding the coordinates (default: the float columns; a file without a header: all)",
    )
    parser.add_argument("--estimator", choices=ESTIMATORS, help="only this estimator (default: both)")
    parser.add_argument(
        "--k",
        nargs="+",
        type=int,
        metavar="K",
        help=f"MLE neighbour counts, each >= 3 (default: {' '.join(map(str, DEFAULT_KS))})",
    )
    parser.add_argument("--subsample", type=int, metavar="M", help="estimate on M points drawn at random")
    parser.add_argument("--seed", type=int, default=0, help="seed of the subsample and bootstrap (default 0)")
    parser.add_argument(
        "--bootstrap",
        type=int,
        default=200,
        metavar="B",
        help="bootstrap resamples for the 95%% CI (default 200; 0 = no CI)",
    )
    parser.add_argument(
        "--mle-unbiased",
        action="store_true",
        help="MLE with Levina-Bickel's (k-2) normalisation instead of (k-1) (see scalinglab.dimension.estimators.MLE)",
    )
    parser.add_argument("--json", action="store_true", help="print JSON for other tools")


def run(args: argparse.Namespace) -> int:
    from scalinglab.dimension.estimators import estimate
    from scalinglab.laws.cluster_bootstrap import check_cli_draws

    if args.seed < 0:
        raise UserError(f"--seed {args.seed}: --seed must be >= 0; give a non-negative integer")
    NOTES.clear()
    points = _read_points(Path(args.file), args.columns)
    ks = args.k or DEFAULT_KS
    if args.estimator != "twonn" and min(ks) < 3:
        raise UserError(f"--k {min(ks)}: MLE needs at least 3 neighbours; give values >= 3")
    if args.subsample is not None and args.subsample < 3:
        raise UserError(f"--subsample {args.subsample}: need at least 3 points")
    check_cli_draws(args.bootstrap)
    if args.subsample is not None and args.subsample > len(points):
        print(
            f"scalinglab dimension: note: --subsample {args.subsample} is more than the {len(points)} points; "
            f"using all {len(points)}",
            file=sys.stderr,
        )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            frame = estimate(
                points,
                estimators=[args.estimator] if args.estimator else ESTIMATORS,
                ks=ks,
                subsample=args.subsample,
                seed=args.seed,
                bootstrap=args.bootstrap,
                mle_unbiased=args.mle_unbiased,
            )
        except ValueError as exc:  # the library's messages for unusable points (too few, NaN, ...)
            raise UserError(f"{args.file}: {exc}") from None
    for warning in caught:
        print(f"scalinglab dimension: warning: {warning.message}", file=sys.stderr)
    for note in NOTES:
        print(f"scalinglab dimension: note: {note}", file=sys.stderr)

    records = [
        {
            "estimator": row.estimator,
            "k": None if row.estimator == "twonn" else int(row.k),
            "dimension": json_float(row.dimension),
            "ci": [json_float(row.ci_lo), json_float(row.ci_hi)],
            "n_points": int(row.n_points),
        }
        for row in frame.itertuples(index=False)
    ]
    if args.json:
        print(json.dumps(records, indent=2))
    else:
        print(f"{'estimator':<10} {'k':>4} {'dimension':>10}  {'95% CI':<17} {'points':>8}")
        for r in records:
            ci = "-" if r["ci"][0] is None else f"[{r['ci'][0]:.2f}, {r['ci'][1]:.2f}]"
            k = "-" if r["k"] is None else r["k"]
            print(f"{r['estimator']:<10} {k:>4} {r['dimension']:>10.2f}  {ci:<17} {r['n_points']:>8}")
    return 0


def _read_points(path: Path, columns: list[str] | None):
    """The (n, D) coordinates in `path`, with one-line errors for anything unusable."""
    import numpy as np

    from scalinglab.core.io import read_table, require_columns

    if path.suffix.lower() == ".npy":
        if not path.exists():
            raise UserError(f"{path}: no such file; give the path of a .npy array, Parquet or CSV table")
        if columns:
            raise UserError(f"{path}: --columns selects table columns; a .npy array is used whole")
        try:
            points = np.load(path, allow_pickle=False)
        except Exception as exc:  # numpy raises several types for a damaged or object file
            raise UserError(f"{path}: cannot read it as .npy ({str(exc).splitlines()[0]})") from None
        if points.ndim not in (1, 2) or not np.issubdtype(points.dtype, np.number) or points.dtype == bool:
            raise UserError(f"{path}: need a numeric (n points, D) array, got {points.dtype} of shape {points.shape}")
        return points

    frame = read_table(path, header=False)
    if columns:
        require_columns(frame, columns, str(path))
        non_numeric = [c for c in columns if not _is_numeric(frame[c])]
        if non_numeric:
            raise UserError(f"{path}: column(s) {', '.join(non_numeric)} are not numeric; choose coordinate columns")
    else:
        columns = _coordinate_columns(frame, path)
    values = frame[columns]
    incomplete = int(values.isna().any(axis=1).sum())
    if incomplete:
        raise UserError(
            f"{path}: {incomplete} row(s) have missing values in {', '.join(map(str, columns))}; drop them first"
        )
    return values.to_numpy(dtype=np.float64)


def _coordinate_columns(frame, path: Path) -> list:
    """The float columns (a header-less file: every column), said on stderr: integer columns are
    labels, ids or a saved index ('Unnamed: 0') far more often than coordinates."""
    headerless = [str(c) for c in frame.columns] == [f"x{i}" for i in range(frame.shape[1])]
    numeric = [c for c in frame.columns if _is_numeric(frame[c])]
    if headerless:
        return numeric
    import pandas as pd

    chosen = [c for c in numeric if pd.api.types.is_float_dtype(frame[c]) and not str(c).startswith("Unnamed: ")]
    left = [str(c) for c in frame.columns if c not in chosen]
    if not chosen:
        raise UserError(
            f"{path}: no float columns to use as coordinates (integer or text: {', '.join(left) or 'none'}); "
            "name them with --columns"
        )
    NOTES.append(
        f"coordinates from {len(chosen)} float column(s) {', '.join(map(str, chosen))}"
        + (f"; left out {', '.join(left)} (--columns chooses)" if left else "")
    )
    return chosen


def _is_numeric(series) -> bool:
    import pandas as pd

    return pd.api.types.is_numeric_dtype(series) and not pd.api.types.is_bool_dtype(series)
