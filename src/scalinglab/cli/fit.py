"""`scalinglab fit TABLE --x COL --y COL ...`: power-law (or floor, broken or joint-law) fits of a runs table.

A table with several rows per run (one per logged step, as the workflow's tables) is never pooled
silently: without --epoch-rule, each run's final row is fitted, the step column found by --epoch or
by its name (step, epoch, ...), runs told apart by --run or a seed/run column; when no step column
can be found the command refuses in one line. `--epoch-rule all` fits every row on request. Rows
whose `status` column is not "ok" (diverged runs) are left out, as the workflow leaves them out.
Options that the chosen law ignores are refused; a fit with too few points or no computable CI
exits non-zero; a bootstrap that can draw fewer than 20 distinct resamples prints "CI n/a: k
distinct resamples" instead of an interval.

With --json it prints a list, one object per group, with the keys `group`, `slope`, `intercept`,
`dim` (= 4/|slope|), `ci` ([lo, hi] of the slope), `n_points`, `alpha`, `dim_ci`, `method`,
`quantile`, `n_sizes`, `n_clusters`, `diagnostics` (plus `bootstrap`, `confidence`, `x`, `y`,
`epoch_rule`); non-finite numbers are null. Other tools parse this output: keep the keys.
`--law floor` prints one object per group with E, A, alpha and their `*_ci`, `n_points`,
`distinct_resamples`, `rms_relative_error`, `diagnostics`; `--law broken` one with a, b, c0, c1,
d1, f1 (Caballero et al.'s one-break law), `rms_relative_error`, `n_points`, `diagnostics`;
`--law joint` the joint fit's own keys.
"""

from __future__ import annotations

import argparse
import json
import sys

from scalinglab.cli.fit_rows import EPOCH_NAMES, epoch_rule, without_diverged
from scalinglab.cli.json_output import json_safe
from scalinglab.core.errors import UserError

LAWS = ("power", "floor", "broken", "joint")
# the options each law reads (beyond table, --y, --group, --filter, --run, --epoch, --epoch-rule, --json)
LAW_OPTIONS = {
    "power": {"x", "quantile", "bootstrap", "seed", "confidence", "maximize"},
    "floor": {"x", "bootstrap", "seed", "confidence", "maximize"},
    "broken": {"x", "maximize"},
    "joint": {"n", "p", "method", "bootstrap", "seed", "confidence", "maximize"},
}
DEFAULTS = {"x": None, "quantile": None, "bootstrap": 0, "seed": None, "confidence": None, "n": None, "p": None}
DEFAULTS["method"] = None
DEFAULTS["maximize"] = False


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
        "default: final where runs have several rows (else the rows are the runs)",
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
    parser.add_argument("--seed", type=int, help="bootstrap random seed (default 0)")
    parser.add_argument("--confidence", type=float, help="CI level (default 0.95)")
    parser.add_argument(
        "--law",
        default="power",
        metavar="LAW",
        help="power (default): log y on log x; floor: y = E + A x^-alpha with CIs; "
        "broken: a power law with one break in its slope, "
        "y = a + b x^-c0 (1 + (x/d1)^(1/f1))^(-c1 f1) (Caballero et al. 2022); joint: L(N, P) = E + A N^-alpha + "
        "B P^-beta",
    )
    parser.add_argument("--n", metavar="COL", help="joint law: model-size column")
    parser.add_argument("--p", metavar="COL", help="joint law: data-size column")
    parser.add_argument(
        "--method",
        metavar="METHOD",
        help="joint law: vpro (variable projection, default) or chinchilla",
    )
    parser.add_argument("--json", action="store_true", help="print JSON for other tools")


