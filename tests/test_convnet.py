"""Liu's ConvNet family: exact parameter counts, and the batched ensemble against its members."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from scalinglab.core.errors import UserError
from scalinglab.images.convnet import (
    SEED_WIDTHS,
    ConvNet,
    ConvNetEnsemble,
    member_losses,
    param_count,
)


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny convolutions on a shared 2-core machine run ~30× slower with 2 threads (oversubscription)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def n_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def test_seed_sizes_are_5408_to_115114():
    assert n_params(ConvNet(1)) == 5408 and param_count(1) == 5408
    assert n_params(ConvNet(20)) == 115114 and param_count(20) == 115114
    assert [param_count(c) for c in SEED_WIDTHS] == [54 * c * c + 4640 * c + 714 for c in SEED_WIDTHS]


@pytest.mark.parametrize(
    "c, in_shape, n_classes", [(3, (3, 32, 32), 10), (7, (1, 28, 28), 10), (2, (3, 32, 32), 100), (4, (3, 20, 24), 5)]
)
def test_closed_form_equals_numel(c, in_shape, n_classes):
    model = ConvNet(c, in_shape, n_classes)
    assert param_count(c, in_shape, n_classes) == n_params(model)
    assert model(torch.zeros(2, *in_shape)).shape == (2, n_classes)


def test_too_small_images_are_refused():
    with pytest.raises(UserError, match="8×8 are too small"):
        ConvNet(2, (1, 8, 8))


def test_create_is_seeded_and_leaves_global_rng_alone():
    torch.manual_seed(123)
    before = torch.rand(1)
    torch.manual_seed(123)
    a, b, other = ConvNet.create(3, seed=5), ConvNet.create(3, seed=5), ConvNet.create(3, seed=6)
    assert torch.equal(torch.rand(1), before)
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))
    assert not torch.equal(a.conv1.weight, other.conv1.weight)


def make_members(c=3, n=4, in_shape=(3, 32, 32), n_classes=10):
    return [ConvNet.create(c, in_shape, n_classes, seed=s) for s in range(n)]


def test_ensemble_forward_equals_members():
    members = make_members()
    ensemble = ConvNetEnsemble.from_members(members)
    gen = torch.Generator().manual_seed(0)
    shared = torch.randn(16, 3, 32, 32, generator=gen)
    own = torch.randn(4, 16, 3, 32, 32, generator=gen)

    out_shared, out_own = ensemble(shared), ensemble(own)

    assert out_shared.shape == (4, 16, 10)
    expected_shared = torch.stack([m(shared) for m in members])
    expected_own = torch.stack([m(x) for m, x in zip(members, own)])
    torch.testing.assert_close(out_shared, expected_shared, rtol=0, atol=1e-5)
    torch.testing.assert_close(out_own, expected_own, rtol=0, atol=1e-5)
    assert n_params(ensemble) == 4 * param_count(3)


def test_member_round_trip_is_exact_and_create_matches_members():
    members = make_members(c=2, n=3, in_shape=(1, 28, 28), n_classes=7)
    ensemble = ConvNetEnsemble.from_members(members)
    for i, original in enumerate(members):
        copy = ensemble.member(i)
        assert all(torch.equal(p, q) for p, q in zip(copy.parameters(), original.parameters()))
    created = ConvNetEnsemble.create(2, seeds=[0, 1, 2], in_shape=(1, 28, 28), n_classes=7)
    assert all(torch.equal(p, q) for p, q in zip(created.parameters(), ensemble.parameters()))


def test_ensemble_training_steps_equal_separate_training():
    """Summed member losses give each member exactly its own gradient, so SGD steps on the ensemble
    move every member as if trained alone (AdamW is element-wise too, but its g/sqrt(v) amplifies
    float rounding of near-zero gradients, so SGD makes the sharper test)."""
    members = make_members(c=2, n=3)
    ensemble = ConvNetEnsemble.from_members(members)
    gen = torch.Generator().manual_seed(1)
    opt_ens = torch.optim.SGD(ensemble.parameters(), lr=0.1, momentum=0.9)
    opts = [torch.optim.SGD(m.parameters(), lr=0.1, momentum=0.9) for m in members]
    for _ in range(3):
        x = torch.randn(3, 8, 3, 32, 32, generator=gen)
        y = torch.randint(0, 10, (3, 8), generator=gen)
        opt_ens.zero_grad()
        losses = member_losses(ensemble(x), y)
        losses.sum().backward()
        opt_ens.step()
        for m, opt, xi, yi, loss in zip(members, opts, x, y, losses):
            opt.zero_grad()
            alone = F.cross_entropy(m(xi), yi)
            torch.testing.assert_close(loss, alone, rtol=0, atol=1e-5)
            alone.backward()
            opt.step()
    moved = 0.0
    for i, m in enumerate(members):
        for p, q, start in zip(ensemble.member(i).parameters(), m.parameters(), make_members(c=2, n=3)[i].parameters()):
            torch.testing.assert_close(p, q, rtol=0, atol=1e-5)
            moved = max(moved, (q - start).abs().max().item())
    assert moved > 1e-3  # the steps did change the weights, so equality is not trivial


def test_member_losses_with_shared_labels():
    logits = torch.randn(2, 5, 4)
    labels = torch.tensor([0, 1, 2, 3, 0])
    expected = torch.stack([F.cross_entropy(logits[e], labels) for e in range(2)])
    torch.testing.assert_close(member_losses(logits, labels), expected)
