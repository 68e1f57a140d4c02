"""Intrinsic-dimension speed and agreement: scalinglab.dimension against scikit-dimension.

Data: 50,000 points in 3,072 dimensions on a smooth 16-dimensional manifold, x = sqrt(2/D) cos(W z + b)
(random Fourier features of Gaussian latents z ~ N(0, I_16), W ~ N(0, 1/lengthscale^2), b ~ U(0, 2 pi),
seeded; full rank, like image data, so nothing shortcuts the 3,072-dimensional distances).
Ours: one exact k-NN pass (k = 20) serves TwoNN and MLE(k=20), 200 bootstrap resamples each.
skdim: TwoNN(discard_fraction=0.1).fit(X) and MLE().fit(X, n_neighbors=20, comb="mle") ((k-1) normalisation),
the same estimators, each computing its own neighbours, on the same points in the same run.
Prints both estimates and times, their agreement, the fraction of pair distances our pruned k-NN
pass computed, and as the LAST line `seconds: X` (our total). --compare-full also times the full
(unpruned) pass on the same points in the same run and checks that it finds the same distances.

    PYTHONPATH=src .venv/bin/python benchmarks/dimension.py [--n 50000] [--skdim-subsample M] [--skip-skdim]
        [--method auto|full|pruned] [--compare-full]
"""

from __future__ import annotations

import argparse
import math
import os
import time

import numpy as np
import torch

from scalinglab.dimension.estimators import MLE, TwoNN
from scalinglab.dimension.knn import knn_distances


def manifold_points(n: int, dim: int, latent: int, lengthscale: float, seed: int) -> np.ndarray:
    gen = torch.Generator().manual_seed(seed)
    z = torch.randn(n, latent, generator=gen, dtype=torch.float64)
    w = torch.randn(latent, dim, generator=gen, dtype=torch.float64) / lengthscale
    b = torch.rand(dim, generator=gen, dtype=torch.float64) * 2 * math.pi
    return (math.sqrt(2 / dim) * torch.cos(z @ w + b)).float().numpy()


def ours(X: np.ndarray, k: int, method: str = "auto") -> dict:
    start, cpu_start = time.perf_counter(), time.process_time()
    info = {}
    dist = knn_distances(X, k, method=method, info=info)
    knn_s = time.perf_counter() - start
    twonn = TwoNN(discard_fraction=0.1).fit_distances(dist)
    mle = MLE(k=k).fit_distances(dist)
    total_s = time.perf_counter() - start
    return {
        "twonn": twonn,
        "mle": mle,
        "knn_s": knn_s,
        "total_s": total_s,
        "cpu_s": time.process_time() - cpu_start,
        "dist": dist,
        "info": info,
    }


def matmul_gflops() -> float:
    """This machine's float32 matmul speed right now (it is shared, so it varies): the k-NN floor."""
    a, b = torch.randn(2048, 3072), torch.randn(3072, 4096)
    a @ b
    start = time.perf_counter()
    a @ b
    return 2 * 2048 * 3072 * 4096 / (time.perf_counter() - start) / 1e9


