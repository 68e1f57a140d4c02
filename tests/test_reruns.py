"""The README's rerun examples, each as a dry run on a finished tiny run: exactly the expected jobs.
Also: `snakemake --report` after a partial run (only some experiments built)."""

from __future__ import annotations

import re
import shlex
import shutil

import pytest
import yaml
from workflow_helpers import REPO, planned_jobs, snakemake, tiny_config

pytestmark = pytest.mark.workflow

TS_ANALYSIS = {"aggregate_teacher_student", "fit_teacher_student", "plot_teacher_student", "summary"}


def small_config() -> dict:
    """The tiny config's teacher/student, dimension and perceptron stages, smaller; every other stage off
    (found from the schema, so a stage added later does not slip in)."""
    config = tiny_config()
    # one bundle per training job (pack: width), the grain the README's table describes first;
    # test_a_change_of_grain_reruns_what_the_readme_says covers the others
    config["teacher_student"].update(widths=[4, 8], pack="width")
    schema = yaml.safe_load((REPO / "src" / "scalinglab" / "core" / "schema.yaml").read_text())
    for section, spec in schema["properties"].items():
        if "enabled" in spec.get("properties", {}) and section not in ("teacher_student", "dimension", "perceptron"):
            config[section] = {**config.get(section, {}), "enabled": False}
    return config


def plan(workdir, *args, config=None) -> list[tuple[str, dict]]:
    return planned_jobs(workdir, config or small_config(), args)


def readme_commands() -> dict[str, list[str]]:
    """The README's "Rerun by hand" commands, keyed by the comment line above each."""
    text = (REPO / "README.md").read_text()
    block = text.split("Rerun by hand", 1)[1].split("```bash", 1)[1].split("```", 1)[0]
    commands, comment, in_comment = {}, None, False
    for line in block.splitlines():
        line = line.strip()
        if line.startswith("#"):
            if not in_comment:  # a comment may run over several lines: its first line is the key
                comment = line.lstrip("# ").strip()
            in_comment = True
        else:
            in_comment = False
            if line.startswith("snakemake"):
                commands[comment] = shlex.split(line)[1:]
    return commands


def readme_example(key: str, config: dict) -> list[str]:
    """A README command, with --cores dropped (the dry run sets its own) and the example cell
    mapped onto this config's grid."""
    matches = [args for comment, args in readme_commands().items() if comment.startswith(key)]
    assert len(matches) == 1, f"README has no single rerun example starting with '{key}'"
    args, out = matches[0], []
    skip = False
    for arg in args:
        if skip:
            skip = False
            continue
        if arg == "--cores":
            skip = True
            continue
        ts = config["teacher_student"]
        arg = re.sub(r"(?<=/)d~\d+", f"d~{ts['d'][0]}", arg)
        arg = re.sub(r"(?<=/)width~\d+", f"width~{ts['widths'][0]}", arg)
        out.append(arg)
    return out


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    """First only the perceptron experiment (a partial run, reported), then everything."""
    workdir = tmp_path_factory.mktemp("reruns")
    config = small_config()
    report = readme_example("report after such a partial run", config)
    snakemake(
        workdir,
        "--cores",
        "2",
        "results/fits/perceptron.json",
        "results/figures/perceptron/collapse.png",
        config=config,
    )
    assert not (workdir / "results/tables").exists()  # the other experiments did not run
    partial = snakemake(workdir, *report, config=config, check=False)
    snakemake(workdir, "--cores", "2", config=config)
    return workdir, partial


def test_report_after_a_partial_run(finished_run):
    workdir, partial = finished_run
    assert partial.returncode == 0, partial.stderr[-3000:]
    html = (workdir / "report.html").read_text(errors="replace")
    assert len(html) > 10_000 and "collapse.png" in html  # the built experiment's figures are in it


def test_nothing_to_do_after_the_run(finished_run):
    workdir, _ = finished_run
    assert plan(workdir) == []


def test_rerun_one_cell_retrains_only_its_bundle(finished_run):
    workdir, _ = finished_run
    config = small_config()
    jobs = plan(workdir, *readme_example("one cell", config))
    trained = [wc for rule, wc in jobs if rule == "train_teacher_student"]
    ts = config["teacher_student"]
    assert trained == [{"d": str(ts["d"][0]), "P": "inf", "width": str(ts["widths"][0])}]
    assert sorted(rule for rule, _ in jobs) == sorted(["train_teacher_student", *TS_ANALYSIS, "all"])


def test_rerun_one_rule_everywhere(finished_run):
    workdir, _ = finished_run
    jobs = plan(workdir, *readme_example("one rule everywhere", small_config()))
    assert sorted(rule for rule, _ in jobs) == ["all", "fit_teacher_student", "plot_teacher_student", "summary"]


