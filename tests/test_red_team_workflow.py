"""Red-team findings on the workflow (round three): targets of experiments that are off or outside
their own experiment's grid, config values that validated but could never work, a P = inf pool that
repeats silently, damaged resources and cells that cost finished work, checkpoints that were dropped
or that killed training, and a figure that failed on what was estimated.

Conventions as in tests/test_bad_input.py: one line on stderr starting with "error: " (config
mistakes: "error: config: "), no traceback, and nothing planned, run or deleted."""

from __future__ import annotations

import errno
import json
import math
import os
import shutil

import pandas as pd
import pytest
import yaml
from test_bad_input import assert_one_line_error, files_under, snakemake_dry_run, tiny_with
from workflow_helpers import REPO, planned_jobs, snakemake, tiny_config

import scalinglab.core.checkpoint as checkpoint_module
import scalinglab.teacher_student.training as engine
from scalinglab.core import preflight
from scalinglab.core.checkpoint import CHECK_EVERY_STEPS, Checkpointer, lock_path
from scalinglab.core.config import TRAIN_SPLIT_SIZES, validate
from scalinglab.core.errors import UserError
from scalinglab.core.io import write_parquet
from scalinglab.dimension.figures import dimension_vs_k
from scalinglab.teacher_student.stage import make_dataset, make_teacher, train_bundle


def off(*stages: str) -> dict:
    config = tiny_config()
    for stage in stages:
        config[stage] = {**config.get(stage, {}), "enabled": False}
    return config


def dry_run(tmp_path, config, *args):
    workdir = tmp_path / "run"
    workdir.mkdir()
    return snakemake(workdir, "-n", "--cores", "1", *args, config=config, check=False), workdir


# ---------------------------------------------------------------- SW14: targets of an experiment that is off

OFF_TARGETS = {
    "joint's fits": (
        off("joint"),
        ["results/fits/joint.json"],
        "error: joint is off in this config (joint.enabled: false); enable it to build results/fits/joint.json",
    ),
    "a joint cell": (off("joint"), ["results/runs/joint/d~2/P~100/width~4/seed~0.parquet"], "joint is off"),
    "a joint rule": (off("joint"), ["aggregate_joint"], "joint is off in this config (joint.enabled: false); enable"),
    "a perceptron run": (
        off("perceptron"),
        ["results/runs/perceptron/alpha~4.parquet"],
        "perceptron is off in this config (perceptron.enabled: false)",
    ),
    "random_features' fits": (
        off("random_features"),
        ["results/fits/random_features.json"],
        "random_features is off in this config (random_features.enabled: false)",
    ),
    "a teacher/student figure": (
        off("teacher_student"),
        ["results/figures/teacher_student/loss_vs_n.png"],
        "teacher_student is off",
    ),
    "a teacher both its readers are off": (
        off("teacher_student", "joint"),
        ["resources/teacher_student/teachers/d~2.pt"],
        "teacher_student and joint are off in this config",
    ),
    "a dimension table with nothing to measure": (
        off("teacher_student", "images"),
        ["results/tables/dimension.parquet"],
        "dimension has nothing to build: teacher_student and images are off",
    ),
}


@pytest.mark.parametrize("case", list(OFF_TARGETS))
def test_a_target_of_an_experiment_that_is_off_is_refused(case, tmp_path):
    config, args, expect = OFF_TARGETS[case]
    result, workdir = dry_run(tmp_path, config, *args)
    assert_one_line_error(result.returncode, result.stdout, result.stderr, expect)
    assert files_under(workdir) == set()


def test_a_shared_teacher_is_built_for_the_experiment_that_is_on(tmp_path):
    """resources/teacher_student/ serves teacher_student and joint: one of them on is enough, on its grid."""
    jobs = planned_jobs(tmp_path / "plan", off("teacher_student"), ["resources/teacher_student/teachers/d~2.pt"])
    assert [rule for rule, _ in jobs] == ["teacher"]
    result, _ = dry_run(tmp_path, off("teacher_student"), "resources/teacher_student/teachers/d~3.pt")
    assert_one_line_error(
        result.returncode, result.stdout, result.stderr, "d~3 is not in this config's grid (joint's d"
    )


# ---------------------------------------------------------------- SW15: each key against its own experiment's grid

