"""`scalinglab fit TABLE --x COL --y COL ...`: power-law (or broken or joint-law) fits of a runs table.

With --json it prints a list, one object per group, with the keys `group`, `slope`, `intercept`,
`dim` (= 4/|slope|), `ci` ([lo, hi] of the slope), `n_points`, `alpha`, `dim_ci`, `method`,
`quantile`, `n_sizes`, `n_clusters`, `diagnostics` (plus `bootstrap`, `confidence`, `x`, `y`,
`epoch_rule`); non-finite numbers are null. Other tools parse this output: keep the keys.
`--law broken` prints one object per group with a, b, c0, c1, d1, f1 (Caballero et al.'s one-break
law), `rms_relative_error`, `n_points`, `diagnostics`; `--law joint` the joint fit's own keys.
"""

from __future__ import annotations

import argparse
import json
import math

from scalinglab.core.errors import UserError

LAWS = ("power", "broken", "joint")
JOINT_METHODS = ("vpro", "chinchilla")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("table", help="runs table, Parquet or CSV (one row per run and logged epoch)")
    parser.add_argument("--x", help="size column, e.g. the parameter count N (the power law's x)")
    parser.add_argument("--y", required=True, help="value column, e.g. test loss")
    parser.add_argument(
        "--group",
        nargs="+",
        action="extend",
        default=[],
        metavar="COL",
        help="one fit per combination of these columns (e.g. d)",
    )
    parser.add_argument(
        "--filter",
        nargs="+",
        action="extend",
        default=[],
        metavar="COL=VALUE",
        help="keep only rows where COL equals VALUE (repeatable)",
    )
    parser.add_argument(
        "--quantile", type=float, metavar="Q", help="quantile regression at Q (0.5 = median); least squares without it"
    )
    parser.add_argument(
        "--run",
        nargs="+",
        action="extend",
        default=[],
        metavar="COL",
        help="columns that, with the group columns and x, identify a run (e.g. seed); "
        "their combinations are the bootstrap's clusters",
    )
    parser.add_argument("--epoch", metavar="COL", help="epoch or step column")
    parser.add_argument(
        "--epoch-rule",
        metavar="RULE",
        help="final (each run's last epoch), best (each run's minimum of y) or all rows; "
        "default: final with --epoch, else all",
    )
    parser.add_argument("--maximize", action="store_true", help="best means the maximum of y (accuracy)")
    parser.add_argument(
        "--bootstrap",
        type=int,
        default=0,
        metavar="B",
        help="bootstrap draws for the slope CI, resampling the --run clusters (single rows "
        "without --run); 0 (default) = analytic CI",
    )
    parser.add_argument("--seed", type=int, default=0, help="bootstrap random seed (default 0)")
    parser.add_argument("--confidence", type=float, default=0.95, help="CI level (default 0.95)")
    parser.add_argument(
        "--law",
        default="power",
        metavar="LAW",
        help="power (default): log y on log x; broken: a power law with one break in its slope, "
        "y = a + b x^-c0 (1 + (x/d1)^(1/f1))^(-c1 f1) (Caballero et al. 2022); joint: L(N, P) = E + A N^-alpha + "
        "B P^-beta",
    )
    parser.add_argument("--n", metavar="COL", help="joint law: model-size column")
    parser.add_argument("--p", metavar="COL", help="joint law: data-size column")
    parser.add_argument(
        "--method",
        default="vpro",
        metavar="METHOD",
        help="joint law: vpro (variable projection, default) or chinchilla",
    )
    parser.add_argument("--json", action="store_true", help="print JSON for other tools")


