"""`scalinglab import-wandb SOURCE -o runs.parquet`: Weights & Biases runs -> a runs table.

SOURCE is one of
- a chart's CSV export from the W&B web UI (a line plot's menu: Export, CSV): the first column is the
  chart's x axis ("Step"), then for each run and metric "<run> - <metric>", "<run> - <metric>__MIN"
  and "<run> - <metric>__MAX", empty where the run logged nothing at that step. run_id is the run's
  display name (a second run of the same name in the chart is "<name> #2"); the metric is the text
  after the last " - ". __MIN and __MAX are dropped: where they differ, the point is an average over
  several logged values (a grouped or downsampled line) and a warning says so.
- a history frame saved to CSV, Parquet or JSON (lines): `wandb.Api().runs(PATH).histories(
  format="pandas")`, or run.history() frames with a run column: one row per run and step, the run
  column run_id (--run names another), the step column _step (--step), one column per metric.
  Columns starting with '_' (W&B's _runtime, _timestamp) are not metrics; nor are non-numeric ones.
  --config names columns that are run attributes (constant per run) rather than metrics.
- a local run directory, as W&B writes it (WANDB_MODE=offline gives wandb/offline-run-*/): every
  run-*.wandb file in it or below it, or one such file. Its records (the LevelDB log format, each a
  protobuf Record whose definition the installed wandb package supplies) give run_id (the W&B run
  id), run_name, the config (one column per key, nested keys joined by '.') and the history.
  A damaged file is skipped with a warning (--strict: an error); a run with no exit record (killed,
  or still running) or a non-zero exit code is kept with a warning.

--runs FILE adds run attributes such as width and seed from a table with one row per run: the W&B
runs table export (Runs, Export as CSV: its "Name" column matches a chart export's runs) or your
own frame with a run_id, id or name column; its column that matches the most runs is the key. Its
bookkeeping columns (State, Created, ...) and summaries of the imported metrics are left out.

Columns: run_id, step, metric, value, then the run attributes; --wide gives one column per metric.
wandb is an optional dependency, needed only for run files and imported only then.
Then, e.g.: scalinglab fit runs.parquet --x width --y value --filter metric=val/loss --run run_id
--epoch step --epoch-rule final
"""

from __future__ import annotations

import argparse
import csv
import warnings
from pathlib import Path

from scalinglab.cli.import_tensorboard import add_output_arguments
from scalinglab.core.errors import UserError, one_line

RUN_COLUMNS = ("run_id", "run", "name", "run_name")  # a history frame's run column, first found
RUNS_KEYS = ("run_id", "ID", "id", "Name", "name", "run_name")  # a --runs table's candidate keys
# the W&B runs table export's bookkeeping columns: not run attributes
RUNS_BOOKKEEPING = {"Name", "ID", "State", "Notes", "User", "Tags", "Created", "Runtime", "Sweep", "Group", "Job Type"}
FRAME_SUFFIXES = (".csv", ".parquet", ".pq", ".json", ".jsonl")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("source", help="a W&B chart CSV export, a history frame, or a wandb/ run directory")
    add_output_arguments(parser)
    parser.add_argument("--runs", metavar="FILE", help="run attributes, one row per run (W&B's runs table export)")
    parser.add_argument("--run", metavar="COL", help="history frames: the run column (default: run_id)")
    parser.add_argument("--step", metavar="COL", help="history frames: the step column (default: _step)")
    parser.add_argument(
        "--config",
        nargs="+",
        action="extend",
        default=[],
        metavar="COL",
        help="history frames: columns that are run attributes (e.g. width seed), not metrics",
    )
    parser.add_argument(
        "--wide",
        action="store_true",
        help="one row per run and step, one column per metric (NaN where a metric was not logged "
        "at that step), instead of metric/value rows",
    )
    parser.add_argument("--strict", action="store_true", help="a damaged run file is an error (default: skip it)")


def run(args: argparse.Namespace) -> int:
    from scalinglab.cli.import_tensorboard import run_import

    options = {"runs": args.runs, "run": args.run, "step": args.step, "config": args.config}
    return run_import(
        "import-wandb",
        args.output,
        lambda: import_source(args.source, **options, wide=args.wide, strict=args.strict),
        {"source": str(Path(args.source).resolve()), **options, "layout": "wide" if args.wide else "long"},
        force=args.force,
    )


