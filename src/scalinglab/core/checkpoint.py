"""Checkpoints of a training run: save its whole state atomically, resume only the very same run.

A checkpoint holds everything the next step depends on (weights, Adam moments, step counter, the
batch source's random state, the logs so far), so a run resumed from one produces bit-identical
numbers to an uninterrupted run on the same device. It also holds a fingerprint of the run's inputs
(shapes, schedule, data, initial weights): a checkpoint left by a different run is ignored, with a
note, rather than silently continued.

Safety: a checkpoint is loaded with torch.load(weights_only=True), which builds tensors and plain
values only, never arbitrary objects (anyone who can write results/checkpoints/ could otherwise run
code). So states hold tensors, dict/list/tuple and int/float/str/bool/None; numpy arrays and
scalars and pandas DataFrames are stored as tensors and lists (`encode`) and rebuilt on load.
One writer: a Checkpointer holds an exclusive flock on `<checkpoint>.lock` while it lives, so a
second run of the same cell (say the orphan of a killed snakemake and its rerun) stops with a
UserError instead of both writing the file. The kernel drops the lock when its process dies.
"""

from __future__ import annotations

import contextlib
import datetime
import errno
import hashlib
import os
import socket
import sys
import time
from collections import OrderedDict
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from scalinglab.core.errors import UserError
from scalinglab.core.io import atomic_path

try:
    import fcntl
except ImportError:  # not POSIX: no locking
    fcntl = None

FORMAT = 2  # 2: loadable with weights_only=True (format 1 pickled numpy and pandas objects)
CHECK_EVERY_STEPS = 256  # how often the loop looks at the clock (cheap), not how often it saves


def fingerprint(*parts) -> str:
    """A hash of tensors, arrays and plain values: equal inputs, equal fingerprints."""
    digest = hashlib.sha256()
    for part in parts:
        if isinstance(part, torch.Tensor):
            part = part.detach().cpu().contiguous()
            digest.update(str((part.dtype, tuple(part.shape))).encode())
            digest.update(part.view(torch.uint8).numpy().tobytes() if part.numel() else b"")
        elif hasattr(part, "tobytes"):
            digest.update(part.tobytes())
        else:
            digest.update(repr(part).encode())
    return digest.hexdigest()


class Checkpointer:
    """Saves a state dict to `path` when `every_s` seconds have passed since the last save.

    path None disables it (save and load do nothing, no lock). Otherwise it holds the checkpoint's
    lock from creation to close() (or the end of a with block): use it as a context manager.
    """

    def __init__(self, path, every_s: float, key: str):
        self.path = Path(path) if path else None
        self.every_s = float(every_s)
        self.key = key
        self.last_save = time.monotonic()
        self._lock = _acquire(self.path) if self.path is not None else None

    def __enter__(self) -> Checkpointer:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        """Release the lock (the checkpoint stays, for a later run to resume)."""
        if self._lock is not None:
            lock, self._lock = self._lock, None
            _release(lock)

    def __del__(self):  # dropped unclosed: its file would release the lock anyway; forget it here too
        with contextlib.suppress(Exception):  # at interpreter exit, module globals may be gone
            self.close()

    def load(self) -> dict | None:
        """The saved state of this very run, or None (no file, unreadable, or another run's)."""
        if self.path is None or not self.path.exists():
            return None
        try:
            # weights_only: a file that needs arbitrary objects unpickled is refused, its code never run
            blob = torch.load(self.path, weights_only=True, map_location="cpu")
            if isinstance(blob, dict) and blob.get("format") == FORMAT and blob.get("key") == self.key:
                blob["state"] = decode(blob["state"])
        except Exception as exc:  # a foreign or damaged file: start over rather than fail
            print(
                f"note: ignoring unreadable checkpoint {self.path} ({type(exc).__name__}); starting from step 0",
                file=sys.stderr,
            )
            return None
        if not isinstance(blob, dict) or blob.get("format") != FORMAT or blob.get("key") != self.key:
            print(
                f"note: checkpoint {self.path} belongs to another run (settings or data changed); starting from step 0",
                file=sys.stderr,
            )
            return None
        print(f"resuming from checkpoint {self.path} at step {blob['state']['step']}", file=sys.stderr)
        return blob["state"]

    def due(self, step: int, check_every: int = CHECK_EVERY_STEPS) -> bool:
        """Whether to save after `step`; the clock is read every `check_every` steps (1: every call)."""
        return self.path is not None and step % check_every == 0 and time.monotonic() - self.last_save >= self.every_s

    def save(self, state: dict) -> None:
        """Write the state atomically. A full disk (or quota) costs only this checkpoint: a one-line
        warning, the previous checkpoint (if any) stays, and training goes on."""
        blob = {"format": FORMAT, "key": self.key, "state": encode(state)}  # a state it cannot hold: TypeError
        try:
            with atomic_path(self.path) as tmp:
                try:  # through a Python file: a full disk is an OSError (ENOSPC), not torch's vague RuntimeError
                    with open(tmp, "wb") as fh:
                        torch.save(blob, fh)
                except OSError as exc:
                    if not _no_space(exc):
                        raise
                    raise _NoSpace(exc) from None  # not an OSError: atomic_path drops the temporary file, no more
        except (_NoSpace, OSError) as exc:
            if not isinstance(exc, _NoSpace) and not _no_space(exc):
                raise
            reason = os.strerror(exc.errno).lower()
            print(f"warning: checkpoint {self.path} not saved: {reason}; training goes on without it", file=sys.stderr)
        self.last_save = time.monotonic()


