"""`scalinglab report TABLE --x COL --y COL -o DIR`: your own runs table through the fits and figures.

For a table from another tool (or one of the importers): the rows are chosen as `scalinglab fit`
chooses them (each run's final row where runs have several; diverged rows left out), a power law
is fitted per group by least squares, with a bootstrap CI over the `--run` columns (each size's runs
resampled) where given, and DIR receives:

- `fits.tsv`: one row per group, the fit's numbers and diagnostics (as `scalinglab fit --json`);
- `scaling.png` and `scaling.pdf`: y against x on log axes, the points, each group's fitted line and
  the band of its slope's 95% CI;
- `summary.md`: the fits as a table, with 4/alpha beside each slope and the rows and options used.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

from scalinglab.core.errors import UserError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("table", help="runs table, Parquet or CSV")
    parser.add_argument("--x", required=True, help="size column (e.g. N or width)")
    parser.add_argument("--y", required=True, help="value column (e.g. test loss)")
    parser.add_argument("--group", nargs="+", action="extend", default=[], metavar="COL", help="one fit per group")
    parser.add_argument("--filter", nargs="+", action="extend", default=[], metavar="COL=VALUE")
    parser.add_argument("--run", nargs="+", action="extend", default=[], metavar="COL", help="run columns (seed)")
    parser.add_argument("--epoch", metavar="COL", help="step column (found by name when not given)")
    parser.add_argument("--bootstrap", type=int, default=1000, metavar="B", help="draws for the CIs with --run")
    parser.add_argument("-o", "--output", required=True, metavar="DIR", help="folder for fits, figure and summary")


def run(args: argparse.Namespace) -> int:
    from scalinglab.cli.filters import parse_filters
    from scalinglab.cli.fit_rows import epoch_rule, without_diverged
    from scalinglab.core.io import read_table, require_columns, write_text
    from scalinglab.laws.cluster_bootstrap import check_cli_draws
    from scalinglab.laws.inputs import select_epochs
    from scalinglab.laws.power_law import fit_groups, fits_to_frame

    check_cli_draws(args.bootstrap)
    out = Path(args.output)
    if out.exists() and not out.is_dir():
        raise UserError(f"-o {out}: is a file; give a folder")
    frame = read_table(args.table)
    needed = [args.x, args.y, *args.group, *args.run] + ([args.epoch] if args.epoch else [])
    require_columns(frame, list(dict.fromkeys(needed)), str(args.table))
    frame = parse_filters(args.filter, frame)
    notes: list[str] = []
    frame = without_diverged(frame, args.filter, notes)
    run_cols = list(dict.fromkeys([*args.run, *args.group, args.x]))
    rule, epoch, identity = epoch_rule(frame, args.epoch, None, run_cols, notes)
    rows = select_epochs(frame, args.y, identity, epoch=epoch, rule=rule)
    bootstrap = args.bootstrap if args.run else 0
    results = fit_groups(
        rows,
        args.x,
        args.y,
        group=args.group,
        cluster=args.run or None,
        strata=args.x if args.run else None,
        bootstrap=bootstrap,
    )
    fits = fits_to_frame(results)
    out.mkdir(parents=True, exist_ok=True)
    write_text(out / "fits.tsv", fits.to_csv(sep="\t", index=False, float_format="%.6g", na_rep=""))
    _figure(rows, results, args, out / "scaling.png")
    write_text(out / "summary.md", _summary(results, args, rule, epoch, len(rows), bootstrap, notes))
    for text in notes:
        print(f"note: {text}", file=sys.stderr)
    print(f"wrote {out / 'fits.tsv'}, {out / 'scaling.png'} (and .pdf), {out / 'summary.md'}")
    return 0


def _label(labels: dict) -> str:
    return ", ".join(f"{k} = {v}" for k, v in labels.items()) or "all rows"


def _figure(rows, results, args, path) -> None:
    import numpy as np

    from scalinglab.core.plotting import SINGLE, figure_legend, log_axes, plt, ramp, save_figure

    fig, ax = plt.subplots(figsize=SINGLE)
    for color, (labels, fit) in zip(ramp(len(results)), results):
        part = rows
        for column, value in labels.items():
            part = part[part[column] == value]
        x = part[args.x].to_numpy(float)
        ax.scatter(x, part[args.y], s=14, color=color, alpha=0.7, linewidths=0)
        grid = np.geomspace(x.min(), x.max(), 50)
        centre = np.exp(np.log(x).mean())
        line = np.exp(fit.intercept) * grid**fit.slope
        ci = f" [{fit.ci[0]:.3f}, {fit.ci[1]:.3f}]" if fit.ci_available else ""
        ax.plot(grid, line, color=color, label=f"{_label(labels)}: slope {fit.slope:.3f}{ci}")
        if fit.ci_available:
            through = np.exp(fit.intercept) * centre**fit.slope
            lo, hi = (through * (grid / centre) ** s for s in fit.ci)
            ax.fill_between(grid, np.minimum(lo, hi), np.maximum(lo, hi), color=color, alpha=0.15, linewidth=0)
    log_axes(ax)
    ax.set_xlabel(f"{args.x} (log)")
    ax.set_ylabel(f"{args.y} (log)")
    ax.set_title(f"{Path(args.table).name}: {args.y} against {args.x}")
    figure_legend(fig, [ax])
    save_figure(fig, path)


def _summary(results, args, rule, epoch, n_rows, bootstrap, notes) -> str:
    how = f"each run's final row by '{epoch}'" if rule == "final" and epoch else "every row (one per run)"
    ci = (
        f"95% CI: bootstrap, {bootstrap} draws over each {args.x}'s runs ({', '.join(args.run)})"
        if bootstrap
        else ("95% CI: analytic (give --run to resample runs)")
    )
    lines = [
        f"# {Path(args.table).name}: {args.y} against {args.x}",
        "",
        f"Power law log({args.y}) = a + slope log({args.x}) by least squares on {n_rows} rows ({how}); {ci}.",
        "",
        "| group | slope [95% CI] | 4/alpha | points | sizes | diagnostics |",
        "|---|---|---|---|---|---|",
    ]
    for labels, fit in results:
        dim = f"{fit.dim:.3g}" if math.isfinite(fit.dim) else "–"
        lines.append(
            f"| {_label(labels)} | {fit.slope:.4f} {fit.ci_text} | {dim} | {fit.n_points} | {fit.n_sizes} | "
            f"{'; '.join(fit.diagnostics) or '–'} |"
        )
    lines += ["", *(f"Note: {text}." for text in notes)]
    return "\n".join(lines) + "\n"
