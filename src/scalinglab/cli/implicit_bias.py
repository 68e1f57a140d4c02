"""`scalinglab implicit-bias TABLE...`: gamma1, gamma2, lambda_opt and gamma_pred vs gamma_meas.

TABLE holds rows of (P, seed, norm, test error), e.g. one per logged epoch of each run, or one per
fixed norm of the perceptron sweep; several tables are concatenated (the workflow's per-run files).
The norm is the paper's lambda: the perceptron tables' `norm` column (= |w|^2/N; their `lam` is the
margin scale sqrt(lambda), with which gamma1 comes out twice and gamma2 half the paper's), the
deep nets' spectral complexity R, logged as ln R in `log_norm` (pass --norm log_norm --norm-is-log).

--method robust (default) needs no window: gamma1 from each curve's error band, censored minima as
bounds, a bootstrap over seeds (keys `*_ci`), a `sensitivity` table. --method authors is the
authors' published procedure with their hand-set --window (and --gamma1-min-p, --gamma2-min-p,
--grid); it adds `sigma`, the error of gamma_pred - gamma_meas, and `l0`.

With --json it prints one object with the keys `method`, `gamma1`, `gamma1_se`, `gamma2`,
`gamma2_se`, `gamma_pred`, `gamma_pred_se`, `gamma_meas`, `gamma_meas_se`, `lambda_opt` and
`eps_opt` (maps from P, as a string, to the value), `gamma1_by_p`, `gamma1_window`, `edge_minima`,
and the method's own keys; non-finite numbers are null. Other tools parse this output: keep the keys.

The workflow's numbers, from its own tables (exactly; tests/test_implicit_bias_workflow.py):
  perceptron, results/fits/perceptron.json (gamma1 ... gamma_meas, of eps/eps_Hebb):
    scalinglab implicit-bias results/runs/perceptron/alpha~*.parquet --error rel_error --json
  its gamma_meas_abs (the absolute learning curve): the same with --error error (key gamma_meas);
  its `authors` entry: add --method authors --window LO HI --gamma1-min-p P, with the `gamma1_window`
    and `gamma1_min_p` that entry records (perceptron.window and upper_fraction of the config);
  deep nets, results/fits/deep_nets/model~M/dataset~D.json:
    scalinglab implicit-bias results/runs/deep_nets/model~M/dataset~D/P~*/seed~*.parquet
      --norm log_norm --norm-is-log --error test_error --filter status=ok --json
  (--error: the config's deep_nets.error; status=ok leaves out diverged runs, as the workflow does).
"""

from __future__ import annotations

import argparse
import json

import pandas as pd


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("table", nargs="+", help="Parquet or CSV tables: rows of (P, seed, norm, error)")
    parser.add_argument("--p", default="P", metavar="COL", help="training-set size column (default P)")
    parser.add_argument("--seed", default="seed", metavar="COL", help="seed column (default seed)")
    parser.add_argument("--norm", default="norm", metavar="COL", help="norm column, lambda (default norm)")
    parser.add_argument("--error", default="error", metavar="COL", help="test-error column (default error)")
    parser.add_argument("--norm-is-log", action="store_true", help="the norm column holds ln(lambda)")
    parser.add_argument(
        "--filter", action="append", default=[], metavar="COL=VALUE", help="keep only rows where COL equals VALUE"
    )
    parser.add_argument("--method", default="robust", choices=("robust", "authors"), help="default robust")
    parser.add_argument(
        "--window",
        nargs=2,
        type=float,
        metavar=("LO", "HI"),
        help="gamma1 window in lambda/lambda_opt (0 and inf leave an end open); required by --method authors; "
        "with robust it replaces the error band",
    )
    parser.add_argument("--gamma1-min-p", type=float, metavar="P", help="gamma1 uses only P >= this")
    parser.add_argument("--gamma2-min-p", type=float, metavar="P", help="gamma2 uses only P >= this")
    parser.add_argument("--grid", type=int, metavar="G", help="authors: log-spaced norms of the common grid (50)")
    parser.add_argument(
        "--band",
        nargs=2,
        type=float,
        metavar=("LO", "HI"),
        help="robust: gamma1's points by their fraction of the curve's error drop (default 0.2 0.8)",
    )
    parser.add_argument("--min-seeds", type=int, metavar="N", help="robust: seeds a grid point needs (majority)")
    parser.add_argument("--bootstrap", type=int, metavar="B", help="robust: bootstrap resamples (default 200; 0 none)")
    parser.add_argument("--bootstrap-seed", type=int, metavar="S", help="robust: bootstrap random seed (default 0)")
    parser.add_argument("--no-sensitivity", action="store_true", help="robust: skip the sensitivity table")
    parser.add_argument("--json", action="store_true", help="print JSON for other tools")


ROBUST_ONLY = ("band", "min_seeds", "bootstrap", "bootstrap_seed")


def run(args: argparse.Namespace) -> int:
    from scalinglab.cli.filters import parse_filters
    from scalinglab.cli.json_output import json_ready
    from scalinglab.core.errors import UserError
    from scalinglab.core.io import read_table, require_columns
    from scalinglab.laws.implicit_bias.analysis import analyse

    _check_options(args)
    frames = []
    for path in args.table:
        frame = read_table(path)
        require_columns(frame, list(dict.fromkeys([args.p, args.seed, args.norm, args.error])), str(path))
        frames.append(frame)
    frame = parse_filters(args.filter, pd.concat(frames, ignore_index=True))
    options = {
        "window": None if args.window is None else tuple(args.window),
        "gamma1_min_p": args.gamma1_min_p,
        "gamma2_min_p": args.gamma2_min_p,
    }
    given = {name: getattr(args, name) for name in ROBUST_ONLY if getattr(args, name) is not None}
    if args.method == "authors":
        if given or args.no_sensitivity:
            flags = ", ".join("--" + n.replace("_", "-") for n in given) or "--no-sensitivity"
            raise UserError(f"{flags} applies to --method robust only")
        if args.grid is not None:
            options["grid"] = args.grid
    else:
        if args.grid is not None:
            raise UserError("--grid applies to --method authors only (robust grids follow the runs' logging step)")
        options.update(given)
        options["sensitivity"] = not args.no_sensitivity
    result = analyse(
        frame,
        method=args.method,
        p=args.p,
        seed=args.seed,
        norm=args.norm,
        error=args.error,
        norm_is_log=args.norm_is_log,
        **options,
    )
    if args.json:
        print(json.dumps(json_ready(result.to_dict()), indent=2, allow_nan=False))
    else:
        print(result.summary())
    return 0


def _check_options(args) -> None:
    """One-line errors for option values the analysis cannot use (before any file is read)."""
    from scalinglab.core.errors import UserError
    from scalinglab.laws.cluster_bootstrap import check_cli_draws

    if args.bootstrap is not None:
        check_cli_draws(args.bootstrap)
    if args.bootstrap_seed is not None and args.bootstrap_seed < 0:
        raise UserError(f"--bootstrap-seed {args.bootstrap_seed} must be >= 0; give a non-negative integer")
    if args.min_seeds is not None and args.min_seeds < 1:
        raise UserError(f"--min-seeds {args.min_seeds} must be at least 1")
    looks_log = args.norm.lower().startswith(("log", "ln"))
    if looks_log and not args.norm_is_log:
        raise UserError(
            f"--norm {args.norm} looks like a logarithm: add --norm-is-log if it holds ln(lambda), "
            "or name the column of lambda itself"
        )
