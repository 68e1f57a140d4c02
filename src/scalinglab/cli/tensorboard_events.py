"""TensorBoard event files -> the tidy runs table that `scalinglab fit` reads.

One run per writer directory: its `run_id` is the directory relative to LOGDIR (TensorBoard's own
run name). Several event files in one directory are one run written in parts, a preempted writer
resumed by a new one: their scalars are joined in the order the files were started, a step logged
again keeps its last value, and a warning says so. Event files lying directly in LOGDIR are runs of
their own, named by the file. Paths are written with '/' on every platform.

Hyperparameters: the HParams plugin's session_start_info (PyTorch's SummaryWriter.add_hparams,
TensorFlow's hp.hparams) becomes one column per hparam. add_hparams writes them with their metrics
into an event file of their own, in a sub-directory of the writer's (named by the time, or its
run_name); such an hparams sub-run (a file whose scalars, if any, are only the metrics its hparams
experiment names) folds into its writer's run: the nearest event file beside it or one directory up,
the one of those started last before it. Its hparam metrics become rows of that run (add_hparams
logs them at step 0 unless given global_step). A sub-run with no writer there is a run of its own.
Numbers that are whole become integers; a run keeps the last value written for an hparam.

Long layout (default): one row per logged scalar, columns run_id, step, metric, value, then one
column per text tag (a run attribute such as 'Model size', repeated on each of the run's rows), then
one per hparam. Wide layout: one row per run and step, one column per scalar tag, then the text tags
and hparams; a metric not logged at a step is NaN there.

Text tags: PyTorch's SummaryWriter.add_text stores the tag 'X' as 'X/text_summary'; the suffix is
dropped. A run keeps the last value it wrote for a tag. A text column whose values all parse as
numbers becomes numeric.

A truncated or corrupted event file is skipped with a warning naming it (or, with strict, is an
error): its readable prefix would look like a complete run whose final epoch is an earlier one.

`tidy_table` builds the table from (run_id, step, metric, value) rows and per-run attributes; the
other importers (import-wandb, import-mlflow) use it too, so all runs tables look alike.

tensorboard is an optional dependency, imported only here and only when used.
"""

from __future__ import annotations

import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from scalinglab.core.errors import UserError, needs_package

LONG_COLUMNS = ("run_id", "step", "metric", "value")
TORCH_TEXT_SUFFIX = "/text_summary"
HPARAMS_PLUGIN = "hparams"
# An event file record: 8-byte length, 4-byte CRC of the length, the data, 4-byte CRC of the data.
RECORD_OVERHEAD_BYTES = 16


class CorruptEventFile(Exception):
    """The file cannot be read to its end: truncated, a failed checksum, or a record that is not an Event."""


@dataclass
class EventFileContents:
    scalars: list[tuple[str, int, float]] = field(default_factory=list)  # (tag, step, value), file order
    texts: dict[str, list[str]] = field(default_factory=dict)  # tag -> values, file order
    hparams: dict[str, object] | None = None  # the session_start_info's hparams, if the file holds one
    hparam_metrics: set[str] = field(default_factory=set)  # the metric tags its hparams experiment names
    started: float | None = None  # wall time of its first event

    @property
    def is_hparams_subrun(self) -> bool:
        """Only hparams and their metrics: what add_hparams writes into a directory of its own."""
        return self.hparams is not None and {tag for tag, _, _ in self.scalars} <= self.hparam_metrics


def _tensorboard():
    """The tensorboard modules this importer uses, or a one-line UserError saying how to get them."""
    hint = (
        "reading TensorBoard logs needs the tensorboard package: pip install tensorboard "
        "(or pip install 'scalinglab[tensorboard]')"
    )
    with needs_package("tensorboard", hint):
        from tensorboard.backend.event_processing import event_file_loader
        from tensorboard.compat.proto import event_pb2, summary_pb2
        from tensorboard.plugins.hparams import plugin_data_pb2
        from tensorboard.util import tensor_util
    return event_file_loader, event_pb2, summary_pb2, tensor_util, plugin_data_pb2


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
    """The run_id of each event file (see the module docstring for the rule); hparams sub-runs left out
    of `files` do not count."""
    logdir = Path(logdir)
    if logdir.is_file():
        return {path: path.name for path in files}
    ids = {}
    for path in files:
        directory = path.parent.relative_to(logdir)
        ids[path] = (directory if directory != Path(".") else path.relative_to(logdir)).as_posix()
    return ids


def read_event_file(path: str | Path) -> EventFileContents:
    """The scalars, text values and hparams in one event file; CorruptEventFile if it cannot be read to its end."""
    event_file_loader, event_pb2, summary_pb2, tensor_util, plugin_data_pb2 = _tensorboard()
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
            if contents.started is None:
                contents.started = float(event.wall_time)
            if not event.HasField("summary"):
                continue
            for value in event.summary.value:
                if value.metadata.plugin_data.plugin_name == HPARAMS_PLUGIN:
                    _read_hparams(value.metadata.plugin_data.content, contents, plugin_data_pb2)
                    continue
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


