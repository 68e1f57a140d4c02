"""Packed training jobs: one job trains many bundles (a bundle: the seeds of one (d, P, width)), so a
process that costs seconds to start (Python, torch, the data) does minutes of work, not one.

Bundles of one width and schedule share the student's shape [w, n, n, 1] whatever their d, so they
train as one ensemble (a *group*), each member streaming its own d's points with its own batch
generator: a packed cell gets exactly the batches, init and arithmetic of the same cell trained
alone (tests/test_packing.py checks the numbers bit for bit). On a CPU, a job with several threads
runs its groups in that many single-thread worker processes, each given a share of near-equal
expected time (`balance`); on CUDA the groups run one after another.

A group saves its state to its own checkpoint (`<job checkpoint>.width~<n>[.s<k>].pt`), also once
it is finished, so a job killed after some groups resumes the rest and rewrites the finished ones'
cells at once; the job removes them all when every cell is written.
"""

from __future__ import annotations

import json
import math
import multiprocessing
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from scalinglab.core.checkpoint import discard
from scalinglab.core.config import format_train_size, parse_train_size
from scalinglab.core.devices import device_for_job, pick_device
from scalinglab.core.divergence import series_diverged
from scalinglab.core.io import write_parquet
from scalinglab.core.provenance import provenance
from scalinglab.core.seeding import derive_seed
from scalinglab.teacher_student.schedules import Schedule, scaled_by_width
from scalinglab.teacher_student.teacher import load_tensors
from scalinglab.teacher_student.training import LATE, MLPEnsemble, student_param_count, train

EXPERIMENT = "teacher_student"


@dataclass
class Group:
    """Bundles (d, width, their cells) of one width and schedule: one ensemble."""

    width: int
    schedule: dict
    bundles: list  # [(d, cells)] in the job's order
    checkpoint: str | None = None

    def cost(self, seeds: int, w: int) -> float:
        """The group's expected CPU time, in FLOP: its student FLOPs (6 N per sample) plus a fixed
        cost per step, the measure the workers are balanced by."""
        sched = Schedule.from_config(self.schedule)
        flop = 6.0 * student_param_count(self.width, w) * seeds * len(self.bundles) * sched.samples_seen()
        return flop + STEP_OVERHEAD_FLOP * sched.total_steps


# A step costs about 140 µs beyond its arithmetic (dispatching ~40 torch calls, its share of the
# batch gathers and evaluations), which the matmuls' ~78 GFLOP/s would spend on 11 MFLOP: measured on the
# default's width groups (n = 8: 168 µs a step; n = 48: 672 µs) on a 2-core EPYC, 2026-12-06.
STEP_OVERHEAD_FLOP = 11e6


def balance(costs: list[float], workers: int) -> list[list[int]]:
    """Indices of `costs` split into at most `workers` shares of near-equal sums: longest first onto
    the least loaded share, then moves and swaps off the most loaded share while they shorten it
    (the default's 6 groups on 2 workers: 12.5 s for the longest share, where taking the next group
    when free gave 13.1 s)."""
    shares: list[list[int]] = [[] for _ in range(workers)]
    for i in sorted(range(len(costs)), key=lambda i: -costs[i]):
        min(shares, key=lambda share: sum(costs[j] for j in share)).append(i)
    while (exchange := _shortening_exchange(shares, costs)) is not None:
        top, other, i, j = exchange
        top.remove(i)
        other.append(i)
        if j is not None:
            other.remove(j)
            top.append(j)
    return [sorted(share, key=lambda i: -costs[i]) for share in shares if share]


def _shortening_exchange(shares: list[list[int]], costs: list[float]):
    """(top share, other share, i, j): moving i off the most loaded share, and j (None: nothing)
    back, that makes both shorter than the top share was; None when no such exchange exists."""
    load = [sum(costs[i] for i in share) for share in shares]
    top = max(range(len(shares)), key=load.__getitem__)
    for k, other in enumerate(shares):
        for i in shares[top] if k != top else []:
            for j in [None, *other]:
                delta = costs[i] - (0.0 if j is None else costs[j])
                if delta > 0 and load[k] + delta < load[top] * (1 - 1e-9):
                    return shares[top], other, i, j
    return None


