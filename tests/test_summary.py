"""results/summary.tsv and the report's landing text (scalinglab.report.summary) on a finished tiny run's
real fit files: every headline number of the captions is a row, with its CI or why it has none, the
prediction and the distance."""

from __future__ import annotations

import json
import math

import pandas as pd
import pytest

from scalinglab.report import summary


def test_rows_and_distances_on_made_up_fits(tmp_path):
    fits = pd.DataFrame(
        {
            "d": [4, 4],
            "P": [math.inf, math.inf],
            "method": ["ols", "quantile"],
            "dim": [4.4, 4.6],
            "dim_lo": [4.1, 4.2],
            "dim_hi": [4.8, 5.0],
            "diagnostics": ["", ""],
            "manifold_dim": [4, 4],
        }
    )
    fits.to_parquet(tmp_path / "ts.parquet")
    perceptron = {"N": 500, "gamma_pred": 0.40, "gamma_pred_se": 0.03, "gamma_meas": 0.49, "gamma_meas_se": 0.04}
    (tmp_path / "p.json").write_text(json.dumps({**perceptron, "gamma_pred_ci": [0.34, 0.46]}))
    table = summary.summarize(teacher_student_fits=tmp_path / "ts.parquet", perceptron_fits=tmp_path / "p.json")
    assert list(table.columns) == summary.COLUMNS
    # 4/alpha by both methods; the perceptron's measured gamma, then gamma_pred against it
    assert list(table["quantity"]) == [
        "4/alpha (least squares)",
        "4/alpha (quantile regression, q = 0.5)",
        "gamma_meas (eps_opt ~ P^-gamma_meas)",
        "gamma_pred = gamma1 gamma2",
    ]
    ts, gamma = table.iloc[0], table.iloc[3]
    assert ts["value"] == 4.4 and ts["theory"] == 4 and ts["relative_difference"] == pytest.approx(0.1)
    assert (ts["ci_lo"], ts["ci_hi"]) == (4.1, 4.8)
    assert gamma["sigma_distance"] == pytest.approx(-0.09 / 0.05)  # (0.40 - 0.49) / hypot(0.03, 0.04)
    text = summary.landing_rst(table)
    assert "4.4 [4.1, 4.8]" in text and "+10%" in text and "-1.8 σ" in text


def test_a_ci_that_cannot_be_had_says_why(tmp_path):
    note = "CI n/a: 10 distinct resamples: a bootstrap over 3 clusters can draw only 10 distinct resamples"
    fits = pd.DataFrame(
        {
            "d": [4],
            "P": [1000.0],
            "method": ["ols"],
            "dim": [4.4],
            "dim_lo": [math.nan],
            "dim_hi": [math.nan],
            "diagnostics": [note],
            "manifold_dim": [4],
        }
    )
    fits.to_parquet(tmp_path / "ts.parquet")
    table = summary.summarize(teacher_student_fits=tmp_path / "ts.parquet")
    assert table.iloc[0]["ci_note"] == "CI n/a: 10 distinct resamples"
    assert "4.4 (CI n/a: 10 distinct resamples)" in summary.landing_rst(table)
    assert "P = 1000" in table.iloc[0]["setting"]