def _read_hparams(content: bytes, contents: EventFileContents, plugin_data_pb2) -> None:
    """The HParams plugin's data: session_start_info holds a run's hparams, experiment its metric tags."""
    data = plugin_data_pb2.HParamsPluginData.FromString(content)
    kind = data.WhichOneof("data")
    if kind == "session_start_info":
        hparams = {name: _hparam_value(value) for name, value in data.session_start_info.hparams.items()}
        contents.hparams = {**(contents.hparams or {}), **dict(sorted(hparams.items()))}
    elif kind == "experiment":
        contents.hparam_metrics |= {info.name.tag for info in data.experiment.metric_infos}


def _hparam_value(value) -> object:
    """A google.protobuf.Value as a number (whole numbers as int), string or bool; None for anything else."""
    kind = value.WhichOneof("kind")
    if kind == "number_value":
        number = float(value.number_value)
        return int(number) if number.is_integer() and abs(number) < 2**53 else number
    if kind == "string_value":
        return value.string_value
    if kind == "bool_value":
        return bool(value.bool_value)
    return None


def _kind(metadata, summary_pb2) -> str | None:
    plugin = metadata.plugin_data.plugin_name
    if metadata.data_class == summary_pb2.DATA_CLASS_SCALAR or plugin == "scalars":
        return "scalar"
    if plugin == "text":
        return "text"
    return None  # images, histograms, graphs: not part of a runs table


def _start_time(path: Path, contents: EventFileContents | None) -> float:
    """When a writer started its file: its first event's wall time, else the time in its name."""
    if contents is not None and contents.started is not None:
        return contents.started
    found = re.search(r"tfevents\.(\d+)", path.name)
    return float(found.group(1)) if found else 0.0


def fold_hparams_subruns(
    files: list[Path], contents: dict[Path, EventFileContents | None], logdir: str | Path
) -> dict[Path, str]:
    """The run_id of each event file, an hparams sub-run's being its writer's (module docstring: the
    rule); a directory's sub-runs do not count among its event files. `contents` is None for a file
    that could not be read; such a file can still be a writer."""
    subruns = {path for path in files if contents.get(path) is not None and contents[path].is_hparams_subrun}
    if len(files) == 1:
        subruns = set()
    by_directory: dict[Path, list[Path]] = {}
    for path in files:
        if path not in subruns:
            by_directory.setdefault(path.parent, []).append(path)
    writer_of: dict[Path, Path] = {}
    for path in sorted(subruns):
        started = _start_time(path, contents[path])
        for directory in (path.parent, path.parent.parent):
            writers = sorted(by_directory.get(directory, []), key=lambda p: _start_time(p, contents.get(p)))
            if writers:
                before = [p for p in writers if _start_time(p, contents.get(p)) <= started]
                writer_of[path] = (before or writers)[-1]
                break
    ids = run_ids([path for path in files if path not in writer_of], logdir)
    return {path: ids[writer_of.get(path, path)] for path in files}


def import_logdir(logdir: str | Path, wide: bool = False, strict: bool = False) -> pd.DataFrame:
    """The runs table of every event file under `logdir` (module docstring: layout and rules).

    Problems that do not stop the import (a skipped corrupted file, a run with no scalars, repeated
    steps, a text tag or hparam with several values) are reported with warnings.warn."""
    logdir = Path(logdir)
    files = find_event_files(logdir)
    contents: dict[Path, EventFileContents | None] = {}
    for path in files:
        try:
            contents[path] = read_event_file(path)
        except CorruptEventFile as exc:
            if strict:
                raise UserError(f"{path}: {exc}; remove or repair it, or import without --strict to skip it") from None
            warnings.warn(f"{path}: {exc}; skipped this run (--strict makes this an error)", stacklevel=2)
            contents[path] = None
    ids = fold_hparams_subruns(files, contents, logdir)
    skipped = {ids[path] for path in files if contents[path] is None}  # a damaged writer takes its sub-runs along
    members: dict[str, list[Path]] = {}  # run_id -> its files: the writer's, then its sub-runs by start time
    subrun = {path: contents[path] is not None and contents[path].is_hparams_subrun for path in files}
    for path in sorted(files, key=lambda p: (subrun[p], _start_time(p, contents[p]))):
        if ids[path] not in skipped:
            members.setdefault(ids[path], []).append(path)
    scalar_rows: list[tuple[str, int, str, float]] = []
    texts: dict[str, dict[str, str]] = {}  # run_id -> tag -> value
    hparams: dict[str, dict[str, object]] = {}  # run_id -> hparam -> value
    for run_id, paths in members.items():
        writers = [path for path in paths if not subrun[path]]
        if len(writers) > 1:
            warnings.warn(
                f"run '{run_id}': {len(writers)} event files in one directory, joined as one run in the order "
                "they were started (a resumed writer)",
                stacklevel=2,
            )
        rows = [(run_id, step, tag, value) for path in paths for tag, step, value in contents[path].scalars]
        if not rows:
            warnings.warn(f"{paths[0]}: no scalars in it; run '{run_id}' left out", stacklevel=2)
            continue
        scalar_rows += rows
        texts[run_id] = {}
        for path in paths:
            for tag, values in contents[path].texts.items():
                name = tag[: -len(TORCH_TEXT_SUFFIX)] if tag.endswith(TORCH_TEXT_SUFFIX) else tag
                if len(set(values)) > 1:
                    warnings.warn(
                        f"{path}: text tag '{tag}' has {len(set(values))} different values; "
                        f"kept the last, '{values[-1]}'",
                        stacklevel=2,
                    )
                texts[run_id][name] = values[-1]
        hparams[run_id] = _merge_hparams(run_id, [contents[path].hparams or {} for path in paths])
    if not scalar_rows:
        raise UserError(
            f"{logdir}: no readable scalars in its {len(files)} event file(s) "
            "(the warnings above say why for each skipped file)"
        )
    return tidy_table(scalar_rows, [(" (text)", texts), (" (hparam)", hparams)], wide=wide)