def test_rerun_one_experiment(finished_run):
    workdir, _ = finished_run
    config = small_config()
    jobs = plan(workdir, *readme_example("one experiment", config))
    alphas = sorted(wc["alpha"] for rule, wc in jobs if rule == "perceptron_sweep")
    assert alphas == sorted(f"{a:g}" for a in config["perceptron"]["alphas"])
    assert sorted({rule for rule, _ in jobs}) == ["all", "analyse_perceptron", "perceptron_sweep", "summary"]


def test_build_one_experiment_only(finished_run):
    """`snakemake <an experiment's output>` builds that experiment only; after a run: nothing."""
    workdir, _ = finished_run
    args = readme_example("build only one experiment", small_config())
    assert plan(workdir, *args) == []
    # targets first: --forcerun takes every argument after it
    assert {rule for rule, _ in plan(workdir, *args, "--forcerun", "aggregate_teacher_student")} == {
        "aggregate_teacher_student",
        "fit_teacher_student",
    }


@pytest.mark.parametrize(
    "section, key, value, expected",
    [
        # the README's table: what a config change reruns
        ("teacher_student", "seeds", [0, 1, 2], {"train_teacher_student", *TS_ANALYSIS, "all"}),
        ("teacher_student", "n_evals", 6, {"train_teacher_student", *TS_ANALYSIS, "all"}),
        ("teacher_student", "quantile", 0.4, {"fit_teacher_student", "plot_teacher_student", "summary", "all"}),
        (
            "teacher_student",
            "test_size",
            20001,
            {
                "teacher_test_data",
                "train_teacher_student",
                "dimension_teacher",
                "aggregate_dimension",
                *TS_ANALYSIS,
                "all",
            },
        ),
        ("perceptron", "window", [0.03, 0.2], {"analyse_perceptron", "summary", "all"}),
    ],
)
def test_a_config_change_reruns_what_the_readme_says(finished_run, section, key, value, expected):
    workdir, _ = finished_run
    config = small_config()
    config[section][key] = value
    jobs = plan(workdir, config=config)
    assert {rule for rule, _ in jobs} == expected
    if "train_teacher_student" in expected:  # every bundle
        ts = config["teacher_student"]
        assert sum(rule == "train_teacher_student" for rule, _ in jobs) == len(ts["d"]) * len(ts["widths"])


def test_a_damaged_cell_is_refused_and_nothing_is_lost(finished_run, tmp_path):
    """A cell cut short (a full disk, a killed copy): one line before anything runs, the aggregate
    and fits stay, and once the cell is deleted a plain rerun rebuilds it and all that reads it."""
    workdir = tmp_path / "copy"
    shutil.copytree(finished_run[0], workdir)
    config = small_config()
    ts = config["teacher_student"]
    cell = workdir / f"results/runs/teacher_student/d~{ts['d'][0]}/P~inf/width~{ts['widths'][0]}/seed~0.parquet"
    with open(cell, "r+b") as fh:
        fh.truncate(100)
    table = workdir / "results/tables/teacher_student.parquet"
    before = table.read_bytes()
    result = snakemake(workdir, "--cores", "1", config=config, check=False)
    assert result.returncode != 0 and "Traceback" not in result.stdout + result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: results/runs/teacher_student/") and "is damaged" in lines[0]
    assert "delete it and rerun" in lines[0]
    assert table.read_bytes() == before
    cell.unlink()
    trained = plan(workdir)
    assert sorted(rule for rule, _ in trained) == sorted(["train_teacher_student", *TS_ANALYSIS, "all"])


@pytest.mark.parametrize(
    "pack, expected",
    [
        ("width", [{"d": "2", "P": "inf", "width": "6"}, {"d": "3", "P": "inf", "width": "6"}]),  # the new bundles
        ("d", [{"d": "2", "P": "inf"}, {"d": "3", "P": "inf"}]),  # every width of each d again
        ("all", [{"P": "inf"}]),  # every d and width of the P again
    ],
)
def test_a_new_width_reruns_what_each_grain_says(tmp_path, pack, expected):
    """The README's grain table: after a run at this grain, a new width reruns these training jobs."""
    config = small_config()
    config["teacher_student"]["pack"] = pack
    config["perceptron"]["enabled"] = False
    config["dimension"]["enabled"] = False
    snakemake(tmp_path, "--cores", "2", config=config)
    config["teacher_student"]["widths"] = [4, 6, 8]
    trained = [wc for rule, wc in planned_jobs(tmp_path, config) if rule == "train_teacher_student"]
    assert sorted(trained, key=lambda wc: sorted(wc.items())) == expected
