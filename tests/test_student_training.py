"""The batched engine against plain PyTorch: same numbers, ensembles equal separate runs, seeds fixed."""

import numpy as np
import pytest
import torch

from scalinglab.teacher_student.batches import BatchSource
from scalinglab.teacher_student.schedules import Schedule, log_spaced_steps, onecycle_lr
from scalinglab.teacher_student.teacher import Teacher
from scalinglab.teacher_student.training import MLPEnsemble, Trainer, student_param_count, train

W, N_HIDDEN, BATCH = 9, 24, 64


@pytest.fixture(scope="module")
def teacher_data():
    teacher = Teacher.create(4, W, seed=0)
    x, y = teacher.sample(200 * BATCH, seed=1)
    return x.view(200, BATCH, W), y.view(200, BATCH)


def plain_mlp(w, n):
    return torch.nn.Sequential(
        torch.nn.Linear(w, n), torch.nn.ReLU(), torch.nn.Linear(n, n), torch.nn.ReLU(), torch.nn.Linear(n, 1)
    )


def test_param_count_matches_module_and_seed_formula():
    for n in (1, 7, 50):
        assert student_param_count(n, W) == sum(p.numel() for p in plain_mlp(W, n).parameters())
        assert student_param_count(n, 9) == n * n + 12 * n + 1  # Sharma & Kaplan's count for w = 9


def test_single_member_equals_plain_adam_loop(teacher_data):
    xs, ys = teacher_data
    ens = MLPEnsemble.init(1, W, N_HIDDEN, seeds=[7])
    model = plain_mlp(W, N_HIDDEN)
    model.load_state_dict(ens.member_state(0))
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    trainer = Trainer(ens)
    lr = torch.tensor(3e-3)
    ours, plain = [], []
    for step in range(200):
        ours.append(float(trainer.step(xs[step][None], ys[step][None], lr)[0]))
        optimizer.zero_grad()
        loss = ((model(xs[step]).squeeze(-1) - ys[step]) ** 2).mean()
        loss.backward()
        optimizer.step()
        plain.append(loss.item())
    ours, plain = np.array(ours), np.array(plain)
    assert plain[-1] < plain[0] / 10  # it really trained
    np.testing.assert_allclose(ours, plain, rtol=1e-5)


def test_ensemble_equals_separate_runs(teacher_data):
    xs, ys = teacher_data
    seeds = [1, 2, 3]
    lr = torch.tensor(5e-3)
    ensemble = Trainer(MLPEnsemble.init(3, W, N_HIDDEN, seeds=seeds))
    singles = [Trainer(MLPEnsemble.init(1, W, N_HIDDEN, seeds=[s])) for s in seeds]
    # member e sees its own batch stream: rotate the batches by e
    batches = [torch.roll(torch.arange(100), e) for e in range(3)]
    for step in range(100):
        idx = [int(b[step]) for b in batches]
        ens_loss = ensemble.step(xs[idx], ys[idx], lr)
        for e, single in enumerate(singles):
            single_loss = single.step(xs[idx[e]][None], ys[idx[e]][None], lr)
            assert float(ens_loss[e]) == pytest.approx(float(single_loss[0]), rel=1e-5)
    for e, single in enumerate(singles):
        np.testing.assert_allclose(
            ensemble.ens.views(ensemble.ens.flat)["W2"][e],
            single.ens.views(single.ens.flat)["W2"][0],
            rtol=1e-4,
            atol=1e-6,
        )


def _train_once(teacher_data):
    xs, ys = teacher_data
    x, y = xs.reshape(-1, W), ys.reshape(-1)
    ens = MLPEnsemble.init(2, W, 12, seeds=[5, 6])
    sched = Schedule.from_config({"kind": "onecycle", "steps": 150, "batch": 32, "max_lr": 0.01})
    return train(ens, sched, x[:5000], y[:5000], x[5000:], y[5000:], mode="sample", data_seed=3, n_evals=6)


def test_fixed_seeds_give_identical_results_and_loss_falls(teacher_data):
    first, second = _train_once(teacher_data), _train_once(teacher_data)
    np.testing.assert_array_equal(first["test_loss"], second["test_loss"])
    np.testing.assert_array_equal(first["step"], sorted({*log_spaced_steps(150, 6), 120}))  # and at 80%: late_change
    assert np.all(first["test_loss"][-1] < first["test_loss"][0] / 5)
    assert first["samples"][-1] == 150 * 32


def test_onecycle_matches_torch_scheduler():
    steps, max_lr = 500, 0.02
    param = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.Adam([param], lr=max_lr)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=max_lr, total_steps=steps)
    expected = []
    for _ in range(steps):
        expected.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    np.testing.assert_allclose(onecycle_lr(steps, max_lr, 0.3, 25.0, 1e4), expected, rtol=1e-10)


