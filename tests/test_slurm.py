"""The Slurm profile, end to end: a real single-node Slurm on localhost runs the teacher/student part
of a tiny workflow through `--workflow-profile workflow/profiles/slurm`, one sbatch job per rule job.

Needs root (slurmctld and slurmd run as root) and slurm-wlm + munge, which tests/slurm/start_slurm.sh
installs with apt-get when missing. The daemons are stopped by PID in a finalizer, also on failure.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time

import pandas as pd
import pytest
import yaml
from workflow_helpers import REPO

pytestmark = pytest.mark.slurm

PROFILE = REPO / "workflow" / "profiles" / "slurm"
KIT = REPO / "tests" / "slurm"

# the teacher/student part only: 7 jobs in 6 waves (teacher, data, training (one packed job, pack: all),
# aggregate, fit, plot)
CONFIG = {
    "device": "cpu",
    "teacher_student": {
        "d": [2],
        "widths": [4, 12],
        "seeds": [0, 1],
        "pool_size": 20000,
        "test_size": 20000,
        "schedule": {"kind": "onecycle", "steps": 60, "batch": 50, "max_lr": 0.01},
        "n_evals": 5,
        "bootstrap": 20,
    },
    "dimension": {"enabled": False},
    "perceptron": {"enabled": False},
}
TARGETS = [
    "results/fits/teacher_student.parquet",
    "results/figures/teacher_student/loss_vs_n.png",
    "results/figures/teacher_student/dim_vs_d.png",
    "results/figures/teacher_student/learning_curves.png",
]


def test_profile_files_are_identical_and_use_the_gpu_resources():
    text = (PROFILE / "profile.yaml").read_text()
    # Snakemake picks either file when both exist (whichever the directory listing gives first)
    assert (PROFILE / "config.yaml").read_text() == text
    profile = yaml.safe_load(text)
    assert profile["executor"] == "slurm"
    assert {"runtime", "mem_mb"} <= set(profile["default-resources"])
    # the plugin refuses --gres/--gpus in slurm_extra; GPUs go through the gpu/gpu_model resources
    extras = [str(res.get("slurm_extra", "")) for res in profile.get("set-resources", {}).values()]
    extras.append(str(profile["default-resources"].get("slurm_extra", "")))
    assert not any(flag in extra for extra in extras for flag in ("--gres", "--gpus"))
    assert "slurm-status-command: squeue" in text  # documented for clusters without accounting
    # rules whose memory and time grow with the attempt keep that growth: no fixed value replaces it
    rules = "".join(path.read_text() for path in (REPO / "workflow" / "rules").glob("*.smk"))
    assert re.search(r'"mem_mb": lambda wildcards, attempt: mem_mb \* attempt', rules)  # training_resources
    scaled = set(re.findall(r"^rule (\w+):(?:(?!\nrule ).)*?\*\*training_resources\(", rules, re.S | re.M))
    scaled |= {new for old, new in re.findall(r"^use rule (\w+) as (\w+)", rules, re.M) if old in scaled}
    assert {"train_teacher_student", "train_images", "train_deep_nets", "train_joint"} <= scaled
    overridden = {rule for rule, res in profile.get("set-resources", {}).items() if {"mem_mb", "runtime"} & set(res)}
    assert not overridden & scaled, overridden & scaled


def _cannot_start() -> str | None:
    if not hasattr(os, "geteuid") or os.geteuid() != 0:
        return "the local Slurm needs root (slurmctld and slurmd run as root)"
    if shutil.which("slurmctld") is None and shutil.which("apt-get") is None:
        return "slurm-wlm is not installed and there is no apt-get to install it"
    return None


@pytest.fixture(scope="module")
def slurm_cluster(request, tmp_path_factory):
    reason = _cannot_start()
    if reason:
        pytest.skip(reason)
    state = tmp_path_factory.mktemp("slurm-state")
    env = {**os.environ, "SLURM_STATE": str(state)}

    def stop():
        subprocess.run(["bash", str(KIT / "stop_slurm.sh")], env=env, capture_output=True, timeout=120)

    request.addfinalizer(stop)  # registered before the start, so a half-started cluster stops too
    started = subprocess.run(
        ["bash", str(KIT / "start_slurm.sh")], env=env, capture_output=True, text=True, timeout=900
    )
    if started.returncode == 3:  # a real Slurm configuration is present: never overwrite it
        pytest.skip(started.stdout.strip())
    assert started.returncode == 0, f"local Slurm did not start:\n{started.stdout}\n{started.stderr}"
    return state


@pytest.fixture(scope="module")
def slurm_run(slurm_cluster, tmp_path_factory):
    workdir = tmp_path_factory.mktemp("slurm-wf")
    (workdir / "config.yaml").write_text(yaml.safe_dump(CONFIG))
    cmd = [
        sys.executable,
        "-m",
        "snakemake",
        "-s",
        str(REPO / "Snakefile"),
        "--directory",
        str(workdir),
        "--configfile",
        str(workdir / "config.yaml"),
        "--workflow-profile",
        str(PROFILE),
        # a fake GPU per training job: proves the gpu resource becomes sbatch --gpus
        "--set-resources",
        "train_teacher_student:gpu=1",
        # the test cluster has no accounting (as the profile documents); first status check after 8 s
        "--slurm-status-command",
        "squeue",
        "--slurm-init-seconds-before-status-checks",
        "8",
        *TARGETS,
    ]
    start = time.perf_counter()
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=1200)
    wall = time.perf_counter() - start
    print(f"Slurm workflow wall time: {wall:.0f} s")
    log = result.stdout + result.stderr
    assert result.returncode == 0, f"snakemake through Slurm failed ({result.returncode}):\n{log[-5000:]}"
    return workdir, log


def test_every_job_runs_as_a_slurm_job(slurm_run):
    _, log = slurm_run
    submitted = re.findall(r"has been submitted with SLURM jobid (\d+) \(log: .*/rule_(\w+?)/", log)
    rules = sorted(rule for _, rule in submitted)
    assert rules == sorted(
        [
            "teacher",
            "teacher_train_data",
            "teacher_test_data",
            "aggregate_teacher_student",
            "fit_teacher_student",
            "plot_teacher_student",
        ]
        + ["train_teacher_student"]
    )
    # finished jobs stay visible for MinJobAge = 300 s: the training jobs were given a GPU
    for jobid, rule in submitted:
        shown = subprocess.run(["scontrol", "show", "job", jobid], capture_output=True, text=True).stdout
        assert "JobState=COMPLETED" in shown
        assert ("gpu:1" in shown) == (rule == "train_teacher_student"), shown


def test_every_output_is_written_and_valid(slurm_run):
    workdir, _ = slurm_run
    ts = CONFIG["teacher_student"]
    cells = sorted((workdir / "results/runs/teacher_student").rglob("*.parquet"))
    assert len(cells) == len(ts["d"]) * len(ts["widths"]) * len(ts["seeds"])
    for path in cells:
        cell = pd.read_parquet(path)
        assert cell["step"].iloc[-1] == ts["schedule"]["steps"]
        assert cell["test_loss"].notna().all() and (cell["status"] == "ok").all()
    table = pd.read_parquet(workdir / "results/tables/teacher_student.parquet")
    assert len(table) == sum(len(pd.read_parquet(path)) for path in cells)
    fits = pd.read_parquet(workdir / "results/fits/teacher_student.parquet")
    assert sorted(fits["method"]) == ["ols", "quantile"] and fits["slope"].notna().all()
    assert len(json.loads((workdir / "results/fits/teacher_student.json").read_text())) == len(fits)
    for target in TARGETS[1:]:
        assert (workdir / target).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    for name in ("teacher/d~2.log", "train_teacher_student/P~inf.log"):
        assert (workdir / "results/logs" / name).exists()
