"""Benchmark: the batched engine against a plain nn.Module + Adam loop, and the machine's matmul ceiling.

Trains E = 32 width-50 students [9, 50, 50, 1] on the same pre-generated teacher data for a fixed
number of steps: once as one ensemble with the engine (eager and compiled), once one model at a time
with torch.nn + torch.optim.Adam. Same threads for everything. Prints model-steps per second, then
`speedup: X.X` (best engine variant over the plain loop) and, last, `ceiling_fraction: Y.YY` (the
engine's FLOP/s, counting 6 N batch per model-step, over a large float32 matmul's).

    python benchmarks/engine.py [--threads 1] [--steps 400] [--members 32]
"""

from __future__ import annotations

import argparse
import time

import torch

from scalinglab.core.devices import pick_device
from scalinglab.teacher_student.teacher import Teacher
from scalinglab.teacher_student.training import MLPEnsemble, Trainer, student_param_count

W, WIDTH, BATCH = 9, 50, 200


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def matmul_flops(device, size=2048, repeats=10) -> float:
    a = torch.randn(size, size, device=device)
    b = torch.randn(size, size, device=device)
    for _ in range(2):
        a @ b
    sync(device)
    start = time.perf_counter()
    for _ in range(repeats):
        a @ b
    sync(device)
    return 2 * size**3 * repeats / (time.perf_counter() - start)


def plain_loop(xs, ys, members: int, steps: int, device) -> float:
    """Model-steps/s of the textbook loop, one model after another."""
    total = 0.0
    for member in range(members):
        torch.manual_seed(member)
        model = torch.nn.Sequential(
            torch.nn.Linear(W, WIDTH),
            torch.nn.ReLU(),
            torch.nn.Linear(WIDTH, WIDTH),
            torch.nn.ReLU(),
            torch.nn.Linear(WIDTH, 1),
        ).to(device)
        opt = torch.optim.Adam(model.parameters(), lr=1e-3)
        for step in range(10):  # warm-up, not timed
            opt.zero_grad()
            ((model(xs[step]).squeeze(-1) - ys[step]) ** 2).mean().backward()
            opt.step()
        sync(device)
        start = time.perf_counter()
        for step in range(steps):
            opt.zero_grad()
            loss = ((model(xs[step]).squeeze(-1) - ys[step]) ** 2).mean()
            loss.backward()
            opt.step()
        sync(device)
        total += time.perf_counter() - start
    return members * steps / total


def engine(xs, ys, members: int, steps: int, device, compile: bool) -> tuple[float, float]:
    """(model-steps/s, warm-up seconds) of the ensemble engine."""
    ens = MLPEnsemble.init(members, W, WIDTH, seeds=list(range(members)), device=device)
    trainer = Trainer(ens, compile=compile)
    lr = torch.tensor(1e-3, device=device)
    xe = xs.unsqueeze(1).expand(-1, members, -1, -1)  # every member sees the same data
    ye = ys.unsqueeze(1).expand(-1, members, -1)
    start = time.perf_counter()
    for step in range(10):
        trainer.step(xe[step], ye[step], lr)
    sync(device)
    warmup = time.perf_counter() - start
    start = time.perf_counter()
    for step in range(steps):
        trainer.step(xe[step], ye[step], lr)
    sync(device)
    return members * steps / (time.perf_counter() - start), warmup


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--steps", type=int, default=400)
    parser.add_argument("--members", type=int, default=32)
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = pick_device(args.device)
    teacher = Teacher.create(4, W, seed=0)
    x, y = teacher.sample(args.steps * BATCH, seed=1, device=device)
    xs, ys = x.view(args.steps, BATCH, W).contiguous(), y.view(args.steps, BATCH).contiguous()
    flop_per_model_step = 6 * student_param_count(WIDTH, W) * BATCH

    print(
        f"device: {device}, threads: {args.threads}, members: {args.members}, steps: {args.steps}, "
        f"width {WIDTH}, batch {BATCH}"
    )
    ceiling = matmul_flops(device)
    print(f"matmul ceiling: {ceiling / 1e9:.1f} GFLOP/s")
    plain = plain_loop(xs, ys, args.members, args.steps, device)
    print(
        f"plain nn.Module + Adam: {plain:,.0f} model-steps/s ({plain * flop_per_model_step / ceiling:.0%} of ceiling)"
    )
    results = {}
    for compile in (False, True):
        rate, warmup = engine(xs, ys, args.members, args.steps, device, compile)
        results[compile] = rate
        name = "engine, compiled" if compile else "engine, eager"
        print(
            f"{name}: {rate:,.0f} model-steps/s "
            f"({rate * flop_per_model_step / ceiling:.0%} of ceiling, warm-up {warmup:.1f}s)"
        )
    best = max(results.values())
    print(f"speedup: {best / plain:.1f}")
    print(f"ceiling_fraction: {best * flop_per_model_step / ceiling:.2f}")


if __name__ == "__main__":
    main()