FOREIGN_VALUES = {
    "joint's P in a teacher_student cell": ("results/runs/teacher_student/d~2/P~100/width~4/seed~0.parquet", "P~100"),
    "teacher_student's width in a joint cell": ("results/runs/joint/d~2/P~100/width~12/seed~0.parquet", "width~12"),
    "teacher_student's d in a joint cell": ("results/runs/joint/d~3/P~200/width~4/seed~0.parquet", "d~3"),
    "d of one experiment with P of the other": ("resources/teacher_student/data/d~3/train_P~100.pt", "d~3 with P~100"),
}


@pytest.mark.parametrize("case", list(FOREIGN_VALUES))
def test_a_value_of_another_experiment_is_refused(case, tmp_path):
    target, expect = FOREIGN_VALUES[case]
    result, workdir = dry_run(tmp_path, tiny_config(), target)
    line = assert_one_line_error(result.returncode, result.stdout, result.stderr, expect)
    assert "is not in this config's grid" in line
    assert files_under(workdir) == set()


def test_cells_and_data_of_the_grid_are_still_planned(tmp_path):
    targets = ["results/runs/joint/d~2/P~100/width~4/seed~0.parquet", "resources/teacher_student/data/d~3/test.pt"]
    jobs = planned_jobs(tmp_path / "run", tiny_config(), targets)
    rules = sorted(rule for rule, _ in jobs)
    assert rules == [
        "teacher",
        "teacher",
        "teacher_test_data",
        "teacher_test_data",
        "teacher_train_data",
        "train_joint",
    ]


# ---------------------------------------------------------------- SW16-18, MM8, MM9, MM11: configs that cannot work

ONECYCLE_1 = {"kind": "onecycle", "steps": 1, "batch": 2, "max_lr": 0.1}
BAD_CONFIGS = {
    "SW16 schedule_by_d with 1 onecycle step": (
        tiny_with("teacher_student", schedule_by_d={2: ONECYCLE_1}),
        "config: teacher_student.schedule_by_d.2.steps: onecycle needs at least 2 steps",
    ),
    "SW17 a repeated random-feature pair": (
        tiny_with("random_features", pairs=[{"a": 2.0, "b": 1.5}, {"a": 2, "b": 1.5, "times": [1, 10]}]),
        "config: random_features.pairs[1]: (a, b) = (2, 1.5) repeats pairs[0]",
    ),
    "SW18 variance_Ps not above variance_N": (
        tiny_with("random_features", variance_N=64, variance_Ps=[2, 4, 8]),
        "config: random_features.variance_Ps: P = 2 is not above variance_N + 1 = 65",
    ),
    "MM8 a reversed deep_nets.window": (
        tiny_with("deep_nets", window=[0.2, 0.02]),
        "config: deep_nets.window: [0.2, 0.02] must be [low, high] with low < high",
    ),
    "MM9 all and the whole digits split": (
        tiny_with("images", train_sizes=["all", 1438]),
        "config: images.train_sizes: 1438 is the whole training split of digits (1,438 images), the same P as 'all'",
    ),
    "MM11 time_P: 1": (
        tiny_with("random_features", pairs=[{"a": 2.0, "b": 1.5, "times": [3, 300], "time_P": 1}]),
        "config: random_features.pairs[0].time_P: P = 1 is too small for the time sweep",
    ),
    "MM11 time.P too small for the default window": (
        tiny_with("random_features", pairs=[{"a": 2.0, "b": 1.5}], time={"M": 512, "P": 100}),
        "config: random_features.time.P: P = 100 is too small",
    ),
}


@pytest.mark.parametrize("case", list(BAD_CONFIGS))
def test_a_config_that_cannot_work_is_refused_by_validate(case):
    config, expect = BAD_CONFIGS[case]
    with pytest.raises(UserError, match="^config: ") as info:
        validate(config)
    assert expect in str(info.value) and "\n" not in str(info.value)


@pytest.mark.parametrize("case", list(BAD_CONFIGS))
def test_a_config_that_cannot_work_stops_the_dry_run(case, tmp_path):
    config, expect = BAD_CONFIGS[case]
    result, workdir = snakemake_dry_run(config, tmp_path)
    assert_one_line_error(result.returncode, result.stdout, result.stderr, f"error: {expect}")
    assert files_under(workdir) == set()


