"""Benchmark: a preset's whole teacher/student sweep, packed, against one bundle per process.

Trains every cell of the preset's teacher/student section the way the workflow's packed jobs do
(teacher_student.pack, one job per P or per (d, P), each running its width groups in one process per
thread), for a fraction F of every schedule's steps; and a sample of bundles the old way, each in a
fresh Python process of its own (start-up, torch import and data loading included), on the same
machine in the same run. Both are projected to the whole preset: a job's start-up once, its training
time divided by F; each cell is evaluated at its start and end only (the preset's n_evals
evaluations would not scale with F: a few seconds more per job). Pools are cut to --pool points
(the speed of a step does not depend on the pool's size; drawing the preset's pools through the
teachers would take longer than the benchmark).

Last two lines: `projected_seconds: X` (the whole preset, packed, on this device) and `speedup: Y`
(one bundle per process over packed, both projected, both using --threads cores).

    python benchmarks/sweep.py --configfile config/presets/sharma_kaplan_cpu.yaml [--fraction 0.02]
        [--device cpu] [--threads N] [--sample 3] [--pool 200000]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from scalinglab.core.config import load
from scalinglab.teacher_student import grid
from scalinglab.teacher_student.schedules import Schedule


def scaled(schedule: dict, fraction: float) -> dict:
    """The schedule with every phase's steps times `fraction` (at least 10 steps each)."""
    if schedule["kind"] == "onecycle":
        return {**schedule, "steps": max(10, round(schedule["steps"] * fraction))}
    return {**schedule, "phases": [{**p, "steps": max(10, round(p["steps"] * fraction))} for p in schedule["phases"]]}


def make_data(ts: dict, root: Path, pool: int) -> None:
    from scalinglab.teacher_student.stage import make_dataset, make_teacher

    for d in ts["d"]:
        teacher = root / f"teacher{d}.pt"
        make_teacher(d=d, embedding_width=ts["embedding_width"], teacher_seed=ts["teacher_seed"], teacher=teacher)
        make_dataset(teacher=teacher, n_points=ts["test_size"], stream=["test", d], points=root / f"test{d}.pt")
        for P in grid.train_sizes(ts):
            n = pool if P == "inf" else int(P)
            make_dataset(teacher=teacher, n_points=n, stream=["train", d, P], points=root / f"train{d}_{P}.pt")


def packed_jobs(ts: dict) -> list[tuple[str, list]]:
    """(P, bundles) of every training job at the preset's grain."""
    jobs = []
    for P in grid.train_sizes(ts):
        if ts["pack"] == "all":
            jobs.append((P, grid.job_bundles(ts, ts["d"], None, None)))
        elif ts["pack"] == "d":
            jobs += [(P, grid.job_bundles(ts, ts["d"], d, None)) for d in ts["d"]]
        else:
            jobs += [(P, [[d, w]]) for d in ts["d"] for w in ts["widths"]]
    return jobs


JOB = """
import json, sys, time
started = time.perf_counter()
from scalinglab.teacher_student.packing import train_pack
args = json.loads(sys.argv[1])
imported = time.perf_counter()
train_pack(**args)
print(json.dumps({"startup": imported - started, "train": time.perf_counter() - imported}))
"""


def run_job(args: dict) -> dict:
    """One training job in a fresh process, as Snakemake runs it; its wall time and parts."""
    started = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", JOB, json.dumps(args)], capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(f"training job failed:\n{out.stderr[-2000:]}")
    parts = json.loads(out.stdout.strip().splitlines()[-1])
    return {**parts, "wall": time.perf_counter() - started}


def job_args(ts, root, out, P, bundles, fraction, device, threads) -> dict:
    ds = list(dict.fromkeys(d for d, _ in bundles))
    return {
        "train": [str(root / f"train{d}_{P}.pt") for d in ds],
        "test": [str(root / f"test{d}.pt") for d in ds],
        "cells": [str(out / f"d{d}_n{w}_s{s}.parquet") for d, w in bundles for s in ts["seeds"]],
        "bundles": bundles,
        "P": P,
        "seeds": ts["seeds"],
        "schedules": {str(d): scaled(grid.schedule(ts, d), fraction) for d in ds},
        "n_evals": 2,  # the start and the end: evaluations do not scale with the fraction trained
        "device": device,
        "compile": "auto",
        "threads": threads,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configfile", required=True, help="a config or preset with a teacher_student section")
    parser.add_argument("--fraction", type=float, default=0.02, help="fraction of every schedule trained")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="cores (default: all)")
    parser.add_argument("--sample", type=int, default=3, help="bundles timed one per process")
    parser.add_argument("--pool", type=int, default=200_000, help="points per P = inf pool")
    args = parser.parse_args()
    ts = load(args.configfile)["teacher_student"]
    jobs = packed_jobs(ts)
    bundles = [[d, w] for d in ts["d"] for w in ts["widths"]] * len(ts["train_sizes"])
    print(f"preset {args.configfile}: {len(bundles)} bundles in {len(jobs)} packed jobs (pack: {ts['pack']})")
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        started = time.perf_counter()
        make_data(ts, root, args.pool)
        print(f"data: {time.perf_counter() - started:.1f} s (not projected: the workflow's own rules make it)")

        packed = 0.0
        for P, job in jobs:
            t = run_job(job_args(ts, root, root / "packed", P, job, args.fraction, args.device, args.threads))
            packed += t["wall"] - t["train"] + t["train"] / args.fraction
            print(f"packed job P={P}, {len(job)} bundles: {t['wall']:.1f} s wall ({t['train']:.1f} s training)")

        # the old way: one bundle per process, `threads` of them at a time; sample the widths evenly
        step = max(1, len(ts["widths"]) // args.sample)
        sample = [[ts["d"][len(ts["d"]) // 2], w] for w in ts["widths"][::step]][: args.sample]
        per_width = {}
        for bundle in sample:
            P = grid.train_sizes(ts)[0]
            t = run_job(job_args(ts, root, root / "single", P, [bundle], args.fraction, args.device, 1))
            per_width[bundle[1]] = t["wall"] - t["train"] + t["train"] / args.fraction
            print(f"one-bundle job n={bundle[1]}: {t['wall']:.1f} s wall ({t['startup']:.1f} s start-up)")
    # every bundle's projected time as a + b N (start-up and per-step overhead, plus FLOPs), fitted to
    # the sampled widths; the bundles run `threads` at a time
    from scalinglab.teacher_student.training import student_param_count

    sizes = {n: student_param_count(n, ts["embedding_width"]) for n in ts["widths"]}
    xs, ys = [sizes[n] for n in per_width], list(per_width.values())
    mean_x, mean_y = sum(xs) / len(xs), sum(ys) / len(ys)
    spread = sum((x - mean_x) ** 2 for x in xs)
    b = sum((x - mean_x) * (y - mean_y) for x, y in zip(xs, ys)) / spread if spread else 0.0
    a = mean_y - b * mean_x
    single = sum(max(a + b * sizes[n], min(ys)) for _, n in bundles) / max(1, min(args.threads, len(bundles)))
    print(f"one bundle per process, projected: {single:.0f} s ({len(bundles)} bundles, {args.threads} at a time)")
    steps = sum(Schedule.from_config(grid.schedule(ts, d)).total_steps for d in ts["d"])
    print(f"schedules: {steps:,} steps over the d's; fraction trained {args.fraction:g}")
    print(f"projected_seconds: {packed:.0f}")
    print(f"speedup: {single / packed:.2f}")


if __name__ == "__main__":
    sys.exit(main())
