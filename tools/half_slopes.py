"""Where a teacher/student curve bends: 4/alpha over the smaller and the larger half of N (each run's
final test MSE, every cell), and how many cells pass the convergence check, per d.

    python tools/half_slopes.py [WORKDIR] [--tolerance 0.3]

Reads WORKDIR/results/tables/teacher_student.parquet. A law L ~ N^(-4/d) gives the same 4/alpha on
both halves; a floor (or students still improving) raises the large half's, a pre-asymptotic start
lowers the small half's.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("workdir", nargs="?", default=".")
    parser.add_argument("--tolerance", type=float, default=0.3, help="the convergence check's tolerance")
    args = parser.parse_args()
    table = pd.read_parquet(Path(args.workdir) / "results/tables/teacher_student.parquet")
    final = table.loc[table.groupby(["d", "P", "width", "seed"])["step"].idxmax()]
    print("d   P     4/alpha small half  4/alpha large half  converged cells  largest late_change")
    for (d, P), cells in final.groupby(["d", "P"]):
        sizes = sorted(cells["N"].unique())
        middle = sizes[len(sizes) // 2]
        halves = [cells[cells["N"] <= middle], cells[cells["N"] >= middle]]
        small, large = (4 / -np.polyfit(np.log(h["N"]), np.log(h["test_loss"]), 1)[0] for h in halves)
        passed = int((cells["late_change"] <= args.tolerance).sum())
        print(
            f"{d:<3} {P:<5g} {small:>18.2f}  {large:>18.2f}  {passed:>7} of {len(cells):<5}  "
            f"{cells['late_change'].max():>19.2f}"
        )


if __name__ == "__main__":
    main()