def test_the_refusals_leave_working_configs_alone():
    validate(tiny_with("teacher_student", schedule_by_d={2: {**ONECYCLE_1, "steps": 2}}))
    validate(tiny_with("random_features", pairs=[{"a": 2.0, "b": 1.5}, {"a": 2.0000001, "b": 1.5}]))
    validate(tiny_with("random_features", variance_N=4, variance_Ps=[64, 128, 256]))
    validate(tiny_with("images", train_sizes=["all", 1000]))
    validate(tiny_with("images", train_sizes=[1438]))
    validate(tiny_with("deep_nets", window=[0.2, 0.02], enabled=False))
    validate(tiny_with("random_features", pairs=[{"a": 2.0, "b": 1.5, "times": [3, 300], "time_P": 1}], enabled=False))
    validate(yaml.safe_load((REPO / "config" / "config.yaml").read_text()))
    for preset in sorted((REPO / "config" / "presets").glob("*.yaml")):
        validate(yaml.safe_load(preset.read_text()))


def test_the_digits_split_size_is_the_one_the_check_knows():
    from scalinglab.datasets.packaged import digits

    arrays, _ = digits()
    assert len(arrays["train_y"]) == TRAIN_SPLIT_SIZES["digits"]


# ---------------------------------------------------------------- MM10: a P = inf pool that repeats is said


def test_a_pool_smaller_than_the_samples_seen_is_one_note(tmp_path):
    config = validate(yaml.safe_load((REPO / "config" / "config.yaml").read_text()))
    (note,) = preflight.notes(config)  # 12,000 steps x 200 = 2.4M samples, a pool of 1M
    assert note.startswith("note: teacher_student: with P = inf") and "2,400,000" in note and "pool_size" in note
    assert preflight.notes(validate(tiny_config())) == []  # 60 x 50 = 3,000 <= 20,000
    phases = {
        "kind": "phases",
        "phases": [{"steps": 100, "batch": 100, "lr": 0.01}, {"steps": 200, "batch": 100, "lr": 0.001}],
    }
    by_d = validate(tiny_with("teacher_student", schedule_by_d={3: phases}))  # 30,000 samples for d = 3
    (note,) = preflight.notes(by_d)
    assert "of d = 3 sees up to 30,000 samples" in note and "1.5 passes" in note
    assert preflight.notes(validate(tiny_with("teacher_student", schedule_by_d={3: phases}, train_sizes=[1000]))) == []

    result, workdir = dry_run(
        tmp_path, tiny_with("teacher_student", pool_size=2000), "results/tables/teacher_student.parquet"
    )
    assert result.returncode == 0, result.stderr[-2000:]
    notes = [line for line in result.stderr.splitlines() if line.startswith("note:")]
    assert len(notes) == 1 and "3,000 samples" in notes[0] and "pool_size = 2,000" in notes[0]
    comment = next(
        line for line in (REPO / "config" / "config.yaml").read_text().splitlines() if "train_sizes: [inf]" in line
    )
    assert "fresh samples every step" not in comment and "pool_size" in comment


# ---------------------------------------------------------------- TB2: the dimension figure with TwoNN alone


