"""`scalinglab import-tensorboard LOGDIR -o runs.parquet`: TensorBoard event files -> a runs table.

One run per event file; run_id is the file's directory relative to LOGDIR when it holds only that
event file, else the file's relative path. Columns run_id, step, metric, value and one column per
text tag ('Model size'), numeric when its values are numbers; --wide gives one column per metric.
Then, e.g.: scalinglab fit runs.parquet --x "Model size" --y value --filter metric=Loss/validation
--run run_id --epoch step --epoch-rule final
"""

from __future__ import annotations

import argparse
import errno
import sys
import time
import warnings
from pathlib import Path

from scalinglab.core.errors import UserError

PARQUET_SUFFIXES = (".parquet", ".pq")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("logdir", help="TensorBoard log directory (searched recursively for *tfevents* files)")
    parser.add_argument("-o", "--output", required=True, metavar="FILE", help="the runs table to write (.parquet)")
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
    from scalinglab import __version__
    from scalinglab.cli import tensorboard_events as tensorboard_import
    from scalinglab.core.io import write_parquet

    output = Path(args.output)
    if output.suffix.lower() not in PARQUET_SUFFIXES:
        raise UserError(f"-o {output}: the runs table is written as Parquet; give a name ending in .parquet")
    if output.is_dir():
        raise UserError(f"-o {output}: is a directory; give a file name ending in .parquet")
    for parent in output.parents:
        if parent.exists():
            if not parent.is_dir():
                raise UserError(f"-o {output}: {parent} is a file, not a directory; choose another output path")
            break

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            table = tensorboard_import.import_logdir(args.logdir, wide=args.wide, strict=args.strict)
        finally:  # warnings explain a UserError too (the files skipped before it), so print them first
            for warning in caught:
                print(f"scalinglab import-tensorboard: warning: {warning.message}", file=sys.stderr)

    provenance = {
        "command": "import-tensorboard",
        "logdir": str(Path(args.logdir).resolve()),
        "layout": "wide" if args.wide else "long",
        "strict": args.strict,
        "warnings": [str(w.message) for w in caught],
        "scalinglab_version": __version__,
        "written_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    try:
        write_parquet(table, output, provenance=provenance)
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

    runs = table["run_id"].nunique()
    print(f"wrote {len(table)} rows from {runs} runs to {output}; columns: {', '.join(map(str, table.columns))}")
    return 0
