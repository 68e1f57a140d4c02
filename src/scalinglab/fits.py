"""Power-law fits over runs tables: log(y) = intercept + slope * log(x).

Pure functions over pandas DataFrames, shared by the workflow rules and `scalinglab fit`:

- `select_epochs`  which row of each run enters the fit (final epoch, best epoch, or all rows);
- `fit_power_law`  least squares or quantile regression in log-log space, with a slope CI from a
                   bootstrap that resamples clusters (runs or seeds), never single rows;
- `fit_groups`     one fit per combination of group columns;
- `fits_to_frame`  those fits as one table;
- `parse_filters`  `col=value` expressions, as typed on the command line.

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

from scalinglab.errors import UserError
from scalinglab.io import require_columns

EPOCH_RULES = ("final", "best", "all")
METHODS = ("ols", "quantile")

# Draws are processed in chunks so that the (draws x clusters) count matrix stays small.
_BOOTSTRAP_CHUNK_ELEMENTS = 4_000_000


# --------------------------------------------------------------------------------------------
# Which rows enter a fit


def select_epochs(
    frame: pd.DataFrame,
    y: str,
    run_cols: Sequence[str],
    epoch: str | None = None,
    rule: str = "final",
    maximize: bool = False,
) -> pd.DataFrame:
    """Keep one row per run (`final`: its largest epoch; `best`: its minimum of y, maximum when
    `maximize`) or every row (`all`). A run is one combination of `run_cols` values."""
    if rule not in EPOCH_RULES:
        raise UserError(f"unknown epoch rule '{rule}'; use one of {', '.join(EPOCH_RULES)}")
    run_cols = list(dict.fromkeys(run_cols))
    if rule == "all":
        require_columns(frame, run_cols, "runs table")
        return frame.copy()
    if rule == "final" and epoch is None:
        raise UserError("epoch rule 'final' needs the epoch column; name it (--epoch COL) or use 'all'")
    needed = run_cols + ([epoch] if epoch is not None else []) + ([y] if rule == "best" else [])
    require_columns(frame, needed, "runs table")

    if epoch is not None:
        # Two rows of one run at one epoch mean the run columns do not identify runs (a seed
        # column left out, say); picking either row would silently mix runs.
        duplicated = frame.duplicated(subset=run_cols + [epoch], keep=False)
        if duplicated.any():
            example = frame.loc[duplicated, run_cols + [epoch]].iloc[0].to_dict()
            raise UserError(
                f"{int(duplicated.sum())} rows share their run and epoch (e.g. {example}); "
                f"add the column that tells those runs apart to the run columns (--run)"
            )

    if rule == "final":
        ordered = frame.sort_values(epoch, kind="mergesort", na_position="first")
        chosen = ordered.drop_duplicates(subset=run_cols, keep="last") if run_cols else ordered.tail(1)
    else:  # best; NaN losses sort last, so a run that is NaN throughout keeps a NaN row and the fit reports it
        ordered = frame.sort_values(y, ascending=not maximize, kind="mergesort", na_position="last")
        chosen = ordered.drop_duplicates(subset=run_cols, keep="first") if run_cols else ordered.head(1)
    return chosen.sort_index()


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

    @property
    def alpha(self) -> float:
        """The decay exponent of y ∝ x^-alpha."""
        return -self.slope

    @property
    def dim(self) -> float:
        """Data-manifold dimension implied by Sharma & Kaplan's alpha = 4/d (inf for a flat fit)."""
        return _dim_from_slope(self.slope)

    @property
    def dim_ci(self) -> tuple[float, float]:
        """`ci` mapped through 4/|slope|, ordered; the upper end is inf when the CI reaches 0."""
        lo, hi = self.ci
        if not (math.isfinite(lo) and math.isfinite(hi)):
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
        lines = [
            f"power law log({y_name}) = {self.intercept:.4g} + slope * log({x_name})   ({label})",
            f"slope {self.slope:.4g}  [{self.confidence:.0%} CI {lo:.4g}, {hi:.4g}; {ci_source}]",
            f"alpha = {self.alpha:.4g}   d = 4/|slope| = {self.dim:.4g}  [{dlo:.4g}, {dhi:.4g}]",
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
) -> PowerLawFit:
    """Fit log(y) = intercept + slope * log(x) to every row of `frame`.

    Least squares when `quantile` is None, else statsmodels QuantReg at that quantile. With
    `bootstrap` > 0 the slope CI is the percentile interval over draws that resample clusters
    (the distinct values of the `cluster` column(s); each row its own cluster when None) with
    replacement and keep all rows of each drawn cluster; with 0 it is the analytic interval.
    `expect_sign` (-1 or +1), when given, adds a diagnostic if the slope has the other sign.
    """
    cluster_cols = [cluster] if isinstance(cluster, str) else list(cluster or [])
    _check_options(quantile, bootstrap, confidence, expect_sign)
    require_columns(frame, [x, y] + cluster_cols, "runs table")
    if len(frame) == 0:
        raise UserError("no rows to fit; check the filters and the epoch rule")
    log_x = _log_column(frame, x)
    log_y = _log_column(frame, y)
    n_sizes = int(np.unique(log_x).size)
    if n_sizes < 2:
        raise UserError(
            f"column '{x}' has a single distinct value ({np.exp(log_x[0]):g}); a slope needs at least 2 sizes"
        )

    if cluster_cols:
        codes = frame.groupby(cluster_cols, sort=True, dropna=False).ngroup().to_numpy()
    else:
        codes = np.arange(len(frame))
    n_clusters = int(codes.max()) + 1
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
                "use --bootstrap 0 for the analytic CI or resample finer units"
            )
        else:
            draws, skipped, draw_warnings = _bootstrap_slopes(
                log_x - centre, log_y, codes, n_clusters, quantile, bootstrap, seed
            )
            diagnostics += draw_warnings
            tail = (1.0 - confidence) / 2.0
            if draws.size:
                lo, hi = np.quantile(draws, [tail, 1.0 - tail])
                ci = (float(lo), float(hi))
            else:
                ci = (math.nan, math.nan)
            if n_clusters < 5:
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
            f"slope is {word} ({slope:.3g}) but a {'negative' if expect_sign < 0 else 'positive'} one was expected"
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
    )