def test_the_dimension_figure_draws_twonn_alone(tmp_path):
    frame = pd.DataFrame(
        {
            "dataset": ["teacher d=2", "teacher d=2", "digits"],
            "d": pd.array([2, 2, pd.NA], dtype="Int64"),
            "manifold_dim": pd.array([2, 2, pd.NA], dtype="Int64"),
            "target": ["x", "xy", "x"],
            "estimator": ["twonn"] * 3,
            "k": pd.array([pd.NA] * 3, dtype="Int64"),
            "dimension": [2.1, 2.9, 9.5],
            "ci_lo": [1.9, 2.7, 9.0],
            "ci_hi": [2.3, 3.1, float("nan")],
        }
    )
    dimension_vs_k(frame, tmp_path / "dims.png")
    assert (tmp_path / "dims.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


# ---------------------------------------------------------------- TB6, DL4: checkpoints


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("rt_data")
    make_teacher(d=3, embedding_width=9, teacher_seed=0, teacher=root / "teacher.pt")
    make_dataset(teacher=root / "teacher.pt", n_points=3000, stream=["train", 0], points=root / "train.pt")
    make_dataset(teacher=root / "teacher.pt", n_points=1000, stream=["test", 0], points=root / "test.pt")
    return root


SCHEDULE = {"kind": "onecycle", "steps": 4 * CHECK_EVERY_STEPS, "batch": 16, "max_lr": 0.01}


def bundle(data, out_dir, checkpoint=None, every_s=0.0):
    cells = [out_dir / f"seed~{s}.parquet" for s in (0, 1)]
    train_bundle(
        train=data / "train.pt",
        test=data / "test.pt",
        d=3,
        width=4,
        P="inf",
        seeds=[0, 1],
        schedule=SCHEDULE,
        n_evals=4,
        device="cpu",
        compile=False,
        threads=1,
        cells=cells,
        checkpoint=checkpoint,
        checkpoint_every_s=every_s,
    )
    return [pd.read_parquet(cell) for cell in cells]


def no_space(*args, **kwargs):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def test_a_full_disk_while_checkpointing_is_a_warning(tmp_path, monkeypatch, capsys):
    path = tmp_path / "ckpt" / "bundle.pt"
    monkeypatch.setattr(checkpoint_module.torch, "save", no_space)
    with Checkpointer(path, 0, key="k") as saver:
        saver.save({"step": 1})
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"warning: checkpoint {path} not saved: no space left on device; training goes on without it"]
    assert [p.name for p in path.parent.iterdir()] == [lock_path(path).name]  # no checkpoint, no temporary file

    def forbidden(*args, **kwargs):
        raise PermissionError(errno.EACCES, "Permission denied")

    monkeypatch.setattr(checkpoint_module.torch, "save", forbidden)
    with pytest.raises(PermissionError), Checkpointer(path, 0, key="k") as saver:  # not a full disk: not hidden
        saver.save({"step": 1})


def test_training_goes_on_when_the_disk_is_full(data, tmp_path, monkeypatch, capfd):
    reference = bundle(data, tmp_path / "plain")
    monkeypatch.setattr(checkpoint_module.torch, "save", no_space)
    got = bundle(data, tmp_path / "full", checkpoint=tmp_path / "ckpt.pt", every_s=0.0)
    for a, b in zip(got, reference):
        pd.testing.assert_frame_equal(a, b, check_exact=True)
    err = capfd.readouterr().err
    assert "not saved: no space left on device; training goes on without it" in err and "Traceback" not in err


def test_a_job_without_checkpoints_still_resumes_the_one_left_behind(data, tmp_path, monkeypatch, capfd):
    """checkpoint_minutes: 0 reaches a job as an interval of inf (common.smk): it resumes, saves nothing
    new, and removes the old checkpoint when its cells are written."""
    reference = bundle(data, tmp_path / "plain")
    checkpoint = tmp_path / "ckpt" / "bundle.pt"
    real_step, steps = engine.Trainer.step, []

    def preempted(self, *args):
        steps.append(None)
        if len(steps) > 2 * CHECK_EVERY_STEPS:
            raise RuntimeError("preempted")  # after it saved at steps 256 and 512
        return real_step(self, *args)

    monkeypatch.setattr(engine.Trainer, "step", preempted)
    with pytest.raises(RuntimeError, match="preempted"):
        bundle(data, tmp_path / "first", checkpoint=checkpoint, every_s=0.0)
    monkeypatch.setattr(engine.Trainer, "step", real_step)
    assert checkpoint.exists()

    saves = []
    monkeypatch.setattr(Checkpointer, "save", lambda self, state: saves.append(state["step"]))
    capfd.readouterr()
    resumed = bundle(data, tmp_path / "resumed", checkpoint=checkpoint, every_s=math.inf)
    assert f"resuming from checkpoint {checkpoint} at step {2 * CHECK_EVERY_STEPS}" in capfd.readouterr().err
    assert saves == []  # nothing written
    for a, b in zip(resumed, reference):
        pd.testing.assert_frame_equal(a, b, check_exact=True)
    assert not checkpoint.exists() and not lock_path(checkpoint).exists()


# ---------------------------------------------------------------- a finished tiny run: MM13, TB2, DL1, DL2, DL4


def small_config() -> dict:
    """teacher_student (d = 2, two widths) and the dimension stage with TwoNN alone; every other stage off."""
    config = tiny_config()
    config["teacher_student"].update(d=[2], widths=[4, 6])
    config["dimension"].update(estimators=["twonn"])
    for stage in ("images", "perceptron", "deep_nets", "joint", "random_features"):
        config[stage] = {**config.get(stage, {}), "enabled": False}
    return config


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("rt_finished") / "run"
    workdir.mkdir()
    snakemake(workdir, "--cores", "1", config=small_config())
    return workdir