def plan_groups(
    bundles: list, cells: list, seeds: list, schedules: dict, checkpoint=None, lr_by_width: dict | None = None
) -> list[Group]:
    """The job's groups: `bundles` [[d, width], ...] with their cells (seeds in order) in `cells`,
    grouped by (width, schedule of its d, its learning rate scaled by width), in the order the
    bundles first appear."""
    if len(cells) != len(bundles) * len(seeds):
        raise ValueError("one cell per bundle and seed, bundle by bundle")
    groups: dict[tuple, Group] = {}
    for i, (d, width) in enumerate(bundles):
        schedule = schedules[int(d)] if int(d) in schedules else schedules[str(d)]
        schedule = scaled_by_width(schedule, int(width), lr_by_width)
        key = (int(width), json.dumps(schedule, sort_keys=True))
        if key not in groups:
            groups[key] = Group(int(width), schedule, [])
        groups[key].bundles.append((int(d), list(cells[i * len(seeds) : (i + 1) * len(seeds)])))
    out = list(groups.values())
    if checkpoint and len(out) == 1:
        out[0].checkpoint = str(checkpoint)
    elif checkpoint:
        stem = Path(checkpoint)
        for group in out:
            same_width = [g for g in out if g.width == group.width]  # several schedules: tell them apart
            tag = f".s{same_width.index(group)}" if len(same_width) > 1 else ""
            group.checkpoint = str(stem.with_name(f"{stem.stem}.width~{group.width}{tag}{stem.suffix}"))
    return out


def train_pack(
    *,
    train: list,
    test: list,
    cells: list,
    bundles: list,
    P,
    seeds: list[int],
    schedules: dict,
    n_evals: int,
    device: str,
    compile,
    threads: int,
    checkpoint=None,
    checkpoint_every_s: float = 300.0,
    lr_by_width: dict | None = None,
    cuda_graphs="auto",
) -> None:
    """Train every bundle of one job and write one Parquet per cell (`cells`: bundle by bundle,
    seeds in order). `train`, `test`: the data files of each d, in the order the d's first appear
    in `bundles`; `schedules`: each d's schedule; `lr_by_width`: its learning rates scaled by each
    student's width (schedules.scaled_by_width); `cuda_graphs`: auto steps on CUDA in replayed
    graphs (graphs.py, the same numbers), false never (engine.cuda_graphs)."""
    train, test, cells = _as_list(train), _as_list(test), _as_list(cells)
    ds = list(dict.fromkeys(int(d) for d, _ in bundles))
    if not (len(train) == len(test) == len(ds)):
        raise ValueError(f"one train and one test file per d of the job ({ds})")
    groups = plan_groups(bundles, cells, seeds, schedules, checkpoint, lr_by_width)
    data = {
        d: tuple(load_tensors(path, ("x", "y", "embedding_width"), "data") for path in (tr, te))
        for d, tr, te in zip(ds, train, test)
    }
    w = int(data[ds[0]][0]["embedding_width"])
    pool = int(data[ds[0]][0]["x"].shape[0])
    most = max(Schedule.from_config(g.schedule).samples_seen() for g in groups)
    if parse_train_size(P) == math.inf and most > pool:
        print(
            f"note: a student sees up to {most:,} samples from a pool of {pool:,} ({most / pool:.1f} passes, each "
            "in a new order); raise teacher_student.pool_size for strictly fresh samples",
            file=sys.stderr,
        )
    costs = [g.cost(len(seeds), w) for g in groups]
    context = dict(
        data=data,
        P=P,
        seeds=seeds,
        n_evals=n_evals,
        compile=compile,
        every_s=checkpoint_every_s,
        cuda_graphs=cuda_graphs,
    )
    with device_for_job(pick_device(device)) as dev:
        workers = min(int(threads), len(groups)) if dev.type == "cpu" else 1
        if workers > 1:
            _WORKER_CONTEXT.update(context, device=str(dev))
            # fork: the workers share the parent's loaded data; each runs one thread through its share
            with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("fork")) as executor:
                shares = [[groups[i] for i in share] for share in balance(costs, workers)]
                for done in [executor.submit(_train_groups_in_worker, share) for share in shares]:
                    done.result()  # re-raises a worker's error here
        else:
            torch.set_num_threads(int(threads))
            for share in balance(costs, 1):  # one share: every group, the longest first
                for i in share:
                    _train_group(groups[i], dev, **context)
    for group in groups:
        discard(group.checkpoint)  # every cell is written: the job is complete


