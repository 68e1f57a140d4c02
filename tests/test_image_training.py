"""Training the ConvNet family on images: learning on sklearn digits, the tidy frame, determinism,
the P subset, augmentation against torchvision, the fast forward against ConvNet, divergence."""

from __future__ import annotations

import math

import pandas as pd
import pytest
import torch
import torch.nn.functional as F
import torchvision.transforms.functional as TF

from scalinglab.core.errors import UserError
from scalinglab.core.seeding import derive_seed
from scalinglab.datasets import image_data, sources
from scalinglab.datasets.image_data import ImageData
from scalinglab.images import batches
from scalinglab.images import training as images
from scalinglab.images.batches import BatchStream
from scalinglab.images.convnet import ConvNet, param_count

# Fast enough settings for digits (1,438 training images): 45 steps per epoch.
FAST = dict(batch=32, lr=3e-3, augment="crop", device="cpu")


@pytest.fixture(scope="module")
def digits(tmp_path_factory) -> ImageData:
    return sources.load("digits", tmp_path_factory.mktemp("datasets"))


@pytest.fixture(scope="module")
def trained(digits) -> pd.DataFrame:
    return images.train_cells(digits, widths=[2, 4], seeds=[0, 1], P=None, epochs=4, **FAST)


def test_the_family_needs_12_pixels_so_digits_are_upsampled_to_16(digits):
    with pytest.raises(UserError, match="at least 12"):
        ConvNet(2, (1, 8, 8))
    up = batches.upsample_small(digits)
    assert up.shape == (1, 16, 16) and up.train_x.dtype == torch.uint8
    for dy in (0, 1):  # every pixel became a 2×2 block
        for dx in (0, 1):
            assert torch.equal(up.train_x[:, :, dy::2, dx::2], digits.train_x)
            assert torch.equal(up.test_x[:, :, dy::2, dx::2], digits.test_x)
    assert batches.default_padding(up) == 2
    big = ImageData(
        "x",
        torch.zeros(2, 3, 32, 32, dtype=torch.uint8),
        torch.zeros(2),
        torch.zeros(1, 3, 32, 32),
        torch.zeros(1),
        ["a"],
        {},
    )
    assert batches.upsample_small(big) is big and batches.default_padding(big) == 4
    series = ImageData("s", torch.zeros(2, 1, 40), torch.zeros(2), torch.zeros(1, 1, 40), torch.zeros(1), ["a"], {})
    with pytest.raises(UserError, match="needs images"):
        batches.upsample_small(series)


def test_training_on_digits_learns(trained, digits):
    assert list(trained.columns) == images.COLUMNS
    assert len(trained) == 2 * 2 * 4
    assert (trained["status"] == "ok").all() and (trained["P"] == digits.n_train).all()
    for c in (2, 4):
        n = trained.loc[trained["width"] == c, "N"]
        assert (n == param_count(c, (1, 16, 16), 10)).all()
        assert n.iloc[0] == sum(p.numel() for p in ConvNet(c, (1, 16, 16), 10).parameters())
    for (c, seed), cell in trained.groupby(["width", "seed"]):
        cell = cell.sort_values("epoch")
        assert list(cell["epoch"]) == [1, 2, 3, 4]
        assert list(cell["samples"]) == [digits.n_train * e for e in (1, 2, 3, 4)]
        first, last = cell.iloc[0], cell.iloc[-1]
        # chance is 10% and ln 10 = 2.30; these tiny nets reach 72-88% in 4 epochs
        assert last["val_acc"] > 0.6, (c, seed, last["val_acc"])
        assert last["val_loss"] < first["val_loss"] - 0.5 and last["val_loss"] < math.log(10) - 1
        assert last["train_loss"] < first["train_loss"] - 0.5 and last["train_acc"] > first["train_acc"] + 0.2
        assert cell["seconds"].is_monotonic_increasing


def test_same_call_twice_gives_identical_numbers(digits):
    args = dict(widths=[2], seeds=[0, 1], P=300, epochs=2, **FAST)
    first = images.train_cells(digits, **args).drop(columns="seconds")
    second = images.train_cells(digits, **args).drop(columns="seconds")
    pd.testing.assert_frame_equal(first, second, check_exact=True)
    other = images.train_cells(digits, **{**args, "seeds": [5, 1, 2]}).drop(columns="seconds")
    # a cell's numbers depend on its own seed only, not on the other seeds in the call
    pd.testing.assert_frame_equal(
        other[other["seed"] == 1].reset_index(drop=True),
        first[first["seed"] == 1].reset_index(drop=True),
        check_exact=True,
    )
    assert not other[other["seed"] == 2]["val_loss"].equals(first[first["seed"] == 0]["val_loss"])


class Interrupted(Exception):
    pass