class _NoSpace(Exception):
    """A checkpoint that did not fit on the disk (not an OSError, which atomic_path would turn into an error)."""

    def __init__(self, cause: OSError):
        super().__init__(str(cause))
        self.errno = cause.errno


def _no_space(exc: OSError) -> bool:
    return exc.errno in (errno.ENOSPC, errno.EDQUOT)


def discard(path) -> None:
    """Delete a job's checkpoint and its lock file once every output of the job is written (None:
    nothing to do). A checkpoint another process holds is that run's: it is left alone."""
    if not path:
        return
    path = Path(path)
    lock = lock_path(path)
    try:
        held_here = _identity(lock) in _HELD
    except FileNotFoundError:
        held_here = False
    try:
        own = None if held_here else _acquire(path, quiet=True)
    except UserError:
        print(f"note: not removing {path}: another run of this cell is using it", file=sys.stderr)
        return
    try:
        path.unlink(missing_ok=True)
        lock.unlink(missing_ok=True)  # under the lock: a waiter notices the file is gone (see _acquire)
    finally:
        if own is not None:
            _release(own)


# ---------------------------------------------------------------- one writer per checkpoint

_HELD: set = set()  # (device, inode) of the lock files this process holds


def lock_path(path) -> Path:
    """The sidecar file whose flock says a process is using checkpoint `path`."""
    path = Path(path)
    return path.with_name(path.name + ".lock")


def _identity(file_or_path) -> tuple[int, int]:
    info = os.fstat(file_or_path.fileno()) if hasattr(file_or_path, "fileno") else os.stat(file_or_path)
    return info.st_dev, info.st_ino


