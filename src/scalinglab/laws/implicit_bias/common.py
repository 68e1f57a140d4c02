"""What both implicit-bias methods share: the input rows as per-seed curves, the least-squares line,
and the result object that the stages, the figures and the CLI read."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from scalinglab.core.errors import UserError


@dataclass
class LineFit:
    slope: float
    intercept: float
    slope_se: float  # nan with fewer than three points
    n: int


def fit_line(x, y) -> LineFit:
    """Ordinary least squares y = intercept + slope x, with the usual slope standard error
    sqrt(RSS / (n - 2) / Sxx). numpy >= 1.16's np.polyfit(x, y, 1, cov=True) gives the same
    sqrt(cov[0, 0]) (it scales by RSS / (n - 2)); numpy before 1.16 divided by n - 4."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    n = x.size
    if n < 2 or np.ptp(x) == 0:
        raise UserError(f"need at least two distinct x values for a slope, got {n}")
    xm = x - x.mean()
    sxx = float((xm**2).sum())
    slope = float((xm * (y - y.mean())).sum() / sxx)
    intercept = float(y.mean() - slope * x.mean())
    if n > 2:
        resid = y - intercept - slope * x
        se = math.sqrt(float((resid**2).sum()) / (n - 2) / sxx)
    else:
        se = float("nan")
    return LineFit(slope, intercept, se, n)


@dataclass
class SeedCurve:
    """One run's log: x = ln(norm) sorted ascending (rows at one norm averaged, as np.interp needs
    increasing x), y the error there; x_argmin = ln(norm) at the run's smallest error, taken over
    its rows in the table's order (the first such row, as np.argmin over the logged rows)."""

    seed: object
    x: np.ndarray
    y: np.ndarray
    x_argmin: float


def prepare(
    frame: pd.DataFrame, *, p: str, seed: str, norm: str, error: str, norm_is_log: bool
) -> dict[float, list[SeedCurve]]:
    """The rows (P, seed, norm, error) as {P: [SeedCurve per seed, sorted by seed]}, P ascending."""
    for name in (p, seed, norm, error):
        if name not in frame.columns:
            raise UserError(f"missing column '{name}'; available: {', '.join(map(str, frame.columns))}")
    if "N" in frame.columns and "N" not in (p, seed, norm, error):  # N: the model size, one per configuration
        mixed = frame.groupby([p, seed])["N"].nunique()
        if (mixed > 1).any():
            pv, sv = mixed[mixed > 1].index[0]
            raise UserError(
                f"{p}={key(pv)}, {seed}={sv}: rows from models of different N "
                f"({', '.join(map(str, sorted(frame.loc[(frame[p] == pv) & (frame[seed] == sv), 'N'].unique())))}); "
                "files from another configuration are mixed in: give only one configuration's files"
            )
    data = frame[[p, seed, norm, error]].copy()
    for name in (p, norm, error):
        values = pd.to_numeric(data[name], errors="coerce").replace([np.inf, -np.inf], np.nan)
        bad = int(values.isna().sum())
        if bad:
            raise UserError(
                f"column '{name}' has {bad} NaN, infinite or non-numeric value(s) in {len(values)} rows; "
                "leave those rows out (diverged runs? --filter status=ok) before the analysis"
            )
        data[name] = values
    if data[seed].isna().any():
        raise UserError(f"column '{seed}' has {int(data[seed].isna().sum())} missing value(s); label every run")
    bad_norm = False if norm_is_log else (data[norm] <= 0).any()
    if bad_norm or (data[error] <= 0).any() or (data[p] <= 0).any():
        raise UserError(f"columns {p}, {norm} and {error} must be positive (log scales); found zero or negative values")
    if data[p].nunique() < 3:
        raise UserError(f"need at least three distinct {p} values to fit the laws, got {data[p].nunique()}")
    # deep nets log ln R (R overflows float64 for large nets): stay in log space throughout
    data["_x"] = data[norm].to_numpy(float) if norm_is_log else np.log(data[norm].to_numpy(float))
    curves: dict[float, list[SeedCurve]] = {}
    for pv, group in data.groupby(p, sort=True):
        runs = []
        for sv, run in group.groupby(seed, sort=True):
            mean = run.groupby("_x", sort=True)[error].mean()
            first = int(np.argmin(run[error].to_numpy(float)))
            runs.append(SeedCurve(sv, mean.index.to_numpy(float), mean.to_numpy(float), float(run["_x"].iloc[first])))
        curves[pv.item() if hasattr(pv, "item") else pv] = runs  # P as the table holds it (int or float)
    return curves


def key(p) -> str:
    """P as a JSON key: '1000' for integers, repr otherwise."""
    p = float(p)
    return str(int(p)) if p.is_integer() else repr(p)


