"""Checks before a workflow run starts, so that a bad request ends in one line and nothing is lost.

- Targets (files or rules) on the command line of an experiment that is off: its section would
  never have been validated, and its jobs would run at the schema's defaults.
- Targets that name a cell outside the config's grid: `…/d~02/…` would train a "ghost" of d = 2
  under another name, `d~0`, `P~0` or `alpha~-4` would reach the code without the config's
  validation, and a key value of another experiment (joint's P~100 in a teacher_student path)
  would train a cell that neither grid has. Each key is checked against its own experiment's files.
- Damaged outputs: a truncated cell Parquet, a cell whose columns differ from its siblings', or a
  truncated torch file under resources/ (teachers, sampled points, prepared datasets). The job that
  reads it would fail, and Snakemake deletes a failed job's outputs, so the last good table, or
  finished cells downstream of a resource that looks newer than them, would be lost.
"""

from __future__ import annotations

import glob
import re
import sys
import zipfile
from collections import Counter
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


def owners(path: str, stages: Iterable[str], shared: dict[str, list[str]]) -> list[str]:
    """The experiments a path belongs to: those of a shared folder it lies in (resources/teacher_student/
    serves teacher_student and joint), else the first folder or file named after one (results/runs/joint/…,
    results/fits/joint.json, results/report/images_fits.rst); [] for none (logs, benchmarks)."""
    path = Path(path).as_posix().removeprefix("./")
    for folder, readers in shared.items():
        if path.startswith(folder.rstrip("/") + "/"):
            return list(readers)
    for part in path.split("/"):
        name = part.split(".")[0]
        for stage in stages:
            if name == stage or name.startswith(stage + "_"):
                return [stage]
    return []


def _off(stages: list[str], what: str) -> str:
    if len(stages) == 1:
        return f"{stages[0]} is off in this config ({stages[0]}.enabled: false); enable it to {what}"
    flags = ", ".join(f"{s}.enabled: false" for s in stages)
    return f"{' and '.join(stages)} are off in this config ({flags}); enable one of them to {what}"


def check_targets(
    targets: Iterable[str],
    stage_files: dict[str, list[str]],
    enabled: dict[str, bool],
    shared: dict[str, list[str]] | None = None,
    reads: dict[str, list[str]] | None = None,
) -> None:
    """Refuse a target of an experiment that is off, or one that names a value (or a combination of
    values) that its experiment's files (`stage_files`: the cells and final outputs) never take.
    `reads`: the experiments whose data an experiment works on (dimension: teacher_student, images)."""
    shared = shared or {}
    for target in targets:
        found = owners(target, stage_files, shared)
        on = [stage for stage in found if enabled.get(stage)]
        if found and not on:
            raise UserError(_off(found, f"build {target}"))
        known = [path for stage in (on or stage_files) for path in stage_files[stage]]
        if on and not known:
            readers = [stage for name in on for stage in (reads or {}).get(name, [])]
            raise UserError(
                f"{' and '.join(on)} has nothing to build: "
                + (_off(readers, f"build {target}") if readers else f"{target} cannot be built")
            )
        _check_settings(target, known, " or ".join(f"{stage}'s" for stage in on) + " " if on else "")


def _check_settings(target: str, known: list[str], whose: str) -> None:
    settings = settings_in(target)
    if not settings:
        return
    values = grid_values(known)
    for key, value in settings:
        if value in values.get(key, ()):
            continue
        allowed = sorted(values.get(key, ()), key=lambda v: (len(v), v))
        listed = (
            f"{whose}{key} is one of {', '.join(allowed)}"
            if allowed
            else f"no file of {whose or 'its '}grid names a {key}"
        )
        raise UserError(
            f"target {target}: {key}~{value} is not in this config's grid ({listed}); "
            "ask for a file of the grid, or add the value to the config"
        )
    wanted = set(settings)
    if not any(wanted <= set(settings_in(path)) for path in known):
        named = " with ".join(f"{key}~{value}" for key, value in settings)
        raise UserError(
            f"target {target}: {named} is not in this config's grid (no file of {whose or 'its '}grid names them "
            "together); ask for a file of the grid, or add the values to the config"
        )


def check_rules(names: Iterable[str], rule_outputs: dict[str, list[str]], enabled: dict[str, bool], shared) -> None:
    """Refuse a rule named as a target (`snakemake aggregate_joint`) whose experiment is off."""
    for name in names:
        for output in rule_outputs.get(name, []):
            found = owners(output, enabled, shared or {})
            if found and not any(enabled.get(stage) for stage in found):
                raise UserError(_off(found, f"run rule {name}"))
            if found:
                break


def _parse(argv: list[str]):
    from snakemake.cli import get_argument_parser

    try:
        args, _ = get_argument_parser().parse_known_args(argv)
    except (SystemExit, Exception):  # not ours to judge: Snakemake reports its own argument errors
        return None
    return args


def requested_targets(argv: list[str]) -> list[str]:
    """The file targets of a snakemake command line (positional targets and --forcerun files); rule
    names are left out. Read with Snakemake's own parser; [] if it cannot read the line."""
    args = _parse(argv)
    if args is None:
        return []
    names = list(args.targets or []) + list(args.forcerun or [])
    return [name for name in names if "/" in name or "~" in name]