def _check_options(quantile, bootstrap, confidence, expect_sign) -> None:
    if quantile is not None and not 0.0 < quantile < 1.0:
        raise UserError(f"quantile {quantile} is outside (0, 1); use e.g. 0.5 for the median")
    if bootstrap < 0:
        raise UserError(f"bootstrap {bootstrap} is negative; use 0 for the analytic CI or a count such as 1000")
    if not 0.0 < confidence < 1.0:
        raise UserError(f"confidence {confidence} is outside (0, 1); use e.g. 0.95")
    if expect_sign not in (None, -1, 1):
        raise UserError(f"expect_sign {expect_sign} must be -1, +1 or None")


def positive_column(frame: pd.DataFrame, column: str) -> np.ndarray:
    """A numeric, finite, positive column as floats, or a one-line UserError naming it (shared by every law)."""
    values = frame[column]
    if not pd.api.types.is_numeric_dtype(values) or pd.api.types.is_bool_dtype(values):
        raise UserError(f"column '{column}' is not numeric (dtype {values.dtype}); a scaling law needs numbers")
    values = values.to_numpy(dtype=float, na_value=np.nan)
    bad = ~np.isfinite(values)
    if bad.any():
        raise UserError(
            f"column '{column}' has {int(bad.sum())} NaN/inf value(s) in {values.size} rows; "
            f"filter those rows out (diverged or unfinished runs?) before fitting"
        )
    non_positive = values <= 0
    if non_positive.any():
        raise UserError(
            f"column '{column}' has {int(non_positive.sum())} value(s) <= 0 (min {values.min():g}); "
            f"log is impossible, so a power law needs positive values"
        )
    return values


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


