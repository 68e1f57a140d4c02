"""W&B's local run files (run-*.wandb, as wandb writes them into wandb/offline-run-*/) read without
a W&B server: the file is a LevelDB-format log of protobuf `Record`s, whose definition the installed
wandb package supplies (wandb >= 0.31 ships no reader of its own). `read_run_files` gives the
(run_id, step, metric, value) rows and the run attributes that import_wandb turns into a runs table.
"""

from __future__ import annotations

import json
import struct
import warnings
import zlib
from pathlib import Path

from scalinglab.core.errors import UserError, needs_package, one_line

# W&B's transaction log: a 7-byte file header, then LevelDB log records in 32 KiB blocks
FILE_HEADER = struct.Struct("<4sHB")  # ':W&B', magic 0xBEE1, version
RECORD_HEADER = struct.Struct("<IHB")  # CRC-32 of the type byte and data, data length, type
BLOCK_BYTES = 32768
FULL, FIRST, LAST = 1, 2, 4  # and 3: a middle fragment


class CorruptRunFile(Exception):
    """A run-*.wandb file that cannot be read to its end."""


def _wandb_records():
    hint = (
        "reading W&B run files needs the wandb package: pip install wandb (or pip install 'scalinglab[wandb]'); "
        "chart exports and history frames need only pandas"
    )
    with needs_package("wandb", hint), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from wandb.proto import wandb_internal_pb2
    return wandb_internal_pb2.Record


def read_run_files(path: Path, strict: bool):
    """Every run-*.wandb file at or below `path`: (rows, attributes)."""
    # wandb/latest-run links to a run directory: each file once
    files = [path] if path.is_file() else sorted({p.resolve(): p for p in path.rglob("run-*.wandb")}.values())
    if not files:
        raise UserError(
            f"{path}: no W&B run files (run-*.wandb, as wandb writes into wandb/offline-run-*/) in it or below it"
        )
    Record = _wandb_records()
    rows, names, configs = [], {}, {}
    for file in files:
        try:
            found = read_run_file(file, Record)
        except CorruptRunFile as exc:
            if strict:
                raise UserError(f"{file}: {exc}; remove or repair it, or import without --strict to skip it") from None
            warnings.warn(f"{file}: {exc}; skipped this run (--strict makes this an error)", stacklevel=3)
            continue
        run_id = found["run_id"] or file.stem.removeprefix("run-")
        if not found["rows"]:
            warnings.warn(f"{file}: no history in it; run '{run_id}' left out", stacklevel=3)
            continue
        if found["exit_code"] is None:
            warnings.warn(
                f"{file}: no exit record (the run was killed or is still running); kept its "
                f"{len({s for s, _, _ in found['rows']})} steps, the last may not be its final one",
                stacklevel=3,
            )
        elif found["exit_code"] != 0:
            warnings.warn(f"{file}: run '{run_id}' exited with code {found['exit_code']}; kept it", stacklevel=3)
        rows += [(run_id, step, metric, value) for step, metric, value in found["rows"]]
        names[run_id] = {"run_name": found["name"]} if found["name"] else {}  # offline runs may have none
        configs[run_id] = {**configs.get(run_id, {}), **found["config"]}
    if not rows:
        raise UserError(f"{path}: no history in its {len(files)} run file(s) (the warnings above say why)")
    return rows, [("", names), (" (config)", configs)]


def read_run_file(path: Path, Record) -> dict:
    """run_id, name, config, rows ((step, metric, value)) and exit_code (None: no exit record) of one
    run-*.wandb file; CorruptRunFile if it cannot be read to its end."""
    data = path.read_bytes()
    found = {"run_id": None, "name": None, "config": {}, "rows": [], "exit_code": None}
    for start, body in _log_records(data):
        try:
            _take(Record.FromString(body), found)
        except Exception as exc:  # protobuf's DecodeError, a JSON error, or worse for garbage
            raise CorruptRunFile(f"unreadable record at byte {start} of {len(data)} ({one_line(exc)})") from None
    return found


def _take(record, found: dict) -> None:
    kind = record.WhichOneof("record_type")
    if kind == "run":
        found["run_id"] = record.run.run_id or found["run_id"]
        found["name"] = record.run.display_name or found["name"]
        _update_config(found["config"], record.run.config)
    elif kind == "config":
        _update_config(found["config"], record.config)
    elif kind == "history":
        _history(record.history, found["rows"])
    elif kind == "exit":
        found["exit_code"] = int(record.exit.exit_code)


def _log_records(data: bytes):
    """(offset, data) of each record of a W&B transaction log, joining the fragments of long ones."""
    if len(data) < FILE_HEADER.size or FILE_HEADER.unpack_from(data)[:2] != (b":W&B", 0xBEE1):
        raise CorruptRunFile("not a W&B run file (no ':W&B' header)")
    position, pending, start = FILE_HEADER.size, None, 0
    while position < len(data):
        left = BLOCK_BYTES - position % BLOCK_BYTES
        if left < RECORD_HEADER.size:  # a block's tail too short for a header is padding
            position += left
            continue
        header = data[position : position + RECORD_HEADER.size].ljust(RECORD_HEADER.size, b"\0")
        checksum, length, kind = RECORD_HEADER.unpack(header)
        if kind == 0 and not any(data[position:]):  # zeros to the end: space the writer set aside
            break
        end = position + RECORD_HEADER.size + length
        if end > len(data):
            raise CorruptRunFile(f"truncated: the record at byte {position} runs past the end ({len(data)})")
        body = data[position + RECORD_HEADER.size : end]
        if zlib.crc32(body, zlib.crc32(bytes([kind]))) & 0xFFFFFFFF != checksum or kind not in (1, 2, 3, 4):
            raise CorruptRunFile(f"corrupted: the record at byte {position} of {len(data)} fails its checksum")
        if (kind in (FULL, FIRST)) != (pending is None):
            raise CorruptRunFile(f"corrupted: the record fragments at byte {position} are out of order")
        if kind in (FULL, FIRST):
            start, pending = position, b""
        pending += body
        position = end
        if kind in (FULL, LAST):
            yield start, pending
            pending = None
    if pending is not None:
        raise CorruptRunFile(f"truncated: the record at byte {start} of {len(data)} is cut short")


def _key(item) -> str:
    return item.key or ".".join(item.nested_key)


def _update_config(config: dict, record) -> None:
    for item in record.update:
        key = _key(item)
        if not key.startswith("_"):  # _wandb: W&B's own bookkeeping
            _flatten(key, json.loads(item.value_json), config)
    for item in record.remove:
        config.pop(_key(item), None)


def _flatten(key: str, value, out: dict) -> None:
    if isinstance(value, dict):
        for name, inner in value.items():
            _flatten(f"{key}.{name}", inner, out)
    else:
        out[key] = json.dumps(value) if isinstance(value, list) else value


def _history(history, rows: list) -> None:
    values = {}
    for item in history.item:
        kind = item.WhichOneof("value")  # newer wandb types a value; older ones write value_json
        if kind in ("integer", "number"):
            values[_key(item)] = float(getattr(item, kind))
        elif kind in ("json", None) and (item.json or item.value_json):
            values[_key(item)] = json.loads(item.json or item.value_json)
    step = history.step.num if history.HasField("step") else values.get("_step")
    if step is None:
        return
    for key, value in values.items():
        if not key.startswith("_") and isinstance(value, int | float) and not isinstance(value, bool):
            rows.append((int(step), key, float(value)))
