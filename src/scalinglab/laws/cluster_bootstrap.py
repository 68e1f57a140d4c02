"""Bootstrap CIs of a log-log slope that resample clusters (runs or seeds) whole, never single rows:
rows of one run share its noise, so resampling rows would make the interval too narrow.

With strata (e.g. the model size), clusters are resampled within each stratum, as many as it holds:
the right unit when the clusters of different strata share no randomness (a seed whose init and
batches depend on the width is a different draw at every width), where resampling "seed s at
every width together" would pretend to a correlation that is not there.

A bootstrap over k clusters can draw only C(2k - 1, k) distinct resamples (10 for 3 seeds, 3 for 2):
its percentiles then sit on a handful of values, so below MIN_DISTINCT_RESAMPLES no interval is
reported as a confidence interval (`distinct_resamples`).
"""

from __future__ import annotations

import math
import sys
import time
import warnings

import numpy as np

from scalinglab.core.errors import UserError

# Draws are processed in chunks so that the (draws x clusters) count matrix stays small.
_BOOTSTRAP_CHUNK_ELEMENTS = 4_000_000
# A percentile CI's Monte-Carlo error shrinks as 1/sqrt(draws): 10^4 draws already pin a 95% bound to
# about 0.5% of the slope's spread, so more than 10^6 only costs time and memory (8 bytes a draw).
MAX_DRAWS = 1_000_000
PROGRESS_EVERY_S = 10.0
# fewer distinct resamples than this and a 95% percentile interval is an artefact of the few values
MIN_DISTINCT_RESAMPLES = 20


def distinct_resamples(stratum_sizes) -> int:
    """How many distinct resamples a (stratified) cluster bootstrap can draw: the number of
    multisets of k of k clusters, C(2k - 1, k), multiplied over the strata."""
    out = 1
    for k in stratum_sizes:
        out *= math.comb(2 * int(k) - 1, int(k))
    return out


def ci_unavailable(distinct: int) -> str:
    """The words for an interval that is not reported: 'CI n/a: 3 distinct resamples'."""
    return f"CI n/a: {distinct} distinct resamples"


MIN_CLI_DRAWS = 20  # a command-line bootstrap below this would print noise as a 95% interval


def check_cli_draws(bootstrap: int, flag: str = "--bootstrap") -> None:
    """A count of draws given on a command line: 0 (no bootstrap) or MIN_CLI_DRAWS..MAX_DRAWS."""
    if bootstrap < 0:
        raise UserError(f"{flag} {bootstrap} is negative; give 0 (no bootstrap) or a count such as 1000")
    if 0 < bootstrap < MIN_CLI_DRAWS:
        raise UserError(
            f"{flag} {bootstrap}: a 95% interval from {bootstrap} draws is noise; give 0 or at least "
            f"{MIN_CLI_DRAWS} (1,000 recommended)"
        )
    if bootstrap > MAX_DRAWS:
        raise UserError(f"{flag} {bootstrap} is more than the {MAX_DRAWS:,} allowed; 1,000 to 10,000 suffice")


def check_draws(bootstrap) -> None:
    if bootstrap > MAX_DRAWS:
        raise UserError(
            f"bootstrap {bootstrap} draws is more than the {MAX_DRAWS:,} allowed; 1,000 to 10,000 give a stable 95% CI"
        )


class Progress:
    """Says how far a long bootstrap has come (draws, rate, ETA) on stderr, at most every
    PROGRESS_EVERY_S seconds; a short one says nothing."""

    def __init__(self, total: int, what: str = "bootstrap"):
        self.total, self.what = total, what
        self.started = self.last = time.monotonic()

    def update(self, done: int) -> None:
        now = time.monotonic()
        if now - self.last < PROGRESS_EVERY_S or done >= self.total:
            return
        self.last = now
        rate = done / (now - self.started)
        eta = (self.total - done) / rate if rate > 0 else float("inf")
        print(f"{self.what}: {done:,}/{self.total:,} draws, {rate:,.0f}/s, about {eta:.0f} s left", file=sys.stderr)