_WORKER_CONTEXT: dict = {}


def _train_groups_in_worker(groups: list[Group]) -> None:
    torch.set_num_threads(1)
    context = dict(_WORKER_CONTEXT)
    device = torch.device(context.pop("device"))
    for group in groups:
        _train_group(group, device, **context)


def _train_group(group: Group, dev, *, data, P, seeds, n_evals, compile, every_s, cuda_graphs) -> None:
    use_compile = dev.type == "cuda" if compile == "auto" else bool(compile)
    label = format_train_size(P)
    ds = [d for d, _ in group.bundles]
    w = int(data[ds[0]][0]["embedding_width"])
    member_seeds = [derive_seed("student", d, label, group.width, s) for d in ds for s in seeds]
    ens = MLPEnsemble.init(len(member_seeds), w, group.width, member_seeds, device=dev)
    sched = Schedule.from_config(group.schedule)
    mode = "stream" if parse_train_size(P) == math.inf else "sample"
    started = time.perf_counter()
    logs = train(
        ens,
        sched,
        [data[d][0]["x"].to(dev) for d in ds],
        [data[d][0]["y"].to(dev) for d in ds],
        [data[d][1]["x"].to(dev) for d in ds],
        [data[d][1]["y"].to(dev) for d in ds],
        mode=mode,
        data_seed=[derive_seed("batches", d, label, group.width, *seeds) for d in ds],
        members=[len(seeds)] * len(ds),
        n_evals=n_evals,
        compile=use_compile,
        label=f"P={label} n={group.width} d={','.join(map(str, ds))} ({len(member_seeds)} students)",
        checkpoint=group.checkpoint,
        checkpoint_every_s=every_s,
        spans="cuda" if dev.type == "cuda" and cuda_graphs == "auto" else None,
    )
    seconds = time.perf_counter() - started
    for b, (d, cell_paths) in enumerate(group.bundles):
        points = int(data[d][0]["x"].shape[0])
        settings = {
            "d": d,
            "width": group.width,
            "P": label,
            "seeds": seeds,
            "schedule": group.schedule,
            "embedding_width": w,
            "train_points": points,
            "data_passes": round(sched.samples_seen() / points, 3),
            "packed_with": ds,
        }
        for k, (seed, path) in enumerate(zip(seeds, cell_paths)):
            frame = cell_frame(logs, b * len(seeds) + k, d=d, w=w, width=group.width, P=parse_train_size(P), seed=seed)
            write_parquet(frame, path, provenance({**settings, "seed": seed}, str(dev), seconds))


def _as_list(value) -> list:
    return [value] if isinstance(value, (str, Path)) else list(value)


def late_change(steps: np.ndarray, test: np.ndarray) -> float:
    """The convergence diagnostic: the relative fall of the test loss over the last 20% of training,
    (L(0.8 T) - L(T)) / L(T), from the logs at those two steps (training.LATE); NaN without them."""
    total = int(steps[-1])
    at = np.flatnonzero(steps == round(LATE * total))
    if total < 5 or not at.size or not (test[-1] > 0):
        return float("nan")
    return float((test[at[0]] - test[-1]) / test[-1])


def cell_frame(logs: dict, member: int, *, d: int, w: int, width: int, P: float, seed: int) -> pd.DataFrame:
    test = logs["test_loss"][:, member]
    # test MSE, not train: it is logged at step 0 (the initial loss) and it is what the fits use
    diverged = bool(series_diverged(test))
    return pd.DataFrame(
        {
            "experiment": EXPERIMENT,
            "d": d,
            "embedding_width": w,
            "manifold_dim": min(d, w),
            "width": width,
            "N": student_param_count(width, w),
            "P": float(P),
            "seed": seed,
            "step": logs["step"].astype(np.int64),
            "samples": logs["samples"].astype(np.int64),
            "lr": logs["lr"],
            "train_loss": logs["train_loss"][:, member],
            "test_loss": test,
            "late_change": late_change(logs["step"], test),
            "status": "diverged" if diverged else "ok",
        }
    )