def _merge_hparams(run_id: str, parts: list[dict[str, object]]) -> dict[str, object]:
    merged: dict[str, object] = {}
    for part in parts:
        for name, value in part.items():
            if name in merged and merged[name] != value:
                warnings.warn(
                    f"run '{run_id}': hparam '{name}' was written as {merged[name]!r} and as {value!r}; kept {value!r}",
                    stacklevel=3,
                )
            merged[name] = value
    return merged


def tidy_table(
    rows: list[tuple[str, float, str, float]],
    attributes: list[tuple[str, dict[str, dict[str, object]]]],
    wide: bool = False,
) -> pd.DataFrame:
    """The runs table from (run_id, step, metric, value) rows and run attributes.

    `attributes` holds (suffix, {run_id: {name: value}}) groups, each becoming one column per name
    (sorted within the group; a name that clashes with a column already there gets the suffix).
    Steps that are all whole numbers become int64. The last value written for a run, metric and
    step is kept, with a warning."""
    long = pd.DataFrame(rows, columns=list(LONG_COLUMNS))
    long = long.astype({"run_id": str, "metric": str, "value": "float64"})
    steps = pd.to_numeric(long["step"]).astype("float64")
    whole = bool(np.isfinite(steps).all() and (steps == np.round(steps)).all())
    long["step"] = steps.astype("int64") if whole else steps
    long = _drop_rewritten_steps(long)
    table = _pivot_wide(long) if wide else long.sort_values(["run_id", "metric", "step"], kind="mergesort")
    table = table.reset_index(drop=True)
    for suffix, per_run in attributes:
        table = _attach(table, per_run, suffix)
    return table


def _drop_rewritten_steps(long: pd.DataFrame) -> pd.DataFrame:
    """Keep the last value written for each run, metric and step (a resumed run logs some steps again)."""
    repeated = long.duplicated(subset=["run_id", "metric", "step"], keep="last")
    if repeated.any():
        example = long.loc[repeated].iloc[0]
        warnings.warn(
            f"{int(repeated.sum())} scalars were logged again at a step their run had already logged "
            f"(e.g. run '{example.run_id}', '{example.metric}' at step {example.step}); kept the last value written",
            stacklevel=4,
        )
    return long.loc[~repeated]


def _pivot_wide(long: pd.DataFrame) -> pd.DataFrame:
    metrics = sorted(long["metric"].unique())
    taken = {"run_id", "step"}
    names = {metric: _free_name(metric, taken, " (scalar)") for metric in metrics}
    wide = long.pivot(index=["run_id", "step"], columns="metric", values="value").reset_index()
    wide.columns.name = None
    return wide.rename(columns=names)[["run_id", "step", *(names[m] for m in metrics)]]


def _attach(table: pd.DataFrame, per_run: dict[str, dict[str, object]], suffix: str) -> pd.DataFrame:
    names = sorted({name for values in per_run.values() for name in values})
    taken = set(table.columns)
    for name in names:
        column = _free_name(name, taken, suffix)
        values = {run_id: values[name] for run_id, values in per_run.items() if name in values}
        table[column] = _numeric_if_possible(table["run_id"].map(values))
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
    """Numbers when every present value parses as one ('1000' -> 1000), else the values unchanged
    (as strings where they mix types, which a Parquet column cannot)."""
    present = values.dropna()
    try:
        numbers = pd.to_numeric(present)
    except (ValueError, TypeError):
        numbers = None
    if numbers is not None and np.issubdtype(numbers.dtype, np.number) and not pd.api.types.is_bool_dtype(numbers):
        if not any(isinstance(value, bool) for value in present):
            return pd.to_numeric(values)
    if len({type(value) for value in present}) > 1:
        return values.map(lambda value: None if pd.isna(value) else str(value))
    return values