@pytest.mark.parametrize("ensemble", [False, True])
def test_interrupted_training_resumes_from_its_checkpoint_with_identical_numbers(digits, tmp_path, ensemble):
    """A call stopped after width 3's second epoch (a checkpoint is saved after every epoch) and rerun
    gives the frame of an uninterrupted call, bit for bit. The
    interruption is an exception from the progress callback, i.e. in the loop, after the save."""
    args = dict(widths=[2, 3], seeds=[0, 1], P=200, epochs=4, ensemble=ensemble, **FAST)
    expected = images.train_cells(digits, **args).drop(columns="seconds")
    ckpt = tmp_path / "images.pt"
    resumed_rows = []

    def stop_in_width_3(row):
        if row["width"] == 3 and row["epoch"] == 3:
            raise Interrupted

    with pytest.raises(Interrupted):
        images.train_cells(digits, **args, progress=stop_in_width_3, checkpoint=ckpt, checkpoint_every_s=0)
    assert ckpt.exists()
    frame = images.train_cells(digits, **args, progress=resumed_rows.append, checkpoint=ckpt, checkpoint_every_s=0)
    pd.testing.assert_frame_equal(frame.drop(columns="seconds"), expected, check_exact=True)
    # width 2 and the interrupted run's first two epochs are not redone (alone, seed 1 of width 3 is a later run)
    assert {(r["width"], r["seed"], r["epoch"]) for r in resumed_rows if r["seed"] == 0} == {(3, 0, 3), (3, 0, 4)}
    assert ckpt.exists()  # its caller removes it once the result is stored (images_stage.train_bundle does)
    ckpt.unlink()
    # a checkpoint of other settings is ignored: the run starts over
    with pytest.raises(Interrupted):
        images.train_cells(digits, **args, progress=stop_in_width_3, checkpoint=ckpt, checkpoint_every_s=0)
    resumed_rows.clear()
    other = images.train_cells(digits, **{**args, "lr": 1e-3}, progress=resumed_rows.append, checkpoint=ckpt)
    assert len(resumed_rows) == len(other) == 2 * 2 * 4


def test_each_epoch_sees_exactly_the_P_subset(digits, monkeypatch):
    seen = []
    batch = batches.DeviceData.batch

    def spy(self, index, *args):
        seen.append(index.clone())
        return batch(self, index, *args)

    monkeypatch.setattr(batches.DeviceData, "batch", spy)
    frame = images.train_cells(digits, widths=[2], seeds=[3], P=200, epochs=2, **FAST)
    assert list(frame["P"]) == [200, 200] and list(frame["samples"]) == [200, 400]
    subset = image_data.subset_indices(digits.train_y, 200, derive_seed("image-subset", "digits", 3))
    sizes = [len(i) for i in seen]
    assert sizes == [32] * 6 + [8] + [32] * 6 + [8]  # the last partial batch is kept, as DataLoader does
    first, second = torch.cat(seen[:7]), torch.cat(seen[7:])
    assert torch.equal(first.sort().values, subset) and torch.equal(second.sort().values, subset)
    assert not torch.equal(first, second)  # reshuffled every epoch


def test_ensemble_path_matches_separate_models(digits):
    args = dict(widths=[2], seeds=[0, 1], P=300, epochs=2, **FAST)
    separate = images.train_cells(digits, ensemble=False, **args)
    together = images.train_cells(digits, ensemble=True, **args).sort_values(["seed", "epoch"], ignore_index=True)
    assert (together["status"] == "ok").all()
    for column in ("train_loss", "train_acc", "val_loss", "val_acc"):
        # same initial weights and batches; grouped convolutions only round differently
        assert (together[column] - separate[column]).abs().max() < 1e-4, column


def test_evaluation_in_either_layout_and_any_chunking_gives_the_full_test_loss(digits):
    """A CPU evaluates narrow models in NCHW (a copy; training stays channels_last) in chunks of 256:
    the same summed loss and hit count as one plain forward over the whole test set, up to rounding."""
    data = batches.DeviceData.build(batches.upsample_small(digits), torch.device("cpu"), torch.channels_last)
    model = ConvNet.create(3, tuple(data.train_x.shape[1:]), 10, seed=2).to(memory_format=torch.channels_last)
    with torch.no_grad():
        logits = model(data.test_x)
    expected_loss = float(F.cross_entropy(logits, data.test_y, reduction="sum"))
    expected_hits = int((logits.argmax(1) == data.test_y).sum())
    assert len(data.test_y) > images.EVAL_CHUNK["cpu"]  # several chunks, the last one partial

    def evaluate(net, x, y):
        out = images.forward(net, x)
        return F.cross_entropy(out, y, reduction="sum").unsqueeze(0), (out.argmax(1) == y).sum().unsqueeze(0)

    for layout in (torch.contiguous_format, torch.channels_last):
        loss, hits = images._evaluate(model, evaluate, data, 1, layout)
        assert abs(float(loss[0]) - expected_loss) < 1e-5 * expected_loss and int(hits[0]) == expected_hits
        assert model.conv2.weight.is_contiguous(memory_format=torch.channels_last)  # the trained model is untouched


