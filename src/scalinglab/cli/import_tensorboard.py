"""`scalinglab import-tensorboard LOGDIR -o runs.parquet`: TensorBoard event files -> a runs table.

One run per writer directory; run_id is the directory relative to LOGDIR when it holds only that
writer's event file, else the file's relative path. Columns run_id, step, metric, value, one column
per text tag ('Model size'), numeric when its values are numbers, and one per hparam
(SummaryWriter.add_hparams: its sub-directory folds into the writer's run, its metrics become rows);
--wide gives one column per metric. Then, e.g.: scalinglab fit runs.parquet --x "Model size" --y value
--filter metric=Loss/validation --run run_id --epoch step --epoch-rule final

`run_import` (checking -o, printing warnings, writing the Parquet with its provenance) is shared by
import-wandb and import-mlflow.
"""

from __future__ import annotations

import argparse
import errno
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from scalinglab.core.errors import UserError

if TYPE_CHECKING:
    import pandas as pd

PARQUET_SUFFIXES = (".parquet", ".pq")


def add_output_arguments(parser: argparse.ArgumentParser) -> None:
    """-o FILE and --force, shared by the import commands."""
    parser.add_argument("-o", "--output", required=True, metavar="FILE", help="the runs table to write (.parquet)")
    parser.add_argument(
        "--force",
        action="store_true",
        help="replace FILE even when it exists and is not this command's earlier output",
    )


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("logdir", help="TensorBoard log directory (searched recursively for *tfevents* files)")
    add_output_arguments(parser)
    parser.add_argument(
        "--wide",
        action="store_true",
        help="one row per run and step, one column per metric (NaN where a metric was not logged "
        "at that step), instead of metric/value rows",
    )
    parser.add_argument(
        "--strict",
        action="store_true",
        help="a truncated or corrupted event file is an error (default: skip it with a warning)",
    )


def run(args: argparse.Namespace) -> int:
    from scalinglab.cli import tensorboard_events as tensorboard_import

    return run_import(
        "import-tensorboard",
        args.output,
        lambda: tensorboard_import.import_logdir(args.logdir, wide=args.wide, strict=args.strict),
        {
            "logdir": str(Path(args.logdir).resolve()),
            "layout": "wide" if args.wide else "long",
            "strict": args.strict,
        },
        force=args.force,
    )


def check_output(output: Path, command: str = "", force: bool = False) -> None:
    """A one-line UserError unless `output` can be a Parquet file (checked before any reading). An
    existing file is replaced only if this command wrote it (its provenance says so) or with --force:
    `-o results/tables/teacher_student.parquet` must not silently replace a workflow's table."""
    if output.suffix.lower() not in PARQUET_SUFFIXES:
        raise UserError(f"-o {output}: the runs table is written as Parquet; give a name ending in .parquet")
    if output.is_dir():
        raise UserError(f"-o {output}: is a directory; give a file name ending in .parquet")
    for parent in output.parents:
        if parent.exists():
            if not parent.is_dir():
                raise UserError(f"-o {output}: {parent} is a file, not a directory; choose another output path")
            break
    if output.exists() and not force and _written_by(output) != command:
        raise UserError(
            f"-o {output}: the file exists and was not written by scalinglab {command}; "
            "choose another name, or give --force to replace it"
        )


def _written_by(path: Path) -> str | None:
    """The import command recorded in a Parquet file's provenance, or None."""
    import json

    import pyarrow.parquet as pq

    from scalinglab.core.io import PROVENANCE_KEY

    try:
        meta = pq.read_schema(path).metadata or {}
        return json.loads(meta.get(PROVENANCE_KEY, b"{}")).get("command")
    except Exception:  # not Parquet, damaged, or no provenance: not ours
        return None


def run_import(
    command: str, output: str | Path, load: Callable[[], pd.DataFrame], provenance: dict, force: bool = False
) -> int:
    """Check -o, build the table with `load()`, print its warnings as 'scalinglab COMMAND: warning: ...'
    lines, write it with `provenance` (plus the command, warnings, version and time) and say what it wrote."""
    from scalinglab import __version__

    output = Path(output)
    check_output(output, command, force)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            table = load()
        finally:  # warnings explain a UserError too (the files skipped before it), so print them first
            for warning in caught:
                print(f"scalinglab {command}: warning: {warning.message}", file=sys.stderr)

    provenance = {
        "command": command,
        **provenance,
        "warnings": [str(w.message) for w in caught],
        "scalinglab_version": __version__,
        "written_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    _write(table, output, provenance)
    runs = table["run_id"].nunique()
    print(f"wrote {len(table)} rows from {runs} runs to {output}; columns: {', '.join(map(str, table.columns))}")
    return 0


def _write(table: pd.DataFrame, output: Path, provenance: dict) -> None:
    from scalinglab.core import io

    try:
        io.write_parquet(table, output, provenance=provenance)
    except OSError as exc:
        text = str(exc)
        if exc.errno == errno.ENOSPC or "No space left" in text or "errno 28" in text:
            raise UserError(
                f"-o {output}: cannot write it: no space left on device; free some space or write elsewhere"
            ) from None
        if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
            raise UserError(
                f"-o {output}: cannot write it: {(exc.strerror or 'permission denied').lower()}; choose a writable path"
            ) from None
        reason = exc.strerror or (text.splitlines()[0] if text else type(exc).__name__)
        if exc.filename is not None:
            reason = f"{reason}: {exc.filename}"
        raise UserError(f"-o {output}: cannot write it ({reason}); choose another output path") from None
