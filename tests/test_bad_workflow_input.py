"""Red-team findings on workflow input (round two): config keys that were silently ignored or truncated,
grids the fits can never use, dataset hints naming an option that does not exist, damaged resources/
.pt files, and config files that are not a mapping. Same conventions as tests/test_bad_input.py: one
line on stderr starting with "error: config: " for config mistakes, and nothing planned."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch
from test_bad_input import assert_one_line_error, files_under, snakemake_dry_run, tiny_with
from workflow_helpers import REPO

from scalinglab.core.config import validate
from scalinglab.core.errors import UserError
from scalinglab.datasets import sources
from scalinglab.teacher_student import stage
from scalinglab.teacher_student.teacher import Teacher

SCHED = {"kind": "onecycle", "steps": 9, "batch": 2, "max_lr": 0.1}


# ---------------------------------------------------------------- config: #23, #22, #16


@pytest.mark.parametrize(
    ("section", "values", "expect"),
    [
        # #23: int(2.5) was 2, so the typo replaced d=2's schedule
        (
            "teacher_student",
            {"schedule_by_d": {2.5: SCHED}},
            "teacher_student.schedule_by_d: key 2.5 is not an integer",
        ),
        ("teacher_student", {"schedule_by_d": {"2.5": SCHED}}, "key '2.5' is not an integer"),
        # #22: packaged datasets never read local_dirs
        ("datasets", {"local_dirs": {"digits": "/nonexistent"}}, "datasets.local_dirs.digits: digits ships with"),
        ("datasets", {"local_dirs": {"mnist1d": "/nonexistent"}}, "datasets.local_dirs.mnist1d"),
        # #16: the slope against N needs 2 widths; the joint fit needs 5 (N, P) configurations
        ("teacher_student", {"widths": [4]}, "teacher_student.widths: [4] has one width"),
        ("joint", {"widths": [4, 6], "train_sizes": [100, 200]}, "give 4 (N, P) configurations"),
    ],
)
def test_config_semantics_are_refused(section, values, expect):
    with pytest.raises(UserError, match="^config: ") as info:
        validate(tiny_with(section, **values))
    assert expect in str(info.value)
    assert "\n" not in str(info.value)


def test_integer_schedule_by_d_keys_still_work():
    config = validate(tiny_with("teacher_student", d=[2, 3], schedule_by_d={"3": SCHED, 2: SCHED}))
    assert set(config["teacher_student"]["schedule_by_d"]) == {2, 3}


def test_fit_grid_checks_only_apply_to_enabled_stages():
    validate(tiny_with("teacher_student", widths=[4], enabled=False))
    validate(tiny_with("joint", widths=[4, 6], train_sizes=[100, 200], enabled=False))
    validate(tiny_with("joint", widths=[4, 6, 8], train_sizes=[100, 200]))  # 6 configurations are enough


@pytest.mark.parametrize(
    ("section", "values", "expect"),
    [
        ("teacher_student", {"schedule_by_d": {2.5: SCHED}}, "error: config: teacher_student.schedule_by_d: key 2.5"),
        ("datasets", {"local_dirs": {"digits": "/nonexistent"}}, "error: config: datasets.local_dirs.digits"),
        ("joint", {"widths": [4, 6], "train_sizes": [100, 200]}, "error: config: joint: 2 widths x 2 train_sizes"),
    ],
)
def test_config_semantics_stop_the_dry_run(tmp_path, section, values, expect):
    result, workdir = snakemake_dry_run(tiny_with(section, **values), tmp_path)
    assert_one_line_error(result.returncode, result.stdout, result.stderr, expect)
    assert files_under(workdir) == set()


# ---------------------------------------------------------------- datasets: #21, #22


def test_dataset_hint_names_the_config_key(tmp_path):
    """#21: the hint named a CLI option (--data-dir) that does not exist."""
    with pytest.raises(UserError) as info:
        sources.prepare("mnist", tmp_path, local_dir=tmp_path / "nonexistent", download=False)
    message = str(info.value)
    assert "datasets.local_dirs.mnist" in message and "--data-dir" not in message
    with pytest.raises(UserError, match="datasets.local_dirs.cifar10"):
        sources.prepare("cifar10", tmp_path, download=False)


