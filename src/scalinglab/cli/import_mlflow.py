"""`scalinglab import-mlflow STORE -o runs.parquet`: a local MLflow tracking store -> a runs table.

STORE is an `mlruns` directory (the file store mlflow writes for a file: tracking URI, and by
default before MLflow 3.7) or its file: URI. It is read through mlflow.tracking.MlflowClient: every
active run of every active experiment, or of the experiments named with --experiment (names or ids).

Columns: run_id (MLflow's run id), step, metric, value, one row per value in each metric's history;
then experiment (its name) and run_name; then one column per param, numeric where every value
parses as a number ('64' -> 64). --wide gives one column per metric instead. A metric logged again
at a step keeps its last value (by timestamp), with a warning: mlflow.log_metric without step= logs
every value at step 0. A run that has not FINISHED (running, failed, killed) is kept with a warning:
its last step may not be the last it would have logged.

MLflow 3 refuses a file store unless MLFLOW_ALLOW_FILE_STORE=true; the import sets it while it reads.
mlflow (mlflow-skinny suffices) is an optional dependency, imported only here and only when used.
Then, e.g.: scalinglab fit runs.parquet --x width --y value --filter metric=val_loss --run run_id
--epoch step --epoch-rule final
"""

from __future__ import annotations

import argparse
import os
import warnings
from pathlib import Path
from urllib.parse import urlparse
from urllib.request import url2pathname

from scalinglab.cli.import_tensorboard import add_output_arguments
from scalinglab.core.errors import UserError, needs_package, one_line

ALLOW_FILE_STORE = "MLFLOW_ALLOW_FILE_STORE"
PAGE = 1000


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("store", help="the mlruns directory of a local MLflow tracking store, or its file: URI")
    add_output_arguments(parser)
    parser.add_argument(
        "--experiment",
        nargs="+",
        action="extend",
        default=[],
        metavar="NAME",
        help="only these experiments (names or ids); default: every active experiment",
    )
    parser.add_argument(
        "--wide",
        action="store_true",
        help="one row per run and step, one column per metric (NaN where a metric was not logged "
        "at that step), instead of metric/value rows",
    )


def run(args: argparse.Namespace) -> int:
    from scalinglab.cli.import_tensorboard import run_import

    return run_import(
        "import-mlflow",
        args.output,
        lambda: import_store(args.store, args.experiment, wide=args.wide),
        {
            "store": args.store,
            "experiments": args.experiment or "all",
            "layout": "wide" if args.wide else "long",
        },
        force=args.force,
    )


def _mlflow():
    """The mlflow names this importer uses, or a one-line UserError saying how to get them."""
    hint = (
        "reading an MLflow store needs the mlflow package: pip install mlflow-skinny "
        "(or pip install 'scalinglab[mlflow]')"
    )
    with needs_package("mlflow", hint):
        from mlflow.entities import ViewType
        from mlflow.exceptions import MlflowException
        from mlflow.tracking import MlflowClient
    return MlflowClient, MlflowException, ViewType


def store_directory(store: str | Path) -> Path:
    """The store's directory, checked to be an MLflow file store before mlflow opens it (mlflow
    would create a store where there is none)."""
    text = str(store)
    parsed = urlparse(text)
    if parsed.scheme == "file":
        path = Path(url2pathname(parsed.path))
    elif len(parsed.scheme) > 1:  # one letter: a Windows drive
        raise UserError(
            f"{text}: only a local store is read (an mlruns directory or a file: URI), not {parsed.scheme}:"
        )
    else:
        path = Path(text)
    if not path.exists():
        raise UserError(f"{text}: no such directory; give the mlruns directory of a local MLflow store")
    if not path.is_dir():
        raise UserError(f"{text}: not a directory; give the mlruns directory of a local MLflow store")
    if (path / "meta.yaml").is_file():
        raise UserError(
            f"{text}: is one experiment's folder; give the mlruns directory above it "
            f"(and --experiment to import only this one)"
        )
    if not any((child / "meta.yaml").is_file() for child in path.iterdir() if child.is_dir()):
        raise UserError(
            f"{text}: not an MLflow store: no experiment folders (holding a meta.yaml) in it; "
            "give the mlruns directory that mlflow wrote"
        )
    return path