def draw_clusters(rng, size: int, strata: list[np.ndarray]) -> np.ndarray:
    """`size` draws of cluster indices, (size, n_clusters): within each stratum (an array of its
    clusters' indices) as many clusters as it holds, with replacement."""
    return np.concatenate([members[rng.integers(0, len(members), size=(size, len(members)))] for members in strata], 1)


def bootstrap_slopes(lx, ly, codes, n_clusters, quantile, bootstrap, seed, strata=None):
    """Slopes from `bootstrap` cluster-resampled draws; returns (slopes, skipped, diagnostics).

    A draw takes n_clusters clusters with replacement (within each stratum when `strata`, a list
    of arrays of cluster indices, is given) and every row of each; a draw whose rows hold fewer
    than 2 distinct x has no slope and is skipped.
    """
    strata = strata if strata is not None else [np.arange(n_clusters)]
    check_draws(bootstrap)
    progress = Progress(bootstrap)
    rng = np.random.default_rng(seed)
    # Per-cluster range of log x: a draw has 2 distinct x iff max over its clusters > min.
    cluster_min = np.full(n_clusters, np.inf)
    cluster_max = np.full(n_clusters, -np.inf)
    np.minimum.at(cluster_min, codes, lx)
    np.maximum.at(cluster_max, codes, lx)
    chunk = max(1, _BOOTSTRAP_CHUNK_ELEMENTS // n_clusters)

    slopes: list[np.ndarray] = []
    skipped = 0
    diagnostics: list[str] = []
    if quantile is None:
        # Least squares needs only per-cluster sums, so a draw is a count vector over clusters.
        sums = np.stack(
            [np.bincount(codes, weights=w, minlength=n_clusters) for w in (np.ones_like(lx), lx, ly, lx * lx, lx * ly)],
            axis=1,
        )
        for start in range(0, bootstrap, chunk):
            size = min(chunk, bootstrap - start)
            picks = draw_clusters(rng, size, strata)
            counts = _counts(picks, n_clusters)
            drawn = counts > 0
            spread = np.where(drawn, cluster_max, -np.inf).max(axis=1) > np.where(drawn, cluster_min, np.inf).min(
                axis=1
            )
            n, sx, sy, sxx, sxy = (counts @ sums).T
            with np.errstate(divide="ignore", invalid="ignore"):
                slope = (sxy - sx * sy / n) / (sxx - sx * sx / n)
            skipped += int((~spread).sum())
            slopes.append(slope[spread])
            progress.update(start + size)
    else:
        from statsmodels.regression.quantile_regression import QuantReg

        order = np.argsort(codes, kind="stable")
        rows_of = np.split(order, np.cumsum(np.bincount(codes, minlength=n_clusters))[:-1])
        not_converged = 0
        kept = []
        for start in range(0, bootstrap, chunk):
            size = min(chunk, bootstrap - start)
            picks = draw_clusters(rng, size, strata)
            for i, draw in enumerate(picks):
                progress.update(start + i)
                if cluster_max[draw].max() <= cluster_min[draw].min():
                    skipped += 1
                    continue
                rows = np.concatenate([rows_of[c] for c in draw])
                design = np.column_stack([np.ones(rows.size), lx[rows]])
                with warnings.catch_warnings(record=True) as caught:
                    warnings.simplefilter("always")
                    kept.append(QuantReg(ly[rows], design).fit(q=quantile).params[1])
                not_converged += any("iteration" in str(w.message).lower() for w in caught)
        slopes.append(np.asarray(kept, dtype=float))
        if not_converged:
            diagnostics.append(f"QuantReg hit its iteration limit in {not_converged} bootstrap draws")
    return np.concatenate(slopes), skipped, diagnostics


def _counts(picks: np.ndarray, n_clusters: int) -> np.ndarray:
    """How often each cluster was drawn, per draw (rows of `picks`)."""
    offsets = np.arange(picks.shape[0])[:, None] * n_clusters
    flat = np.bincount((picks + offsets).ravel(), minlength=picks.shape[0] * n_clusters)
    return flat.reshape(picks.shape[0], n_clusters).astype(float)
