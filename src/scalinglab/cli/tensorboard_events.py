"""TensorBoard event files -> the tidy runs table that `scalinglab fit` reads.

One run per event file. Its `run_id` is the file's directory relative to LOGDIR when that directory
holds exactly this one event file (TensorBoard's own run name in the usual one-writer-per-directory
layout), else the file's path relative to LOGDIR (several files in one directory, or files lying
directly in LOGDIR). Paths are written with '/' on every platform.

Long layout (default): one row per logged scalar, columns run_id, step, metric, value, then one
column per text tag (a run attribute such as 'Model size', repeated on each of the run's rows).
Wide layout: one row per run and step, one column per scalar tag, then the text tags; a metric not
logged at a step is NaN there.

Text tags: PyTorch's SummaryWriter.add_text stores the tag 'X' as 'X/text_summary'; the suffix is
dropped. A run keeps the last value it wrote for a tag. A text column whose values all parse as
numbers becomes numeric.

A truncated or corrupted event file is skipped with a warning naming it (or, with strict, is an
error): its readable prefix would look like a complete run whose final epoch is an earlier one.

tensorboard is an optional dependency, imported only here and only when used.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from scalinglab.core.errors import UserError

LONG_COLUMNS = ("run_id", "step", "metric", "value")
TORCH_TEXT_SUFFIX = "/text_summary"
# An event file record: 8-byte length, 4-byte CRC of the length, the data, 4-byte CRC of the data.
RECORD_OVERHEAD_BYTES = 16


class CorruptEventFile(Exception):
    """The file cannot be read to its end: truncated, a failed checksum, or a record that is not an Event."""


@dataclass
class EventFileContents:
    scalars: list[tuple[str, int, float]] = field(default_factory=list)  # (tag, step, value), file order
    texts: dict[str, list[str]] = field(default_factory=dict)  # tag -> values, file order


def _tensorboard():
    """The tensorboard modules this importer uses, or a one-line UserError saying how to get them."""
    try:
        from tensorboard.backend.event_processing import event_file_loader
        from tensorboard.compat.proto import event_pb2, summary_pb2
        from tensorboard.util import tensor_util
    except ModuleNotFoundError as exc:
        if not (exc.name or "tensorboard").startswith("tensorboard"):
            raise
        raise UserError(
            "reading TensorBoard logs needs the tensorboard package: pip install tensorboard "
            "(or pip install 'scalinglab[tensorboard]')"
        ) from None
    return event_file_loader, event_pb2, summary_pb2, tensor_util


def find_event_files(logdir: str | Path) -> list[Path]:
    """Every TensorBoard event file under `logdir` (a name containing 'tfevents'), sorted by path.

    `logdir` may also be one event file."""
    logdir = Path(logdir)
    if not logdir.exists():
        raise UserError(f"{logdir}: no such directory; give the TensorBoard log directory (tensorboard's --logdir)")
    if logdir.is_file():
        if "tfevents" not in logdir.name:
            raise UserError(
                f"{logdir}: not a TensorBoard event file (no 'tfevents' in its name); give the log directory"
            )
        return [logdir]
    files = sorted(path for path in logdir.rglob("*") if "tfevents" in path.name and path.is_file())
    if not files:
        raise UserError(f"{logdir}: no TensorBoard event files (names containing 'tfevents') in it or below it")
    return files


def run_ids(files: list[Path], logdir: str | Path) -> dict[Path, str]:
    """The run_id of each event file (see the module docstring for the rule)."""
    logdir = Path(logdir)
    if logdir.is_file():
        return {path: path.name for path in files}
    per_directory: dict[Path, int] = {}
    for path in files:
        per_directory[path.parent] = per_directory.get(path.parent, 0) + 1
    ids = {}
    for path in files:
        directory = path.parent.relative_to(logdir)
        alone = per_directory[path.parent] == 1 and directory != Path(".")
        ids[path] = (directory if alone else path.relative_to(logdir)).as_posix()
    return ids


def read_event_file(path: str | Path) -> EventFileContents:
    """The scalars and text values in one event file; CorruptEventFile if it cannot be read to its end."""
    event_file_loader, event_pb2, summary_pb2, tensor_util = _tensorboard()
    path = Path(path)
    size = path.stat().st_size
    consumed = start = 0  # bytes read so far; where the current record starts
    contents = EventFileContents()
    # tag -> "scalar", "text" or None; a writer may attach the metadata to a tag's first value only
    kinds: dict[str, str | None] = {}
    try:
        # The loader stops quietly at a truncated record or a failed checksum (a live writer may be
        # mid-record); counting the bytes it consumed is how we notice that it stopped early.
        for record in event_file_loader.RawEventFileLoader(str(path)).Load():
            start, consumed = consumed, consumed + len(record) + RECORD_OVERHEAD_BYTES
            event = event_pb2.Event.FromString(record)
            if not event.HasField("summary"):
                continue
            for value in event.summary.value:
                field_name = value.WhichOneof("value")
                if field_name == "simple_value":  # the old scalar format (torch's default): read it directly
                    contents.scalars.append((value.tag, int(event.step), float(value.simple_value)))
                    continue
                if field_name != "tensor":  # old-style images, histograms, audio: not run data
                    continue
                if value.tag not in kinds:
                    kinds[value.tag] = _kind(value.metadata, summary_pb2)
                kind = kinds[value.tag]
                if kind == "scalar":
                    array = tensor_util.make_ndarray(value.tensor)
                    contents.scalars.append((value.tag, int(event.step), float(array.reshape(-1)[0])))
                elif kind == "text":
                    array = tensor_util.make_ndarray(value.tensor).reshape(-1)
                    if array.size == 1:  # a table of text is not a run attribute
                        text = array[0]
                        text = text.decode("utf-8", errors="replace") if isinstance(text, bytes) else str(text)
                        contents.texts.setdefault(value.tag, []).append(text.strip())
    except Exception as exc:  # protobuf and the record reader raise several types for damaged data
        reason = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
        raise CorruptEventFile(f"unreadable record at byte {start} of {size} ({reason})") from None
    if consumed != size:
        raise CorruptEventFile(f"truncated or corrupted: records end at byte {consumed} of {size}")
    return contents


def _kind(metadata, summary_pb2) -> str | None:
    plugin = metadata.plugin_data.plugin_name
    if metadata.data_class == summary_pb2.DATA_CLASS_SCALAR or plugin == "scalars":
        return "scalar"
    if plugin == "text":
        return "text"
    return None  # images, histograms, graphs, hparams: not part of a runs table


def import_logdir(logdir: str | Path, wide: bool = False, strict: bool = False) -> pd.DataFrame:
    """The runs table of every event file under `logdir` (module docstring: layout and rules).

    Problems that do not stop the import (a skipped corrupted file, a run with no scalars, repeated
    steps, a text tag with several values) are reported with warnings.warn."""
    logdir = Path(logdir)
    files = find_event_files(logdir)
    ids = run_ids(files, logdir)
    scalar_rows: list[tuple[str, int, str, float]] = []
    texts: dict[str, dict[str, str]] = {}  # run_id -> tag -> value
    for path in files:
        run_id = ids[path]
        try:
            contents = read_event_file(path)
        except CorruptEventFile as exc:
            if strict:
                raise UserError(f"{path}: {exc}; remove or repair it, or import without --strict to skip it") from None
            warnings.warn(f"{path}: {exc}; skipped this run (--strict makes this an error)", stacklevel=2)
            continue
        if not contents.scalars:
            warnings.warn(f"{path}: no scalars in it; run '{run_id}' left out", stacklevel=2)
            continue
        scalar_rows += [(run_id, step, tag, value) for tag, step, value in contents.scalars]
        texts[run_id] = {}
        for tag, values in contents.texts.items():
            name = tag[: -len(TORCH_TEXT_SUFFIX)] if tag.endswith(TORCH_TEXT_SUFFIX) else tag
            if len(set(values)) > 1:
                warnings.warn(
                    f"{path}: text tag '{tag}' has {len(set(values))} different values; kept the last, '{values[-1]}'",
                    stacklevel=2,
                )
            texts[run_id][name] = values[-1]
    if not scalar_rows:
        raise UserError(
            f"{logdir}: no readable scalars in its {len(files)} event file(s) "
            "(the warnings above say why for each skipped file)"
        )

    long = pd.DataFrame(scalar_rows, columns=list(LONG_COLUMNS))
    long = long.astype({"run_id": str, "step": "int64", "metric": str, "value": "float64"})
    long = _drop_rewritten_steps(long)
    table = _pivot_wide(long) if wide else long.sort_values(["run_id", "metric", "step"], kind="mergesort")
    table = _attach_texts(table.reset_index(drop=True), texts)
    return table


def _drop_rewritten_steps(long: pd.DataFrame) -> pd.DataFrame:
    """Keep the last value written for each run, metric and step (a resumed run logs some steps again)."""
    repeated = long.duplicated(subset=["run_id", "metric", "step"], keep="last")
    if repeated.any():
        example = long.loc[repeated].iloc[0]
        warnings.warn(
            f"{int(repeated.sum())} scalars were logged again at a step their run had already logged "
            f"(e.g. run '{example.run_id}', '{example.metric}' at step {example.step}); kept the last value written",
            stacklevel=3,
        )
    return long.loc[~repeated]


def _pivot_wide(long: pd.DataFrame) -> pd.DataFrame:
    metrics = sorted(long["metric"].unique())
    taken = {"run_id", "step"}
    names = {metric: _free_name(metric, taken, " (scalar)") for metric in metrics}
    wide = long.pivot(index=["run_id", "step"], columns="metric", values="value").reset_index()
    wide.columns.name = None
    return wide.rename(columns=names)[["run_id", "step", *(names[m] for m in metrics)]]


def _attach_texts(table: pd.DataFrame, texts: dict[str, dict[str, str]]) -> pd.DataFrame:
    tags = sorted({tag for per_run in texts.values() for tag in per_run})
    taken = set(table.columns)
    for tag in tags:
        name = _free_name(tag, taken, " (text)")
        per_run = {run_id: per_run[tag] for run_id, per_run in texts.items() if tag in per_run}
        table[name] = _numeric_if_possible(table["run_id"].map(per_run))
    return table


def _free_name(name: str, taken: set[str], suffix: str) -> str:
    """`name`, or `name` + suffix when a column of that name exists already (a text tag called 'step')."""
    if name in taken:
        warnings.warn(
            f"tag '{name}' clashes with a column of that name; it is the column '{name}{suffix}'", stacklevel=3
        )
        name = f"{name}{suffix}"
    taken.add(name)
    return name


def _numeric_if_possible(values: pd.Series) -> pd.Series:
    """Numbers when every present value parses as one ('1000' -> 1000), else the strings unchanged."""
    present = values.dropna()
    try:
        numbers = pd.to_numeric(present)
    except (ValueError, TypeError):
        return values
    if not (np.issubdtype(numbers.dtype, np.number) and not pd.api.types.is_bool_dtype(numbers)):
        return values
    return pd.to_numeric(values)
