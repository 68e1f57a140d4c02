"""Checks before a workflow run starts, so that a bad request ends in one line and nothing is lost.

- Targets on the command line that name a cell outside the config's grid: `…/d~02/…` would train a
  "ghost" of d = 2 under another name, and `d~0`, `P~0` or `alpha~-4` would reach the code without
  the config's validation.
- Damaged Parquet outputs (a truncated cell): the aggregate that reads it would fail, and Snakemake
  deletes a failed job's outputs, so the last good table would be lost.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Iterable
from pathlib import Path

from scalinglab.core.errors import UserError

# key~value in a path; a value ends at the next _key~, the next folder, or the file's extension
_SETTING = re.compile(r"(?<![A-Za-z0-9])([A-Za-z][A-Za-z0-9]*)~([^/]+?)(?=_[A-Za-z][A-Za-z0-9]*~|/|\.[A-Za-z]+$|$)")
_PARQUET_MAGIC = b"PAR1"  # at the start and the end of every complete Parquet file


def settings_in(path: str) -> list[tuple[str, str]]:
    """The (key, value) pairs a path names, e.g. results/runs/joint/d~2/P~100/... -> [(d, 2), (P, 100), ...]."""
    return _SETTING.findall(path)


def grid_values(paths: Iterable[str]) -> dict[str, set[str]]:
    """Every value each key takes in `paths` (the config's cells and final outputs)."""
    values: dict[str, set[str]] = {}
    for path in paths:
        for key, value in settings_in(path):
            values.setdefault(key, set()).add(value)
    return values


def check_targets(targets: Iterable[str], known_paths: Iterable[str]) -> None:
    """Refuse a target that names a value its key never takes in the config's grid."""
    known = grid_values(known_paths)
    for target in targets:
        for key, value in settings_in(target):
            if value in known.get(key, ()):
                continue
            allowed = sorted(known.get(key, ()), key=lambda v: (len(v), v))
            listed = f"{key} is one of {', '.join(allowed)}" if allowed else f"no experiment that is on names a {key}"
            raise UserError(
                f"target {target}: {key}~{value} is not in this config's grid ({listed}); "
                "ask for a file of the grid, or add the value to the config"
            )


def requested_targets(argv: list[str]) -> list[str]:
    """The file targets of a snakemake command line (positional targets and --forcerun files); rule
    names are left out. Read with Snakemake's own parser; [] if it cannot read the line."""
    from snakemake.cli import get_argument_parser

    try:
        args, _ = get_argument_parser().parse_known_args(argv)
    except (SystemExit, Exception):  # not ours to judge: Snakemake reports its own argument errors
        return []
    names = list(args.targets or []) + list(args.forcerun or [])
    return [name for name in names if "/" in name or "~" in name]


def damaged_parquet(paths: Iterable[str]) -> list[str]:
    """The existing files among `paths` ending in .parquet that are not whole Parquet files."""
    damaged = []
    for path in paths:
        path = Path(path)
        if path.suffix != ".parquet" or not path.is_file():
            continue
        with open(path, "rb") as fh:
            head = fh.read(4)
            size = fh.seek(0, 2)
            fh.seek(max(size - 4, 0))
            tail = fh.read(4)
        if size < 12 or head != _PARQUET_MAGIC or tail != _PARQUET_MAGIC:
            damaged.append(str(path))
    return damaged


def check_intact(paths: Iterable[str]) -> None:
    damaged = damaged_parquet(paths)
    if damaged:
        more = f" (and {len(damaged) - 1} more)" if len(damaged) > 1 else ""
        raise UserError(
            f"{damaged[0]}{more} is damaged (not a whole Parquet file, perhaps cut short by a full disk or a "
            "killed job); delete it and rerun to compute it again"
        )


def check_request(argv: list[str], known_paths: list[str]) -> None:
    """Both checks, or a one-line error and exit 1 before Snakemake plans a job."""
    try:
        check_targets(requested_targets(argv), known_paths)
        check_intact(known_paths)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(1)