def import_source(source: str | Path, runs=None, run=None, step=None, config=(), wide=False, strict=False):
    """The runs table of a W&B export or run directory (module docstring: the forms and rules); `runs`,
    `run`, `step` and `config` are the options --runs, --run, --step and --config."""
    from scalinglab.cli.tensorboard_events import tidy_table

    path = Path(source)
    if not path.exists():
        raise UserError(
            f"{path}: no such file or directory; give a W&B CSV export, a history frame or a wandb/ directory"
        )
    if path.is_dir() or path.suffix == ".wandb":
        from scalinglab.cli.wandb_run_files import read_run_files

        rows, attributes = read_run_files(path, strict)
    elif path.suffix.lower() in FRAME_SUFFIXES:
        header = _csv_header(path) if path.suffix.lower() == ".csv" else []
        if len(header) > 1 and all(" - " in column for column in header[1:]):
            rows, attributes = _read_chart(path)
        elif "Name" in header and ("State" in header or "Created" in header):
            raise UserError(
                f"{path}: a W&B runs table export (one row per run, no history); pass it with --runs to add "
                "its columns, and give a chart export or a history frame as the source"
            )
        else:
            rows, attributes = _read_history(path, run, step, list(config))
    else:
        raise UserError(
            f"{path}: not a W&B export; give a chart CSV export, a history frame (.csv, .parquet, .json) "
            "or a wandb/ run directory"
        )
    if runs is not None:
        attributes.append((" (runs)", _runs_table(Path(runs), {r[0] for r in rows}, {r[2] for r in rows})))
    return tidy_table(rows, attributes, wide=wide)


def _csv_header(path: Path) -> list[str]:
    try:
        with open(path, newline="", encoding="utf-8-sig") as handle:
            return next(csv.reader(handle), [])
    except (UnicodeDecodeError, csv.Error) as exc:
        raise UserError(f"{path}: not a CSV text file ({one_line(exc)}); give a W&B CSV export") from None


def _read_frame(path: Path):
    import pandas as pd

    suffix = path.suffix.lower()
    try:
        if suffix == ".csv":
            frame = pd.read_csv(path, encoding="utf-8-sig")
        elif suffix in (".json", ".jsonl"):
            frame = pd.read_json(path, lines=suffix == ".jsonl")
        else:
            frame = pd.read_parquet(path)
    except Exception as exc:  # pandas and pyarrow raise many types for a file that is not a table
        raise UserError(f"{path}: cannot read it as a table ({one_line(exc)})") from None
    return frame.loc[:, [not str(c).startswith("Unnamed: ") for c in frame.columns]]  # a saved index


def _read_chart(path: Path):
    """A chart's CSV export: (rows, attributes)."""
    import numpy as np
    import pandas as pd

    raw = pd.read_csv(path, header=None, dtype=str, keep_default_na=False, encoding="utf-8-sig")
    header, body = list(raw.iloc[0]), raw.iloc[1:]
    steps = _numbers(body[0], path, header[0])
    if steps.isna().any():
        raise UserError(f"{path}: the x axis column '{header[0]}' has empty cells; is this a chart's CSV export?")
    if header[0] not in ("Step", "_step", "step"):
        warnings.warn(f"{path}: the chart's x axis is '{header[0]}', not Step; the step column holds it", stacklevel=3)
    seen: dict[tuple[str, str], int] = {}
    latest: dict[str, str] = {}  # base column -> its run_id
    lows, averaged = {}, {}  # base column -> its __MIN values; run_id -> points where __MIN != __MAX
    rows, duplicates = [], set()
    for index, column in enumerate(header[1:], start=1):
        values = _numbers(body[index], path, column)
        base, _, bound = column.rpartition("__")
        if bound in ("MIN", "MAX") and base in latest:
            if bound == "MIN":
                lows[base] = values
            elif base in lows:
                differ = ~np.isclose(lows[base], values, rtol=1e-9, equal_nan=True)
                averaged[latest[base]] = averaged.get(latest[base], 0) + int(differ.sum())
            continue
        name, _, metric = column.rpartition(" - ")
        count = seen[(name, metric)] = seen.get((name, metric), 0) + 1
        run_id = latest[column] = name if count == 1 else f"{name} #{count}"
        if count > 1:
            duplicates.add(name)
        present = values.notna().to_numpy()
        rows += zip([run_id] * int(present.sum()), steps[present], [metric] * int(present.sum()), values[present])
    if duplicates:
        warnings.warn(
            f"{path}: several runs are named {', '.join(map(repr, sorted(duplicates)))}; the later ones are "
            "'<name> #2', ... in column order (rename the runs to tell them apart)",
            stacklevel=3,
        )
    if any(averaged.values()):
        example = max(averaged, key=averaged.get)
        warnings.warn(
            f"{path}: {sum(averaged.values())} points are averages over several logged values (their __MIN and "
            f"__MAX differ; e.g. {averaged[example]} of run '{example}'): a grouped or downsampled chart; "
            "export the history with the W&B API for the logged values",
            stacklevel=3,
        )
    if not rows:
        raise UserError(f"{path}: no values in this chart export")
    return rows, []


