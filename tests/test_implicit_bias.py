"""Implicit-bias analysis, default (robust) method: recovery of known exponents, seed averaging, the
edge cases, the least-squares line, the CLI. The authors' procedure: test_implicit_bias_authors.py;
censoring, the bootstrap and scale-freedom: test_implicit_bias_robust.py; the workflow's stages
against the CLI: test_implicit_bias_workflow.py."""

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


@pytest.fixture(scope="module")
def result():
    return analyse(training_table(), bootstrap=50)


def test_recovers_known_exponents_and_optima(result):
    # lambda_opt: the 5-point parabola on the runs' own logging step, with 1% run noise, locates the
    # flat, asymmetric minimum (left u^-0.4, right u^1) to within 10%
    for p in PS:
        assert result.lambda_opt[p] == pytest.approx(lambda_opt(p), rel=0.1)
        assert result.eps_opt[p] == pytest.approx(law(lambda_opt(p), p), rel=0.02)
    assert result.gamma2 == pytest.approx(G2, abs=0.02)
    # the error band 0.2-0.8 of the drop from u = 1e-3 reaches u ~ 0.1, where this law's
    # correction (0.4 u^1.4) steepens the slope's magnitude by less than 0.02
    assert result.gamma1 == pytest.approx(G1, abs=0.03)
    assert result.gamma_meas == pytest.approx(G1 * G2, abs=0.01)
    assert result.gamma_pred == pytest.approx(result.gamma_meas, abs=0.03)
    assert result.gamma_pred == pytest.approx(result.gamma1 * result.gamma2, rel=1e-12)
    assert list(result.gamma1_by_p) == PS and result.edge_minima == [] and result.details["censored"] == {}
    d = result.to_dict()
    assert d["method"] == "robust" and d["gamma1_window"] is None and d["gamma1_band"] == [0.2, 0.8]
    for name in ("gamma1", "gamma2", "gamma_pred", "gamma_meas"):
        lo, hi = d[f"{name}_ci"]
        assert lo < d[name] < hi


def test_collapse_and_frames(result):
    col = result.collapse
    # at u = lambda/lambda_opt, every P follows v = f(u) = u^-g1 (1 + g1 u^1.4) / (1 + g1)
    near = col[(col.u > 0.05) & (col.u < 3)]
    f = near.u**-G1 * (1 + G1 * near.u ** (BETA + G1)) / (1 + G1)
    assert np.allclose(near.v, f, rtol=0.05)
    assert col.in_fit.any() and (col[col.in_fit].u < 1).all()  # gamma1's points lie left of the minimum
    assert set(result.curves.P) == set(PS)
    assert (result.curves.n_seeds >= 3).all()  # a strict majority of the 4 seeds at every point
    lc = result.learning_curve
    assert not lc.censored.any()
    assert np.polyfit(np.log(lc.P), np.log(lc.lambda_opt_fit), 1)[0] == pytest.approx(result.gamma2)
    assert np.polyfit(np.log(lc.P), np.log(lc.eps_opt_fit), 1)[0] == pytest.approx(-result.gamma_meas)


def test_seed_average_is_over_the_interpolated_curves():
    # two seeds, errors 1 and 3 at every norm: the mean curve is 2 wherever both are defined, and
    # only the overlap of their norm ranges is used (a strict majority of two seeds is two)
    rows = []
    for p in (10, 20, 40):
        for seed, level, lo, hi in ((0, 1.0, 1.0, 50.0), (1, 3.0, 2.0, 100.0)):
            for lam in np.geomspace(lo, hi, 30):
                bump = 1 + (math.log(lam / (p / 2))) ** 2  # minimum at lambda = P/2
                rows.append({"P": p, "seed": seed, "norm": lam, "error": level * bump})
    result = analyse(pd.DataFrame(rows), bootstrap=0, sensitivity=False)
    curves = result.curves
    assert curves.lam.min() == pytest.approx(2.0) and curves.lam.max() == pytest.approx(50.0)
    for p in (10, 20, 40):
        assert result.lambda_opt[p] == pytest.approx(p / 2, rel=0.01)
        assert result.eps_opt[p] == pytest.approx(2.0, rel=0.01)
    assert result.gamma2 == pytest.approx(1.0, abs=0.01)
    assert result.gamma_meas == pytest.approx(0.0, abs=0.01)
    assert result.details["bootstrap"]["used"] is False  # bootstrap=0: the analytic SEs stand in
    assert result.gamma2_se == result.details["analytic_se"]["gamma2"]


