"""The workflow's implicit-bias numbers against the CLI on the workflow's own tables, with the flags
its JSON and the CLI's docstring document (exact equality); the perceptron's two exponents, each
named; the gamma table keeping unlike quantities in separate columns."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
from test_implicit_bias_authors import lambda_opt, law

from scalinglab.cli.main import main
from scalinglab.core.divergence import mark_diverged
from scalinglab.deep_nets import stage as deep_nets_stage
from scalinglab.perceptron import stage as perceptron_stage

GAMMAS = ("gamma1", "gamma1_se", "gamma2", "gamma2_se", "gamma_pred", "gamma_pred_se", "gamma_meas", "gamma_meas_se")


def cli_json(capsys, *args) -> dict:
    assert main(["implicit-bias", *map(str, args), "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def figures(tmp_path, prefix):
    return {k: tmp_path / f"{prefix}_{k}.png" for k in ("curves", "collapse", "learning")}


@pytest.fixture(scope="module")
def perceptron_run(tmp_path_factory):
    """The perceptron stage on sweep files written as rule perceptron_sweep writes them (one per
    alpha, the config's lambda grid), small: N = 60, alpha 4-32."""
    from scalinglab.perceptron.fixed_norm import sweep

    root = tmp_path_factory.mktemp("perceptron")
    paths = []
    for alpha in (4.0, 8.0, 16.0, 32.0):
        lambdas = perceptron_stage.lambda_grid(alpha, 1e-4, 4.0, 30)
        path = root / f"alpha~{alpha:g}.parquet"
        sweep(60, [alpha], np.sqrt(lambdas), [0, 1]).to_parquet(path)
        paths.append(path)
    fits = root / "perceptron.json"
    perceptron_stage.analyse_and_plot(
        sweeps=paths,
        fits_json=fits,
        caption=root / "perceptron.rst",
        window=[0.0004, 0.04],
        upper_fraction=0.5,
        **figures(root, "p"),
    )
    return paths, json.loads(fits.read_text()), (root / "perceptron.rst").read_text()


def test_perceptron_stage_equals_the_cli_on_its_sweep_files(perceptron_run, capsys):
    paths, summary, _ = perceptron_run
    assert summary["reproduce"].startswith(
        "scalinglab implicit-bias results/runs/perceptron/alpha~*.parquet --error rel_error --json"
    )
    out = cli_json(capsys, *paths, "--error", "rel_error")
    for key in (*GAMMAS, "gamma1_ci", "gamma2_ci", "gamma_pred_ci", "gamma_meas_ci", "lambda_opt", "eps_opt"):
        assert out[key] == summary[key], key
    assert out["sensitivity"] == summary["sensitivity"]
    # the absolute learning curve's exponent: the same with --error error
    absolute = cli_json(capsys, *paths, "--error", "error", "--no-sensitivity")
    assert absolute["gamma_meas"] == summary["gamma_meas_abs"]
    assert absolute["gamma_meas_se"] == summary["gamma_meas_abs_se"]
    # the authors' cross-check: its recorded window and gamma1_min_p as flags
    a = summary["authors"]
    assert a["status"] == "ok" and a["gamma1_min_p"] == 960.0  # the upper half of P = 240 ... 1920
    authors = cli_json(
        capsys,
        *paths,
        "--error",
        "rel_error",
        "--method",
        "authors",
        "--window",
        *a["gamma1_window"],
        "--gamma1-min-p",
        a["gamma1_min_p"],
    )
    for key in (*GAMMAS, "sigma", "lambda_opt", "l0"):
        assert authors[key] == a[key], key


def test_perceptron_reports_both_exponents_named(perceptron_run):
    _, s, caption = perceptron_run
    assert s["error"] == "rel_error" and "eps_Hebb" in s["error_meaning"]
    assert s["gamma_meas_rel"] == s["gamma_meas"] and s["gamma_meas_rel_se"] == s["gamma_meas_se"]
    # eps_Hebb falls as alpha^-1/2, so the absolute learning curve falls about twice as fast
    assert s["gamma_meas_abs"] > s["gamma_meas_rel"] + 0.2
    assert f"γ_meas_rel = {s['gamma_meas_rel']:.3f}" in caption and f"γ_meas_abs = {s['gamma_meas_abs']:.3f}" in caption


def deep_net_cells(root) -> list:
    """Cells as rule train_deep_nets writes them, one file per (P, seed): test error against ln R
    logged along training (the synthetic law of test_implicit_bias_authors.py), a falling train
    loss, the status the training stage stores; one run of P = 256 diverges."""
    rng = np.random.default_rng(1)
    paths = []
    for p in (64, 128, 256, 512, 1024):
        for seed in (0, 1, 2):
            steps = np.arange(40)
            lam = lambda_opt(p) * np.geomspace(1e-3, 10.0, 40) * np.exp(rng.normal(0, 0.02, 40))
            lam = np.sort(lam)
            cell = pd.DataFrame(
                {
                    "P": p,
                    "seed": seed,
                    "N": 1234,
                    "step": steps,
                    "epoch": steps * 10.0,
                    "log_norm": np.log(lam),
                    "test_error": law(lam, p) * np.exp(rng.normal(0, 0.01) + rng.normal(0, 0.003, 40)),
                    "train_loss": 2.3 * np.exp(-steps / 8.0),
                }
            )
            if (p, seed) == (256, 2):
                cell.loc[cell.step > 30, "train_loss"] = np.inf
            cell = mark_diverged(cell, ["P", "seed"], "step", "train_loss")
            path = root / f"P~{p}" / f"seed~{seed}.parquet"
            path.parent.mkdir(parents=True, exist_ok=True)
            cell.to_parquet(path)
            paths.append(path)
    return paths


@pytest.fixture(scope="module")
def deep_nets_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("deep")
    cells = deep_net_cells(root)
    summary = deep_nets_stage.analyse_pair(
        runs=cells,
        fits_json=root / "fit.json",
        model="cnn",
        dataset="digits",
        window=[0.02, 0.2],
        upper_fraction=0.5,
        error="test_error",
        **figures(root, "d"),
    )
    return cells, json.loads((root / "fit.json").read_text()), summary, root


def test_deep_nets_stage_equals_the_cli_on_its_cells(deep_nets_run, capsys):
    cells, fit, summary, _ = deep_nets_run
    assert fit["status"] == "ok" and fit["diverged_runs"] == 1
    flags = ["--norm", "log_norm", "--norm-is-log", "--error", "test_error", "--filter", "status=ok"]
    assert fit["reproduce"].endswith(" ".join(flags) + " --json")
    out = cli_json(capsys, *cells, *flags)
    for key in (*GAMMAS, "gamma_pred_ci", "lambda_opt", "eps_opt", "censored", "sensitivity"):
        assert out[key] == fit[key], key
    a = fit["authors"]
    authors = cli_json(
        capsys, *cells, *flags, "--method", "authors", "--window", "0.02", "0.2", "--gamma1-min-p", a["gamma1_min_p"]
    )
    for key in (*GAMMAS, "sigma"):
        assert authors[key] == a[key], key


def test_gamma_table_keeps_unlike_quantities_apart(deep_nets_run, perceptron_run, tmp_path):
    _, fit, _, root = deep_nets_run
    _, perceptron, _ = perceptron_run
    (tmp_path / "perceptron.json").write_text(json.dumps(perceptron, default=float))
    table = deep_nets_stage.gamma_table(
        fits=[root / "fit.json"],
        perceptron=tmp_path / "perceptron.json",
        fits_table=tmp_path / "t.parquet",
        fits_json=tmp_path / "t.json",
        caption=tmp_path / "t.rst",
        figure=tmp_path / "t.png",
    )
    cnn, perc = table.iloc[0], table.iloc[1]
    # gamma_meas: the absolute learning curve's exponent in every row
    assert cnn.gamma_meas == fit["gamma_meas"] and perc.gamma_meas == perceptron["gamma_meas_abs"]
    # the perceptron's eps/eps_Hebb exponent, which its gamma_pred predicts, in a column of its own
    assert perc.gamma_meas_rel == perceptron["gamma_meas"] and math.isnan(cnn.gamma_meas_rel)
    assert list(table.compare_with) == ["gamma_meas", "gamma_meas_rel"]
    assert list(table.error) == ["test_error", "rel_error"]
    assert cnn.gamma_pred_lo == fit["gamma_pred_ci"][0] and perc.gamma_pred_hi == perceptron["gamma_pred_ci"][1]
    caption = (tmp_path / "t.rst").read_text()
    assert "γ_meas (absolute ε)" in caption and "γ_meas (ε/ε_Hebb)" in caption
    assert f"{perceptron['gamma_meas_abs']:.3f} ± {perceptron['gamma_meas_abs_se']:.3f}" in caption