def test_phase_schedule_expands_table1_shape():
    sched = Schedule.from_config(
        {"kind": "phases", "phases": [{"steps": 5, "batch": 2, "lr": 0.1}, {"steps": 3, "batch": 4, "lr": 0.01}]}
    )
    assert sched.total_steps == 8
    np.testing.assert_array_equal(sched.batch_per_step(), [2] * 5 + [4] * 3)
    np.testing.assert_allclose(sched.lr_per_step(), [0.1] * 5 + [0.01] * 3)
    assert sched.samples_seen() == 22


def test_stream_mode_never_repeats_a_point_within_the_pool():
    pool = 1000
    x = torch.arange(pool, dtype=torch.float32)[:, None].expand(pool, W).contiguous()
    source = BatchSource(x, torch.zeros(pool), E=4, mode="stream", seed=0)
    seen = torch.cat([source.next(50)[0][:, :, 0] for _ in range(pool // 50)], dim=1)  # (E, pool)
    for member in seen:
        assert len(torch.unique(member)) == pool  # each member saw every point exactly once
    assert not torch.equal(seen[0], seen[1])  # members start from different offsets


def test_compiled_step_equals_eager_step(teacher_data):
    """torch.compile runs the unfused Adam and its own kernels: same trajectory to float rounding."""
    xs, ys = teacher_data
    lr = torch.tensor(5e-3)
    eager = Trainer(MLPEnsemble.init(2, W, N_HIDDEN, seeds=[1, 2]))
    compiled = Trainer(MLPEnsemble.init(2, W, N_HIDDEN, seeds=[1, 2]), compile=True)
    for step in range(30):
        x, y = xs[step].expand(2, -1, -1).contiguous(), ys[step].expand(2, -1).contiguous()
        np.testing.assert_allclose(compiled.step(x, y, lr), eager.step(x, y, lr), rtol=1e-4)
    np.testing.assert_allclose(compiled.ens.flat, eager.ens.flat, rtol=1e-4, atol=1e-6)


def test_a_stream_longer_than_the_pool_reshuffles_each_pass():
    """P = inf with steps x batch > pool size: every member sees every point once per pass, and each
    pass after the first in a new order (never the first pass's batches again)."""
    from scalinglab.teacher_student.batches import BatchSource

    x = torch.arange(10.0).reshape(10, 1)
    source = BatchSource(x, x.clone(), E=2, mode="stream", seed=3)
    seen = torch.cat([source.next(3)[0][..., 0] for _ in range(10)], 1)  # 30 samples: 3 passes
    for member in seen:
        passes = [member[10 * k : 10 * (k + 1)].tolist() for k in range(3)]
        assert all(sorted(p) == list(range(10)) for p in passes)
        assert passes[1] != passes[0] and passes[2] != passes[1] and passes[2] != passes[0]
    again = BatchSource(x, x.clone(), E=2, mode="stream", seed=3)
    assert torch.equal(torch.cat([again.next(3)[0][..., 0] for _ in range(10)], 1), seen)  # seeded


def test_a_chunk_longer_than_the_pool_still_gives_every_point_once_per_pass():
    """One chunk of 64 steps x 5 points over a 37-point pool spans 9 passes: each member's stream
    still holds every point exactly once per pass, and y stays each point's own."""
    from scalinglab.teacher_student.batches import BatchSource

    x = torch.arange(37.0).reshape(37, 1)
    source = BatchSource(x, x[:, 0] * 2, E=2, mode="stream", seed=3)
    xs, ys = source.chunk(64, 5)
    assert torch.equal(ys, xs[..., 0] * 2)
    for member in range(2):
        stream = xs[:, member, :, 0].reshape(-1)
        offset = int(stream[0])  # the member's own start in the stored order, first pass
        first = [(offset + i) % 37 for i in range(37)]
        assert stream[:37].tolist() == first
        for k in range(1, 8):
            assert sorted(stream[37 * k : 37 * (k + 1)].tolist()) == list(range(37))


@pytest.mark.parametrize("mode", ["stream", "sample"])
def test_a_chunk_of_batches_is_the_batches_of_its_steps(mode):
    """chunk(n, batch) draws exactly what n calls of next(batch) draw, across a pass boundary too."""
    from scalinglab.teacher_student.batches import BatchSource

    x = torch.randn(50, 3)
    y = torch.randn(50)
    chunked, stepped = (BatchSource(x, y, E=3, mode=mode, seed=7) for _ in range(2))
    parts = [chunked.chunk(7, 4), chunked.chunk(9, 4)]  # 64 points a member: past the 50-point pool
    xs, ys = torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts])
    for step in range(16):
        x_step, y_step = stepped.next(4)
        assert torch.equal(xs[step], x_step) and torch.equal(ys[step], y_step)
