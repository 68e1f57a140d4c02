"""Power-law fits over runs tables: log(y) = intercept + slope * log(x).

Pure functions over pandas DataFrames, shared by the workflow rules and `scalinglab fit`:

- `fit_power_law`  least squares or quantile regression in log-log space, with a slope CI from a
                   bootstrap that resamples clusters (runs or seeds), never single rows
                   (cluster_bootstrap.py);
- `fit_groups`     one fit per combination of group columns;
- `fits_to_frame`  those fits as one table.

Which rows of a run enter a fit (its final epoch, its best, or all) is `inputs.select_epochs`.
The slope of a loss against model size is -alpha; Sharma & Kaplan's L ∝ N^(-4/d) turns it into the
data-manifold dimension d = 4/|slope| that `PowerLawFit.dim` reports.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

import numpy as np
import pandas as pd

from scalinglab.core.errors import UserError
from scalinglab.core.io import require_columns
from scalinglab.laws.cluster_bootstrap import (
    MIN_DISTINCT_RESAMPLES,
    bootstrap_slopes,
    check_draws,
    ci_unavailable,
    distinct_resamples,
)
from scalinglab.laws.inputs import per_group, positive_column

METHODS = ("ols", "quantile")


# --------------------------------------------------------------------------------------------
# The fit result


def _finite_or_none(value):
    if isinstance(value, (float, np.floating)):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, np.integer):
        return int(value)
    return value


@dataclass
class PowerLawFit:
    """log(y) = intercept + slope * log(x), with a confidence interval `ci` of the slope."""

    slope: float
    intercept: float
    ci: tuple[float, float]
    n_points: int
    n_clusters: int
    n_sizes: int
    method: str
    quantile: float | None
    bootstrap: int
    diagnostics: list[str] = field(default_factory=list)
    confidence: float = 0.95
    x: str | None = None
    y: str | None = None
    skipped_draws: int = 0
    distinct_resamples: int | None = None  # what the bootstrap could draw (None: analytic CI)
    expect_sign: int | None = None  # -1: a loss expected to fall with x; a slope of the other sign has no d

    @property
    def ci_available(self) -> bool:
        """False where no interval is reported: too few distinct resamples, or none computable."""
        return all(map(math.isfinite, self.ci))

    @property
    def too_few_resamples(self) -> bool:
        """Whether the bootstrap could draw too few distinct resamples for an interval."""
        return self.distinct_resamples is not None and self.distinct_resamples < MIN_DISTINCT_RESAMPLES

    @property
    def ci_text(self) -> str:
        """'[lo, hi]' of the slope, or why there is no interval ('CI n/a: 3 distinct resamples')."""
        if self.too_few_resamples:
            return ci_unavailable(self.distinct_resamples)
        if not self.ci_available:
            return "CI n/a"
        return f"[{self.ci[0]:.4f}, {self.ci[1]:.4f}]"

    @property
    def alpha(self) -> float:
        """The decay exponent of y ∝ x^-alpha."""
        return -self.slope

    @property
    def dim(self) -> float:
        """Data-manifold dimension implied by Sharma & Kaplan's alpha = 4/d (inf for a flat fit; NaN
        when the slope has the other sign than `expect_sign`: a loss that rises with N has no d)."""
        if self.expect_sign in (-1, 1) and self.slope * self.expect_sign < 0:
            return math.nan
        return _dim_from_slope(self.slope)

    @property
    def dim_ci(self) -> tuple[float, float]:
        """`ci` mapped through 4/|slope|, ordered; the upper end is inf when the CI reaches 0."""
        lo, hi = self.ci
        if not (math.isfinite(lo) and math.isfinite(hi)) or math.isnan(self.dim):
            return (math.nan, math.nan)
        if lo <= 0.0 <= hi:  # |slope| can be 0, so d is unbounded above
            return (_dim_from_slope(max(abs(lo), abs(hi))), math.inf)
        ends = sorted((_dim_from_slope(lo), _dim_from_slope(hi)))
        return (ends[0], ends[1])

    def summary(self) -> str:
        label = "least squares" if self.method == "ols" else f"quantile regression, q = {self.quantile:g}"
        y_name, x_name = self.y or "y", self.x or "x"
        if self.bootstrap:
            ci_source = f"bootstrap, {self.bootstrap} draws over {self.n_clusters} clusters"
        else:
            ci_source = "analytic"
        lo, hi = self.ci
        dlo, dhi = self.dim_ci
        if self.ci_available:
            slope_ci, dim_ci = f"[{self.confidence:.0%} CI {lo:.4g}, {hi:.4g}; {ci_source}]", f"[{dlo:.4g}, {dhi:.4g}]"
        else:
            slope_ci = dim_ci = f"({self.ci_text})"
        lines = [
            f"power law log({y_name}) = {self.intercept:.4g} + slope * log({x_name})   ({label})",
            f"slope {self.slope:.4g}  {slope_ci}",
            f"alpha = {self.alpha:.4g}   d = 4/|slope| = {self.dim:.4g}  {dim_ci}",
            f"{self.n_points} points, {self.n_sizes} distinct {x_name}, {self.n_clusters} clusters",
        ]
        lines += [f"diagnostic: {text}" for text in self.diagnostics]
        return "\n".join(lines)

    def to_dict(self) -> dict:
        """JSON-safe: plain Python numbers; non-finite values (inf, nan) become None."""
        out = asdict(self)
        out["ci"] = [_finite_or_none(v) for v in self.ci]
        out["alpha"] = self.alpha
        out["dim"] = self.dim
        out["dim_ci"] = [_finite_or_none(v) for v in self.dim_ci]
        out["diagnostics"] = list(self.diagnostics)
        return {key: _finite_or_none(value) for key, value in out.items()}

    def to_frame(self) -> pd.DataFrame:
        return fits_to_frame([({}, self)])


def _dim_from_slope(slope: float) -> float:
    if math.isnan(slope):
        return math.nan
    return math.inf if slope == 0 else 4.0 / abs(slope)


# --------------------------------------------------------------------------------------------
# Fitting


def fit_power_law(
    frame: pd.DataFrame,
    x: str,
    y: str,
    quantile: float | None = None,
    cluster: str | Sequence[str] | None = None,
    bootstrap: int = 0,
    seed: int = 0,
    confidence: float = 0.95,
    expect_sign: int | None = None,
    strata: str | Sequence[str] | None = None,
) -> PowerLawFit:
    """Fit log(y) = intercept + slope * log(x) to every row of `frame`.

    Least squares when `quantile` is None, else statsmodels QuantReg at that quantile. With
    `bootstrap` > 0 the slope CI is the percentile interval over draws that resample clusters
    (the distinct values of the `cluster` column(s); each row its own cluster when None) with
    replacement and keep all rows of each drawn cluster; with 0 it is the analytic interval.
    `strata` (columns, e.g. the size): clusters are (strata, cluster) combinations, resampled
    within each stratum (cluster_bootstrap.py says when that is the right unit). Where the
    bootstrap can draw fewer than MIN_DISTINCT_RESAMPLES distinct resamples, the CI is NaN and a
    diagnostic says so (`ci_text`: 'CI n/a: 3 distinct resamples').
    `expect_sign` (-1 or +1), when given, adds a diagnostic if the slope has the other sign.
    """
    cluster_cols = [cluster] if isinstance(cluster, str) else list(cluster or [])
    strata_cols = [strata] if isinstance(strata, str) else list(strata or [])
    _check_options(quantile, bootstrap, confidence, expect_sign)
    require_columns(frame, [x, y] + cluster_cols + strata_cols, "runs table")
    if len(frame) == 0:
        raise UserError("no rows to fit; check the filters and the epoch rule")
    log_x = _log_column(frame, x)
    log_y = _log_column(frame, y)
    n_sizes = int(np.unique(log_x).size)
    if n_sizes < 2:
        raise UserError(
            f"column '{x}' has a single distinct value ({np.exp(log_x[0]):g}); a slope needs at least 2 sizes"
        )

    unit = list(dict.fromkeys(strata_cols + cluster_cols))
    if unit:
        codes = frame.groupby(unit, sort=True, dropna=False).ngroup().to_numpy()
    else:
        codes = np.arange(len(frame))
    n_clusters = int(codes.max()) + 1
    if strata_cols:  # each cluster's stratum; clusters are numbered in stratum order
        of_cluster = pd.DataFrame({"c": codes, "s": frame.groupby(strata_cols, sort=True, dropna=False).ngroup()})
        first = of_cluster.drop_duplicates("c").sort_values("c")["s"].to_numpy()
        strata_members = [np.flatnonzero(first == s) for s in np.unique(first)]
    else:
        strata_members = [np.arange(n_clusters)]
    distinct = distinct_resamples(len(m) for m in strata_members) if bootstrap > 0 else None
    method = "ols" if quantile is None else "quantile"
    diagnostics: list[str] = []

    # Centre log(x): the slope is unchanged and the bootstrap sums stay well conditioned.
    centre = float(log_x.mean())
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        slope, intercept_c, analytic_ci = _fit_line(log_x - centre, log_y, quantile, confidence)
    intercept = intercept_c - slope * centre
    diagnostics += _fit_warnings(caught, "the fit")

    skipped = 0
    if bootstrap > 0:
        if n_clusters < 2:
            ci = (math.nan, math.nan)
            diagnostics.append(
                "bootstrap needs at least 2 clusters and there is 1: CI not computed; "
                "set bootstrap to 0 for the analytic CI, or resample finer units"
            )
        elif distinct < MIN_DISTINCT_RESAMPLES:
            ci = (math.nan, math.nan)
            diagnostics.append(
                f"{ci_unavailable(distinct)}: a bootstrap over {n_clusters} clusters"
                f"{' within ' + '/'.join(strata_cols) if strata_cols else ''} can draw only {distinct} distinct "
                f"resamples, too few for a {confidence:.0%} interval; add seeds or runs, or use the analytic CI"
            )
        else:
            draws, skipped, draw_warnings = bootstrap_slopes(
                log_x - centre, log_y, codes, n_clusters, quantile, bootstrap, seed, strata_members
            )
            diagnostics += draw_warnings
            tail = (1.0 - confidence) / 2.0
            if draws.size:
                lo, hi = np.quantile(draws, [tail, 1.0 - tail])
                ci = (float(lo), float(hi))
            else:
                ci = (math.nan, math.nan)
            if n_clusters < 5 and not strata_cols:
                diagnostics.append(
                    f"only {n_clusters} clusters: a bootstrap over so few clusters gives a rough, "
                    f"usually too narrow CI; add seeds or runs"
                )
    else:
        ci = analytic_ci
        if method == "ols" and len(log_y) <= 2:
            diagnostics.append("analytic CI undefined: 2 points leave no residual degrees of freedom")
        elif not all(map(math.isfinite, ci)):
            diagnostics.append(
                "analytic CI undefined: QuantReg cannot estimate the residual density at the quantile "
                "(too few points or an exact fit); use a bootstrap"
            )

    if skipped:
        diagnostics.append(
            f"{skipped} of {bootstrap} bootstrap draws skipped: they drew fewer than 2 distinct "
            f"{x}; the CI uses the other {bootstrap - skipped}"
        )
    if n_sizes < 4:
        diagnostics.append(
            f"only {n_sizes} distinct {x}: too few to tell a power law from a bend; use at least 4 sizes"
        )
    else:
        diagnostics += _floor_diagnostic(log_x, log_y, quantile, x)
    if expect_sign in (-1, 1) and slope != 0 and np.sign(slope) != expect_sign:
        word = "positive" if slope > 0 else "negative"
        diagnostics.append(
            f"slope is {word} ({slope:.3g}) but a {'negative' if expect_sign < 0 else 'positive'} one was expected: "
            "no dimension is read from it"
        )
    elif expect_sign is None and slope > 0:
        diagnostics.append(
            f"slope is positive ({slope:.3g}): {y} grows with {x}; 4/alpha reads a dimension only from a "
            "loss that falls"
        )
    if all(map(math.isfinite, ci)) and ci[0] <= 0.0 <= ci[1]:
        diagnostics.append(
            f"the slope's CI [{ci[0]:.3g}, {ci[1]:.3g}] includes 0: no clear dependence on {x}, "
            "so 4/alpha is not bounded above"
        )

    return PowerLawFit(
        slope=float(slope),
        intercept=float(intercept),
        ci=(float(ci[0]), float(ci[1])),
        n_points=int(len(log_y)),
        n_clusters=n_clusters,
        n_sizes=n_sizes,
        method=method,
        quantile=None if quantile is None else float(quantile),
        bootstrap=int(bootstrap),
        diagnostics=diagnostics,
        confidence=float(confidence),
        x=x,
        y=y,
        skipped_draws=int(skipped),
        distinct_resamples=distinct,
        expect_sign=expect_sign,
    )


def _check_options(quantile, bootstrap, confidence, expect_sign) -> None:
    if quantile is not None and not 0.0 < quantile < 1.0:
        raise UserError(f"quantile {quantile} is outside (0, 1); use e.g. 0.5 for the median")
    if bootstrap < 0:
        raise UserError(f"bootstrap {bootstrap} is negative; use 0 for the analytic CI or a count such as 1000")
    check_draws(bootstrap)
    if not 0.0 < confidence < 1.0:
        raise UserError(f"confidence {confidence} is outside (0, 1); use e.g. 0.95")
    if expect_sign not in (None, -1, 1):
        raise UserError(f"expect_sign {expect_sign} must be -1, +1 or None")


def _log_column(frame: pd.DataFrame, column: str) -> np.ndarray:
    return np.log(positive_column(frame, column))


def _fit_line(lx: np.ndarray, ly: np.ndarray, quantile: float | None, confidence: float):
    """(slope, intercept, analytic slope CI) of ly on lx."""
    from statsmodels.regression.linear_model import OLS
    from statsmodels.regression.quantile_regression import QuantReg

    design = np.column_stack([np.ones_like(lx), lx])
    if quantile is None:
        result = OLS(ly, design).fit()
        ci = (math.nan, math.nan)
        if result.df_resid > 0:
            lo, hi = result.conf_int(alpha=1.0 - confidence)[1]
            ci = (float(lo), float(hi))
    else:
        result = QuantReg(ly, design).fit(q=quantile)
        lo, hi = result.conf_int(alpha=1.0 - confidence)[1]
        ci = (float(lo), float(hi))
    intercept, slope = (float(v) for v in result.params)
    return slope, intercept, ci


def _fit_warnings(caught, what: str) -> list[str]:
    """Turn statsmodels' warnings (QuantReg iteration limit, degenerate variance) into diagnostics."""
    messages = sorted({str(w.message).splitlines()[0] for w in caught if issubclass(w.category, Warning)})
    return [f"{what}: {message}" for message in messages]