def skdim_estimates(X: np.ndarray, k: int) -> dict:
    import skdim

    start = time.perf_counter()
    mle = skdim.id.MLE().fit(X, n_neighbors=k, comb="mle").dimension_
    mle_s = time.perf_counter() - start
    start = time.perf_counter()
    twonn = skdim.id.TwoNN(discard_fraction=0.1).fit(X).dimension_
    twonn_s = time.perf_counter() - start
    return {"twonn": twonn, "twonn_s": twonn_s, "mle": mle, "mle_s": mle_s}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=50_000)
    parser.add_argument("--dim", type=int, default=3_072)
    parser.add_argument("--latent", type=int, default=16)
    parser.add_argument("--lengthscale", type=float, default=4.0)
    parser.add_argument("--k", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument(
        "--skdim-subsample",
        type=int,
        metavar="M",
        help="run skdim (and ours again, for agreement) on M of the points; default: all",
    )
    parser.add_argument("--skip-skdim", action="store_true", help="time ours only")
    parser.add_argument("--method", choices=("auto", "full", "pruned"), default="auto", help="our k-NN pass")
    parser.add_argument(
        "--compare-full",
        action="store_true",
        help="also time the full (unpruned) k-NN pass on the same points and compare distances",
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    X = manifold_points(args.n, args.dim, args.latent, args.lengthscale, args.seed)
    print(
        f"data: {args.n} x {args.dim} float32, a {args.latent}-dimensional manifold (random Fourier features, "
        f"lengthscale {args.lengthscale}); torch threads {torch.get_num_threads()}, CPU cores {os.cpu_count()}, "
        f"load average {os.getloadavg()[0]:.1f}"
    )
    gflops = matmul_gflops()
    floor_s = args.n**2 * (args.dim + 2) / (gflops * 1e9)  # half of the n^2 distances, 2 flops per term
    print(
        f"float32 matmul here now: {gflops:.0f} GFLOPS, "
        f"so the upper-triangle distance matmul alone takes >= {floor_s:.0f} s"
    )
    result = ours(X, args.k, args.method)
    tw, ml = result["twonn"], result["mle"]
    print(
        f"ours  TwoNN {tw.dimension_:.3f} [{tw.ci_[0]:.3f}, {tw.ci_[1]:.3f}]   MLE(k={args.k}) {ml.dimension_:.3f} "
        f"[{ml.ci_[0]:.3f}, {ml.ci_[1]:.3f}]   k-NN {result['knn_s']:.1f} s, total {result['total_s']:.1f} s "
        f"(CPU time {result['cpu_s']:.1f} s over {args.threads} threads)"
    )
    info = result["info"]
    details = ", ".join(
        f"{key} {info[key]:,}" if isinstance(info[key], int) else f"{key} {info[key]:.3g}"
        for key in ("projection_dims", "open_rows", "predicted_cost_ratio")
        if key in info
    )
    print(
        f"k-NN pass: {info['method']}; exact pair distances computed: {info['exact_pairs']:,} of {info['all_pairs']:,} "
        f"({info['pair_fraction']:.2%}){'; ' + details if details else ''}"
    )
    if args.compare_full:
        start = time.perf_counter()
        full = knn_distances(X, args.k, method="full")
        full_s = time.perf_counter() - start
        print(
            f"full pass (no pruning) on the same points: k-NN {full_s:.1f} s, "
            f"{full_s / result['knn_s']:.2f}x our k-NN time; "
            f"max relative difference of the {args.k} distances {np.max(np.abs(result['dist'] / full - 1)):.1e}"
        )

    if not args.skip_skdim:
        Xs, mine = X, result
        if args.skdim_subsample and args.skdim_subsample < len(X):
            pick = np.sort(np.random.default_rng(args.seed).choice(len(X), args.skdim_subsample, replace=False))
            Xs = X[pick]
            mine = ours(Xs, args.k)
            print(
                f"ours on the {len(Xs)}-point subsample: TwoNN {mine['twonn'].dimension_:.3f}  MLE "
                f"{mine['mle'].dimension_:.3f}  total {mine['total_s']:.1f} s"
            )
        sk = skdim_estimates(Xs, args.k)
        print(
            f"skdim TwoNN {sk['twonn']:.3f} in {sk['twonn_s']:.1f} s   "
            f"MLE(k={args.k}) {sk['mle']:.3f} in {sk['mle_s']:.1f} s"
            f"   ({len(Xs)} points)"
        )
        print(
            f"agreement: TwoNN {mine['twonn'].dimension_ / sk['twonn'] - 1:+.2e}  "
            f"MLE {mine['mle'].dimension_ / sk['mle'] - 1:+.2e} "
            "(relative difference, ours / skdim - 1)"
        )
        print(
            f"speed: skdim TwoNN + MLE {sk['twonn_s'] + sk['mle_s']:.1f} s vs ours {mine['total_s']:.1f} s: "
            f"{(sk['twonn_s'] + sk['mle_s']) / mine['total_s']:.1f}x"
        )
    print(f"seconds: {result['total_s']:.1f}")


if __name__ == "__main__":
    main()
