"""The teacher/student grid from the config section `teacher_student`: its bundles, the cells of each
and their files, and each d's schedule. The rule file reads these; nothing here imports torch."""

from __future__ import annotations

from scalinglab.core.config import canonical, format_train_size


def train_sizes(ts: dict) -> list[str]:
    """The P settings as path text: "inf" or an integer."""
    return [format_train_size(P) for P in ts["train_sizes"]]


def cells(ts: dict, d, P, width) -> list[str]:
    """The cells of one bundle (d, P, width): one Parquet per seed, in the order of the seeds."""
    return [f"results/runs/teacher_student/d~{d}/P~{P}/width~{width}/seed~{seed}.parquet" for seed in ts["seeds"]]


def all_cells(ts: dict) -> list[str]:
    return [cell for d in ts["d"] for P in train_sizes(ts) for width in ts["widths"] for cell in cells(ts, d, P, width)]


def job_path(pack: str) -> str:
    """A training job's part of a path (logs, benchmarks, checkpoints), by the config's grain `pack`:
    its wildcards are exactly the job's."""
    return {"width": "d~{d}/P~{P}/width~{width}", "d": "d~{d}/P~{P}", "all": "P~{P}"}[pack]


def job_bundles(section: dict, ds: list, d, width) -> list[list]:
    """The bundles [d, width] of one job, d and width its wildcards where the grain has them
    (`ds`: every d of the grid)."""
    pack = section["pack"]
    ds = [int(d)] if pack in ("width", "d") else [int(x) for x in ds]
    widths = [int(width)] if pack == "width" else section["widths"]
    return [[x, w] for x in ds for w in widths]


def job_cells(section: dict, ds: list, cells_of, d, P, width) -> list[str]:
    """The output cells of one job, bundle by bundle (`cells_of(d, P, width)`: a bundle's cells);
    d, P and width may be wildcard patterns ("{d}"), those the grain does not name are expanded."""
    pack = section["pack"]
    job_ds = [d] if pack in ("width", "d") else ds
    widths = [width] if pack == "width" else section["widths"]
    return [cell for x in job_ds for w in widths for cell in cells_of(x, P, w)]


def schedule(ts: dict, d) -> dict:
    """The training schedule for teacher dimension d: a per-d override, else the default."""
    return canonical(ts["schedule_by_d"].get(int(d), ts["schedule"]))


def job_threads(section: dict, engine_threads: int) -> int:
    """The threads a training job asks for (`section`: teacher_student or joint): one bundle's,
    engine.threads; a packed job's, one per worker process (`workers`; all: one per width)."""
    if section["pack"] == "width":
        return engine_threads
    return len(section["widths"]) if section["workers"] == "all" else int(section["workers"])