def _numbers(column, path: Path, name: str):
    import pandas as pd

    try:
        return pd.to_numeric(column.replace("", None)).astype("float64")
    except (ValueError, TypeError):
        bad = next(v for v in column if v and pd.to_numeric(pd.Series([v]), errors="coerce").isna().all())
        raise UserError(f"{path}: column '{name}' holds '{bad}', not a number; is this a chart's CSV export?") from None


def _read_history(path: Path, run: str | None, step: str | None, config: list[str]):
    """A history frame: (rows, attributes)."""
    import pandas as pd

    frame = _read_frame(path)
    columns = [str(c) for c in frame.columns]
    listed = ", ".join(columns[:12]) + (", ..." if len(columns) > 12 else "")
    run = run or next((c for c in RUN_COLUMNS if c in columns), None)
    if run is None or run not in columns:
        raise UserError(
            f"{path}: not a W&B export: no run column ({run or 'run_id'}; name it with --run) and no "
            f"'<run> - <metric>' columns; its columns: {listed}"
        )
    step = step or "_step"
    for name, option in [(step, "--step"), *((c, "--config") for c in config)]:
        if name not in columns:
            raise UserError(f"{path}: no column '{name}' ({option}); its columns: {listed}")
    frame = frame[frame[step].notna()]
    frame = frame.assign(**{run: frame[run].astype(str)})
    metrics, skipped = [], []
    for column in columns:
        if column in (run, step, *config) or column.startswith("_"):
            continue
        kind = frame[column].dtype
        numeric = pd.api.types.is_numeric_dtype(kind) and not pd.api.types.is_bool_dtype(kind)
        (metrics if numeric else skipped).append(column)
    if skipped:
        warnings.warn(f"{path}: columns {', '.join(skipped)} are not numbers; left out", stacklevel=3)
    if not metrics:
        raise UserError(f"{path}: no metric columns (numbers) besides '{run}' and '{step}'")
    long = frame.melt(id_vars=[run, step], value_vars=metrics, var_name="metric", value_name="value")
    long = long[long["value"].notna()]
    rows = list(zip(long[run], long[step], long["metric"], long["value"]))
    attributes = {}
    for run_id, group in frame.groupby(run, sort=False):
        attributes[run_id] = {}
        for column in config:
            values = group[column].dropna()
            if values.nunique() > 1:
                warnings.warn(f"run '{run_id}': --config column '{column}' varies; kept its last value", stacklevel=3)
            if len(values):
                attributes[run_id][column] = values.iloc[-1]
    return rows, [(" (config)", attributes)]


def _runs_table(path: Path, run_ids: set[str], metrics: set[str]) -> dict[str, dict[str, object]]:
    """--runs: the attributes of each imported run from a table with one row per run."""
    import pandas as pd

    if not path.is_file() or path.suffix.lower() not in FRAME_SUFFIXES:
        raise UserError(
            f"--runs {path}: no such file; give a table (.csv, .parquet, .json), e.g. the runs table export"
        )
    frame = _read_frame(path)
    matches = {key: len(run_ids & set(frame[key].astype(str))) for key in RUNS_KEYS if key in frame.columns}
    key = max(matches, key=matches.get, default=None)
    if key is None or not matches[key]:
        raise UserError(f"--runs {path}: none of its columns {', '.join(RUNS_KEYS)} holds the imported runs' ids")
    frame = frame.assign(**{key: frame[key].astype(str)})
    repeated = set(frame.loc[frame[key].duplicated(), key]) & run_ids
    if repeated:
        warnings.warn(
            f"--runs {path}: several rows for run(s) {', '.join(map(repr, sorted(repeated)))}; "
            "their attributes are left out",
            stacklevel=3,
        )
    keep = [
        c for c in frame.columns if c not in RUNS_BOOKKEEPING | set(RUNS_KEYS) | metrics and not str(c).startswith("_")
    ]
    rows = frame[frame[key].isin(run_ids - repeated)].drop_duplicates(key)
    missing = run_ids - set(rows[key]) - repeated
    if missing:
        warnings.warn(
            f"--runs {path}: {len(missing)} imported run(s) not in it (e.g. '{sorted(missing)[0]}'); "
            "their attributes are empty",
            stacklevel=3,
        )
    return {
        run_id: {c: v for c, v in values.items() if not pd.isna(v)}
        for run_id, values in rows.set_index(key)[keep].to_dict("index").items()
    }