def copy_of(finished, tmp_path):
    workdir = tmp_path / "run"
    shutil.copytree(finished, workdir, symlinks=True)  # copy2: the mtimes Snakemake compares are kept
    return workdir


def state_of(workdir):
    """Every result file with its size and mtime: what a refused run must leave exactly as it was."""
    return {
        str(p.relative_to(workdir)): (p.stat().st_size, p.stat().st_mtime_ns)
        for p in sorted((workdir / "results").rglob("*"))
        if p.is_file() and "logs" not in p.parts
    }


@pytest.mark.workflow
def test_fits_json_writes_p_inf_as_inf(finished):
    records = json.loads((finished / "results/fits/teacher_student.json").read_text())
    assert records and all(record["P"] == "inf" for record in records)
    fits = pd.read_parquet(finished / "results/fits/teacher_student.parquet")
    assert fits["P"].map(math.isinf).all()  # the Parquet keeps its float inf


@pytest.mark.workflow
def test_twonn_alone_is_aggregated_and_drawn(finished):
    dims = pd.read_parquet(finished / "results/tables/dimension.parquet")
    assert set(dims["estimator"]) == {"twonn"}
    for figure in ("dimension/dimension_vs_k.png", "teacher_student/loss_vs_n.png"):
        assert (finished / "results/figures" / figure).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.workflow
@pytest.mark.parametrize("extra", [("-n",), ()])
def test_a_damaged_resource_is_refused_before_any_job(finished, tmp_path, extra):
    workdir = copy_of(finished, tmp_path)
    test_points = workdir / "resources/teacher_student/data/d~2/test.pt"
    with open(test_points, "r+b") as fh:
        fh.truncate(test_points.stat().st_size // 2)
    before = state_of(workdir)
    result = snakemake(workdir, "--cores", "1", *extra, config=small_config(), check=False)
    line = assert_one_line_error(
        result.returncode, result.stdout, result.stderr, "resources/teacher_student/data/d~2/test.pt is damaged"
    )
    assert "delete it and rerun: rule teacher_test_data makes it again" in line
    assert state_of(workdir) == before  # no finished cell deleted, nothing rerun


@pytest.mark.workflow
def test_a_cell_with_other_columns_is_refused_before_any_job(finished, tmp_path):
    workdir = copy_of(finished, tmp_path)
    cell = workdir / "results/runs/teacher_student/d~2/P~inf/width~6/seed~1.parquet"
    write_parquet(pd.read_parquet(cell).rename(columns={"test_loss": "loss"}), cell)  # magic bytes intact
    assert preflight.damaged_parquet([str(cell)]) == []
    before = state_of(workdir)
    result = snakemake(workdir, "--cores", "1", config=small_config(), check=False)
    line = assert_one_line_error(
        result.returncode, result.stdout, result.stderr, f"{cell.relative_to(workdir)}: its columns differ"
    )
    assert "missing: test_loss; extra: loss" in line
    assert state_of(workdir) == before  # the table is still there


@pytest.mark.workflow
def test_checkpoint_minutes_0_still_reads_the_checkpoint_left_behind(finished, tmp_path):
    """A job run with checkpoint_minutes: 0 is handed its checkpoint: here one of another run, which it
    notes and replaces by a fresh start; before, it never looked, and the file stayed forever."""
    workdir = copy_of(finished, tmp_path)
    checkpoint = workdir / "results/checkpoints/teacher_student/d~2/P~inf/width~4.pt"
    with Checkpointer(checkpoint, 0, key="a run with other settings") as saver:
        saver.save({"step": 5})
    config = small_config()
    config["engine"] = {"checkpoint_minutes": 0}
    config["teacher_student"]["pack"] = "width"  # one bundle per job: the checkpoint above is this job's
    cell = "results/runs/teacher_student/d~2/P~inf/width~4/seed~0.parquet"
    snakemake(workdir, "--cores", "1", cell, "--forcerun", cell, config=config)
    log = (workdir / "results/logs/train_teacher_student/d~2/P~inf/width~4.log").read_text()
    assert f"note: checkpoint {checkpoint.relative_to(workdir)} belongs to another run" in log
    assert not checkpoint.exists() and not lock_path(checkpoint).exists()
