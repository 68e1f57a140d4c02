"""Training in spans (teacher_student/graphs.py): a chunk of steps that no log interrupts run as one
span gives the very numbers of stepping one by one; on CUDA the span is a replayed CUDA graph."""

import numpy as np
import pytest
import torch

from scalinglab.teacher_student import graphs
from scalinglab.teacher_student.schedules import Schedule
from scalinglab.teacher_student.teacher import Teacher
from scalinglab.teacher_student.training import MLPEnsemble, train

SCHEDULE = {"kind": "onecycle", "steps": 700, "batch": 32, "max_lr": 0.01}


def run(device, spans, checkpoint=None, every_s=float("inf")):
    teachers = [Teacher.create(d, 5, seed=0) for d in (2, 3)]
    pools = [t.sample(3000, seed=1) for t in teachers]  # 700 x 32 points: 7.5 passes
    tests = [t.sample(400, seed=2) for t in teachers]
    ens = MLPEnsemble.init(4, 5, 7, seeds=[0, 1, 2, 3], device=device)
    logs = train(
        ens,
        Schedule.from_config(SCHEDULE),
        [x.to(device) for x, _ in pools],
        [y.to(device) for _, y in pools],
        [x.to(device) for x, _ in tests],
        [y.to(device) for _, y in tests],
        mode="stream",
        data_seed=[5, 6],
        members=[2, 2],
        n_evals=12,
        spans=spans,
        checkpoint=checkpoint,
        checkpoint_every_s=every_s,
    )
    return ens.flat.cpu(), logs


def assert_same(a, b):
    assert torch.equal(a[0], b[0])
    for key in ("step", "samples", "lr", "train_loss", "test_loss"):
        np.testing.assert_array_equal(a[1][key], b[1][key])


def test_spans_give_the_numbers_of_single_steps(monkeypatch):
    calls = []
    original = graphs.EagerSpans.run
    monkeypatch.setattr(graphs.EagerSpans, "run", lambda self, *a: calls.append(a[0].shape[0]) or original(self, *a))
    stepped, spanned = run("cpu", None), run("cpu", "eager")
    assert_same(spanned, stepped)
    # most of the 700 steps ran in spans of whole chunks; the logs (dense early) stepped one by one
    assert set(calls) == {64, 60} and sum(calls) == 380  # 6 of the 11 chunks (700 = 10 x 64 + 60)
    assert stepped[1]["test_loss"][-1].max() < stepped[1]["test_loss"][0].min()  # it trained


def test_a_run_in_spans_resumes_from_its_checkpoint(tmp_path, monkeypatch):
    """Killed after a checkpoint (saved at a chunk's end), the rerun gives the same numbers."""
    from scalinglab.core import checkpoint as checkpoint_module

    whole = run("cpu", "eager")
    path = tmp_path / "run.pt"
    saves = []
    original = checkpoint_module.Checkpointer.save

    def save_then_die(self, state):
        original(self, state)
        saves.append(state["step"])
        if len(saves) == 1:
            raise KeyboardInterrupt

    monkeypatch.setattr(checkpoint_module.Checkpointer, "save", save_then_die)
    with pytest.raises(KeyboardInterrupt):
        run("cpu", "eager", checkpoint=path, every_s=0.0)
    assert saves == [256] and path.exists()
    monkeypatch.setattr(checkpoint_module.Checkpointer, "save", original)
    assert_same(run("cpu", "eager", checkpoint=path, every_s=float("inf")), whole)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA graphs need a GPU")
def test_cuda_graphs_give_the_numbers_of_eager_steps():
    assert_same(run("cuda", "cuda"), run("cuda", None))