def requested_rules(argv: list[str]) -> list[str]:
    """The positional targets of a snakemake command line that are not files (rule names)."""
    args = _parse(argv)
    return [name for name in (args.targets or []) if "/" not in name and "~" not in name] if args else []


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


def check_cell_columns(stage_files: dict[str, list[str]]) -> None:
    """Within each experiment, every existing cell (results/runs/…) has the same column names; one
    that differs (an older version's cell, a hand edit) would fail the aggregate. Reads only the
    Parquet footers."""
    import pyarrow.parquet as pq

    for files in stage_files.values():
        cells = [
            path for path in files if "/runs/" in f"/{path}" and path.endswith(".parquet") and Path(path).is_file()
        ]
        columns = {}
        for path in cells:
            try:
                columns[path] = frozenset(pq.read_schema(path).names)
            except Exception as exc:  # intact at both ends, damaged inside
                reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
                raise UserError(
                    f"{path}: cannot read it as parquet ({reason}); delete it and rerun to compute it again"
                ) from None
        if not columns:
            continue
        usual = Counter(columns.values()).most_common(1)[0][0]
        for path, names in columns.items():
            if names != usual:
                missing, extra = ", ".join(sorted(usual - names)) or "none", ", ".join(sorted(names - usual)) or "none"
                raise UserError(
                    f"{path}: its columns differ from the other cells' (missing: {missing}; extra: {extra}), perhaps "
                    "a cell of an older version or a hand edit; delete it and rerun to compute it again"
                )


def damaged_torch_files(paths: Iterable[str]) -> list[str]:
    """The files among `paths` that are not whole torch files (torch.save writes a zip archive, whose
    directory sits at its end: a truncated file has none). Reads only that directory."""
    damaged = []
    for path in paths:
        try:
            with zipfile.ZipFile(path):
                pass
        except (zipfile.BadZipFile, EOFError):
            damaged.append(str(path))
        except OSError:  # unreadable or gone: the job that reads it says so
            pass
    return damaged


def check_resources(patterns: dict[str, str]) -> None:
    """The existing torch files matching each glob pattern of `patterns` (pattern -> the rule that
    makes those files) are whole."""
    for pattern, rule in patterns.items():
        damaged = damaged_torch_files(sorted(glob.glob(pattern)))
        if damaged:
            more = f" (and {len(damaged) - 1} more)" if len(damaged) > 1 else ""
            raise UserError(
                f"{damaged[0]}{more} is damaged (not a whole torch file, perhaps cut short by a full disk or a killed "
                f"job); delete it and rerun: rule {rule} makes it again (and what was computed from it reruns)"
            )


def samples_per_student(schedule: dict) -> int:
    """Training samples one student sees under a teacher_student schedule (steps x batch, summed over phases)."""
    phases = schedule["phases"] if schedule["kind"] == "phases" else [schedule]
    return sum(phase["steps"] * phase["batch"] for phase in phases)


def notes(config: dict) -> list[str]:
    """What a valid config does that its user may not expect, one line each (printed before a run)."""
    ts = config["teacher_student"]
    if not ts["enabled"] or "inf" not in ts["train_sizes"]:
        return []
    seen = {d: samples_per_student(ts["schedule_by_d"].get(d, ts["schedule"])) for d in ts["d"]}
    over = [d for d in ts["d"] if seen[d] > ts["pool_size"]]
    if not over:
        return []
    most = max(seen[d] for d in over)
    return [
        f"note: teacher_student: with P = inf each student of d = {', '.join(map(str, over))} sees up to {most:,} "
        f"samples, drawn from a pool of pool_size = {ts['pool_size']:,} points ({most / ts['pool_size']:.1f} passes "
        f"over it, each pass in a new order): raise teacher_student.pool_size to {most:,} for fresh samples every step"
    ]


def check_request(
    argv: list[str],
    stage_files: dict[str, list[str]],
    config: dict,
    *,
    shared: dict[str, list[str]] | None = None,
    rule_outputs: dict[str, list[str]] | None = None,
    resources: dict[str, str] | None = None,
    reads: dict[str, list[str]] | None = None,
) -> None:
    """Every check, then the config's notes on stderr; or a one-line error and exit 1 before Snakemake
    plans a job. `stage_files`: each experiment's cells and final outputs (empty when it is off);
    `shared`: folders several experiments read; `rule_outputs`: each rule's output patterns;
    `resources`: glob patterns of torch files that rules make, with the rule that makes them; `reads`:
    the experiments whose data an experiment works on."""
    enabled = {stage: bool(config.get(stage, {}).get("enabled")) for stage in stage_files}
    try:
        check_rules(requested_rules(argv), rule_outputs or {}, enabled, shared)
        check_targets(requested_targets(argv), stage_files, enabled, shared, reads)
        known = [path for files in stage_files.values() for path in files]
        check_intact(known)
        check_cell_columns(stage_files)
        check_resources(resources or {})
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(1)
    for line in notes(config):
        print(line, file=sys.stderr)
