"""Broken power law (Caballero et al. 2022) with one break, for a single-axis curve: `fit_broken_power_law`."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy import optimize

from scalinglab.core.errors import UserError
from scalinglab.core.io import json_float
from scalinglab.laws.joint.vpro import nnls3

# --------------------------------------------------------------------------------------------
# Broken power law (Caballero et al. 2022), one break:
# y = a + b x^-c0 (1 + (x/d1)^(1/f1))^(-c1 f1): slope -c0 well below the break d1, -(c0 + c1) well
# above it, f1 the sharpness of the turn (small f1: sharp).

_BPL_PARAMS = ("a", "b", "c0", "c1", "d1", "f1")
_BPL_C0 = np.linspace(0.0, 3.0, 21)
_BPL_C1 = np.linspace(-3.0, 3.0, 41)
_BPL_F1 = (0.1, 0.3, 1.0)
_BPL_BREAKS = 30


def _bpl_log_shape(log_x, c0, c1, log_d1, f1):
    """log of x^-c0 (1 + (x/d1)^(1/f1))^(-c1 f1), overflow-free."""
    return -c0 * log_x - c1 * f1 * np.logaddexp(0.0, (log_x - log_d1) / f1)


@dataclass
class BrokenPowerLawFit:
    """y = a + b x^-c0 (1 + (x/d1)^(1/f1))^(-c1 f1), fitted by relative least squares."""

    a: float
    b: float
    c0: float
    c1: float
    d1: float
    f1: float
    rms_relative_error: float
    n_points: int
    diagnostics: list[str] = field(default_factory=list)

    @property
    def params(self) -> dict[str, float]:
        return {name: getattr(self, name) for name in _BPL_PARAMS}

    def predict(self, x) -> np.ndarray:
        log_x = np.log(np.asarray(x, dtype=float))
        return self.a + self.b * np.exp(_bpl_log_shape(log_x, self.c0, self.c1, np.log(self.d1), self.f1))

    def summary(self) -> str:
        lines = [
            "y = a + b x^-c0 (1 + (x/d1)^(1/f1))^(-c1 f1)   (broken power law, relative least squares)",
            "  " + "  ".join(f"{k} = {v:.5g}" for k, v in self.params.items()),
            f"  y - a ∝ x^{-self.c0:.4g} below the break at x = {self.d1:.4g}, x^{-(self.c0 + self.c1):.4g} above it",
            f"  {self.n_points} points, rms relative error {self.rms_relative_error:.3g}",
        ]
        return "\n".join(lines + [f"diagnostic: {text}" for text in self.diagnostics])

    def to_dict(self) -> dict:
        out = {k: json_float(v) for k, v in self.params.items()}
        out.update(
            rms_relative_error=json_float(self.rms_relative_error),
            n_points=int(self.n_points),
            diagnostics=list(self.diagnostics),
        )
        return out


def _bpl_inputs(x, y) -> tuple[np.ndarray, np.ndarray]:
    arrays = []
    for name, values in (("x", x), ("y", y)):
        values = np.asarray(values, dtype=float).ravel()
        if not np.all(np.isfinite(values)):
            raise UserError(f"{name} has {int((~np.isfinite(values)).sum())} NaN/inf value(s); drop those points")
        if np.any(values <= 0):
            raise UserError(
                f"{name} has {int((values <= 0).sum())} value(s) <= 0; a broken power law needs positive values"
            )
        arrays.append(values)
    if len(arrays[0]) != len(arrays[1]):
        raise UserError(f"x has {len(arrays[0])} values but y has {len(arrays[1])}; give one y per x")
    if len(np.unique(arrays[0])) < 8:
        raise UserError(
            f"a broken power law has 6 parameters; it needs >= 8 distinct x, got {len(np.unique(arrays[0]))}"
        )
    return arrays[0], arrays[1]


def fit_broken_power_law(x, y) -> BrokenPowerLawFit:
    """Fit Caballero et al.'s one-break law to a single-axis curve (x > 0, y > 0).

    Relative least squares (see laws/joint/vpro.py: noise in losses is multiplicative). A grid over the
    break position d1 (log-spaced over the observed x), the sharpness f1 and both exponents, with
    (a, b) >= 0 solved exactly at every grid point, picks the basin; least squares on all six
    parameters then polishes it.
    """
    x, y = _bpl_inputs(x, y)
    log_x, w = np.log(x), 1.0 / y**2
    breaks = np.linspace(log_x.min(), log_x.max(), _BPL_BREAKS)
    best = (np.inf, None)
    per_break = len(_BPL_C0) * len(_BPL_C1) * len(x)
    chunk = max(1, 2_000_000 // per_break)  # breaks per pass: keeps the grid arrays near 16 MB each
    for f1 in _BPL_F1:
        for first in range(0, len(breaks), chunk):
            log_d1 = breaks[first : first + chunk]
            # shape (breaks, c0, c1, points)
            logs = _bpl_log_shape(
                log_x, _BPL_C0[None, :, None, None], _BPL_C1[None, None, :, None], log_d1[:, None, None, None], f1
            )
            with np.errstate(over="ignore"):
                g = np.exp(logs)
            zero = np.zeros(g.shape[:-1])
            gram = (w.sum() + zero, (w * g).sum(-1), zero, (w * g * g).sum(-1), zero, zero)  # (a, b) only
            h = ((w * y).sum() + zero, (w * y * g).sum(-1), zero)
            theta, objective = nnls3(gram, h, (w * y * y).sum())
            objective = np.where(np.isfinite(objective), objective, np.inf)
            k = int(np.argmin(objective))
            if objective.flat[k] < best[0]:
                i, j, m = np.unravel_index(k, objective.shape)
                best = (
                    objective.flat[k],
                    np.array([theta[i, j, m, 0], theta[i, j, m, 1], _BPL_C0[j], _BPL_C1[m], log_d1[i], np.log(f1)]),
                )
    start = best[1]

    def residuals(q):  # q: a, log b, c0, c1, log d1, log f1
        return (q[0] + np.exp(q[1] + _bpl_log_shape(log_x, q[2], q[3], q[4], np.exp(q[5]))) - y) / y

    q0 = np.array([start[0], np.log(max(start[1], 1e-300)), start[2], start[3], start[4], start[5]])
    lower = [0.0, -np.inf, -np.inf, -np.inf, log_x.min() - 5.0, np.log(0.01)]
    upper = [np.inf, np.inf, np.inf, np.inf, log_x.max() + 5.0, np.log(10.0)]
    q = q0
    try:
        polished = optimize.least_squares(
            residuals,
            np.clip(q0, lower, upper),
            bounds=(lower, upper),
            xtol=1e-15,
            ftol=1e-15,
            gtol=1e-15,
            max_nfev=5000,
        )
        if np.sum(polished.fun**2) <= np.sum(residuals(q0) ** 2):
            q = polished.x
    except ValueError:
        pass
    a, b, c0, c1, d1, f1 = q[0], np.exp(q[1]), q[2], q[3], np.exp(q[4]), np.exp(q[5])
    notes = []
    xs = np.sort(np.unique(x))
    if not xs[1] <= d1 <= xs[-2]:
        notes.append(
            f"the break d1 = {d1:.4g} lies outside the data's interior [{xs[1]:.4g}, {xs[-2]:.4g}]: "
            "no break is resolved"
        )
    if abs(c0 + c1) < 0.02:
        notes.append("the curve is flat beyond the break: the break and the constant a describe the same floor")
    if len(x) < 12:
        notes.append(f"{len(x)} points for 6 parameters: the break is poorly determined")
    rms = float(np.sqrt(np.mean(residuals(q) ** 2)))
    return BrokenPowerLawFit(float(a), float(b), float(c0), float(c1), float(d1), float(f1), rms, len(x), notes)