def run(args: argparse.Namespace) -> int:
    from scalinglab.cli.filters import parse_filters
    from scalinglab.core.io import read_table, require_columns
    from scalinglab.laws.cluster_bootstrap import MAX_DRAWS
    from scalinglab.laws.inputs import EPOCH_RULES, select_epochs
    from scalinglab.laws.power_law import fit_groups

    if args.law not in LAWS:
        raise UserError(f"unknown law '{args.law}'; use one of {', '.join(LAWS)}")
    if args.law in ("power", "broken") and not args.x:
        raise UserError(f"the {args.law} law needs --x COL (the size column)")
    if args.law == "broken" and (args.quantile is not None or args.bootstrap):
        raise UserError("--law broken fits by relative least squares without CIs; drop --quantile and --bootstrap")
    if args.bootstrap > MAX_DRAWS:
        raise UserError(f"--bootstrap {args.bootstrap} is more than the {MAX_DRAWS:,} allowed; 1000 to 10000 suffice")
    if args.seed < 0:
        raise UserError(f"--seed {args.seed}: --seed must be >= 0; give a non-negative integer")
    if args.law == "joint" and not (args.n and args.p):
        raise UserError("the joint law needs --n COL and --p COL")
    rule = args.epoch_rule or ("final" if args.epoch else "all")
    if rule not in EPOCH_RULES:
        raise UserError(f"unknown epoch rule '{rule}'; use one of {', '.join(EPOCH_RULES)}")
    if args.bootstrap > 0 and not args.run and args.epoch and rule == "all":
        # every row its own cluster would resample one run's epochs as if independent: CIs far too narrow
        raise UserError(
            "--bootstrap with all epochs needs --run COL (e.g. seed) so that it resamples whole runs, "
            "not single epochs; or fit one row per run with --epoch-rule final"
        )

    frame = read_table(args.table)
    sizes = [args.n, args.p] if args.law == "joint" else [args.x]
    needed = [args.y, *sizes, *args.group, *args.run] + ([args.epoch] if args.epoch else [])
    require_columns(frame, list(dict.fromkeys(needed)), str(args.table))
    frame = parse_filters(args.filter, frame)
    run_cols = list(dict.fromkeys([*args.run, *args.group, *sizes]))
    frame = select_epochs(frame, args.y, run_cols, epoch=args.epoch, rule=rule, maximize=args.maximize)
    clusters = list(args.run) or None

    if args.law == "joint":
        return _run_joint(args, frame, clusters)
    if args.law == "broken":
        return _run_broken(args, frame, rule)

    results = fit_groups(
        frame,
        args.x,
        args.y,
        group=args.group,
        quantile=args.quantile,
        cluster=clusters,
        bootstrap=args.bootstrap,
        seed=args.seed,
        confidence=args.confidence,
    )
    if args.json:
        records = [_record(labels, fit, rule) for labels, fit in results]
        print(json.dumps(records, indent=2, allow_nan=False))
    else:
        print(_table(results, args))
    return 0


def _record(labels: dict, fit, rule: str) -> dict:
    out = fit.to_dict()
    keys = [
        "slope",
        "intercept",
        "dim",
        "ci",
        "n_points",
        "alpha",
        "dim_ci",
        "method",
        "quantile",
        "n_sizes",
        "n_clusters",
        "diagnostics",
        "bootstrap",
        "confidence",
        "x",
        "y",
    ]
    return {"group": _json_safe(labels), **{key: out[key] for key in keys}, "epoch_rule": rule}


def _json_safe(labels: dict) -> dict:
    """Group labels for JSON: NaN as None, numpy scalars as Python, anything else JSON lacks (a date) as str()."""
    out = {}
    for key, value in labels.items():
        if hasattr(value, "item") and callable(value.item) and getattr(value, "ndim", 1) == 0:
            value = value.item()
        if isinstance(value, float) and value != value:
            value = None
        elif not (value is None or isinstance(value, (str, int, float, bool))):
            value = str(value)
        out[str(key)] = value
    return out


