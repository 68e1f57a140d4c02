"""Compute-optimal allocation: the frontier N*(C), D*(C) at compute C = 6·N·D.

- `compute_optimal`       the frontier of a fitted joint law (`joint.JointFit`), with bootstrap CIs;
- `allocation_exponents`  its exponents a = beta/(alpha+beta), b = alpha/(alpha+beta), with CIs;
- `empirical_frontier`    the best (N, D) cell per compute bucket of a table, and a power law N*(C).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy import stats

from scalinglab.core.errors import UserError
from scalinglab.core.io import json_float, require_columns
from scalinglab.laws.joint.fit import JointFit
from scalinglab.laws.power_law import positive_column

# --------------------------------------------------------------------------------------------
# Compute-optimal allocation: minimise L(N, D) at fixed C = 6·N·D


def _frontier(E, A, B, alpha, beta, C):
    """N*, D*, L* at compute C for laws given by (broadcastable) parameter arrays.

    dL/dN = 0 on N·D = C/6 gives alpha·A·N^-alpha = beta·B·D^-beta, hence N* = G (C/6)^(beta/(alpha+beta))
    with G = (alpha A / (beta B))^(1/(alpha+beta)), and D* = (C/6) / N*.
    """
    with np.errstate(divide="ignore", over="ignore", invalid="ignore"):
        G = (alpha * A / (beta * B)) ** (1.0 / (alpha + beta))
        N = G * (C / 6.0) ** (beta / (alpha + beta))
        D = (C / 6.0) / N
        return N, D, E + A * N**-alpha + B * D**-beta


def _check_frontier_law(fit: JointFit) -> None:
    if not (fit.A > 0 and fit.B > 0 and fit.alpha > 0 and fit.beta > 0):
        raise UserError(
            f"the fitted law has A = {fit.A:.3g}, B = {fit.B:.3g}, alpha = {fit.alpha:.3g}, beta = {fit.beta:.3g}; "
            f"a compute-optimal frontier needs all four > 0 (the loss must fall with both N and D)"
        )


def _frontier_draws(fit: JointFit) -> np.ndarray:
    """The bootstrap draws that have a frontier (A, B, alpha, beta all > 0), shared by every CI here."""
    return fit.draws[np.all(fit.draws[:, 1:] > 0, axis=1)] if len(fit.draws) else fit.draws


def compute_optimal(fit: JointFit, C) -> pd.DataFrame:
    """The compute-optimal N*(C), D*(C) and loss of a fitted joint law, its second size read as D.

    D is the number of samples seen (one pass over P samples: D = P), and C = 6·N·D. With bootstrap
    draws in `fit`, the columns *_lo and *_hi give percentile intervals at `fit.confidence`.
    """
    _check_frontier_law(fit)
    C = np.atleast_1d(np.asarray(C, dtype=float))
    if C.ndim != 1 or not np.all(np.isfinite(C)) or np.any(C <= 0):
        raise UserError("compute budgets C must be finite positive numbers (FLOPs, C = 6·N·D)")
    N, D, L = _frontier(fit.E, fit.A, fit.B, fit.alpha, fit.beta, C)
    out = pd.DataFrame({"C": C, "N_opt": N, "D_opt": D, "loss_opt": L})
    draws = _frontier_draws(fit)
    if len(draws) >= 2:
        tail = 100 * (1 - fit.confidence) / 2
        E, A, B, alpha, beta = (draws[:, k, None] for k in range(5))
        for name, values in zip(("N_opt", "D_opt", "loss_opt"), _frontier(E, A, B, alpha, beta, C[None, :])):
            out[f"{name}_lo"], out[f"{name}_hi"] = np.nanpercentile(values, [tail, 100 - tail], axis=0)
    return out


def allocation_exponents(fit: JointFit) -> dict:
    """N* ∝ C^a and D* ∝ C^b with a = beta/(alpha+beta), b = alpha/(alpha+beta); CIs from the bootstrap
    draws that have a frontier (the same draws as compute_optimal's CIs; `draws_used` counts them)."""
    _check_frontier_law(fit)
    tail = 100 * (1 - fit.confidence) / 2
    draws = _frontier_draws(fit)
    out = {"draws_used": int(len(draws)), "draws_without_frontier": int(len(fit.draws) - len(draws))}
    for name, numerator in (("a", fit.beta), ("b", fit.alpha)):
        value = numerator / (fit.alpha + fit.beta)
        ci = [None, None]
        if len(draws) >= 2:
            alpha, beta = draws[:, 3], draws[:, 4]
            share = (beta if name == "a" else alpha) / (alpha + beta)
            ci = [json_float(v) for v in np.percentile(share, [tail, 100 - tail])]
        out[name] = {"value": float(value), "ci": ci}
    return out


@dataclass
class EmpiricalFrontier:
    """The best (N, D) cell in each compute bucket, and N* ∝ C^exponent fitted to those cells."""

    frontier: pd.DataFrame  # bucket, C, N, D, loss (mean over rows of the cell), rows
    exponent: float
    ci: tuple[float, float]
    d_exponent: float
    d_ci: tuple[float, float]
    confidence: float
    diagnostics: list[str] = field(default_factory=list)

    def summary(self) -> str:
        lines = [
            f"empirical compute-optimal frontier over {len(self.frontier)} compute buckets (C = 6·N·D)",
            f"  N* ∝ C^{self.exponent:.4g}  [{self.confidence:.0%} CI {self.ci[0]:.4g}, {self.ci[1]:.4g}]",
            f"  D* ∝ C^{self.d_exponent:.4g}  [{self.confidence:.0%} CI {self.d_ci[0]:.4g}, {self.d_ci[1]:.4g}]",
        ]
        return "\n".join(lines + [f"diagnostic: {text}" for text in self.diagnostics])

    def to_dict(self) -> dict:
        return {
            "exponent": {"value": json_float(self.exponent), "ci": [json_float(v) for v in self.ci]},
            "d_exponent": {"value": json_float(self.d_exponent), "ci": [json_float(v) for v in self.d_ci]},
            "confidence": float(self.confidence),
            "frontier": [
                {k: (json_float(v) if isinstance(v, (float, np.floating)) else int(v)) for k, v in row.items()}
                for row in self.frontier.to_dict("records")
            ],
            "diagnostics": list(self.diagnostics),
        }


def _line_fit(x: np.ndarray, y: np.ndarray, confidence: float) -> tuple[float, tuple[float, float]]:
    """OLS slope of y on x with its t-interval."""
    slope, intercept, _, _, stderr = stats.linregress(x, y)
    half = stats.t.ppf(0.5 + confidence / 2, len(x) - 2) * stderr
    return float(slope), (float(slope - half), float(slope + half))


def empirical_frontier(
    frame: pd.DataFrame, n: str, d: str, y: str, buckets: int = 10, confidence: float = 0.95
) -> EmpiricalFrontier:
    """For each of `buckets` log-spaced compute ranges, the (N, D) cell of lowest loss; then log N* on log C.

    Rows of one (N, D) cell (seeds) are averaged first. D is samples seen, so rows may be points on
    training curves. The CI is the OLS t-interval over buckets: it ignores that N* can only take
    the grid's values, so a coarse N grid gives a staircase and an over-confident interval.
    """
    if not 0.0 < confidence < 1.0:
        raise UserError(f"confidence {confidence} is outside (0, 1); use e.g. 0.95")
    if int(buckets) != buckets or buckets < 3:
        raise UserError(f"buckets {buckets} must be a whole number >= 3")
    require_columns(frame, [n, d, y], "empirical frontier")
    cells = pd.DataFrame(
        {"N": positive_column(frame, n), "D": positive_column(frame, d), "loss": positive_column(frame, y)}
    )
    cells = cells.groupby(["N", "D"], as_index=False).agg(loss=("loss", "mean"), rows=("loss", "size"))
    cells["C"] = 6.0 * cells["N"] * cells["D"]
    edges = np.geomspace(cells["C"].min(), cells["C"].max(), int(buckets) + 1)
    cells["bucket"] = np.clip(np.searchsorted(edges, cells["C"], side="right") - 1, 0, int(buckets) - 1)
    best = cells.loc[cells.groupby("bucket")["loss"].idxmin()].sort_values("C").reset_index(drop=True)
    best = best[["bucket", "C", "N", "D", "loss", "rows"]]
    if len(best) < 3:
        raise UserError(
            f"only {len(best)} compute buckets hold cells; a frontier fit needs >= 3 (add runs over a wider range of C)"
        )
    log_c = np.log(best["C"].to_numpy())
    exponent, ci = _line_fit(log_c, np.log(best["N"].to_numpy()), confidence)
    d_exponent, d_ci = _line_fit(log_c, np.log(best["D"].to_numpy()), confidence)
    notes = []
    at_edge = int(best["N"].isin([cells["N"].min(), cells["N"].max()]).sum())
    if at_edge:
        notes.append(
            f"in {at_edge} of {len(best)} buckets the best cell has the smallest or largest N of the table: "
            f"the frontier may lie outside the grid there, which biases the exponent"
        )
    if cells["N"].nunique() < 5:
        notes.append(f"only {cells['N'].nunique()} distinct N: N* is a staircase and its exponent coarse")
    return EmpiricalFrontier(best, exponent, ci, d_exponent, d_ci, confidence, notes)
