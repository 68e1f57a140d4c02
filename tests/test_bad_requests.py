"""A careless or unlucky user's requests, found by a red-team review: each ends in a one-line error
before anything runs, or in the correct result, and nothing computed is lost.

Config files with a repeated section or YAML 1.1 numbers, targets outside the config's grid (ghost
cells such as d~02, and d~0, P~0, alpha~-4 that would bypass validation), numbers whose file names
would collide, `device: cuda` without a GPU, an impossible bootstrap, and user errors in a training
job, which fail at once instead of being retried.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml
from test_bad_input import assert_one_line_error, files_under
from workflow_helpers import REPO, planned_jobs, snakemake, tiny_config

from scalinglab.core import preflight
from scalinglab.core.config import number_name, read_yaml, validate
from scalinglab.core.errors import UserError
from scalinglab.laws import cluster_bootstrap
from scalinglab.perceptron import grid as perceptron_grid
from scalinglab.perceptron.stage import check_memory
from scalinglab.random_features import grid as rf_grid


def dry_run(folder, *args, config=None, text=None):
    """snakemake -n on the real Snakefile in a fresh work directory; `text` is a raw YAML config."""
    workdir = folder / "run"
    workdir.mkdir()
    if text is not None:
        configfile = folder / "config.yaml"
        configfile.write_text(text)
        cmd = [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "--directory", str(workdir)]
        result = subprocess.run(
            [*cmd, "--configfile", str(configfile), "-n", "--cores", "1", *args], capture_output=True, text=True
        )
        return result, workdir
    return snakemake(workdir, "-n", "--cores", "1", *args, config=config, check=False), workdir


# ---------------------------------------------------------------- config files


def test_a_section_given_twice_is_refused(tmp_path):
    text = "device: cpu\nteacher_student:\n  d: [2]\nperceptron:\n  N: 100\nteacher_student:\n  widths: [4]\n"
    result, workdir = dry_run(tmp_path, text=text)
    line = assert_one_line_error(
        result.returncode, result.stdout, result.stderr, "key 'teacher_student' is given twice"
    )
    assert "line 6" in line and "first on line 2" in line
    assert files_under(workdir) == set()


def test_a_nested_key_given_twice_is_refused(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("teacher_student:\n  d: [2]\n  d: [3]\n")
    with pytest.raises(UserError, match="line 3: key 'd' is given twice"):
        read_yaml(path)


def test_yaml_11_exponent_numbers_are_numbers(tmp_path):
    """PyYAML reads 1e-3 (no dot) as a string; where the schema wants a number it is one."""
    text = "device: cpu\nteacher_student:\n  schedule: {kind: onecycle, steps: 60, batch: 50, max_lr: 1e-3}\n"
    result, _ = dry_run(tmp_path, text=text)
    assert result.returncode == 0, result.stderr[-2000:]
    config = validate(yaml.safe_load(text) | {"images": {"lr": "5E-4"}, "datasets": {"root": "1e3"}})
    assert config["teacher_student"]["schedule"]["max_lr"] == 0.001
    assert config["images"]["lr"] == 0.0005
    assert config["datasets"]["root"] == "1e3"  # a string where the schema wants one stays a string


# ---------------------------------------------------------------- targets outside the grid

BAD_TARGETS = {
    "a ghost of d = 2": ("results/runs/teacher_student/d~02/P~inf/width~4/seed~0.parquet", "d~02"),
    "d = 0": ("results/runs/teacher_student/d~0/P~inf/width~4/seed~0.parquet", "d~0 "),
    "P = 0": ("results/runs/joint/d~2/P~0/width~4/seed~0.parquet", "P~0 "),
    "a width not in the grid": ("results/runs/teacher_student/d~2/P~inf/width~04/seed~0.parquet", "width~04"),
    "a negative alpha": ("results/runs/perceptron/alpha~-4.parquet", "alpha~-4"),
    "alpha not a number": ("results/runs/perceptron/alpha~e.parquet", "alpha~e"),
    "a random-feature pair not in the config": ("results/runs/random_features/a~0.5_b~1.5.parquet", "a~0.5"),
    "a teacher outside the grid": ("resources/teacher_student/teachers/d~0.pt", "d~0 "),
}


@pytest.mark.parametrize("case", list(BAD_TARGETS))
def test_a_target_outside_the_grid_is_refused(case, tmp_path):
    target, expect = BAD_TARGETS[case]
    result, workdir = dry_run(tmp_path, target, config=tiny_config())
    line = assert_one_line_error(result.returncode, result.stdout, result.stderr, expect)
    assert "is not in this config's grid" in line
    assert files_under(workdir) == set()


def test_a_target_of_the_grid_is_planned(tmp_path):
    jobs = planned_jobs(tmp_path / "run", tiny_config(), ["results/runs/perceptron/alpha~4.parquet"])
    assert [rule for rule, _ in jobs] == ["perceptron_sweep"]


def test_settings_are_read_from_paths():
    assert preflight.settings_in("resources/teacher_student/data/d~2/train_P~inf.pt") == [("d", "2"), ("P", "inf")]
    assert preflight.settings_in("results/runs/random_features/a~2_b~1.5.parquet") == [("a", "2"), ("b", "1.5")]
    assert preflight.settings_in("results/runs/perceptron/alpha~21.1.parquet") == [("alpha", "21.1")]


# ---------------------------------------------------------------- numbers in file names


def test_numbers_in_names_read_back_as_the_same_numbers():
    for value in [16, 21.1, 64, 2.0, 1.5, 1234567, 1234568, 4.0000001, 1e-5, 0.1 + 0.2]:
        assert float(number_name(value)) == float(value)
    assert [number_name(v) for v in (16, 21.1, 2.0, 1.5)] == ["16", "21.1", "2", "1.5"]  # existing names kept


def test_close_alphas_get_their_own_jobs(tmp_path):
    runs = perceptron_grid.runs({"alphas": [1234567, 1234568]})
    assert len(set(runs)) == 2
    assert len(set(perceptron_grid.runs({"alphas": [4, 4.0000001, 16]}))) == 3
    names = rf_grid.runs({"pairs": [{"a": 2.0000001, "b": 1.5}, {"a": 2.0, "b": 1.5}]})
    assert len(names) == 2
    config = tiny_config()
    config["perceptron"]["alphas"] = [4, 4.0000001, 16]
    jobs = planned_jobs(tmp_path / "run", config, ["results/fits/perceptron.json"])
    alphas = sorted(float(wc["alpha"]) for rule, wc in jobs if rule == "perceptron_sweep")
    assert alphas == [4, 4.0000001, 16]


def test_an_alpha_whose_data_cannot_fit_in_memory_is_refused():
    check_memory(100, 16)
    with pytest.raises(UserError, match=r"P = 617,283,500 examples of N = 500"):
        check_memory(500, 1234567)


# ---------------------------------------------------------------- devices, bootstrap, retries


@pytest.mark.skipif(shutil.which("nvidia-smi") is not None, reason="this machine has an NVIDIA GPU")
def test_cuda_without_a_gpu_is_refused_before_anything_runs(tmp_path):
    result, workdir = dry_run(tmp_path, config={**tiny_config(), "device": "cuda"})
    assert_one_line_error(result.returncode, result.stdout, result.stderr, "device: cuda, but this machine has no")
    assert files_under(workdir) == set()


def test_cuda_without_a_gpu_in_a_job_is_one_line():
    import torch

    from scalinglab.core.devices import pick_device

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    with pytest.raises(UserError, match="device: cuda, but torch sees no CUDA GPU"):
        pick_device("cuda")


def test_a_huge_bootstrap_is_refused_at_once(tmp_path):
    table = tmp_path / "t.csv"
    table.write_text("N,loss\n" + "".join(f"{n},{n**-0.5}\n" for n in (10, 20, 40, 80)))
    command = Path(sys.executable).with_name("scalinglab")
    cmd = [str(command), "fit", str(table), "--x", "N", "--y", "loss", "--bootstrap", "300000000"]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    assert_one_line_error(result.returncode, result.stdout, result.stderr, "--bootstrap 300000000 is more than")


def test_a_long_bootstrap_shows_progress(monkeypatch, capsys):
    monkeypatch.setattr(cluster_bootstrap, "PROGRESS_EVERY_S", 0.0)
    progress = cluster_bootstrap.Progress(1000)
    progress.update(250)
    progress.update(1000)  # done: no line
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("bootstrap: 250/1,000 draws,") and "s left" in err[0]
    with pytest.raises(UserError, match="more than the 1,000,000 allowed"):
        cluster_bootstrap.check_draws(10**7)


def test_a_user_error_in_a_training_job_is_not_retried(tmp_path):
    """P above the dataset's size is found in the job: it fails once, not three times."""
    config = {
        "device": "cpu",
        "images": {"datasets": ["digits"], "widths": [1, 2], "seeds": [0], "epochs": 1, "train_sizes": [5000]},
    }
    workdir = tmp_path / "run"
    workdir.mkdir()
    result = snakemake(workdir, "--cores", "1", "results/tables/images.parquet", config=config, check=False)
    assert result.returncode != 0
    out = result.stdout + result.stderr
    assert "P = 5000 is outside 1..1438" in out
    assert "Trying to restart" not in out
    assert "Traceback" not in out


