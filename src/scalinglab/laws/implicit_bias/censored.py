"""A straight line through points some of which are only bounds: the Tobit model (Tobin 1958),
y_i = a + b x_i + e_i with e_i ~ N(0, s^2), fitted by maximum likelihood. An exact point contributes
its density; a lower bound (the true y >= y_i, e.g. lambda_opt of a curve whose error still falls
at the last norm reached) contributes P(a + b x_i + e >= y_i); an upper bound the opposite. A bound
that the line clears by several s costs nothing, so a bound consistent with the exact points leaves
the fit at ordinary least squares; a bound that the line would violate pulls it."""

from __future__ import annotations

import math

import numpy as np
from scipy.optimize import minimize
from scipy.special import log_ndtr

from scalinglab.core.errors import UserError
from scalinglab.laws.implicit_bias.common import LineFit, fit_line


def censored_line(x, y, side) -> LineFit:
    """side: 0 exact, +1 the true value is >= y, -1 it is <= y. Without bounds this is fit_line;
    with bounds it needs three exact points (with fewer the noise level s is not identified)."""
    x, y, side = np.asarray(x, float), np.asarray(y, float), np.asarray(side, int)
    exact = side == 0
    if exact.all():
        return fit_line(x, y)
    if exact.sum() < 3:
        raise UserError(f"only {int(exact.sum())} points are exact, the others bounds; need 3 for a censored fit")
    start = fit_line(x[exact], y[exact])
    scale = max(float(np.ptp(y)), 1e-12)
    resid = y[exact] - start.intercept - start.slope * x[exact]
    s0 = max(float(np.sqrt((resid**2).mean())), 1e-3 * scale)
    xc = x.mean()  # centred x: a and b less correlated, the optimiser better conditioned

    def nll(theta):
        a, b, log_s = theta
        s = math.exp(log_s)
        z = (y - a - b * (x - xc)) / s
        out = 0.5 * (z[exact] ** 2).sum() + exact.sum() * log_s
        out -= log_ndtr(z[side < 0]).sum()  # true <= y: P(e <= y - line)
        out -= log_ndtr(-z[side > 0]).sum()  # true >= y: P(e >= y - line)
        return float(out)

    theta0 = np.array([start.intercept + start.slope * xc, start.slope, math.log(s0)])
    bounds = [(None, None), (None, None), (math.log(1e-9 * scale), math.log(10 * scale))]
    res = minimize(nll, theta0, method="L-BFGS-B", bounds=bounds)
    a, b, log_s = res.x
    se = _slope_se(nll, res.x) if bounds[2][0] + 1e-6 < log_s < bounds[2][1] - 1e-6 else float("nan")
    return LineFit(float(b), float(a - b * xc), se, int(x.size))


def _slope_se(f, theta: np.ndarray) -> float:
    """sqrt of the slope's entry of the inverse Hessian of the negative log-likelihood (central
    differences); nan where the Hessian is not positive definite."""
    k = len(theta)
    h = 1e-4 * np.maximum(1.0, np.abs(theta))
    hess = np.empty((k, k))
    for i in range(k):
        for j in range(k):
            ei, ej = np.eye(k)[i] * h[i], np.eye(k)[j] * h[j]
            hess[i, j] = (f(theta + ei + ej) - f(theta + ei - ej) - f(theta - ei + ej) + f(theta - ei - ej)) / (
                4 * h[i] * h[j]
            )
    try:
        cov = np.linalg.inv(hess)
    except np.linalg.LinAlgError:
        return float("nan")
    if not np.all(np.linalg.eigvalsh((hess + hess.T) / 2) > 0):
        return float("nan")
    return float(math.sqrt(cov[1, 1]))