def test_flip_crop_matches_torchvision_and_keeps_shapes():
    gen = torch.Generator().manual_seed(0)
    for shape, padding in (((3, 8, 10), 2), ((1, 16, 16), 2), ((3, 32, 32), 4)):
        x = torch.randint(0, 256, (7, *shape), dtype=torch.uint8, generator=gen)
        flip = torch.rand(7, generator=gen) < 0.5
        shift = torch.randint(0, 2 * padding + 1, (2, 7), generator=gen)
        for flips in (flip, None):
            out = batches.flip_crop(x, flips, shift, padding)
            assert out.shape == x.shape and out.dtype == torch.uint8
            for i in range(7):
                img = TF.hflip(x[i]) if flips is not None and flips[i] else x[i]
                ref = TF.crop(TF.pad(img, padding), int(shift[0, i]), int(shift[1, i]), *shape[1:])
                assert torch.equal(out[i], ref), (shape, i)
    centred = batches.flip_crop(x, torch.ones(7, dtype=torch.bool), torch.full((2, 7), 4), 4)
    assert torch.equal(centred, x.flip(-1))


def test_batch_stream_draws_a_permutation_a_flip_and_a_crop_per_image():
    images_u8 = torch.randint(1, 256, (200, 3, 12, 12), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    order, flip, shift = BatchStream(torch.arange(200), seed=7, padding=4).epoch()
    assert sorted(order.tolist()) == list(range(200))  # every training example once per epoch
    # 200 images: flips ~ Binomial(200, 1/2), sd 7.1, so 100 ± 30 fails by chance with p < 1e-4
    assert 70 <= int(flip.sum()) <= 130
    assert set(shift.flatten().tolist()) == set(range(9))  # every offset 0..8 drawn
    assert len(set(map(tuple, shift.T.tolist()))) > 50  # per image, not one offset for the batch
    again = BatchStream(torch.arange(200), seed=7, padding=4).epoch()
    other = BatchStream(torch.arange(200), seed=8, padding=4).epoch()
    assert all(torch.equal(a, b) for a, b in zip((order, flip, shift), again))
    assert not torch.equal(order, other[0]) and not torch.equal(shift, other[2])
    # the augmented batch is each image mirrored where drawn and cropped at its drawn offset
    out = batches.flip_crop(images_u8[order], flip, shift, 4)
    for i in range(0, 200, 17):
        padded = F.pad(images_u8[order[i]].flip(-1) if flip[i] else images_u8[order[i]], (4,) * 4)
        assert torch.equal(out[i], padded[:, shift[0, i] : shift[0, i] + 12, shift[1, i] : shift[1, i] + 12])


def test_fast_forward_equals_convnet():
    for shape in ((1, 16, 16), (3, 32, 32)):
        model = ConvNet.create(3, shape, 10, seed=1).to(memory_format=torch.channels_last)
        x = torch.randn(16, *shape).contiguous(memory_format=torch.channels_last)
        x[:, :, :4] = 0.0  # flat regions: ties inside pooling windows
        y = torch.randint(10, (16,))
        F.cross_entropy(model(x), y).backward()
        expected = [p.grad.clone() for p in model.parameters()]
        model.zero_grad()
        out = images.forward(model, x)
        F.cross_entropy(out, y).backward()
        assert torch.equal(out, model(x))
        assert all(torch.equal(p.grad, g) for p, g in zip(model.parameters(), expected))
        with torch.inference_mode():  # the evaluation path pools by element-wise maxima
            assert torch.equal(images.forward(model, x), model(x))
            odd = torch.randn(4, 5, 7, 9)
            assert torch.equal(images._max_pool(odd), F.max_pool2d(odd, 2))


def test_divergence_is_flagged_and_blanked(digits):
    frame = images.train_cells(
        digits, widths=[2], seeds=[0], P=64, epochs=3, batch=32, lr=1e30, augment="none", device="cpu"
    )
    assert len(frame) == 3 and (frame["status"] == "diverged").all()
    assert frame["val_loss"].isna().all() and list(frame["epoch"]) == [1, 2, 3]


def test_bad_arguments_are_user_errors(digits):
    base = dict(widths=[2], seeds=[0], P=None, epochs=1, augment="crop", device="cpu")
    with pytest.raises(UserError, match="augmentation"):
        images.train_cells(digits, **{**base, "augment": "rotate"})
    with pytest.raises(UserError, match="outside 1..1438"):
        images.train_cells(digits, **{**base, "P": 5000})
    with pytest.raises(UserError, match="distinct"):
        images.train_cells(digits, **{**base, "seeds": [1, 1]})
    with pytest.raises(UserError, match="widths"):
        images.train_cells(digits, **{**base, "widths": [0]})