def test_a_cell_damaged_inside_is_one_line_when_aggregated(tmp_path):
    """Whole at both ends (so the check before the run passes it) but broken inside."""
    from scalinglab.core.io import read_concat, write_parquet

    good, bad = tmp_path / "good.parquet", tmp_path / "bad.parquet"
    write_parquet(pd.DataFrame({"x": [1.0, 2.0]}), good)
    blob = bytearray(good.read_bytes())
    blob[8:40] = bytes(32)
    bad.write_bytes(bytes(blob))
    assert preflight.damaged_parquet([str(good), str(bad)]) == []
    with pytest.raises(UserError, match=r"bad.parquet: cannot read it as parquet .* Delete it and rerun") as caught:
        read_concat([good, bad])
    assert "\n" not in str(caught.value)
    with open(good, "r+b") as fh:
        fh.truncate(30)
    assert preflight.damaged_parquet([str(good)]) == [str(good)]


def test_a_cell_with_other_columns_is_refused_when_aggregated(tmp_path):
    """An older version's cell or a hand edit (test_loss renamed): not NaN rows passed off as diverged."""
    from scalinglab.core.io import read_concat, write_parquet

    good, old = tmp_path / "good.parquet", tmp_path / "old.parquet"
    write_parquet(pd.DataFrame({"step": [0, 1], "test_loss": [1.0, 0.5]}), good)
    write_parquet(pd.DataFrame({"step": [0, 1], "loss": [1.0, 0.5]}), old)
    with pytest.raises(UserError, match=r"old.parquet: its columns differ .*missing: test_loss; extra: loss"):
        read_concat([good, old])
    assert len(read_concat([good, good])) == 4