def _floor_diagnostic(log_x, log_y, quantile, x_name) -> list[str]:
    """Flag a curve that flattens: the slope over the largest half of the sizes is less than half
    the slope over the smallest half (a loss floor, e.g. a student that out-resolves its teacher)."""
    sizes = np.unique(log_x)
    half = math.ceil(sizes.size / 2)  # with an odd count the middle size belongs to both halves
    small = log_x <= sizes[half - 1]
    large = log_x >= sizes[-half]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        slope_small = _fit_line(log_x[small], log_y[small], quantile, 0.95)[0]
        slope_large = _fit_line(log_x[large], log_y[large], quantile, 0.95)[0]
    if slope_small == 0 or np.sign(slope_small) * slope_large >= 0.5 * abs(slope_small):
        return []
    return [
        f"the curve flattens (a floor?): slope over the largest half of {x_name} "
        f"(>= {math.exp(sizes[-half]):.4g}) is {slope_large:.3g}, less than half the slope over the "
        f"smallest half ({slope_small:.3g}); one power law misdescribes it, fit the sizes before the floor"
    ]


# --------------------------------------------------------------------------------------------
# Many fits


def fit_groups(
    frame: pd.DataFrame, x: str, y: str, group: Sequence[str] = (), **kwargs
) -> list[tuple[dict, PowerLawFit]]:
    """One `fit_power_law` per combination of the `group` columns, in sorted order."""
    return per_group(frame, group, lambda rows: fit_power_law(rows, x, y, **kwargs))


