"""Why gamma_pred = gamma1 gamma2 misses gamma_meas on a deep-net run: the two premises of the
implicit-bias theory (D'Amico, Bocchi & Negri), checked on the runs themselves.

1. The early-training law eps ~ k1 lambda^-gamma1 is the same for every P: the seed-mean error at a
   few fixed norms in the early regime, per P (the theory wants one column of equal numbers).
2. Each P's optimum lies on that common envelope: eps_opt(P) against the envelope fitted to the
   early points of all P together. If the ratio grows with P as P^delta, then
   gamma_meas = gamma1 gamma2 - delta (to first order), whatever gamma1 and gamma2 are.
3. How sharp the minimum is: the span of ln lambda over which the mean error stays within one
   standard error of its minimum (a flat bottom leaves lambda_opt, hence gamma2, ill-determined).

    python tools/implicit_bias_evidence.py results/runs/deep_nets/model~cnn/dataset~fashion-mnist [--error test_error]

Uses the default (robust) analysis of scalinglab.laws.implicit_bias on (P, seed, log_norm, error).
"""

from __future__ import annotations

import argparse
import glob
import math

import numpy as np
import pandas as pd

from scalinglab.laws.implicit_bias.analysis import analyse


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", help="a (model, dataset) folder of deep-net cells: P~*/seed~*.parquet")
    parser.add_argument("--error", default="test_error", help="test_error (default) or test_loss")
    args = parser.parse_args()
    frame = pd.concat([pd.read_parquet(p) for p in sorted(glob.glob(f"{args.runs}/P~*/seed~*.parquet"))])
    frame = frame[frame["status"] == "ok"]
    result = analyse(
        frame, p="P", seed="seed", norm="log_norm", error=args.error, norm_is_log=True, bootstrap=0, sensitivity=False
    )
    curves = result.curves
    print(
        f"robust analysis: gamma1 {result.gamma1:.3f}, gamma2 {result.gamma2:.3f}, "
        f"gamma_pred {result.gamma_pred:.3f}, gamma_meas {result.gamma_meas:.3f}"
    )

    # 1. the error at fixed norms, per P
    lo = max(g["log_lam"].min() for _, g in curves.groupby("P"))
    hi = min(math.log(v) for v in result.lambda_opt.values())
    norms = np.linspace(lo, max(lo, hi), 5)
    print("\n1. seed-mean error at fixed ln R (the early law says: equal down each column)")
    print("   ln R     " + "".join(f"{x:>8.2f}" for x in norms))
    for P, g in curves.groupby("P"):
        values = np.interp(norms, g["log_lam"], g["error"], left=np.nan, right=np.nan)
        print(f"   P={P:<6g} " + "".join(f"{v:>8.4f}" for v in values))

    # 2. each optimum against the envelope fitted to every P's early points together
    early = [
        g[np.asarray(result.collapse.loc[result.collapse["P"] == P, "in_fit"], bool)]
        for P, g in curves.groupby("P")
        if result.collapse.loc[result.collapse["P"] == P, "in_fit"].any()
    ]
    early = pd.concat(early)
    slope, intercept = np.polyfit(early["log_lam"], np.log(early["error"]), 1)
    print(f"\n2. common envelope fitted to the early points of every P: ln eps = {intercept:.3f} {slope:+.3f} ln R")
    censored = {float(p) for p in result.details.get("censored", {})}
    ps, ratios = [], []
    for P in sorted(result.lambda_opt):
        log_opt = math.log(result.lambda_opt[P])
        envelope = math.exp(intercept + slope * log_opt)
        ratio = result.eps_opt[P] / envelope
        flag = "  (censored: lambda_opt is a lower bound)" if float(P) in censored else ""
        print(
            f"   P={P:<6g} ln lambda_opt {log_opt:6.3f}  eps_opt {result.eps_opt[P]:.4f}  "
            f"envelope there {envelope:.4f}  ratio {ratio:.3f}{flag}"
        )
        if float(P) not in censored:
            ps.append(P)
            ratios.append(ratio)
    delta = np.polyfit(np.log(ps), np.log(ratios), 1)[0]
    print(
        f"   delta = d ln(ratio) / d ln P = {delta:.3f} over the uncensored P: gamma1 gamma2 - delta = "
        f"{result.gamma_pred - delta:.3f} against gamma_meas {result.gamma_meas:.3f}"
    )

    # 3. how flat the bottom is
    print("\n3. span of ln R where the mean error is within one standard error of its minimum")
    for P, g in curves.groupby("P"):
        i = int(np.argmin(g["error"].to_numpy()))
        sem = float(g["error_sem"].iloc[i]) if math.isfinite(g["error_sem"].iloc[i]) else 0.0
        near = g[g["error"] <= g["error"].iloc[i] + sem]
        print(
            f"   P={P:<6g} min {g['error'].iloc[i]:.4f} +- {sem:.4f}: ln R from {near['log_lam'].min():.2f} "
            f"to {near['log_lam'].max():.2f} (curve ends at {g['log_lam'].max():.2f})"
        )


if __name__ == "__main__":
    main()
