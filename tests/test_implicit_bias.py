"""Implicit-bias analysis: recovery of known exponents, seed averaging, edge cases, the CLI."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest

from scalinglab.cli.main import main
from scalinglab.core.errors import UserError
from scalinglab.laws.implicit_bias.analysis import analyse, fit_line

G1, G2, K1, K2, BETA = 0.4, 0.8, 0.9, 0.05, 1.0
PS = [1_000, 2_000, 4_000, 8_000, 16_000, 32_000]


def lambda_opt(p):
    return K2 * p**G2


def law(lam, p):
    """eps = k1 lam^-g1 (1 + (g1/beta) u^(beta+g1)), u = lam/lambda_opt(P): P-independent early
    power law, minimum exactly at u = 1, exact collapse, eps_opt ~ P^-(g1 g2)."""
    u = lam / lambda_opt(p)
    return K1 * lam**-G1 * (1.0 + (G1 / BETA) * u ** (BETA + G1))


def training_table(seeds=4, noise=0.01, epochs=60, seed=0, ps=PS, span=(1e-3, 10.0)):
    """Rows like a deep-net log: per run, norms growing irregularly over epochs, noisy errors."""
    rng = np.random.default_rng(seed)
    rows = []
    for p in ps:
        for s in range(seeds):
            lo, hi = span
            log_lam = np.sort(rng.uniform(math.log(lo * lambda_opt(p)), math.log(hi * lambda_opt(p)), epochs))
            run_offset = rng.normal(0.0, noise)
            for epoch, x in enumerate(log_lam):
                lam = math.exp(x)
                rows.append(
                    {
                        "P": p,
                        "seed": s,
                        "epoch": epoch,
                        "norm": lam,
                        "error": law(lam, p) * math.exp(run_offset + rng.normal(0.0, noise / 3)),
                    }
                )
    return pd.DataFrame(rows)


def test_recovers_known_exponents_and_optima():
    result = analyse(training_table(), window=(0.01, 0.1))
    # lambda_opt: the parabola refinement on a 400-point grid with 1% run noise locates the
    # flat minimum to a few percent
    for p in PS:
        assert result.lambda_opt[p] == pytest.approx(lambda_opt(p), rel=0.06)
        assert result.eps_opt[p] == pytest.approx(law(lambda_opt(p), p), rel=0.02)
    assert result.gamma2 == pytest.approx(G2, abs=0.02)
    # window slope of u^-g1 (1 + 0.4 u^1.4) over u in [0.01, 0.1]: -0.4 + ~0.015 from the correction
    assert result.gamma1 == pytest.approx(G1, abs=0.03)
    assert result.gamma_meas == pytest.approx(G1 * G2, abs=0.01)
    assert result.gamma_pred == pytest.approx(result.gamma_meas, abs=0.03)
    assert list(result.gamma1_by_p) == PS[-3:]  # upper half of the P values
    se = math.hypot(result.gamma2 * result.gamma1_se, result.gamma1 * result.gamma2_se)
    assert result.gamma_pred_se == pytest.approx(se, rel=1e-9)


def test_collapse_and_frames():
    result = analyse(training_table(), window=(0.01, 0.1))
    col = result.collapse
    # at u = lambda/lambda_opt, every P follows v = f(u) = u^-g1 (1 + g1 u^1.4) / (1 + g1)
    near = col[(col.u > 0.05) & (col.u < 3)]
    f = near.u**-G1 * (1 + G1 * near.u ** (BETA + G1)) / (1 + G1)
    assert np.allclose(near.v, f, rtol=0.05)
    assert set(result.curves.P) == set(PS)
    assert (result.curves.n_seeds == 4).all()
    lc = result.learning_curve
    assert lc.used.all()
    assert np.polyfit(np.log(lc.P), np.log(lc.lambda_opt_fit), 1)[0] == pytest.approx(result.gamma2)
    assert np.polyfit(np.log(lc.P), np.log(lc.eps_opt_fit), 1)[0] == pytest.approx(-result.gamma_meas)


def test_seed_average_is_over_the_interpolated_curves():
    # two seeds, errors 1 and 3 at every norm: the mean curve is 2 wherever both are defined, and
    # only the overlap of their norm ranges is used
    rows = []
    for p in (10, 20, 40):
        for seed, level, lo, hi in ((0, 1.0, 1.0, 50.0), (1, 3.0, 2.0, 100.0)):
            for lam in np.geomspace(lo, hi, 30):
                bump = 1 + (math.log(lam / (p / 2))) ** 2  # minimum at lambda = P/2
                rows.append({"P": p, "seed": seed, "norm": lam, "error": level * bump})
    result = analyse(pd.DataFrame(rows), window=(0.1, 1.0))
    curves = result.curves
    assert curves.lam.min() == pytest.approx(2.0) and curves.lam.max() == pytest.approx(50.0)
    for p in (10, 20, 40):
        assert result.lambda_opt[p] == pytest.approx(p / 2, rel=0.01)
        assert result.eps_opt[p] == pytest.approx(2.0, rel=0.01)
    assert result.gamma2 == pytest.approx(1.0, abs=0.01)
    assert result.gamma_meas == pytest.approx(0.0, abs=0.01)


def test_log_norm_column_gives_the_same_result():
    table = training_table(seeds=2)
    logged = table.assign(norm=np.log(table.norm))
    a = analyse(table, window=(0.01, 0.1))
    b = analyse(logged, window=(0.01, 0.1), norm_is_log=True)
    assert b.gamma1 == pytest.approx(a.gamma1, rel=1e-9)
    assert b.gamma2 == pytest.approx(a.gamma2, rel=1e-9)


def test_minimum_on_the_edge_is_flagged_and_left_out():
    table = training_table(seeds=2)
    # the largest P never reaches its optimum: its norms stop at a fifth of lambda_opt
    big = table.P == PS[-1]
    table = table[~big | (table.norm < 0.2 * lambda_opt(PS[-1]))]
    result = analyse(table, window=(0.01, 0.1))
    assert result.edge_minima == [PS[-1]]
    assert PS[-1] not in result.gamma1_by_p
    assert not result.learning_curve.set_index("P").used[PS[-1]]
    assert result.gamma2 == pytest.approx(G2, abs=0.03)


def test_fit_line_standard_error():
    x = np.array([0.0, 1.0, 2.0, 3.0])
    y = np.array([0.0, 1.1, 1.9, 3.0])
    fit = fit_line(x, y)
    slope, intercept = np.polyfit(x, y, 1)
    resid = y - intercept - slope * x
    assert fit.slope == pytest.approx(slope)
    assert fit.slope_se == pytest.approx(math.sqrt((resid**2).sum() / 2 / 5.0))


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda t: t.drop(columns="norm"), "missing column 'norm'"),
        (lambda t: t[t.P <= 2_000], "at least three distinct P"),
        (lambda t: t.assign(error=t.error - 1.0), "must be positive"),
    ],
)
def test_bad_input_is_a_user_error(mutate, message):
    with pytest.raises(UserError, match=message):
        analyse(mutate(training_table(seeds=2)))


def test_window_outside_the_data_is_a_user_error():
    with pytest.raises(UserError, match="window"):
        analyse(training_table(seeds=2, span=(0.5, 10.0)), window=(0.01, 0.1))


# ------------------------------------------------------------------ CLI on a perceptron sweep


@pytest.fixture(scope="module")
def sweep_table(tmp_path_factory):
    from scalinglab.perceptron.fixed_norm import sweep

    table = sweep(60, [4.0, 8.0, 16.0], lambda a: np.geomspace(0.05, 3 * a, 30), seeds=[0, 1])
    path = tmp_path_factory.mktemp("sweep") / "perceptron.parquet"
    table.to_parquet(path)
    return table, path


def test_cli_matches_library_on_a_sweep(sweep_table, capsys):
    table, path = sweep_table
    args = [str(path), "--norm", "lam", "--error", "rel_error", "--window", "0.05", "0.5", "--json"]
    assert main(["implicit-bias", *args]) == 0
    out = json.loads(capsys.readouterr().out)
    expected = analyse(table, norm="lam", error="rel_error", window=(0.05, 0.5))
    for key in ("gamma1", "gamma1_se", "gamma2", "gamma2_se", "gamma_pred", "gamma_meas"):
        assert out[key] == pytest.approx(getattr(expected, key), rel=1e-12)
    assert set(out["lambda_opt"]) == {"240", "480", "960"}
    for p, value in expected.lambda_opt.items():
        assert out["lambda_opt"][str(p)] == pytest.approx(value, rel=1e-12)


def test_cli_bad_column_is_a_one_line_error(sweep_table, capsys):
    _, path = sweep_table
    assert main(["implicit-bias", str(path), "--error", "risk", "--json"]) == 2  # no column 'risk'
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "missing column(s) risk" in err
