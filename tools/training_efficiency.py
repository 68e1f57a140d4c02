"""How much of the machine the teacher/student training jobs of a finished run used: their student
FLOPs (6 N per sample seen, as Kaplan et al. count training compute; evaluations not counted) over
the job-seconds Snakemake's `benchmark:` files recorded (wall time, start-up included, times the
threads each job was given), against one core's float32 matmul ceiling measured now.

    python tools/training_efficiency.py [WORKDIR] [--configfile config/config.yaml] [--threads N]

--threads: the threads each job got (default: as the workflow gives them, grid.job_threads capped
by this machine's cores). Last line: `ceiling_fraction: X`.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import pandas as pd
import torch

from scalinglab.core.config import load
from scalinglab.teacher_student import grid
from scalinglab.teacher_student.schedules import Schedule
from scalinglab.teacher_student.training import student_param_count


def matmul_ceiling(size: int = 2048, repeats: int = 10) -> float:
    """One core's float32 GEMM rate, FLOP/s."""
    torch.set_num_threads(1)
    a, b = torch.randn(size, size), torch.randn(size, size)
    for _ in range(2):
        a @ b
    started = time.perf_counter()
    for _ in range(repeats):
        a @ b
    return 2 * size**3 * repeats / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("workdir", nargs="?", default=".")
    parser.add_argument("--configfile", default="config/config.yaml")
    parser.add_argument("--threads", type=int, help="threads of each training job")
    args = parser.parse_args()
    config = load(args.configfile)
    ts = config["teacher_student"]
    flop = sum(
        6.0
        * student_param_count(n, ts["embedding_width"])
        * len(ts["seeds"])
        * Schedule.from_config(grid.schedule(ts, d)).samples_seen()
        for d in ts["d"]
        for n in ts["widths"]
    ) * len(ts["train_sizes"])
    files = sorted((Path(args.workdir) / "results/benchmarks/train_teacher_student").rglob("*.tsv"))
    if not files:
        raise SystemExit(f"no benchmark files under {args.workdir}/results/benchmarks/train_teacher_student")
    # as the workflow gives them: the job's request, capped by the cores (Snakemake's --cores all)
    threads = args.threads or min(os.cpu_count() or 1, grid.job_threads(ts, config["engine"]["threads"]))
    # wall time only: Snakemake samples a job's CPU time every 0.5 s for 15 s, then every 30 s, so the
    # cpu_time column of a job of 15-45 s stops at its sample at 15 s
    seconds = sum(float(pd.read_csv(f, sep="\t")["s"].iloc[0]) for f in files)
    job_seconds = seconds * threads
    ceiling = matmul_ceiling()
    rate = flop / job_seconds
    print(f"{len(files)} training jobs (pack: {ts['pack']}, {threads} thread(s) each): {flop:.3g} student FLOP")
    print(f"wall {seconds:.1f} s x {threads} threads = {job_seconds:.1f} job-seconds")
    print(f"{rate / 1e9:.1f} GFLOP/s per core; ceiling {ceiling / 1e9:.1f} GFLOP/s")
    print(f"ceiling_fraction: {rate / ceiling:.3f}")


if __name__ == "__main__":
    main()
