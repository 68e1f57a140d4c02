"""End to end: the tiny config through every rule, the report, lint, and what a config change reruns."""

import json

import pandas as pd
import pytest
import yaml
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
    x = dims[(dims["target"] == "x") & (dims["estimator"] == "mle") & (dims["k"] == 20) & dims["d"].notna()]  # teachers
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


def test_image_stage_trains_fits_and_plots(finished_run):
    config = tiny_config()["images"]
    cells = sorted((finished_run / "results/runs/images/dataset~digits/P~all").rglob("seed~*.parquet"))
    assert len(cells) == len(config["widths"]) * len(config["seeds"])
    table = pd.read_parquet(finished_run / "results/tables/images.parquet")
    assert list(table.groupby(["width", "seed"])["epoch"].max().unique()) == [config["epochs"]]
    assert {"dataset", "N", "P", "seed", "epoch", "train_loss", "val_loss", "train_acc", "val_acc"} <= set(
        table.columns
    )
    fits = pd.read_parquet(finished_run / "results/fits/images.parquet")
    assert len(fits) == 4 * 2 * 3  # metrics x epoch rules (all, final) x default quantiles
    assert set(fits["epoch_rule"]) == {"all", "final"}
    med = fits[(fits.metric == "val_loss") & (fits.epoch_rule == "final") & (fits["quantile"] == 0.5)].iloc[0]
    assert med["slope"] < 0  # wider nets reach lower validation loss, even after 2 epochs
    caption = (finished_run / "results/report/images_fits.rst").read_text()
    assert f"{med['dim']:.1f} [{med['dim_lo']:.3g}, {med['dim_hi']:.3g}]" in caption and "MLE(k=20)" in caption
    for png in ("dataset~digits/P~all/scaling.png", "dim_vs_dhat.png"):
        assert (finished_run / "results/figures/images" / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    dims = pd.read_parquet(finished_run / "results/tables/dimension.parquet")
    assert set(dims.loc[dims["d"].isna(), "dataset"]) == {"digits"}  # beside the teacher manifolds


def test_deep_nets_stage_trains_analyses_and_tabulates(finished_run):
    config = tiny_config()["deep_nets"]
    root = finished_run / "results/runs/deep_nets/model~cnn/dataset~digits"
    cells = sorted(root.rglob("*.parquet"))
    assert len(cells) == len(config["train_sizes"]) * len(config["seeds"])
    cell = pd.read_parquet(cells[0])
    assert {"P", "seed", "step", "epoch", "log_norm", "test_error", "test_loss", "train_loss", "status"} <= set(
        cell.columns
    )
    assert cell["step"].iloc[0] == 0 and (cell["status"] == "ok").all()
    assert cell["log_norm"].iloc[-1] > cell["log_norm"].iloc[0]  # the norm grows along training
    fit = json.loads((finished_run / "results/fits/deep_nets/model~cnn/dataset~digits.json").read_text())
    # 20 epochs of a 2-channel CNN rarely reach a minimum: either measured or reported as unresolved
    assert fit["status"] in ("ok", "unresolved") and fit["train_sizes"] == config["train_sizes"]
    table = pd.read_parquet(finished_run / "results/fits/deep_nets.parquet")
    assert list(table["model"]) == ["cnn", "perceptron"]  # the perceptron stage is on in the tiny config
    caption = (finished_run / "results/report/deep_nets.rst").read_text()
    rows = [line.split()[:2] for line in caption.splitlines()]
    assert ["cnn", "digits"] in rows and ["perceptron", "teacher"] in rows, caption
    for name in ("error_vs_norm", "collapse", "learning_curve"):
        assert (finished_run / f"results/figures/deep_nets/model~cnn/dataset~digits/{name}.png").exists()
    assert (finished_run / "results/figures/deep_nets/gamma_table.png").exists()


def test_the_deep_nets_preset_plans_its_jobs(tmp_path):
    planned = planned_jobs(tmp_path, yaml.safe_load((REPO / "config/presets/implicit_bias_deep.yaml").read_text()))
    trained = {(wc["model"], wc["dataset"], wc["P"]) for rule, wc in planned if rule == "train_deep_nets"}
    assert len(trained) == 3 * 3 * 6  # models x datasets x P
    assert {rule for rule, _ in planned} >= {"prepare_dataset", "analyse_deep_nets", "gamma_table_deep_nets"}


def test_report_builds(finished_run):
    snakemake(finished_run, "--report", "report.html")
    assert (finished_run / "report.html").stat().st_size > 10_000


def test_generated_captions_are_clean_rst(finished_run):
    """Snakemake renders captions as RST: a stray '|w|' or '*' would print warnings into the report."""
    import docutils.core

    captions = sorted((finished_run / "results" / "report").glob("*.rst"))
    assert len(captions) >= 5
    for path in captions:
        docutils.core.publish_parts(
            path.read_text(),
            writer="html",
            settings_overrides={"report_level": 2, "halt_level": 2, "warning_stream": False},
        )


def test_nothing_to_do_after_a_run(finished_run):
    assert [rule for rule, _ in planned_jobs(finished_run)] == []


def test_a_per_d_schedule_reruns_the_job_that_holds_that_d(finished_run):
    config = tiny_config()
    sched = dict(config["teacher_student"]["schedule"], steps=80)
    config["teacher_student"]["schedule_by_d"] = {3: sched}
    jobs = planned_jobs(finished_run, config)
    # the default grain (pack: all) trains every d and width of a P in one job: that job reruns
    trained = [wc for rule, wc in jobs if rule == "train_teacher_student"]
    assert trained == [{"P": "inf"}]
    assert {rule for rule, _ in jobs} == {
        "train_teacher_student",
        "aggregate_teacher_student",
        "fit_teacher_student",
        "plot_teacher_student",
        "summary",
        "all",
    }


def test_a_dimension_setting_reruns_the_estimates_not_the_training(finished_run):
    config = tiny_config()
    config["dimension"]["bootstrap"] = 30
    rules = {rule for rule, _ in planned_jobs(finished_run, config)}
    assert rules == {
        "dimension_teacher",
        "aggregate_dimension",
        "fit_teacher_student",
        "plot_teacher_student",
        "all",
        "dimension_images",
        "fit_images",
        "plot_images",
        "plot_images_dims",
        "summary",
    }  # images: refit, no retraining


def test_a_new_width_reruns_the_job_it_joins(finished_run):
    config = tiny_config()
    config["teacher_student"]["widths"] = config["teacher_student"]["widths"] + [5]
    jobs = planned_jobs(finished_run, config)
    trained = [wc for rule, wc in jobs if rule == "train_teacher_student"]
    assert trained == [{"P": "inf"}]  # pack: all (the default): the P's job, with the new width in it
    assert "teacher" not in {rule for rule, _ in jobs}


def test_a_fit_setting_reruns_only_the_analysis(finished_run):
    config = tiny_config()
    config["teacher_student"]["bootstrap"] = 20
    rules = {rule for rule, _ in planned_jobs(finished_run, config)}
    assert rules == {"fit_teacher_student", "plot_teacher_student", "summary", "all"}


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


def test_joint_stage_fits_the_grid_and_writes_its_figures(finished_run):
    config = tiny_config()["joint"]
    cells = sorted((finished_run / "results/runs/joint").rglob("*.parquet"))
    assert len(cells) == len(config["widths"]) * len(config["train_sizes"]) * len(config["seeds"])
    table = pd.read_parquet(finished_run / "results/tables/joint.parquet")
    assert (table["C"] == 6.0 * table["N"] * table["samples"]).all()
    final = table.loc[table.groupby(["N", "P", "seed"])["step"].idxmax()]
    passes = final["samples"] / final["P"]
    assert passes.min() >= config["schedule"]["epochs"] and passes.max() < config["schedule"]["epochs"] * 1.5
    summary = json.loads((finished_run / "results/fits/joint.json").read_text())
    assert set(summary["fits"]) == set(config["methods"])
    fit = summary["fits"][config["methods"][0]]
    assert {"E", "A", "B", "alpha", "beta", "extrapolation_error"} <= set(fit)
    for name in ("loss_vs_n", "loss_vs_p", "frontier", "isoflop"):
        assert (finished_run / f"results/figures/joint/{name}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert f"{fit['alpha']['value']:.4g}" in (finished_run / "results/report/joint.rst").read_text()


def test_random_features_stage_fits_every_pair_and_sweep(finished_run):
    config = tiny_config()["random_features"]
    runs = sorted((finished_run / "results/runs/random_features").glob("a~*_b~*.parquet"))
    assert [p.name for p in runs] == ["a~2_b~1.5.parquet", "a~5.5_b~1.5.parquet"]
    fits = pd.read_parquet(finished_run / "results/fits/random_features.parquet")
    assert len(fits) == 2 * 4 and set(fits["sweep"]) == {"time", "model", "data", "variance"}
    time = fits[fits["sweep"] == "time"].set_index("a")
    # the time law even at the tiny config's M = 512 (0.674 and 2.971; see tests/test_random_features.py)
    assert abs(time.loc[2.0, "exponent"] - 1 / 1.5) < 0.05 and abs(time.loc[5.5, "exponent"] - 3.0) < 0.05
    assert (fits["exponent_lo"] <= fits["exponent_hi"]).all()
    summary = json.loads((finished_run / "results/fits/random_features.json").read_text())
    assert summary["bootstrap"] == config["bootstrap"] and len(summary["fits"]) == len(fits)
    caption = (finished_run / "results/report/random_features.rst").read_text()
    assert f"{time.loc[5.5, 'exponent']:.3f}" in caption
    png = finished_run / "results/figures/random_features/bottlenecks.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_the_random_features_preset_plans_its_jobs(tmp_path):
    planned = planned_jobs(tmp_path, yaml.safe_load((REPO / "config/presets/random_features.yaml").read_text()))
    sweeps = {(wc["a"], wc["b"]) for rule, wc in planned if rule == "random_features_sweep"}
    assert sweeps == {("2", "1.5"), ("3.5", "1.5"), ("5.5", "1.5")}
    assert {rule for rule, _ in planned} == {"random_features_sweep", "fit_random_features", "summary", "all"}


def test_the_fit_command_reproduces_the_workflow_exponents_with_no_epoch_options(finished_run, capsys):
    """`scalinglab fit` on the workflow's own tables, with no epoch options: each run's final row (found
    by the step column, runs told apart by seed), never a pool of every logged step; exponents equal
    to the workflow's, to the last bit."""
    from scalinglab.cli.main import main

    table = finished_run / "results/tables/teacher_student.parquet"
    assert main(["fit", str(table), "--x", "N", "--y", "test_loss", "--group", "d", "--json"]) == 0
    captured = capsys.readouterr()
    assert "fitted each run's final row by 'step'" in captured.err and "told apart by 'seed'" in captured.err
    fits = pd.read_parquet(finished_run / "results/fits/teacher_student.parquet")
    ols = fits[fits["method"] == "ols"].set_index("d")
    records = json.loads(captured.out)
    assert sorted(r["group"]["d"] for r in records) == sorted(ols.index)
    for record in records:
        assert record["slope"] == ols.loc[record["group"]["d"], "slope"]
        assert record["dim"] == ols.loc[record["group"]["d"], "dim"]
        assert record["n_points"] == ols.loc[record["group"]["d"], "n_points"]

    joint = finished_run / "results/tables/joint.parquet"
    assert main(["fit", str(joint), "--law", "joint", "--n", "N", "--p", "P", "--y", "test_loss", "--json"]) == 0
    cli = json.loads(capsys.readouterr().out)
    stage = json.loads((finished_run / "results/fits/joint.json").read_text())["fits"]["vpro"]
    for name in ("E", "A", "B", "alpha", "beta"):
        assert cli[name]["value"] == stage[name]["value"], name
    # pooling every step is there on request, and gives other numbers
    argv = ["fit", str(table), "--x", "N", "--y", "test_loss", "--group", "d", "--epoch-rule", "all", "--json"]
    assert main(argv) == 0
    pooled = json.loads(capsys.readouterr().out)
    assert pooled[0]["n_points"] > records[0]["n_points"]