def run(args: argparse.Namespace) -> int:
    from scalinglab.cli.filters import parse_filters
    from scalinglab.cli.fit_laws import run_broken, run_floor, run_joint
    from scalinglab.core.io import read_table, require_columns
    from scalinglab.laws.cluster_bootstrap import check_cli_draws
    from scalinglab.laws.inputs import EPOCH_RULES, select_epochs

    if args.law not in LAWS:
        raise UserError(f"unknown law '{args.law}'; use one of {', '.join(LAWS)}")
    _refuse_ignored_options(args)
    if args.law != "joint" and not args.x:
        raise UserError(f"the {args.law} law needs --x COL (the size column)")
    check_cli_draws(args.bootstrap)
    args.seed = 0 if args.seed is None else args.seed
    args.confidence = 0.95 if args.confidence is None else args.confidence
    args.method = args.method or "vpro"
    if args.seed < 0:
        raise UserError(f"--seed {args.seed}: --seed must be >= 0; give a non-negative integer")
    if args.law == "joint" and not (args.n and args.p):
        raise UserError("the joint law needs --n COL and --p COL")
    if args.epoch_rule is not None and args.epoch_rule not in EPOCH_RULES:
        raise UserError(f"unknown epoch rule '{args.epoch_rule}'; use one of {', '.join(EPOCH_RULES)}")
    if args.maximize and args.epoch_rule != "best":
        raise UserError("--maximize only changes --epoch-rule best (each run's maximum of y); drop it or add that rule")

    frame = read_table(args.table)
    sizes = [args.n, args.p] if args.law == "joint" else [args.x]
    needed = [args.y, *sizes, *args.group, *args.run] + ([args.epoch] if args.epoch else [])
    require_columns(frame, list(dict.fromkeys(needed)), str(args.table))
    frame = parse_filters(args.filter, frame)
    notes: list[str] = []  # printed on success only, so that an error stays one line
    frame = without_diverged(frame, args.filter, notes)
    run_cols = list(dict.fromkeys([*args.run, *args.group, *sizes]))
    rule, epoch, identity = epoch_rule(frame, args.epoch, args.epoch_rule, run_cols, notes)
    steps = epoch or next((c for c in EPOCH_NAMES if c in frame.columns), None)  # --epoch, or found by name
    if rule == "all" and args.bootstrap > 0 and not args.run and steps and frame[steps].nunique() > 1:
        # every row its own cluster would resample one run's epochs as if independent: CIs far too narrow
        raise UserError(
            "--bootstrap with all epochs needs --run COL (e.g. seed) so that it resamples whole runs, "
            "not single epochs; or fit one row per run with --epoch-rule final"
        )
    if rule == "final" and epoch:
        ends = frame.groupby(identity, dropna=False)[epoch].max()
        short = int((ends < ends.max()).sum())
        if short:
            notes.append(
                f"{short} of {len(ends)} runs end before {epoch} {ends.max():g} (unfinished or shorter runs?); "
                "their last rows are fitted as they are"
            )
    frame = select_epochs(frame, args.y, identity, epoch=epoch, rule=rule, maximize=args.maximize)
    clusters = list(args.run) or None

    if args.law == "joint":
        code = run_joint(args, frame, clusters)
    elif args.law == "broken":
        code = run_broken(args, frame, rule)
    elif args.law == "floor":
        code = run_floor(args, frame, clusters, rule)
    else:
        code = _run_power(args, frame, clusters, rule)
    for text in notes:
        print(f"note: {text}", file=sys.stderr)
    return code


def _run_power(args, frame, clusters, rule: str) -> int:
    from scalinglab.laws.power_law import fit_groups

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
    _refuse_degenerate(results)
    if args.json:
        records = [_record(labels, fit, rule) for labels, fit in results]
        print(json.dumps(records, indent=2, allow_nan=False))
    else:
        print(_table(results, args))
    return 0


def _refuse_ignored_options(args) -> None:
    """An option the chosen law would ignore is an error, not a silent no-op."""
    reads = LAW_OPTIONS[args.law]
    given = [
        name
        for name, default in DEFAULTS.items()
        if name not in reads and getattr(args, name) is not None and getattr(args, name) != default
    ]
    if given:
        flags = ", ".join("--" + name for name in given)
        raise UserError(f"--law {args.law} does not use {flags}; drop {'it' if len(given) == 1 else 'them'}")


def _refuse_degenerate(results) -> None:
    """A fit without the points or the interval it promises exits non-zero, in one line."""
    for labels, fit in results:
        where = ", ".join(f"{k}={v}" for k, v in labels.items())
        where = f"group {where}: " if where else ""
        if fit.n_points < 3:
            raise UserError(
                f"{where}{fit.n_points} points: a slope through 2 points has no uncertainty; fit at least 3 runs"
            )
        if not fit.ci_available and not fit.too_few_resamples:
            reason = next((d for d in fit.diagnostics if "CI" in d or "bootstrap" in d), "the CI is not computable")
            raise UserError(f"{where}no confidence interval: {reason}")


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
        "distinct_resamples",
        "diagnostics",
        "bootstrap",
        "confidence",
        "x",
        "y",
    ]
    return {"group": json_safe(labels), **{key: out[key] for key in keys}, "epoch_rule": rule}


def _table(results, args) -> str:
    lines = []
    header = (
        f"{'group':<20} {'slope':>9} {'CI of slope':>21} {'alpha':>8} {'d=4/|s|':>8} {'CI of d':>17} "
        f"{'n':>5} {'sizes':>5} {'clust':>5}"
    )
    lines.append(header)
    for labels, fit in results:
        name = ", ".join(f"{k}={v}" for k, v in labels.items()) or "all"
        dlo, dhi = fit.dim_ci
        dim_ci = f"[{dlo:.3g}, {dhi:.3g}]" if fit.ci_available else "n/a"
        lines.append(
            f"{name:<20} {fit.slope:>9.4f} {fit.ci_text:>21} {fit.alpha:>8.4f} {fit.dim:>8.3g} "
            f"{dim_ci:>17} {fit.n_points:>5} {fit.n_sizes:>5} {fit.n_clusters:>5}"
        )
    method = "least squares" if args.quantile is None else f"quantile regression q={args.quantile:g}"
    over = f"runs ({', '.join(args.run)})" if args.run else "single rows (no --run: right for one row per run only)"
    ci = f"bootstrap over {over}, {args.bootstrap} draws" if args.bootstrap else "analytic CI"
    lines.append(f"fit: log({args.y}) on log({args.x}), {method}, {args.confidence:.0%} {ci}")
    for labels, fit in results:
        name = ", ".join(f"{k}={v}" for k, v in labels.items()) or "all"
        lines += [f"  [{name}] {text}" for text in fit.diagnostics]
    return "\n".join(lines)