def exp_or_inf(x: float) -> float:
    """exp(x), or inf where it overflows (ln R of a large net can pass 709)."""
    return math.exp(x) if x < 709.0 else math.inf


def interpolate(curve: SeedCurve, grid: np.ndarray) -> np.ndarray:
    """The run's error at the grid points (ln norm), linear in log norm, NaN outside its range."""
    return np.interp(grid, curve.x, curve.y, left=np.nan, right=np.nan)


@dataclass
class ImplicitBiasResult:
    """gamma1, gamma2, gamma_pred = gamma1 gamma2 and gamma_meas of one method; `details` holds the
    method's own entries (JSON-ready), merged into to_dict()."""

    method: str
    gamma1: float
    gamma1_se: float
    gamma2: float
    gamma2_se: float
    gamma_pred: float
    gamma_pred_se: float
    gamma_meas: float
    gamma_meas_se: float
    lambda_opt: dict  # P -> lambda_opt (a censored P: the bound)
    eps_opt: dict  # P -> eps_opt (a censored P: the bound)
    gamma1_by_p: dict  # P -> gamma1 of that P's curve (the P used for gamma1)
    window: tuple | None  # gamma1 window in lambda/lambda_opt, or None (the robust method's error band)
    edge_minima: list  # P whose minimum sits on its curve's edge
    details: dict = field(default_factory=dict)
    curves: pd.DataFrame = field(default=None, repr=False)  # P, log_lam, lam, error, error_sem, n_seeds
    collapse: pd.DataFrame = field(default=None, repr=False)  # P, u, v, in_fit
    learning_curve: pd.DataFrame = field(default=None, repr=False)  # P, lambda_opt, eps_opt, censored, fits

    def to_dict(self) -> dict:
        out = {
            "method": self.method,
            "gamma1": self.gamma1,
            "gamma1_se": self.gamma1_se,
            "gamma2": self.gamma2,
            "gamma2_se": self.gamma2_se,
            "gamma_pred": self.gamma_pred,
            "gamma_pred_se": self.gamma_pred_se,
            "gamma_meas": self.gamma_meas,
            "gamma_meas_se": self.gamma_meas_se,
            "lambda_opt": {key(p): v for p, v in self.lambda_opt.items()},
            "eps_opt": {key(p): v for p, v in self.eps_opt.items()},
            "gamma1_by_p": {key(p): v for p, v in self.gamma1_by_p.items()},
            "gamma1_window": None if self.window is None else list(self.window),
            "edge_minima": [key(p) for p in self.edge_minima],
        }
        out.update(self.details)
        return out

    def summary(self) -> str:
        used = ", ".join(key(p) for p in self.gamma1_by_p)
        if self.window is None:
            how = "error band {:g}-{:g} of each curve's drop".format(*self.details["gamma1_band"])
        else:
            how = f"window {self.window[0]:g} <= lambda/lambda_opt <= {self.window[1]:g}"
        lines = [
            f"Implicit-bias scaling laws (D'Amico, Bocchi & Negri), method {self.method}",
            f"  gamma1     = {self.gamma1:.4f} +- {self.gamma1_se:.4f}   (early eps ~ lambda^-gamma1; {how}; "
            f"P = {used})",
            f"  gamma2     = {self.gamma2:.4f} +- {self.gamma2_se:.4f}   (lambda_opt ~ P^gamma2)",
            f"  gamma_pred = {self.gamma_pred:.4f} +- {self.gamma_pred_se:.4f}   (gamma1 * gamma2)",
            f"  gamma_meas = {self.gamma_meas:.4f} +- {self.gamma_meas_se:.4f}   (eps_opt ~ P^-gamma)",
        ]
        for name in ("gamma1", "gamma2", "gamma_pred", "gamma_meas"):
            ci = self.details.get(f"{name}_ci")
            if ci is not None and all(v is not None and math.isfinite(v) for v in ci):
                lines.append(f"  {name} 95% CI [{ci[0]:.4f}, {ci[1]:.4f}] (bootstrap over seeds)")
        if "sigma" in self.details:
            lines.append(f"  sigma      = {self.details['sigma']:.4f}   (error of gamma_pred - gamma_meas)")
        lines.append("  P        lambda_opt   eps_opt")
        censored = self.details.get("censored", {})
        for p in self.lambda_opt:
            flag = ""
            if key(p) in censored:
                side = censored[key(p)]["side"]
                flag = f"  (censored: lambda_opt {'>=' if side == 'above' else '<='} this, the curve's edge)"
            elif p in self.edge_minima:
                flag = "  (minimum on the curve's edge, kept)"
            lines.append(f"  {key(p):<8} {self.lambda_opt[p]:<12.5g} {self.eps_opt[p]:.5g}{flag}")
        return "\n".join(lines)
