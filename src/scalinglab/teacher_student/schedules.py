"""Learning-rate and batch-size schedules: the paper's phases and OneCycle.

A schedule is a list of phases, each with a number of steps, a batch size and a learning rate that
is either constant or given per step; `lr_per_step()` and `batch_per_step()` expand it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Phase:
    steps: int
    batch: int
    lr: float


@dataclass(frozen=True)
class Schedule:
    """`kind` is "phases" (constant lr per phase, as Sharma & Kaplan's Table 1) or "onecycle"."""

    kind: str
    phases: tuple[Phase, ...]
    pct_start: float = 0.3  # onecycle: fraction of steps spent warming up
    div_factor: float = 25.0  # onecycle: initial lr = max_lr / div_factor
    final_div_factor: float = 1e4  # onecycle: final lr = initial lr / final_div_factor

    @classmethod
    def from_config(cls, cfg: dict) -> Schedule:
        kind = cfg["kind"]
        if kind == "phases":
            phases = tuple(Phase(int(p["steps"]), int(p["batch"]), float(p["lr"])) for p in cfg["phases"])
            return cls(kind="phases", phases=phases)
        if kind == "onecycle":
            phase = Phase(int(cfg["steps"]), int(cfg["batch"]), float(cfg["max_lr"]))
            return cls(
                kind="onecycle",
                phases=(phase,),
                pct_start=float(cfg.get("pct_start", 0.3)),
                div_factor=float(cfg.get("div_factor", 25.0)),
                final_div_factor=float(cfg.get("final_div_factor", 1e4)),
            )
        raise ValueError(f"unknown schedule kind {kind!r}; use 'phases' or 'onecycle'")

    @property
    def total_steps(self) -> int:
        return sum(p.steps for p in self.phases)

    def batch_per_step(self) -> np.ndarray:
        return np.concatenate([np.full(p.steps, p.batch, dtype=np.int64) for p in self.phases])

    def samples_seen(self) -> int:
        return int(sum(p.steps * p.batch for p in self.phases))

    def lr_per_step(self) -> np.ndarray:
        if self.kind == "phases":
            return np.concatenate([np.full(p.steps, p.lr) for p in self.phases])
        return onecycle_lr(
            self.phases[0].steps, self.phases[0].lr, self.pct_start, self.div_factor, self.final_div_factor
        )


def scaled_by_width(schedule: dict, width: int, lr_by_width: dict | None) -> dict:
    """The schedule of a student of hidden width n: every learning rate times (reference / n)^exponent
    (`lr_by_width`: {exponent, reference}; exponent 0 or None: unchanged). Wide students trained at a
    narrow one's rate stall above their law (docs/reproduction.md, the CPU preset): a rate falling
    with width, as in muP-style parametrisations, lets them keep improving."""
    exponent = float((lr_by_width or {}).get("exponent", 0.0))
    if exponent == 0.0:
        return schedule
    factor = (float(lr_by_width["reference"]) / float(width)) ** exponent
    if schedule["kind"] == "onecycle":
        return {**schedule, "max_lr": schedule["max_lr"] * factor}
    return {**schedule, "phases": [{**p, "lr": p["lr"] * factor} for p in schedule["phases"]]}


def onecycle_lr(steps: int, max_lr: float, pct_start: float, div_factor: float, final_div_factor: float) -> np.ndarray:
    """Cosine OneCycle exactly as torch.optim.lr_scheduler.OneCycleLR (three_phase=False)."""
    initial = max_lr / div_factor
    final = initial / final_div_factor
    up_end = float(pct_start * steps) - 1
    down_end = float(steps - 1)

    def cos_anneal(start: float, end: float, pct: float) -> float:
        return end + (start - end) / 2.0 * (math.cos(math.pi * pct) + 1)

    lrs = np.empty(steps)
    for step in range(steps):
        if step <= up_end:
            lrs[step] = cos_anneal(initial, max_lr, step / up_end if up_end > 0 else 1.0)
        else:
            span = down_end - up_end
            lrs[step] = cos_anneal(max_lr, final, (step - up_end) / span if span > 0 else 1.0)
    return lrs


def log_spaced_steps(total: int, count: int) -> list[int]:
    """Distinct steps 0 < s <= total, roughly log-spaced, always including 0 and total."""
    if total <= 0:
        return [0]
    steps = np.unique(np.round(np.logspace(0, math.log10(total), max(count, 2))).astype(int))
    return sorted({0, total, *[int(s) for s in steps if 0 < s <= total]})