def test_packaged_dataset_refuses_a_local_dir(tmp_path):
    with pytest.raises(UserError, match="digits: ships with its Python package"):
        sources.prepare("digits", tmp_path, local_dir=tmp_path, download=False)
    assert files_under(tmp_path) == set()


# ---------------------------------------------------------------- damaged resources/ .pt files: #10


def truncate(path, size: int) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: min(size, len(data) // 2)])


def test_damaged_teacher_file_is_named(tmp_path):
    teacher = tmp_path / "d~2.pt"
    stage.make_teacher(d=2, embedding_width=5, teacher_seed=0, teacher=teacher)
    assert Teacher.load(teacher).d == 2  # an intact file still loads (weights_only)
    truncate(teacher, 1000)
    with pytest.raises(UserError) as info:
        stage.make_dataset(teacher=teacher, n_points=10, stream=["test", 0], points=tmp_path / "test.pt")
    message = str(info.value)
    assert message.startswith(f"{teacher}: cannot read this teacher file")
    assert message.endswith("delete it and rerun to rebuild it") and "\n" not in message
    assert not (tmp_path / "test.pt").exists()


def test_damaged_data_file_is_named(tmp_path):
    teacher, train, test = tmp_path / "d~2.pt", tmp_path / "train_P~inf.pt", tmp_path / "test.pt"
    stage.make_teacher(d=2, embedding_width=5, teacher_seed=0, teacher=teacher)
    stage.make_dataset(teacher=teacher, n_points=20, stream=["pool", 0], points=train)
    stage.make_dataset(teacher=teacher, n_points=10, stream=["test", 0], points=test)
    truncate(test, 10**9)
    with pytest.raises(UserError) as info:
        stage.train_bundle(
            train=train,
            test=test,
            cells=[tmp_path / "seed~0.parquet"],
            d=2,
            width=4,
            P="inf",
            seeds=[0],
            schedule=SCHED,
            n_evals=2,
            device="cpu",
            compile=False,
            threads=1,
            checkpoint=None,
            checkpoint_every_s=60,
        )
    message = str(info.value)
    assert message.startswith(f"{test}: cannot read this data file")
    assert message.endswith("delete it and rerun to rebuild it") and "\n" not in message


def test_foreign_pt_file_is_named(tmp_path):
    path = tmp_path / "d~2.pt"
    torch.save({"something": torch.zeros(2)}, path)
    with pytest.raises(UserError, match=r"not a teacher file \(no d, embedding_width, weights\)"):
        Teacher.load(path)


# ---------------------------------------------------------------- config files that are not a mapping: #24


@pytest.mark.parametrize("text", ["", "# only a comment\n", "- 1\n- 2\n", "42\n"])
def test_non_mapping_config_file_is_refused_by_snakemake_itself(tmp_path, text):
    """#24, a limitation: Snakemake reads every --configfile while parsing its command line
    (settings/types.py: load_configfile), before the Snakefile and so before common.smk runs, and
    refuses a file that is not a mapping with its own two-line WorkflowError. Our code never sees
    it; this test pins that behaviour so a Snakemake upgrade that changes it is noticed (then
    common.smk's validate would give `error: config: the top level must be a mapping`)."""
    configfile = tmp_path / "config.yaml"
    configfile.write_text(text)
    workdir = tmp_path / "run"
    workdir.mkdir()
    cmd = [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "--directory", str(workdir)]
    result = subprocess.run([*cmd, "--configfile", str(configfile), "-n", "--cores", "1"], capture_output=True)
    assert result.returncode != 0
    assert b"Config file must be given as JSON or YAML with keys at top level" in result.stdout + result.stderr
    assert files_under(workdir) == set()


def test_validate_handles_empty_and_non_mapping_configs():
    """What our code does once it sees such a config (e.g. scalinglab.core.config.load): an empty file
    means "all defaults", since every key has one; a list or scalar is a one-line config error."""
    assert validate(None) == validate({})
    for value in ([1, 2], 42, "text"):
        with pytest.raises(UserError, match="^config: the top level must be a mapping"):
            validate(value)