# diagnostics are sentences that may contain "; ", so a table cell joins them with this
DIAGNOSTICS_SEPARATOR = " | "


def collapse_diagnostics(labelled: Sequence[tuple[str, str]], total: int) -> list[str]:
    """One line per kind of diagnostic over many fits: `labelled` holds (fit label, its joined
    diagnostics). Notes that differ only in their numbers are one kind; its line quotes the first
    example whole and counts the fits ('in 19 of 24 fits, e.g. digits val_loss final q=0.5: ...')."""
    import re

    kinds: dict[str, list[tuple[str, str]]] = {}
    for label, joined in labelled:
        for note in filter(None, str(joined).split(DIAGNOSTICS_SEPARATOR)):
            kinds.setdefault(re.sub(r"[-+]?\d[\d.,e+-]*", "#", note), []).append((label, note))
    lines = []
    for examples in kinds.values():
        label, note = examples[0]
        scope = "every fit" if len(examples) == total else f"{len(examples)} of {total} fits"
        lines.append(f"{note} ({scope}{'' if len(examples) in (1, total) else ', e.g. ' + label})")
    return lines


def fits_to_frame(results: Sequence[tuple[dict, PowerLawFit]]) -> pd.DataFrame:
    """One row per group: the group columns, then the fit's numbers."""
    rows = []
    for labels, fit in results:
        dim_lo, dim_hi = fit.dim_ci
        rows.append(
            {
                **labels,
                "slope": fit.slope,
                "intercept": fit.intercept,
                "ci_lo": fit.ci[0],
                "ci_hi": fit.ci[1],
                "alpha": fit.alpha,
                "dim": fit.dim,
                "dim_lo": dim_lo,
                "dim_hi": dim_hi,
                "n_points": fit.n_points,
                "n_sizes": fit.n_sizes,
                "n_clusters": fit.n_clusters,
                "distinct_resamples": math.nan if fit.distinct_resamples is None else float(fit.distinct_resamples),
                "method": fit.method,
                "quantile": math.nan if fit.quantile is None else fit.quantile,
                "diagnostics": DIAGNOSTICS_SEPARATOR.join(fit.diagnostics),
            }
        )
    return pd.DataFrame(rows)