def import_store(store: str | Path, experiments: list[str] | None = None, wide: bool = False):
    """The runs table of a local MLflow store (module docstring: layout and rules)."""
    from scalinglab.cli.tensorboard_events import tidy_table

    directory = store_directory(store)
    MlflowClient, MlflowException, ViewType = _mlflow()
    previous = os.environ.get(ALLOW_FILE_STORE)
    os.environ[ALLOW_FILE_STORE] = "true"
    try:
        with warnings.catch_warnings():  # mlflow's own deprecation notes are not about the runs
            warnings.simplefilter("ignore")
            client = MlflowClient(tracking_uri=directory.resolve().as_uri())
            chosen = _experiments(client, ViewType, store, experiments or [])
            runs = [(experiment, run) for experiment in chosen for run in _runs(client, ViewType, experiment)]
            histories = {
                run.info.run_id: {key: client.get_metric_history(run.info.run_id, key) for key in run.data.metrics}
                for _, run in runs
            }
    except MlflowException as exc:
        raise UserError(f"{store}: mlflow cannot read it ({one_line(exc)})") from None
    except OSError as exc:
        raise UserError(f"{store}: cannot read it ({one_line(exc)})") from None
    finally:
        if previous is None:
            os.environ.pop(ALLOW_FILE_STORE, None)
        else:
            os.environ[ALLOW_FILE_STORE] = previous

    names = ", ".join(f"'{experiment.name}'" for experiment in chosen)
    if not runs:
        raise UserError(f"{store}: no runs in its experiment(s) {names}; log some, or choose others with --experiment")
    rows: list[tuple[str, int, str, float]] = []
    meta: dict[str, dict[str, object]] = {}
    params: dict[str, dict[str, object]] = {}
    for experiment, run in runs:
        run_id, name = run.info.run_id, run.info.run_name
        metrics = histories[run_id]
        if not any(metrics.values()):
            warnings.warn(
                f"run {run_id} ('{name}', experiment '{experiment.name}'): no metrics; left out", stacklevel=2
            )
            continue
        if run.info.status != "FINISHED":
            warnings.warn(
                f"run {run_id} ('{name}'): its status is {run.info.status}, not FINISHED; "
                "its last step may not be the last it would have logged",
                stacklevel=2,
            )
        for key, history in metrics.items():
            ordered = sorted(history, key=lambda m: (m.step, m.timestamp))
            rows += [(run_id, int(m.step), key, float(m.value)) for m in ordered]
        meta[run_id] = {"experiment": experiment.name, "run_name": name}
        params[run_id] = dict(run.data.params)
    if not rows:
        raise UserError(f"{store}: its runs in {names} logged no metrics")
    return tidy_table(rows, [("", meta), (" (param)", params)], wide=wide)


def _experiments(client, ViewType, store, wanted: list[str]) -> list:
    found, token = [], None
    while True:
        page = client.search_experiments(view_type=ViewType.ACTIVE_ONLY, max_results=PAGE, page_token=token)
        found += list(page)
        token = page.token
        if not token:
            break
    found.sort(key=lambda experiment: experiment.name)
    if not wanted:
        return found
    chosen = []
    for name in wanted:
        matches = [e for e in found if name in (e.name, e.experiment_id)]
        if not matches:
            have = ", ".join(f"'{e.name}' ({e.experiment_id})" for e in found)
            raise UserError(f"{store}: no experiment '{name}'; it has {have}")
        chosen += [e for e in matches if e not in chosen]
    return chosen


def _runs(client, ViewType, experiment) -> list:
    found, token = [], None
    while True:
        page = client.search_runs(
            [experiment.experiment_id], run_view_type=ViewType.ACTIVE_ONLY, max_results=PAGE, page_token=token
        )
        found += list(page)
        token = page.token
        if not token:
            break
    return sorted(found, key=lambda run: (run.info.start_time or 0, run.info.run_id))