def _bootstrap_slopes(lx, ly, codes, n_clusters, quantile, bootstrap, seed):
    """Slopes from `bootstrap` cluster-resampled draws; returns (slopes, skipped, diagnostics).

    A draw takes n_clusters clusters with replacement and every row of each; a draw whose rows
    hold fewer than 2 distinct x has no slope and is skipped.
    """
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
            picks = rng.integers(0, n_clusters, size=(size, n_clusters))
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
    else:
        from statsmodels.regression.quantile_regression import QuantReg

        order = np.argsort(codes, kind="stable")
        rows_of = np.split(order, np.cumsum(np.bincount(codes, minlength=n_clusters))[:-1])
        not_converged = 0
        kept = []
        for start in range(0, bootstrap, chunk):
            size = min(chunk, bootstrap - start)
            picks = rng.integers(0, n_clusters, size=(size, n_clusters))
            for draw in picks:
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
    group = list(group)
    if not group:
        return [({}, fit_power_law(frame, x, y, **kwargs))]
    require_columns(frame, group, "runs table")
    if len(frame) == 0:
        raise UserError("no rows to fit; check the filters and the epoch rule")
    results = []
    for key, rows in frame.groupby(group, sort=True, dropna=False):
        key = key if isinstance(key, tuple) else (key,)
        labels = {column: _python_scalar(value) for column, value in zip(group, key)}
        try:
            fit = fit_power_law(rows, x, y, **kwargs)
        except UserError as exc:
            where = ", ".join(f"{k}={v}" for k, v in labels.items())
            raise UserError(f"group {where}: {exc}") from None
        results.append((labels, fit))
    return results


def _python_scalar(value):
    return value.item() if isinstance(value, np.generic) else value


# diagnostics are sentences that may contain "; ", so a table cell joins them with this
DIAGNOSTICS_SEPARATOR = " | "


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
                "method": fit.method,
                "quantile": math.nan if fit.quantile is None else fit.quantile,
                "diagnostics": DIAGNOSTICS_SEPARATOR.join(fit.diagnostics),
            }
        )
    return pd.DataFrame(rows)


# --------------------------------------------------------------------------------------------
# Command-line filters

_TRUE = {"true", "1", "yes", "y", "t"}
_FALSE = {"false", "0", "no", "n", "f"}


def parse_filters(expressions: Sequence[str], frame: pd.DataFrame) -> pd.DataFrame:
    """Keep the rows where every `col=value` holds; value is read as the column's type."""
    for expression in expressions:
        column, sep, text = expression.partition("=")
        column, text = column.strip(), text.strip()
        if not sep or not column or not text:
            raise UserError(f"filter '{expression}' is not COL=VALUE; write e.g. --filter seed=0")
        if column not in frame.columns:
            raise UserError(
                f"filter '{expression}': no column '{column}'; available: {', '.join(map(str, frame.columns))}"
            )
        values = frame[column]
        mask = _filter_mask(values, text, expression)
        if not mask.any():
            present = ", ".join(map(str, sorted(values.dropna().unique().tolist(), key=str)[:10]))
            raise UserError(f"filter '{expression}' matches no rows; '{column}' holds: {present}")
        frame = frame[mask]
    return frame


def _filter_mask(values: pd.Series, text: str, expression: str) -> np.ndarray:
    kind = values.dtype
    if pd.api.types.is_bool_dtype(kind):
        word = text.lower()
        if word not in _TRUE | _FALSE:
            raise UserError(f"filter '{expression}': column holds true/false, not '{text}'")
        return (values == (word in _TRUE)).to_numpy()
    if pd.api.types.is_integer_dtype(kind) or pd.api.types.is_float_dtype(kind):
        try:
            number = float(text)
        except ValueError:
            raise UserError(f"filter '{expression}': the column holds numbers, not '{text}'") from None
        if pd.api.types.is_integer_dtype(kind) and not number.is_integer():
            raise UserError(f"filter '{expression}': the column holds integers, not '{text}'")
        numbers = values.to_numpy(dtype=float, na_value=np.nan)
        # Floats read back from CSV or computed in Python may differ in the last bits.
        return np.isclose(numbers, number, rtol=1e-9, atol=0.0) | (numbers == number)
    return (values.astype(str) == text).to_numpy()
