"""Checkpoints: a training job killed with SIGKILL resumes from its checkpoint, bit for bit."""

import os
import signal
import subprocess
import sys
import time
from collections import OrderedDict

import numpy as np
import pandas as pd
import pytest
import torch

import scalinglab.teacher_student.training as engine
from scalinglab.core.checkpoint import CHECK_EVERY_STEPS, FORMAT, Checkpointer, lock_path
from scalinglab.core.errors import UserError
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
def test_killed_job_resumes_bit_for_bit(data, tmp_path, P, capfd):
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
    torch.load(checkpoint, weights_only=True)  # tensors and plain values only: nothing to unpickle

    capfd.readouterr()
    resumed = bundle(data, out, checkpoint=checkpoint, every_s=3600, P=P)  # the killed job's lock went with it
    assert f"resuming from checkpoint {checkpoint} at step {saved_step}" in capfd.readouterr().err
    for got, want in zip(resumed, reference):
        pd.testing.assert_frame_equal(got, want, check_exact=True)
    assert not checkpoint.exists() and not lock_path(checkpoint).exists()  # removed once every cell is written


def test_checkpoint_of_another_run_is_ignored(data, tmp_path):
    checkpoint = tmp_path / "bundle.pt"
    out = tmp_path / "first"
    # a checkpoint left by a run with other seeds...
    with Checkpointer(checkpoint, 0, key="another run") as saver:
        saver.save({"step": 100})
    got = bundle(data, out, checkpoint=checkpoint, every_s=3600)
    want = bundle(data, tmp_path / "plain")
    for a, b in zip(got, want):
        pd.testing.assert_frame_equal(a, b, check_exact=True)
    assert not checkpoint.exists()


class Exploit:
    """Unpickling it runs code: here, open() creating a marker file."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_a_checkpoint_that_needs_unpickling_is_ignored_and_its_code_not_run(tmp_path, capsys):
    checkpoint, marker = tmp_path / "evil.pt", tmp_path / "code-ran"
    torch.save({"format": FORMAT, "key": "k", "state": {"step": 5, "payload": Exploit(marker)}}, checkpoint)
    with Checkpointer(checkpoint, 0, key="k") as saver:
        assert saver.load() is None  # start over
    assert not marker.exists()
    assert f"note: ignoring unreadable checkpoint {checkpoint}" in capsys.readouterr().err
    torch.load(checkpoint, weights_only=False)  # the file is a real exploit: unpickled, it runs
    assert marker.exists()


def test_a_state_of_numpy_and_pandas_values_loads_without_unpickling_and_unchanged(tmp_path):
    frame = pd.DataFrame({"width": [1, 2], "loss": [0.5, np.nan], "ok": [True, False], "what": ["a", "b"]})
    frame["status"] = ["ok", "diverged"]
    frame["mixed"] = pd.Series([np.float32(1.5), None], dtype=object)
    module = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.BatchNorm1d(2))
    state = {
        "step": 7,
        "logs": {"loss": [np.array([1.0, np.nan]), np.arange(3, dtype=np.int32)], "lr": [0.1]},
        "scalars": (np.float64(0.25), np.int64(3), np.bool_(True)),
        "frames": [frame, frame.iloc[1:], frame.set_index("what").rename_axis(columns="metric")],
        "model": module.state_dict(),
        "with_arrays": OrderedDict(a=np.zeros(2)),
        "generator": torch.Generator().manual_seed(1).get_state(),
        "numpy_rng": np.random.default_rng(3).bit_generator.state,
        "matrix": np.asfortranarray(np.arange(6.0).reshape(2, 3))[:, ::-1],
    }
    path = tmp_path / "state.pt"
    with Checkpointer(path, 0, key="k") as saver:
        saver.save(state)
        torch.load(path, weights_only=True)  # no numpy or pandas object in the file
        got = saver.load()
    for key in ("step", "scalars", "numpy_rng"):
        assert got[key] == state[key] and type(got[key]) is type(state[key])
    assert [type(v) for v in got["scalars"]] == [np.float64, np.int64, np.bool_]
    for a, b in zip(got["logs"]["loss"], state["logs"]["loss"]):
        np.testing.assert_array_equal(a, b, strict=True)
    np.testing.assert_array_equal(got["matrix"], state["matrix"], strict=True)
    for a, b in zip(got["frames"], state["frames"]):
        pd.testing.assert_frame_equal(a, b, check_exact=True)
    assert type(got["frames"][0]["mixed"][0]) is np.float32
    assert type(got["model"]) is OrderedDict and got["model"]._metadata == state["model"]._metadata
    assert type(got["with_arrays"]) is OrderedDict and type(got["with_arrays"]["a"]) is np.ndarray
    assert torch.equal(got["generator"], state["generator"])


def test_a_state_that_could_not_be_loaded_is_refused_when_saved(tmp_path):
    with Checkpointer(tmp_path / "c.pt", 0, key="k") as saver:
        with pytest.raises(TypeError, match="cannot checkpoint a Exploit"):
            saver.save({"step": 1, "x": Exploit(tmp_path / "m")})
        with pytest.raises(TypeError, match="dtype <U1"):
            saver.save({"step": 1, "x": np.array(["a"])})
        with pytest.raises(TypeError, match="RandomState"):  # a legacy RandomState state holds an ndarray...
            saver.save({"step": 1, "random_state": np.random.RandomState(0)})
        saver.save({"step": 1, "random_state": np.random.RandomState(0).get_state()})  # ...its state tuple is fine


def test_a_second_run_on_a_checkpoint_in_use_stops_with_a_user_error(data, tmp_path):
    checkpoint = tmp_path / "ckpt" / "width~6.pt"
    with Checkpointer(checkpoint, 0, key="an orphan still training this cell"):
        with pytest.raises(UserError, match=rf"width~6.pt is in use by another process \(pid {os.getpid()} "):
            bundle(data, tmp_path / "second", checkpoint=checkpoint)
    assert not list((tmp_path / "second").glob("*.parquet"))
    bundle(data, tmp_path / "second", checkpoint=checkpoint)  # released: the rerun goes ahead
    assert not checkpoint.exists() and not lock_path(checkpoint).exists()


def test_training_that_fails_releases_its_checkpoint(data, tmp_path, monkeypatch):
    checkpoint = tmp_path / "width~6.pt"
    real_step, steps = engine.Trainer.step, []

    def failing_step(self, *args):
        steps.append(None)
        if len(steps) > 3 * CHECK_EVERY_STEPS:
            raise RuntimeError("out of memory")
        return real_step(self, *args)

    monkeypatch.setattr(engine.Trainer, "step", failing_step)
    with pytest.raises(RuntimeError, match="out of memory"):
        bundle(data, tmp_path / "out", checkpoint=checkpoint)
    assert checkpoint.exists()
    monkeypatch.setattr(engine.Trainer, "step", real_step)
    got = bundle(data, tmp_path / "out", checkpoint=checkpoint)  # not "in use": the failed run let go
    for a, b in zip(got, bundle(data, tmp_path / "plain")):
        pd.testing.assert_frame_equal(a, b, check_exact=True)
