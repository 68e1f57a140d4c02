"""The dimension stage's inputs from the whole config: one estimate per teacher d and per image
dataset, and the table other experiments read. The rule files read these; nothing here imports torch."""

from __future__ import annotations


def files(config: dict) -> list[str]:
    """One estimate file per teacher d (of the teacher/student experiment) and per image dataset."""
    found = []
    if config["teacher_student"]["enabled"]:
        found += [f"results/dimension/teacher_student/d~{d}.parquet" for d in config["teacher_student"]["d"]]
    if config["images"]["enabled"]:
        found += [f"results/dimension/images/{dataset}.parquet" for dataset in config["images"]["datasets"]]
    return found


def table(config: dict) -> str | list:
    """The dimension table as an optional input: its path, or [] when the stage is off or has nothing
    to measure (the function then gets None)."""
    return "results/tables/dimension.parquet" if config["dimension"]["enabled"] and files(config) else []
