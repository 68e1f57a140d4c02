"""The input side of a joint fit L(N, P) = E + A·N^-alpha + B·P^-beta, shared by both fitters.

`check_options` validates the fit's options, `read_joint_data` reads and checks the rows of a table
into a `JointData`, and `design_counts` / `enough` count the distinct sizes and configurations of a
design (the full data, a bootstrap draw or a held-out subset) and say whether they identify the law.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from scalinglab.core.errors import UserError
from scalinglab.core.io import require_columns
from scalinglab.laws.cluster_bootstrap import check_draws
from scalinglab.laws.power_law import positive_column

METHODS = ("vpro", "chinchilla")
PARAMS = ("E", "A", "B", "alpha", "beta")


# --------------------------------------------------------------------------------------------
# Input checks


def check_options(method: str, bootstrap: int, confidence: float) -> None:
    if method not in METHODS:
        raise UserError(f"unknown joint-fit method '{method}'; use one of {', '.join(METHODS)}")
    if int(bootstrap) != bootstrap or bootstrap < 0:
        raise UserError(f"bootstrap {bootstrap} must be a whole number >= 0; use 0 for no CIs or e.g. 200")
    check_draws(bootstrap)
    if not 0.0 < confidence < 1.0:
        raise UserError(f"confidence {confidence} is outside (0, 1); use e.g. 0.95")


@dataclass
class JointData:
    """The rows of a joint fit: sizes centred at their geometric means (better-conditioned fits)."""

    N: np.ndarray
    P: np.ndarray
    y: np.ndarray
    clusters: np.ndarray  # cluster code of each row, 0..n_clusters-1
    n_clusters: int
    strata: list | None = field(default=None, repr=False)  # cluster indices of each stratum (None: one)
    ranked_starts: np.ndarray | None = field(default=None, repr=False)  # see joint_chinchilla.chinchilla_grid

    @property
    def log_n0(self) -> float:
        return float(np.mean(np.log(self.N)))

    @property
    def log_p0(self) -> float:
        return float(np.mean(np.log(self.P)))

    @property
    def u(self) -> np.ndarray:
        return np.log(self.N) - self.log_n0

    @property
    def v(self) -> np.ndarray:
        return np.log(self.P) - self.log_p0

    def subset(self, mask: np.ndarray) -> JointData:
        codes, clusters = np.unique(self.clusters[mask], return_inverse=True)
        return JointData(self.N[mask], self.P[mask], self.y[mask], clusters, len(codes))


def design_counts(N: np.ndarray, P: np.ndarray, weights: np.ndarray | None = None) -> tuple[int, int, int]:
    """Distinct N, distinct P and distinct (N, P) configurations among rows of positive weight."""
    keep = slice(None) if weights is None else weights > 0
    n, p = N[keep], P[keep]
    return len(np.unique(n)), len(np.unique(p)), len(set(zip(n.tolist(), p.tolist())))


def enough(counts: tuple[int, int, int]) -> bool:
    n_sizes, p_sizes, configs = counts
    return n_sizes >= 2 and p_sizes >= 2 and configs >= len(PARAMS)


def read_joint_data(
    frame: pd.DataFrame, n: str, p: str, y: str, cluster: str | Sequence[str] | None, strata: Sequence[str] = ()
) -> JointData:
    """The rows of a joint fit; `cluster`: the column(s) whose distinct values (combinations) are the
    bootstrap's clusters, or None for every row its own; `strata`: columns within whose values the
    clusters are resampled (the clusters are then (strata, cluster) combinations)."""
    if not isinstance(frame, pd.DataFrame):
        raise UserError(f"expected a table (pandas DataFrame), got {type(frame).__name__}")
    strata = list(strata)
    cluster_cols = list(dict.fromkeys(strata + ([cluster] if isinstance(cluster, str) else list(cluster or []))))
    require_columns(frame, [n, p, y] + cluster_cols, "joint fit")
    # rows in one canonical order (N, P, y), so that a fit does not depend on the table's row order
    # to the last bit: the workflow's stage and `scalinglab fit` then give identical numbers
    N, P, Y = (positive_column(frame, c) for c in (n, p, y))
    order = np.lexsort((Y, P, N))
    frame, N, P, Y = frame.iloc[order], N[order], P[order], Y[order]
    if not cluster_cols:
        clusters = np.arange(len(frame))
    else:
        for col in cluster_cols:
            if frame[col].isna().any():
                raise UserError(
                    f"cluster column '{col}' has {int(frame[col].isna().sum())} missing value(s); label every row"
                )
        clusters = frame.groupby(cluster_cols, sort=True).ngroup().to_numpy()
    counts = design_counts(N, P)
    if not enough(counts):
        raise UserError(
            f"joint fit needs >= 2 distinct '{n}', >= 2 distinct '{p}' and >= 5 ({n}, {p}) configurations; "
            f"got {counts[0]}, {counts[1]} and {counts[2]}; add runs at more sizes"
        )
    members = None
    if strata:  # each cluster's stratum (clusters are numbered in stratum order)
        stratum = frame.groupby(strata, sort=True).ngroup().to_numpy()
        first = pd.Series(stratum).groupby(clusters).first().to_numpy()
        members = [np.flatnonzero(first == s) for s in np.unique(first)]
    return JointData(N, P, Y, clusters, int(clusters.max()) + 1, members)
