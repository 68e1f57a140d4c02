"""End to end: the tiny config through every rule, the report, lint, and what a config change reruns."""

import json

import pandas as pd
import pytest

from workflow_helpers import REPO, planned_jobs, snakemake, tiny_config

pytestmark = pytest.mark.workflow


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("wf")
    snakemake(workdir, "--cores", "2")
    return workdir


def test_every_output_is_written(finished_run):
    config = tiny_config()["teacher_student"]
    cells = sorted((finished_run / "results" / "runs" / "teacher_student").rglob("*.parquet"))
    assert len(cells) == len(config["d"]) * len(config["widths"]) * len(config["seeds"])
    cell = pd.read_parquet(cells[0])
    assert {"d", "N", "P", "seed", "step", "test_loss", "train_loss", "status"} <= set(cell.columns)
    assert cell["step"].is_monotonic_increasing and cell["step"].iloc[-1] == config["schedule"]["steps"]
    table = pd.read_parquet(finished_run / "results/tables/teacher_student.parquet")
    assert len(table) == len(cells) * cell.shape[0]
    fits = pd.read_parquet(finished_run / "results/fits/teacher_student.parquet")
    assert sorted(fits["method"].unique()) == ["ols", "quantile"]
    assert sorted(fits["d"].unique()) == config["d"]
    assert (fits["slope"] < 0).all()  # bigger students fit better, even after 60 steps
    records = json.loads((finished_run / "results/fits/teacher_student.json").read_text())
    assert len(records) == len(fits)
    for name in ("loss_vs_n", "dim_vs_d", "learning_curves"):
        png = finished_run / f"results/figures/teacher_student/{name}.png"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    caption = (finished_run / "results/report/teacher_student_fits.rst").read_text()
    assert f"{fits[fits.method == 'ols'].iloc[0]['dim']:.2f}" in caption  # the caption carries the fitted numbers


def test_dimension_stage_measures_each_teacher_manifold(finished_run):
    dims = pd.read_parquet(finished_run / "results/tables/dimension.parquet")
    x = dims[(dims["target"] == "x") & (dims["estimator"] == "mle") & (dims["k"] == 20)]
    assert sorted(x["d"]) == tiny_config()["teacher_student"]["d"]
    for row in x.itertuples():
        assert abs(row.dimension - row.manifold_dim) <= 0.25 * row.manifold_dim  # 2,000 points, k = 20
    caption = (finished_run / "results/report/teacher_student_fits.rst").read_text()
    assert "MLE(k=20) d-hat" in caption
    assert (finished_run / "results/figures/dimension/dimension_vs_k.png").exists()


def test_perceptron_stage_measures_both_laws(finished_run):
    summary = json.loads((finished_run / "results/fits/perceptron.json").read_text())
    assert {"gamma1", "gamma2", "gamma_pred", "gamma_meas", "lambda_opt"} <= set(summary)
    assert summary["gamma_pred"] == pytest.approx(summary["gamma1"] * summary["gamma2"], rel=1e-9)
    assert 0.3 < summary["gamma_meas"] < 0.7  # the perceptron's learning curve falls roughly as P^-1/2
    lam_opt = {float(p): v for p, v in summary["lambda_opt"].items()}
    assert list(dict(sorted(lam_opt.items())).values()) == sorted(lam_opt.values())  # lambda_opt grows with P
    for name in ("error_vs_norm", "collapse", "learning_curve"):
        assert (finished_run / f"results/figures/perceptron/{name}.png").exists()


def test_report_builds(finished_run):
    snakemake(finished_run, "--report", "report.html")
    assert (finished_run / "report.html").stat().st_size > 10_000


def test_nothing_to_do_after_a_run(finished_run):
    assert [rule for rule, _ in planned_jobs(finished_run)] == []


def test_a_per_d_schedule_reruns_only_that_ds_bundles(finished_run):
    config = tiny_config()
    sched = dict(config["teacher_student"]["schedule"], steps=80)
    config["teacher_student"]["schedule_by_d"] = {3: sched}
    jobs = planned_jobs(finished_run, config)
    trained = sorted((wc["d"], int(wc["width"])) for rule, wc in jobs if rule == "train_teacher_student")
    assert trained == [("3", w) for w in sorted(config["teacher_student"]["widths"])]
    assert {rule for rule, _ in jobs} == {"train_teacher_student", "aggregate_teacher_student", "fit_teacher_student", "plot_teacher_student", "all"}


def test_a_dimension_setting_reruns_the_estimates_not_the_training(finished_run):
    config = tiny_config()
    config["dimension"]["bootstrap"] = 30
    rules = {rule for rule, _ in planned_jobs(finished_run, config)}
    assert rules == {"dimension_teacher", "aggregate_dimension", "fit_teacher_student", "plot_teacher_student", "all"}


def test_a_new_width_trains_only_its_bundles(finished_run):
    config = tiny_config()
    config["teacher_student"]["widths"] = config["teacher_student"]["widths"] + [5]
    jobs = planned_jobs(finished_run, config)
    trained = sorted((wc["d"], wc["width"]) for rule, wc in jobs if rule == "train_teacher_student")
    assert trained == [(str(d), "5") for d in config["teacher_student"]["d"]]
    assert "teacher" not in {rule for rule, _ in jobs}


def test_a_fit_setting_reruns_only_the_analysis(finished_run):
    config = tiny_config()
    config["teacher_student"]["bootstrap"] = 20
    rules = {rule for rule, _ in planned_jobs(finished_run, config)}
    assert rules == {"fit_teacher_student", "plot_teacher_student", "all"}


def test_bad_config_is_one_line_before_anything_runs(tmp_path):
    config = tiny_config()
    config["teacher_student"]["d"] = [0, 3]
    result = snakemake(tmp_path, "-n", config=config, check=False)
    assert result.returncode != 0
    errors = [line for line in (result.stderr + result.stdout).splitlines() if "teacher_student.d[0]" in line]
    assert errors == ["error: config: teacher_student.d[0]: 0 is less than the minimum of 1"]
    assert not (tmp_path / "results").exists()


def test_lint_is_clean():
    result = snakemake(REPO, "--lint")
    assert "Congratulations" in result.stdout + result.stderr
