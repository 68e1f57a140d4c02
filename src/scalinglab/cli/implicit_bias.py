"""`scalinglab implicit-bias TABLE`: gamma1, gamma2, lambda_opt and gamma_pred vs gamma_meas.

TABLE holds rows of (P, seed, norm, test error), e.g. one per logged epoch of each run, or one per
fixed norm of the perceptron sweep (then pass --norm lam, and --error rel_error for the error
relative to the lambda -> 0 one, as the theory states it for the perceptron).
With --json it prints one object with the keys `gamma1`, `gamma1_se`, `gamma2`, `gamma2_se`,
`gamma_pred`, `gamma_pred_se`, `gamma_meas`, `gamma_meas_se`, `lambda_opt` and `eps_opt` (maps
from P, as a string, to the value), `gamma1_by_p`, `gamma1_window`, `edge_minima`; non-finite
numbers are null. Other tools parse this output: keep the keys.
"""

from __future__ import annotations

import argparse
import json
import math


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("table", help="Parquet or CSV table: one row per (P, seed, logged norm)")
    parser.add_argument("--p", default="P", metavar="COL", help="training-set size column (default P)")
    parser.add_argument("--seed", default="seed", metavar="COL", help="seed column (default seed)")
    parser.add_argument("--norm", default="norm", metavar="COL", help="norm column, lambda (default norm)")
    parser.add_argument("--error", default="error", metavar="COL", help="test-error column (default error)")
    parser.add_argument("--norm-is-log", action="store_true", help="the norm column holds log(lambda)")
    parser.add_argument(
        "--window",
        nargs=2,
        type=float,
        default=(0.02, 0.2),
        metavar=("LO", "HI"),
        help="gamma1 window in lambda/lambda_opt (default 0.02 0.2: the early regime)",
    )
    parser.add_argument(
        "--upper-fraction",
        type=float,
        default=0.5,
        metavar="F",
        help="gamma1 averages the largest fraction F of the P values (default 0.5, at least 2)",
    )
    parser.add_argument("--json", action="store_true", help="print JSON for other tools")


def run(args: argparse.Namespace) -> int:
    from scalinglab.core.io import read_table, require_columns
    from scalinglab.laws.implicit_bias.analysis import analyse

    frame = read_table(args.table)
    require_columns(frame, list(dict.fromkeys([args.p, args.seed, args.norm, args.error])), str(args.table))
    result = analyse(
        frame,
        p=args.p,
        seed=args.seed,
        norm=args.norm,
        error=args.error,
        window=tuple(args.window),
        upper_fraction=args.upper_fraction,
        norm_is_log=args.norm_is_log,
    )
    if args.json:
        print(json.dumps(_finite_or_null(result.to_dict()), indent=2, allow_nan=False))
    else:
        print(result.summary())
    return 0


def _finite_or_null(value):
    if isinstance(value, dict):
        return {k: _finite_or_null(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite_or_null(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value
