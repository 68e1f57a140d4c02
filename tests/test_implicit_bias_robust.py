"""The default (robust) implicit-bias method: on the synthetic curves of test_implicit_bias_authors.py
(known gamma1 and gamma2; the smallest P's minimum on the left edge, the largest P's on the right)
it recovers both within its bootstrap CI and lists and bounds the censored P; the censored line fit;
scale-freedom; tails on too few seeds; the bootstrap and the sensitivity table."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from test_implicit_bias_authors import G1, G2, PS, curves_table, lambda_opt, law

from scalinglab.core.errors import UserError
from scalinglab.laws.implicit_bias.analysis import analyse
from scalinglab.laws.implicit_bias.censored import censored_line
from scalinglab.laws.implicit_bias.common import fit_line


@pytest.fixture(scope="module")
def table():
    return curves_table()


@pytest.fixture(scope="module")
def result(table):
    return analyse(table)


def test_default_recovers_both_exponents_within_its_ci(result):
    d = result.to_dict()
    for name, truth in (("gamma1", G1), ("gamma2", G2), ("gamma_pred", G1 * G2)):
        lo, hi = d[f"{name}_ci"]
        assert lo <= truth <= hi, (name, d[name], d[f"{name}_ci"])
    assert result.gamma1 == pytest.approx(G1, abs=0.002)
    assert result.gamma2 == pytest.approx(G2, abs=0.01)
    # gamma_meas: the censored P enter as bounds eps_opt <= eps at the edge; 6 seeds with a 2% run
    # offset each leave about 0.8% of noise on each eps_opt
    assert result.gamma_meas == pytest.approx(G1 * G2, abs=0.015)
    assert d["bootstrap"] == {
        "resamples": 200,
        "failed": 0,
        "seed": 0,
        "unit": "seeds, resampled within each P",
        "used": True,
    }


def test_censored_p_are_listed_and_handled(result):
    censored = result.details["censored"]
    assert list(censored) == ["1000", "32000"] and result.edge_minima == [1_000, 32_000]
    # the smallest P starts past its minimum: lambda_opt <= the first norm (1.3 lambda_opt);
    # the largest stops before it: lambda_opt >= the last norm reached (0.95 lambda_opt)
    assert censored["1000"]["side"] == "below"
    assert censored["1000"]["lambda_bound"] == pytest.approx(1.3 * lambda_opt(1_000), rel=1e-9)
    assert censored["32000"]["side"] == "above"
    assert censored["32000"]["lambda_bound"] == pytest.approx(0.95 * lambda_opt(32_000), rel=1e-9)
    assert censored["32000"]["eps_bound"] >= law(lambda_opt(32_000), 32_000) * 0.97
    # not in gamma1 (their eps_opt is unknown), bounds in gamma2 and gamma_meas, flagged in the frames
    assert result.details["gamma1_skipped"] == {"1000": "censored minimum", "32000": "censored minimum"}
    assert list(result.gamma1_by_p) == PS[1:-1]
    assert list(result.learning_curve.censored) == [True, False, False, False, False, True]
    assert "censored" in result.summary()


def test_a_bound_the_line_violates_pulls_it_one_it_clears_does_not():
    x = np.log([1.0, 2.0, 4.0, 8.0, 16.0])
    y = 0.8 * x + np.array([0.01, -0.01, 0.005, 0.0, 0.0])
    exact = fit_line(x[:4], y[:4])
    # the last point only known to be >= a value far below the line: ordinary least squares on the rest
    clear = censored_line(x, np.r_[y[:4], y[4] - 1.0], [0, 0, 0, 0, 1])
    assert clear.slope == pytest.approx(exact.slope, abs=1e-4)
    # >= a value well above the line: the line is pulled up towards it
    pulled = censored_line(x, np.r_[y[:4], y[4] + 1.0], [0, 0, 0, 0, 1])
    assert pulled.slope > exact.slope + 0.05 and math.isfinite(pulled.slope_se)
    # <= a value above the line: no pull
    assert censored_line(x, np.r_[y[:4], y[4] + 1.0], [0, 0, 0, 0, -1]).slope == pytest.approx(exact.slope, abs=1e-4)
    # no bound: exactly fit_line
    assert censored_line(x, y, [0] * 5) == fit_line(x, y)
    with pytest.raises(UserError, match="only 2 points are exact"):
        censored_line(x, y, [0, 0, 1, 1, 1])


def test_too_few_uncensored_p_is_a_user_error_that_names_them(table):
    # every P from 8000 up stops at half its optimum: 2 uncensored P remain (and the left-censored 1000)
    short = table[(table.P < 8_000) | (table.norm < 0.5 * lambda_opt(table.P))]
    with pytest.raises(UserError, match="P censored: 1000, 8000, 16000, 32000.*--method authors"):
        analyse(short, bootstrap=0, sensitivity=False)


def test_scale_free_a_norm_spanning_seventy_decades(table):
    """ln lambda stretched 30x, as a ViT's R spans 10^5-10^75: the grid follows the runs' step and
    the band the error, so gamma1 comes out / 30, gamma2 x 30 and gamma_pred unchanged."""
    stretched = table.assign(norm=30 * np.log(table.norm))
    a = analyse(stretched, norm_is_log=True, bootstrap=0, sensitivity=False)
    b = analyse(table, bootstrap=0, sensitivity=False)
    assert a.gamma1 * 30 == pytest.approx(b.gamma1, rel=1e-9)
    assert a.gamma2 / 30 == pytest.approx(b.gamma2, rel=1e-4)  # the censored fit's optimiser tolerance
    assert a.gamma_pred == pytest.approx(b.gamma_pred, rel=1e-4)
    assert list(a.details["censored"]) == list(b.details["censored"])


def test_tails_on_too_few_seeds_are_dropped():
    # three seeds; one runs 10x further in norm at a 30% higher error: its lone tail is left out
    rows = []
    for p in PS[1:4]:
        for s, (hi, level) in enumerate(((5.0, 1.0), (5.0, 1.0), (50.0, 1.3))):
            for lam in lambda_opt(p) * np.geomspace(1e-3, hi, 60 if hi < 10 else 80):
                rows.append({"P": p, "seed": s, "norm": lam, "error": level * law(lam, p)})
    frame = pd.DataFrame(rows)
    majority = analyse(frame, bootstrap=0, sensitivity=False)
    assert (majority.curves.n_seeds >= 2).all()
    assert majority.curves.lam.max() == pytest.approx(5.0 * lambda_opt(PS[3]), rel=1e-9)
    everything = analyse(frame, min_seeds=1, bootstrap=0, sensitivity=False)
    assert everything.curves.n_seeds.min() == 1
    assert everything.curves.lam.max() == pytest.approx(50.0 * lambda_opt(PS[3]), rel=1e-9)


def test_bootstrap_is_seeded_and_sensitivity_spans_bands_and_p_ranges(table):
    a = analyse(table, bootstrap=40, bootstrap_seed=3)
    b = analyse(table, bootstrap=40, bootstrap_seed=3, sensitivity=False)
    c = analyse(table, bootstrap=40, bootstrap_seed=4, sensitivity=False)
    assert a.details["gamma_pred_ci"] == b.details["gamma_pred_ci"] != c.details["gamma_pred_ci"]
    rows = a.details["sensitivity"]
    assert {tuple(r["gamma1_band"]) for r in rows} == {(0.1, 0.7), (0.2, 0.8), (0.3, 0.9), (0.1, 0.9)}
    assert {r["p_range"] for r in rows} == {"all", "without smallest P", "without largest P", "upper half"}
    first = rows[0]
    assert first["gamma1_band"] == [0.2, 0.8] and first["p_range"] == "all"
    assert first["gamma_pred"] == a.gamma_pred
    # upper half: 8000, 16000, 32000, of which 32000 is censored: too few exact P for gamma2
    upper = [r for r in rows if r["p_range"] == "upper half"]
    assert all("gamma2" in r["error"] for r in upper)
    done = [r for r in rows if "gamma_pred" in r]
    assert len(done) >= 8 and all(abs(r["gamma1"] - G1) < 0.01 for r in done)


def test_one_seed_per_p_has_no_bootstrap(table):
    one = analyse(table[table.seed == 0], sensitivity=False)
    assert one.details["bootstrap"]["used"] is False
    assert all(math.isnan(v) for v in one.details["gamma_pred_ci"])
    assert one.gamma2_se == one.details["analytic_se"]["gamma2"]
