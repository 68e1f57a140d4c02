"""Benchmark: the students' training loop on CUDA with its steps replayed as CUDA graphs against the
same loop stepping eagerly, in the same run (teacher_student/graphs.py, engine.cuda_graphs).

Trains one packed width group as the paper's preset has them (27 students: 9 d x 3 seeds, width n,
batch 200, embedding width 20) through `training.train` both ways, and checks that the two give the
same parameters bit for bit. Prints steps per second of each, then `speedup: X` (graphs over eager).

    python benchmarks/graphs.py [--width 60] [--steps 4096] [--members 27] [--compile]
"""

from __future__ import annotations

import argparse
import time

import torch

from scalinglab.teacher_student.schedules import Schedule
from scalinglab.teacher_student.training import MLPEnsemble, train

W, BATCH = 20, 200


def timed_run(args, spans: str | None, pool, test) -> tuple[float, torch.Tensor]:
    """(steps/s, final parameters) of one run of `args.steps` steps."""
    ens = MLPEnsemble.init(args.members, W, args.width, seeds=list(range(args.members)), device="cuda")
    schedule = Schedule.from_config({"kind": "onecycle", "steps": args.steps, "batch": BATCH, "max_lr": 0.01})
    torch.cuda.synchronize()
    start = time.perf_counter()
    train(ens, schedule, *pool, *test, mode="stream", data_seed=0, n_evals=10, compile=args.compile, spans=spans)
    torch.cuda.synchronize()
    return args.steps / (time.perf_counter() - start), ens.flat.cpu()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--width", type=int, default=60)
    parser.add_argument("--steps", type=int, default=4096)
    parser.add_argument("--members", type=int, default=27)
    parser.add_argument("--compile", action="store_true", help="torch.compile the step too (engine.compile)")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        raise SystemExit("benchmarks/graphs.py needs a CUDA device (CUDA graphs are a GPU feature)")
    gen = torch.Generator().manual_seed(0)
    pool = (torch.randn(1_000_000, W, generator=gen).cuda(), torch.randn(1_000_000, generator=gen).cuda())
    test = (torch.randn(20_000, W, generator=gen).cuda(), torch.randn(20_000, generator=gen).cuda())
    print(f"device: {torch.cuda.get_device_name()}, width {args.width}, members {args.members}, steps {args.steps}")
    timed_run(args, None, pool, test)  # warm-up: CUDA context, cuBLAS, the compiler
    eager, eager_flat = timed_run(args, None, pool, test)
    graphs, graphs_flat = timed_run(args, "cuda", pool, test)  # its capture counted in its time
    print(f"eager: {eager:,.0f} steps/s")
    print(f"graphs: {graphs:,.0f} steps/s (same parameters bit for bit: {torch.equal(eager_flat, graphs_flat)})")
    print(f"speedup: {graphs / eager:.2f}")


if __name__ == "__main__":
    main()
