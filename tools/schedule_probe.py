"""Which training schedule lets the teacher/student students reach their law: one teacher dimension d,
students of the given widths (2 seeds), one schedule, and 4/alpha fitted over all widths and over
the smaller and the larger half of N (a curve that flattens at large N has a larger 4/alpha there).

    python tools/schedule_probe.py D NAME STEPS MAX_LR LR_EXPONENT WIDTHS [EMBEDDING_WIDTH] [POOL]

STEPS > 0: OneCycle of that many steps at batch 200 and peak rate MAX_LR x (WIDTHS[0] / n)^LR_EXPONENT
for width n. STEPS < 0: Sharma & Kaplan's Table-1 phases scaled to -STEPS steps (batch 200, 1000,
4000; the last phase at a tenth of the rate). Prints one line per width (N, final and 80%-of-training
test MSE per seed, seconds) and last `RESULT NAME d=D: 4/alpha all X, small half Y, large half Z`.
The measurements in docs/reproduction.md ("the CPU preset") are its runs.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
import torch

from scalinglab.core.seeding import derive_seed
from scalinglab.teacher_student.schedules import Schedule
from scalinglab.teacher_student.stage import make_dataset, make_teacher
from scalinglab.teacher_student.teacher import load_tensors
from scalinglab.teacher_student.training import MLPEnsemble, student_param_count, train

SEEDS, BATCH = [0, 1], 200


def schedule(steps: int, lr: float) -> Schedule:
    if steps > 0:
        return Schedule.from_config({"kind": "onecycle", "steps": steps, "batch": BATCH, "max_lr": lr})
    f = -steps / 240_000
    phases = [
        {"steps": round(200_000 * f), "batch": 200, "lr": lr},
        {"steps": round(20_000 * f), "batch": 1000, "lr": lr},
        {"steps": round(20_000 * f), "batch": 4000, "lr": lr / 10},
    ]
    return Schedule.from_config({"kind": "phases", "phases": phases})


def main() -> None:
    d, name, steps, max_lr, lr_exp = (
        int(sys.argv[1]),
        sys.argv[2],
        int(sys.argv[3]),
        float(sys.argv[4]),
        float(sys.argv[5]),
    )
    widths = [int(x) for x in sys.argv[6].split(",")]
    w = int(sys.argv[7]) if len(sys.argv) > 7 else 16
    pool_size = int(sys.argv[8]) if len(sys.argv) > 8 else 2_000_000
    torch.set_num_threads(1)
    root = Path(f"results/schedule_probe/data_w{w}")
    root.mkdir(parents=True, exist_ok=True)
    teacher, pool, test = root / f"t{d}.pt", root / f"pool{d}_{pool_size}.pt", root / f"test{d}.pt"
    if not pool.exists():
        make_teacher(d=d, embedding_width=w, teacher_seed=0, teacher=teacher)
        make_dataset(teacher=teacher, n_points=pool_size, stream=["train", d], points=pool)
        make_dataset(teacher=teacher, n_points=20_000, stream=["test", d], points=test)
    train_data = load_tensors(pool, ("x", "y", "embedding_width"), "data")
    test_data = load_tensors(test, ("x", "y", "embedding_width"), "data")
    sizes, losses = [], []
    for n in widths:
        sched = schedule(steps, max_lr * (widths[0] / n) ** lr_exp)
        ens = MLPEnsemble.init(len(SEEDS), w, n, [derive_seed("student", d, "inf", n, s) for s in SEEDS])
        started = time.perf_counter()
        logs = train(
            ens,
            sched,
            train_data["x"],
            train_data["y"],
            test_data["x"],
            test_data["y"],
            mode="stream",
            data_seed=derive_seed("b", d, n),
            n_evals=20,
        )
        late = logs["test_loss"][logs["step"] == round(0.8 * sched.total_steps)][0]
        sizes.append(student_param_count(n, w))
        losses.append(np.mean(np.log(logs["test_loss"][-1])))
        print(
            f"{name} d={d} n={n} N={sizes[-1]} final {logs['test_loss'][-1].round(7).tolist()} "
            f"at 80% {late.round(7).tolist()} {time.perf_counter() - started:.0f} s",
            flush=True,
        )
    x, y, half = np.log(sizes), np.array(losses), len(widths) // 2
    slopes = [np.polyfit(x[s], y[s], 1)[0] for s in (slice(None), slice(0, half + 1), slice(half, None))]
    all_, small, large = (4 / -s for s in slopes)
    print(f"RESULT {name} d={d}: 4/alpha all {all_:.2f}, small half {small:.2f}, large half {large:.2f}")


if __name__ == "__main__":
    main()
