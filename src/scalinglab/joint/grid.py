"""The joint-law grid from the config section `joint`: teacher/student cells on widths x P at one d,
and each P's schedule. The rule file reads these; nothing here imports torch."""

from __future__ import annotations

import math

from scalinglab.core.config import canonical


def cells(joint: dict, d, P, width) -> list[str]:
    """The cells of one bundle (d, P, width): one Parquet per seed, in the order of the seeds."""
    return [f"results/runs/joint/d~{d}/P~{P}/width~{width}/seed~{seed}.parquet" for seed in joint["seeds"]]


def all_cells(joint: dict) -> list[str]:
    return [
        cell for P in joint["train_sizes"] for width in joint["widths"] for cell in cells(joint, joint["d"], P, width)
    ]


def schedule(joint: dict, P) -> dict:
    """OneCycle for `epochs` passes over the P points: samples seen (and compute) grow with P."""
    sched = joint["schedule"]
    steps = max(2, math.ceil(sched["epochs"] * int(P) / sched["batch"]))
    extra = {key: sched[key] for key in ("pct_start", "div_factor", "final_div_factor") if key in sched}
    return canonical({"kind": "onecycle", "steps": steps, "batch": sched["batch"], "max_lr": sched["max_lr"], **extra})
