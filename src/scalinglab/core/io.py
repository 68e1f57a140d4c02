"""Reading and writing tables and tensors: atomic writes, provenance metadata, clear errors."""

from __future__ import annotations

import errno
import json
import math
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from scalinglab.core.errors import UserError

PROVENANCE_KEY = b"scalinglab"


def _proc_umask() -> int | None:
    """This process's umask from /proc (Linux), read without changing it; None where unavailable."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    return None


def _umask_by_setting() -> int:
    """The umask the only portable way, by setting it and back: not thread-safe, so done once, at import."""
    old = os.umask(0o022)
    os.umask(old)
    return old


_UMASK_AT_IMPORT = _proc_umask()
if _UMASK_AT_IMPORT is None:
    _UMASK_AT_IMPORT = _umask_by_setting()


def output_mode() -> int:
    """The mode open() would give a new file: 0o666 less the umask (read now where /proc has it)."""
    umask = _proc_umask()
    return 0o666 & ~(_UMASK_AT_IMPORT if umask is None else umask)


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside `path`; rename it onto `path` only if the block succeeds.

    A crash or exception leaves the old file (or none) in place, never a partial one. The file gets
    the umask's mode (mkstemp's temporary is 0600, unreadable to the group sharing a results directory).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.chmod(tmp_path, output_mode())  # after the block: a writer may have replaced the temporary file
        os.replace(tmp_path, path)
    except OSError as exc:
        if exc.errno in (errno.ENOSPC, errno.EDQUOT) or "no space left" in str(exc).lower():
            raise UserError(
                f"{path}: no space left on the device while writing it (nothing was overwritten); "
                "free some disk space and rerun"
            ) from None
        raise
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def json_float(value) -> float | None:
    """A number for JSON: NaN and infinities (which JSON lacks) become null."""
    value = float(value)
    return value if math.isfinite(value) else None


def write_text(path: str | os.PathLike, text: str) -> None:
    """Write a text file (JSON, a report caption) atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def write_parquet(frame: pd.DataFrame, path: str | os.PathLike, provenance: dict | None = None) -> None:
    """Write `frame` atomically, with `provenance` (JSON-serialisable) in the file's metadata."""
    table = pa.Table.from_pandas(frame, preserve_index=False)
    if provenance is not None:
        meta = dict(table.schema.metadata or {})
        meta[PROVENANCE_KEY] = json.dumps(provenance, default=str).encode()
        table = table.replace_schema_metadata(meta)
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp)


def read_concat(paths: list) -> pd.DataFrame:
    """The Parquet tables of `paths` (cells, per-job results) as one table; a damaged one is a
    one-line error that names it and says how to compute it again."""
    frames = []
    for path in paths:
        try:
            frames.append(read_table(path))
        except UserError as exc:
            raise UserError(f"{exc} Delete it and rerun to compute it again.") from None
    # a cell from an older version or a hand edit has other columns: concat would fill them with NaN,
    # which the fits would then read as diverged runs
    if frames:
        expected = list(frames[0].columns)
        for path, frame in zip(paths, frames):
            missing = [c for c in expected if c not in frame.columns]
            extra = [c for c in frame.columns if c not in expected]
            if missing or extra:
                raise UserError(
                    f"{path}: its columns differ from {paths[0]}'s (missing: {', '.join(missing) or 'none'}; "
                    f"extra: {', '.join(map(str, extra)) or 'none'}); delete it and rerun to compute it again"
                )
    return pd.concat(frames, ignore_index=True)


def concat_parquet(parts: list, table) -> pd.DataFrame:
    """Concatenate Parquet tables `parts` (the aggregate rules) and write the result to `table` atomically."""
    frame = read_concat(parts)
    write_parquet(frame, table, {"files": len(parts)})
    return frame


def read_table(path: str | os.PathLike, header: bool = True) -> pd.DataFrame:
    """Read a Parquet or CSV runs table, with one-line errors for missing or unreadable files.

    A text table (.csv, .tsv, .txt; a .txt without commas is whitespace-separated, as np.savetxt
    writes) must start with a header row: a first row of numbers is refused, never silently taken
    as column names. `header=False` (point clouds) reads such a file with columns x0, x1, ...
    """
    path = Path(path)
    if not path.exists():
        raise UserError(f"{path}: no such file; give the path of a Parquet or CSV table")
    if path.is_dir():
        raise UserError(f"{path} is a directory; give the path of a Parquet or CSV table")
    suffix = path.suffix.lower()
    try:
        if suffix in (".parquet", ".pq"):
            frame = pd.read_parquet(path)
            _refuse_repeated(list(frame.columns), path)
            return frame
        if suffix in (".csv", ".tsv", ".txt"):
            return _read_text_table(path, suffix, header)
    except UserError:
        raise
    except Exception as exc:  # pyarrow and pandas raise many types for a damaged file
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise UserError(
            f"{path}: cannot read it as {suffix[1:]} ({reason}); is the file truncated or damaged?"
        ) from None
    raise UserError(f"{path}: unknown table format '{suffix}'; use .parquet or .csv")


def _read_text_table(path: Path, suffix: str, header: bool) -> pd.DataFrame:
    with open(path, errors="replace") as handle:
        first = handle.readline()
    sep = "\t" if suffix == ".tsv" else ","
    if suffix == ".txt" and "," not in first:
        sep = r"\s+"
    names = pd.read_csv(path, sep=sep, header=None, nrows=1, dtype=str).iloc[0].tolist()
    if all(_is_number(n) for n in names):
        if header:
            raise UserError(
                f"{path}: its first row holds numbers ({', '.join(map(str, names[:3]))}...), not column names; "
                "add a header row naming the columns"
            )
        frame = pd.read_csv(path, sep=sep, header=None)
        frame.columns = [f"x{i}" for i in range(frame.shape[1])]
        return frame
    if len(names) == 1:
        for other, word in ((";", "';'"), ("\t", "tabs"), ("|", "'|'")):
            if other in str(names[0]):
                raise UserError(
                    f"{path}: one column named {names[0]!r}: the file seems to use {word} as separator; "
                    "write it with ',' (or save it as .tsv for tabs)"
                )
    # pandas renames a repeated name (N, N -> N, N.1): the header row itself tells
    _refuse_repeated(names, path)
    frame = pd.read_csv(path, sep=sep)
    text = frame.astype(str)
    repeats = (text == pd.Series([str(n) for n in names], index=frame.columns)).all(axis=1)
    if repeats.any():
        row = int(repeats.to_numpy().nonzero()[0][0]) + 2  # 1-based, after the header line
        raise UserError(
            f"{path}: line {row} repeats the header (two files joined with cat?); remove the repeated header lines"
        )
    return frame


def _is_number(text) -> bool:
    try:
        float(text)
    except (TypeError, ValueError):
        return False
    return True


def _refuse_repeated(names: list, path: Path) -> None:
    seen = set()
    for name in names:
        if isinstance(name, float) and name != name:  # an empty header cell (pandas: "Unnamed: i")
            continue
        if name in seen:
            raise UserError(f"column '{name}' appears twice in {path}; rename one")
        seen.add(name)


def require_columns(frame: pd.DataFrame, columns: list[str], source: str) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        names = [str(c) for c in frame.columns]
        if any(n != n.strip() for n in names):
            # a name with a leading or trailing space looks like the one asked for: show it quoted
            raise UserError(
                f"{source}: missing column(s) {', '.join(missing)}; available: {', '.join(map(repr, names))} "
                "(names with spaces around them: the file may use ', ' as separator)"
            )
        raise UserError(f"{source}: missing column(s) {', '.join(missing)}; available: {', '.join(names)}")