def test_log_norm_column_gives_the_same_result():
    table = training_table(seeds=2)
    logged = table.assign(norm=np.log(table.norm))
    a = analyse(table, bootstrap=20, sensitivity=False)
    b = analyse(logged, norm_is_log=True, bootstrap=20, sensitivity=False)
    assert b.gamma1 == pytest.approx(a.gamma1, rel=1e-9)
    assert b.gamma2 == pytest.approx(a.gamma2, rel=1e-9)
    assert b.gamma_pred_se == pytest.approx(a.gamma_pred_se, rel=1e-9)


def test_a_fixed_window_replaces_the_band():
    result = analyse(training_table(seeds=2), window=(0.01, 0.1), bootstrap=0)
    assert result.window == (0.01, 0.1) and result.to_dict()["gamma1_window"] == [0.01, 0.1]
    assert result.gamma1 == pytest.approx(G1, abs=0.03)
    assert all("gamma1_window" in row for row in result.details["sensitivity"])


def test_fit_line_standard_error_is_polyfit_cov():
    x = np.array([0.0, 1.0, 2.0, 3.0, 5.0])
    y = np.array([0.0, 1.1, 1.9, 3.0, 5.3])
    fit = fit_line(x, y)
    (slope, intercept), cov = np.polyfit(x, y, 1, cov=True)
    resid = y - intercept - slope * x
    assert fit.slope == pytest.approx(slope)
    assert fit.slope_se == pytest.approx(math.sqrt((resid**2).sum() / 3 / ((x - x.mean()) ** 2).sum()))
    assert fit.slope_se == pytest.approx(math.sqrt(cov[0, 0]), rel=1e-12)  # numpy >= 1.16: RSS / (n - 2)


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


@pytest.mark.parametrize(
    "options, message",
    [
        (dict(method="fancy"), "unknown method"),
        (dict(method="authors"), "needs a window"),
        (dict(band=(0.8, 0.2)), "band must satisfy"),
        (dict(window=(0.1, 0.01)), "window must satisfy"),
    ],
)
def test_bad_options_are_user_errors(options, message):
    with pytest.raises(UserError, match=message):
        analyse(training_table(seeds=2, ps=PS[:3]), **options)


def test_curves_that_never_fall_have_no_early_regime():
    # the error only rises with the norm: every minimum is at the first norm (censored), no gamma1
    rows = [{"P": p, "seed": 0, "norm": lam, "error": 0.1 * lam} for p in PS[:3] for lam in np.geomspace(1, 10, 20)]
    with pytest.raises(UserError, match="no curve has an early regime"):
        analyse(pd.DataFrame(rows))


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
    args = [str(path), "--error", "rel_error", "--bootstrap", "30", "--json"]
    assert main(["implicit-bias", *args]) == 0
    out = json.loads(capsys.readouterr().out)
    expected = analyse(table, error="rel_error", bootstrap=30)
    for key in ("gamma1", "gamma1_se", "gamma2", "gamma2_se", "gamma_pred", "gamma_pred_se", "gamma_meas"):
        assert out[key] == getattr(expected, key)
    assert out["gamma_pred_ci"] == expected.details["gamma_pred_ci"]
    assert set(out["lambda_opt"]) == {"240", "480", "960"}
    for p, value in expected.lambda_opt.items():
        assert out["lambda_opt"][str(p)] == value
    # several tables are concatenated: the same rows split in two give the same numbers
    halves = [path.parent / "a.parquet", path.parent / "b.parquet"]
    table[table.P < 900].to_parquet(halves[0])
    table[table.P > 900].to_parquet(halves[1])
    assert main(["implicit-bias", *map(str, halves), *args[1:]]) == 0
    assert json.loads(capsys.readouterr().out)["gamma_pred"] == out["gamma_pred"]


def test_cli_text_summary_names_the_method(sweep_table, capsys):
    _, path = sweep_table
    assert main(["implicit-bias", str(path), "--error", "rel_error", "--bootstrap", "0", "--no-sensitivity"]) == 0
    text = capsys.readouterr().out
    assert "method robust" in text and "gamma_pred" in text


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--error", "risk"], "missing column(s) risk"),
        (["--grid", "40"], "--grid applies to --method authors only"),
        (["--method", "authors", "--window", "0", "1", "--bootstrap", "50"], "--bootstrap applies to --method robust"),
        (["--filter", "seed=7"], "matches no rows"),
    ],
)
def test_cli_bad_input_is_a_one_line_error(sweep_table, capsys, extra, message):
    _, path = sweep_table
    assert main(["implicit-bias", str(path), *extra, "--json"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err
