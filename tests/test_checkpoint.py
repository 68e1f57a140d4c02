"""Checkpoints: a training job killed with SIGKILL resumes from its checkpoint, bit for bit."""

import os
import signal
import subprocess
import sys
import time

import pandas as pd
import pytest
import torch

from scalinglab.core.checkpoint import CHECK_EVERY_STEPS
from scalinglab.teacher_student.stage import make_dataset, make_teacher, train_bundle

SCHEDULE = {"kind": "onecycle", "steps": 12 * CHECK_EVERY_STEPS, "batch": 32, "max_lr": 0.01}
SEEDS = [0, 1]
METRICS = ["step", "samples", "lr", "train_loss", "test_loss", "status"]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("ckpt_data")
    make_teacher(d=3, embedding_width=9, teacher_seed=0, teacher=root / "teacher.pt")
    make_dataset(teacher=root / "teacher.pt", n_points=5000, stream=["train", 0], points=root / "train.pt")
    make_dataset(teacher=root / "teacher.pt", n_points=2000, stream=["test", 0], points=root / "test.pt")
    return root


def bundle(data, out_dir, seeds=SEEDS, checkpoint=None, every_s=0.0, P="inf"):
    """P = inf streams through the 5,000 points; P = 5000 samples batches from them at random."""
    out_paths = [out_dir / f"seed~{s}.parquet" for s in seeds]
    train_bundle(
        train=data / "train.pt",
        test=data / "test.pt",
        d=3,
        width=6,
        P=P,
        seeds=seeds,
        schedule=SCHEDULE,
        n_evals=12,
        device="cpu",
        compile=False,
        threads=1,
        cells=out_paths,
        checkpoint=checkpoint,
        checkpoint_every_s=every_s,
    )
    return [pd.read_parquet(path)[METRICS] for path in out_paths]


KILLED_JOB = """
import sys, time
from pathlib import Path
import scalinglab.teacher_student.training as engine
from test_checkpoint import bundle
real_step = engine.Trainer.step
def slow_step(self, *args):  # slow enough that the test can kill it mid-run on any machine
    time.sleep(0.002)
    return real_step(self, *args)
engine.Trainer.step = slow_step
bundle(Path(sys.argv[1]), Path(sys.argv[2]), checkpoint=sys.argv[3], P=sys.argv[4])
"""


@pytest.mark.parametrize("P", ["inf", "5000"])
def test_killed_job_resumes_bit_for_bit(data, tmp_path, P):
    reference = bundle(data, tmp_path / "uninterrupted", P=P)

    checkpoint = tmp_path / "ckpt" / "bundle.pt"
    out = tmp_path / "resumed"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([os.path.dirname(__file__), *sys.path])}
    job = subprocess.Popen([sys.executable, "-c", KILLED_JOB, str(data), str(out), str(checkpoint), P], env=env)
    deadline = time.monotonic() + 120
    while not checkpoint.exists() and job.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(0.3)  # let it run past the first checkpoint, and save a later one
    assert job.poll() is None, "the job finished (or died) before it could be killed"
    job.send_signal(signal.SIGKILL)
    job.wait()
    saved_step = torch.load(checkpoint, weights_only=False)["state"]["step"]
    assert 0 < saved_step < SCHEDULE["steps"]
    assert not out.exists() or not list(out.glob("*.parquet"))  # killed: no cell written, none partial

    resumed = bundle(data, out, checkpoint=checkpoint, every_s=3600, P=P)
    for got, want in zip(resumed, reference):
        pd.testing.assert_frame_equal(got, want, check_exact=True)
    assert not checkpoint.exists()  # removed once every cell is written


def test_checkpoint_of_another_run_is_ignored(data, tmp_path):
    checkpoint = tmp_path / "bundle.pt"
    out = tmp_path / "first"
    # a checkpoint left by a run with other seeds...
    from scalinglab.core.checkpoint import Checkpointer

    Checkpointer(checkpoint, 0, key="another run").save({"step": 100})
    got = bundle(data, out, checkpoint=checkpoint, every_s=3600)
    want = bundle(data, tmp_path / "plain")
    for a, b in zip(got, want):
        pd.testing.assert_frame_equal(a, b, check_exact=True)
    assert not checkpoint.exists()