def _json_ready(value):
    """Numbers as plain Python, non-finite floats as None, recursively (another module's dict)."""
    if isinstance(value, dict):
        return {str(k): _json_ready(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_ready(v) for v in value]
    if hasattr(value, "item") and callable(value.item) and getattr(value, "ndim", 1) == 0:
        value = value.item()
    if hasattr(value, "tolist"):
        return _json_ready(value.tolist())
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _table(results, args) -> str:
    lines = []
    header = (
        f"{'group':<20} {'slope':>9} {'CI of slope':>21} {'alpha':>8} {'d=4/|s|':>8} {'CI of d':>17} "
        f"{'n':>5} {'sizes':>5} {'clust':>5}"
    )
    lines.append(header)
    for labels, fit in results:
        name = ", ".join(f"{k}={v}" for k, v in labels.items()) or "all"
        lo, hi = fit.ci
        dlo, dhi = fit.dim_ci
        lines.append(
            f"{name:<20} {fit.slope:>9.4f} {f'[{lo:.4f}, {hi:.4f}]':>21} {fit.alpha:>8.4f} {fit.dim:>8.3g} "
            f"{f'[{dlo:.3g}, {dhi:.3g}]':>17} {fit.n_points:>5} {fit.n_sizes:>5} {fit.n_clusters:>5}"
        )
    method = "least squares" if args.quantile is None else f"quantile regression q={args.quantile:g}"
    over = f"runs ({', '.join(args.run)})" if args.run else "single rows (no --run: right for one row per run only)"
    ci = f"bootstrap over {over}, {args.bootstrap} draws" if args.bootstrap else "analytic CI"
    lines.append(f"fit: log({args.y}) on log({args.x}), {method}, {args.confidence:.0%} {ci}")
    for labels, fit in results:
        name = ", ".join(f"{k}={v}" for k, v in labels.items()) or "all"
        lines += [f"  [{name}] {text}" for text in fit.diagnostics]
    return "\n".join(lines)


def _run_broken(args, frame, rule: str) -> int:
    from scalinglab.laws.broken_power_law import fit_broken_power_law

    groups = frame.groupby(args.group, sort=True, dropna=False) if args.group else [((), frame)]
    results = []
    for key, rows in groups:
        labels = dict(zip(args.group, key if isinstance(key, tuple) else (key,)))
        labels = {c: (v.item() if hasattr(v, "item") else v) for c, v in labels.items()}
        try:
            fit = fit_broken_power_law(rows[args.x].to_numpy(float), rows[args.y].to_numpy(float))
        except UserError as exc:
            where = ", ".join(f"{k}={v}" for k, v in labels.items())
            raise UserError(f"group {where}: {exc}" if where else str(exc)) from None
        results.append((labels, fit))
    if args.json:
        records = [{"group": _json_safe(labels), **fit.to_dict(), "epoch_rule": rule} for labels, fit in results]
        print(json.dumps(_json_ready(records), indent=2, allow_nan=False))
    else:
        for labels, fit in results:
            name = ", ".join(f"{k}={v}" for k, v in labels.items()) or "all"
            print(f"[{name}] {fit.summary()}")
    return 0


def _run_joint(args, frame, clusters) -> int:
    if args.method not in JOINT_METHODS:
        raise UserError(f"unknown joint method '{args.method}'; use one of {', '.join(JOINT_METHODS)}")
    from scalinglab.laws.joint.fit import fit_joint

    def fit(rows):
        return fit_joint(
            rows,
            n=args.n,
            p=args.p,
            y=args.y,
            method=args.method,
            bootstrap=args.bootstrap,
            cluster=clusters,
            seed=args.seed,
        ).to_dict()

    if args.group:
        # One joint fit per group, in the same list-of-objects shape as the power law's output.
        output = [
            {
                "group": _json_safe(
                    {
                        c: (v.item() if hasattr(v, "item") else v)
                        for c, v in zip(args.group, key if isinstance(key, tuple) else (key,))
                    }
                ),
                **fit(rows),
            }
            for key, rows in frame.groupby(args.group, sort=True, dropna=False)
        ]
    else:
        output = fit(frame)
    output = _json_ready(output)
    if args.json:
        print(json.dumps(output, indent=2, allow_nan=False, default=str))
    else:
        for item in output if isinstance(output, list) else [output]:
            print("\n".join(f"{key}: {value}" for key, value in item.items()))
    return 0
