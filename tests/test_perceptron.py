"""Teacher-student perceptron: data, the fixed-norm solver (against independent checks), the
error curve's physics, the sweep table, and gradient descent landing on the fixed-norm curve."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch

from scalinglab.perceptron.fixed_norm import solve_fixed_norm, sweep
from scalinglab.perceptron.problem import generalisation_error, hebbian, make_data
from scalinglab.perceptron.theory import envelope_relative_error, gd_trajectory


def test_data_are_nested_in_p_and_labelled_by_the_teacher():
    small, big = make_data(50, 120, seed=3), make_data(50, 300, seed=3)
    assert torch.equal(small.x, big.x[:120]) and torch.equal(small.teacher, big.teacher)
    assert set(big.x.unique().tolist()) == {-1.0, 1.0}
    assert torch.equal(big.y, torch.sign(big.x @ big.teacher))
    assert not torch.equal(make_data(50, 120, seed=4).x, small.x)


def test_hebbian_error_matches_theory():
    # Hebb's rule: R = 1/sqrt(1 + pi/(2 alpha)) as N -> infinity; at N = 1000 the seed-to-seed
    # spread of eps is about 0.005, so the mean of 4 seeds sits within 0.006 (2.5 sd of the mean)
    alpha = 3.0
    errors = [
        float(generalisation_error(hebbian(d)[None], d.teacher)[0])
        for d in (make_data(1000, 3000, s) for s in range(4))
    ]
    expected = math.acos(1 / math.sqrt(1 + math.pi / (2 * alpha))) / math.pi
    assert np.mean(errors) == pytest.approx(expected, abs=0.006)


def _loss(w, data, lam):
    margins = w @ data.signed.T
    return torch.nn.functional.softplus(-2.0 * lam * margins).sum(-1)


def test_solution_satisfies_kkt_and_beats_perturbations():
    data = make_data(40, 160, seed=1)
    lams = np.array([0.3, 2.0, 10.0])
    sol = solve_fixed_norm(data, lams)
    assert sol.converged.all() and (sol.multiplier > 0).all()
    for w, lam in zip(sol.weights, lams):
        assert float(w.norm() ** 2) == pytest.approx(40.0, rel=1e-12)
        # KKT of the convex ball problem: the Euclidean gradient is -c w with c > 0
        w = w.clone().requires_grad_(True)
        _loss(w, data, lam).backward()
        cosine = float(w.grad @ w.detach() / (w.grad.norm() * w.detach().norm()))
        assert cosine == pytest.approx(-1.0, abs=1e-10)
        # no nearby point on the sphere is lower
        gen = torch.Generator().manual_seed(0)
        best = float(_loss(w.detach(), data, lam))
        for _ in range(20):
            trial = w.detach() + 0.05 * torch.randn(40, generator=gen, dtype=torch.float64)
            trial *= math.sqrt(40) / trial.norm()
            assert float(_loss(trial, data, lam)) > best


def test_matches_projected_gradient_descent_on_the_ball():
    # an independent solver: the convex problem min L over |w|^2 <= N by projected gradient
    # descent (its minimum lies on the sphere, see the module doc)
    data = make_data(20, 60, seed=2)
    lam = 1.5
    w = torch.zeros(20, dtype=torch.float64)
    step = 1.0 / (lam**2 * float(torch.linalg.matrix_norm(data.signed, 2)) ** 2)
    for _ in range(20_000):
        grad = -2.0 * lam * (torch.sigmoid(-2.0 * lam * (data.signed @ w)) @ data.signed)
        w = w - step * grad
        w = w * min(1.0, math.sqrt(20) / float(w.norm()))
    sol = solve_fixed_norm(data, [lam])
    assert float(w.norm()) == pytest.approx(math.sqrt(20), rel=1e-9)
    assert float((sol.weights[0] - w).norm()) / math.sqrt(20) < 1e-6


def test_batch_with_warm_starts_equals_solving_each_lambda_alone():
    data = make_data(60, 300, seed=5)
    lams = np.geomspace(0.05, 50, 12)
    together = solve_fixed_norm(data, lams[::-1].copy())  # any order in, same order out
    for i, lam in enumerate(lams[::-1]):
        alone = solve_fixed_norm(data, [lam], block=1)
        angle = math.acos(min(1.0, float(together.weights[i] @ alone.weights[0]) / 60))
        assert angle < 1e-6


def test_error_curve_interpolates_hebb_and_max_margin():
    data = make_data(100, 500, seed=0)
    lams = np.geomspace(1e-3, 3000.0, 37)  # a ratio of 1.5 between norms
    sol = solve_fixed_norm(data, lams)
    assert sol.converged.all()  # also at lambda = 3000, where the loss underflows float64
    eps = generalisation_error(sol.weights, data.teacher).numpy()
    hebb = float(generalisation_error(hebbian(data)[None], data.teacher)[0])
    assert eps[0] == pytest.approx(hebb, abs=1e-3)  # lambda -> 0 is Hebb's rule
    assert eps.min() < 0.8 * hebb  # a well-regularised norm beats Hebb by far at alpha = 5
    assert 0 < np.argmin(eps) < len(eps) - 1  # the optimum is at a finite norm
    # lambda -> infinity is the max-margin perceptron: the minimum margin saturates
    margins = (sol.weights[-2:] @ data.signed.T).min(1).values
    assert float(margins[0]) > 0 and float(margins[1]) == pytest.approx(float(margins[0]), rel=2e-2)


def test_non_convergence_is_reported_and_warned():
    data = make_data(60, 300, seed=0)
    with pytest.warns(RuntimeWarning, match="not converged"):
        sol = solve_fixed_norm(data, [0.5, 50.0], max_newton=1)
    assert not sol.converged.all()
    assert (sol.grad_norm[~sol.converged] > 1e-6).all()


def test_sweep_table():
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # every lambda converges
        table = sweep(50, [2.0, 4.0], np.geomspace(0.1, 10, 5), seeds=[0, 1])
    assert list(table.columns[:9]) == ["alpha", "P", "N", "seed", "lam", "norm", "error", "grad_norm", "converged"]
    assert len(table) == 2 * 2 * 5 and table.converged.all()
    assert sorted(table.P.unique()) == [100, 200]
    assert np.allclose(table.rel_error, table.error / table.error_hebb)
    one = make_data(50, 200, seed=1)
    w = solve_fixed_norm(one, [10.0]).weights
    row = table[(table.P == 200) & (table.seed == 1) & np.isclose(table.lam, 10.0)]
    assert float(row.error.iloc[0]) == pytest.approx(float(generalisation_error(w, one.teacher)[0]), abs=1e-7)
    # `norm` is the paper's lambda: |weights|^2 / N of the paper's model, whose weights are lam * w
    assert float(row.norm.iloc[0]) == pytest.approx(float((10.0 * w).norm() ** 2) / 50, rel=1e-12)


def test_envelope_is_the_large_alpha_limit():
    # at alpha = 64 the relative error at small norms already sits on the alpha -> infinity
    # envelope; the finite-alpha correction grows with lambda/alpha (about 3% at lambda = 1 here)
    lams = np.array([0.1, 0.3, 1.0])
    table = sweep(100, [64.0], lams, seeds=[0, 1])
    measured = table.groupby("lam").rel_error.mean().to_numpy()
    assert measured == pytest.approx(envelope_relative_error(lams), rel=0.05)
    env = envelope_relative_error([1e-4, 100.0, 400.0])
    assert env[0] == pytest.approx(1.0, abs=1e-3)
    assert math.log(env[1] / env[2]) / math.log(4.0) == pytest.approx(0.5, abs=0.01)  # lambda^-1/2


# ------------------------------------------------------------------ gradient descent


@pytest.fixture(scope="module")
def gd_run():
    """GD at alpha = 5, N = 200 for 3000 steps (lambda grows to ~10, past lambda_opt ~ 4)."""
    traj, weights = gd_trajectory(200, 5.0, seed=0, steps=3000, records=30, return_weights=True)
    return traj, weights, make_data(200, 1000, seed=0)


def test_gd_norm_grows_and_loss_falls(gd_run):
    traj, weights, _ = gd_run
    assert np.allclose(weights.norm(dim=1).numpy() / math.sqrt(200), traj.lam)
    assert np.allclose(weights.norm(dim=1).numpy() ** 2 / 200, traj.norm)  # the paper's lambda = |w|^2/N
    assert traj.lam.is_monotonic_increasing and traj.loss.is_monotonic_decreasing
    assert traj.lam.iloc[0] == pytest.approx(1e-3, rel=1e-6) and traj.lam.iloc[-1] > 8.0


def test_gd_lands_on_the_fixed_norm_curve(gd_run):
    """Why it should: at each lambda the fixed-norm minimiser is unique (convex problem on the
    ball, KKT certified), and GD's direction relaxes on the sphere faster than its norm grows
    (the norm grows logarithmically once the data are separated), so the direction follows the
    minimiser at lambda(t), lagging slightly. GD's first step jumps to lambda ~ 0.45 along the
    Hebbian direction while the fixed-norm curve falls fastest at lambda ~ 0.3-2, so the
    comparison starts at lambda >= 3, once that transient has relaxed.
    Measured (N = 200, seed 0): |eps_gd - eps_fixed| <= 0.0017 (2% of eps) and an angle between
    the two weight vectors of 0.7-1.3 degrees, about half the angle between the fixed-norm
    minimisers at lambda and 1.5 lambda. Tolerances: 0.0025 in eps; angle below that of a
    1.5x error in lambda either way, which a trajectory off the curve would violate."""
    traj, weights, data = gd_run
    late = traj[traj.lam >= 3.0]
    assert len(late) >= 8
    lams = late.lam.to_numpy()
    sol = solve_fixed_norm(data, np.concatenate([lams, lams / 1.5, lams * 1.5]))
    k = len(lams)
    fixed = generalisation_error(sol.weights[:k], data.teacher).numpy()
    assert np.abs(late.error.to_numpy() - fixed).max() <= 0.0025

    w_gd = weights[torch.as_tensor(late.index.to_numpy().copy())]

    def angle(a, b):
        return math.acos(min(1.0, float(a @ b / (a.norm() * b.norm()))))

    for i in range(k):
        here = angle(w_gd[i], sol.weights[i])
        assert here < angle(sol.weights[i], sol.weights[k + i])
        assert here < angle(sol.weights[i], sol.weights[2 * k + i])
