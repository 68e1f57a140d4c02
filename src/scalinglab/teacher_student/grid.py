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


def schedule(ts: dict, d) -> dict:
    """The training schedule for teacher dimension d: a per-d override, else the default."""
    return canonical(ts["schedule_by_d"].get(int(d), ts["schedule"]))