def _acquire(path: Path, quiet: bool = False):
    """An open file holding the exclusive flock of `path`'s lock file, with this process named in it;
    UserError if another process (or another Checkpointer of this one) holds it. None where files
    cannot be locked (the run goes on unguarded, with a note)."""
    if fcntl is None:
        return None
    lock = lock_path(path)
    while True:
        file = None
        try:
            file = _open_lock_file(lock)
            fcntl.flock(file.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            file.seek(0)
            holder = file.read().strip() or "pid unknown"
            file.close()
            raise UserError(
                f"{path} is in use by another process ({holder}): another run of this cell is still going, "
                "perhaps an orphan of a killed snakemake; wait for it or kill it, then rerun"
            ) from None
        except OSError as exc:  # a file system without flock (some cluster mounts), an unreadable file
            if file is not None:
                file.close()
            if not quiet:
                print(
                    f"note: cannot lock {lock} ({exc.strerror}); a second run of this cell would not be noticed",
                    file=sys.stderr,
                )
            return None
        try:
            same = _identity(lock) == _identity(file)
        except FileNotFoundError:
            same = False
        if same:
            break
        file.close()  # its holder removed it (discard) after we opened it: lock the file there now
    if file.writable():
        started = datetime.datetime.now().isoformat(sep=" ", timespec="seconds")
        file.truncate(0)
        file.write(f"pid {os.getpid()} on {socket.gethostname()}, started {started}\n")
        file.flush()
    _HELD.add(_identity(file))
    return file


def _open_lock_file(lock: Path):
    lock.parent.mkdir(parents=True, exist_ok=True)
    try:
        return open(lock, "a+")  # a+: create, but leave the holder's line intact until we hold the lock
    except PermissionError:  # a colleague's lock file (shared directory): flock needs only reading
        return open(lock)


def _release(file) -> None:
    _HELD.discard(_identity(file))
    if file.writable():
        file.truncate(0)  # no stale pid: whoever locks it next has not written theirs yet
    file.close()


# ---------------------------------------------------------------- states as tensors and plain values

_PLAIN = (type(None), bool, int, float, complex, str, torch.dtype, torch.device)  # exact types: no subclasses
_TAG = "__scalinglab_checkpoint__"  # marks a dict that stands for a numpy or pandas object


def encode(obj):
    """`obj` with numpy arrays and scalars and DataFrames replaced by tagged dicts of tensors and
    plain values (what weights_only=True loads); containers without any are returned as they are
    (a state_dict keeps its class and _metadata). TypeError for anything else: found at the first
    save, not as a checkpoint that every rerun ignores."""
    if isinstance(obj, np.ndarray | np.generic):  # before the plain types: np.float64 is a float
        array = np.asarray(obj)
        if array.dtype.kind not in "biufc" or not array.dtype.isnative:
            raise TypeError(f"cannot checkpoint a numpy array of dtype {array.dtype}; convert it to numbers")
        tensor = torch.from_numpy(np.array(array, order="C"))  # a writable, C-ordered copy
        return {_TAG: "ndarray" if isinstance(obj, np.ndarray) else "scalar", "data": tensor}
    if type(obj) in _PLAIN or isinstance(obj, torch.Tensor):
        return obj
    if type(obj) in (dict, OrderedDict):
        for key in obj:
            _check_key(key)
        items = {k: encode(v) for k, v in obj.items()}
        if all(items[k] is v for k, v in obj.items()):
            return obj
        copy = type(obj)(items)
        if hasattr(obj, "_metadata"):  # a module's state_dict: load_state_dict reads its versions
            copy._metadata = obj._metadata
        return copy
    if type(obj) in (list, tuple, torch.Size):
        items = [encode(v) for v in obj]
        if all(a is b for a, b in zip(items, obj)):
            return obj
        return items if type(obj) is list else tuple(items)
    if isinstance(obj, pd.DataFrame):
        if not obj.columns.is_unique:
            raise TypeError("cannot checkpoint a DataFrame with repeated column names")
        index = obj.index
        return {
            _TAG: "DataFrame",
            "columns": [encode(c) for c in obj.columns],
            "data": [_encode_column(obj[c]) for c in obj.columns],
            "index": (index.start, index.stop, index.step)
            if type(index) is pd.RangeIndex
            else _encode_column(index.to_series()),
            "names": [encode(index.name), encode(obj.columns.name)],
        }
    raise TypeError(f"cannot checkpoint a {type(obj).__name__}; store tensors, numbers, strings, lists or dicts")


def _check_key(key) -> None:
    if type(key) is tuple:
        for part in key:
            _check_key(part)
    elif type(key) not in _PLAIN:
        raise TypeError(f"cannot checkpoint a dict key of type {type(key).__name__}; use str or int keys")


def _encode_column(series: pd.Series) -> dict:
    dtype = series.dtype
    if isinstance(dtype, np.dtype) and dtype.kind in "biufc":
        return {"dtype": str(dtype), "values": encode(series.to_numpy())}
    # object and extension dtypes (pandas' str): the values as Python objects, an extension's missing ones as None
    values = series.tolist()
    if not pd.api.types.is_object_dtype(dtype):
        values = [None if pd.isna(v) else v for v in values]
    return {"dtype": str(dtype), "values": encode(values)}


def decode(obj):
    """The inverse of encode: tagged dicts back to numpy and pandas objects (containers in place)."""
    if isinstance(obj, dict):
        tag = obj.get(_TAG)
        if tag in ("ndarray", "scalar"):
            array = obj["data"].numpy()
            return array if tag == "ndarray" else array[()]
        if tag == "DataFrame":
            columns = [decode(c) for c in obj["columns"]]
            data = {c: _decode_column(column).array for c, column in zip(columns, obj["data"])}
            index = obj["index"]
            index = pd.RangeIndex(*index) if isinstance(index, tuple) else pd.Index(_decode_column(index))
            frame = pd.DataFrame(data, index=index)
            frame.index.name, frame.columns.name = (decode(name) for name in obj["names"])
            return frame
        for k, v in obj.items():
            obj[k] = decode(v)
        return obj
    if isinstance(obj, list):
        obj[:] = [decode(v) for v in obj]
        return obj
    if type(obj) is tuple:
        return tuple(decode(v) for v in obj)
    return obj


def _decode_column(column: dict) -> pd.Series:
    return pd.Series(decode(column["values"]), dtype=column["dtype"])
