"""Train Liu's ConvNet family on image datasets, fast; one tidy row per (width, seed, epoch).

The recipe is Liu's CIFAR-10 script (github yuxi-liu-wired/scaling-law-by-data-manifold): AdamW
(lr 5e-4, PyTorch's default weight decay 0.01), batch 128 with the last partial batch kept
(DataLoader's default), cross-entropy, random flip + 4-pixel-padded crop, per-epoch evaluation on
the test split. Three deliberate differences:
  - validation images are NOT augmented (Liu's val_loader reused the training transform);
  - losses are per-example means (Liu's script averaged batch means, over-weighting the last batch);
  - inputs are normalised with the dataset's per-channel mean/std (Liu's used 0.5/0.5).
train_loss/train_acc are averages over the epoch's (augmented) training batches while the weights
move, as Liu's TensorBoard scalars were; no extra clean pass over the training set.

Why it is fast: the images stay on the device as uint8; each batch is gathered, augmented (one
indexing op for crop + flip) and normalised there, with no DataLoader or per-image transforms (these
cost a plain loop ~200 µs per image on a small CPU, more than the model step); evaluation runs in
cache-sized chunks (narrow models in NCHW on a CPU) with a cheaper max-pool; AdamW is fused. On
CPU each model trains alone in channels_last layout (oneDNN's grouped convolutions are slower than
separate models there, except at c = 1); on CUDA the seeds of one width train as one
ConvNetEnsemble (grouped convolutions), because there these small convolutions are launch-bound.
Call torch.set_num_threads(1) per process on small CPUs: these convolutions are too small to share
between threads. benchmarks/cnn.py measures the gain.

Random streams, all derived from the cell's keys (so a cell's numbers do not depend on which other
cells share the call): the training subset from (dataset, seed), nested across P; the batch order
and augmentation draws from (dataset, seed), shared by all widths (paired comparisons across N);
the initial weights from (dataset, width, seed).
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable, Sequence

import pandas as pd
import torch
import torch.nn.functional as F

from scalinglab.core.checkpoint import Checkpointer, fingerprint
from scalinglab.core.devices import pick_device
from scalinglab.core.errors import UserError
from scalinglab.core.seeding import derive_seed
from scalinglab.datasets.image_data import ImageData, subset_indices
from scalinglab.images.batches import BatchStream, DeviceData, default_padding, upsample_small
from scalinglab.images.convnet import ConvNet, ConvNetEnsemble, member_losses, param_count

AUGMENTATIONS = ("flip_crop", "crop", "none")
# Test images per evaluation forward pass: on a CPU, chunks whose activations stay in cache (on a
# 2-core EPYC, 256 against 1000: 10% slower at c = 1, 1.1x faster at c = 6, 1.8x at c = 12, 1.5x
# at c = 20); on a GPU, large chunks (launch-bound).
EVAL_CHUNK = {"cpu": 256, "other": 1000}
# oneDNN's forward on few channels is faster in NCHW than in channels_last (at c = 1, 2, 4, 6:
# 94/105/159/225 against 142/173/181/265 ms per 10k 28x28 images), so a CPU evaluates narrow
# models in NCHW while training them in channels_last (faster for their backward pass).
EVAL_NCHW_MAX_C = 6
COLUMNS = [
    "width",
    "N",
    "P",
    "seed",
    "epoch",
    "samples",
    "train_loss",
    "train_acc",
    "val_loss",
    "val_acc",
    "status",
    "seconds",
]


# ---------------------------------------------------------------- training


def train_cells(
    data: ImageData,
    *,
    widths: Sequence[int],
    seeds: Sequence[int],
    P: int | None,
    epochs: int,
    augment: str | bool,
    batch: int = 128,
    lr: float = 5e-4,
    weight_decay: float = 0.01,
    padding: int | None = None,
    device: str | torch.device = "auto",
    ensemble: str | bool = "auto",
    progress: Callable[[dict], None] | None = None,
    checkpoint=None,
    checkpoint_every_s: float = 300.0,
) -> pd.DataFrame:
    """Train ConvNet(c) for every width c and seed on a seeded subset of P training images (None:
    all of them); return one row per (width, seed, epoch) with columns COLUMNS.

    augment: "flip_crop" (natural images, clothes), "crop" (digits, letters: a mirrored one is
    another symbol), "none";
    True/False mean "flip_crop"/"none". padding: crop padding in pixels (default_padding if None).
    ensemble: train the seeds of one width as one ConvNetEnsemble; "auto" does so on CUDA only.
    progress(row) is called after every epoch of every cell. Rows of a cell whose loss became
    NaN/inf are marked status "diverged" (all of its rows) and hold NaN from that epoch on.
    checkpoint: a file where the state after an epoch is saved every checkpoint_every_s seconds
    (one width at a time; rows of widths already done included); a rerun of the same call resumes
    there and returns the numbers an uninterrupted run gives (except `seconds`).
    The caller removes the file once it has stored the result (so a crash in between loses nothing).
    """
    augment = _check_augment(augment)
    widths, seeds = _check_cells(widths, seeds, epochs, batch)
    data = upsample_small(data)
    n_train = data.n_train
    P = n_train if P is None else int(P)
    if not 1 <= P <= n_train:
        raise UserError(f"P = {P} is outside 1..{n_train} (the training set of {data.name})")
    padding = default_padding(data) if padding is None else int(padding)
    dev = pick_device(str(device)) if not isinstance(device, torch.device) else device
    use_ensemble = dev.type == "cuda" if ensemble == "auto" else bool(ensemble)
    memory_format = torch.channels_last if dev.type == "cpu" else torch.contiguous_format
    on_device = DeviceData.build(data, dev, memory_format)
    subsets = {s: subset_indices(data.train_y, P, derive_seed("image-subset", data.name, s)).to(dev) for s in seeds}
    key = (
        fingerprint(
            data.train_x,
            data.train_y,
            data.test_y,
            widths,
            seeds,
            P,
            epochs,
            batch,
            lr,
            weight_decay,
            augment,
            padding,
            dev.type,
            use_ensemble,
        )
        if checkpoint
        else ""
    )  # hashing the data costs
    with Checkpointer(checkpoint, checkpoint_every_s, key) as saver:  # its lock is held until training ends
        resumed = saver.load()
        frames = list(resumed["frames"]) if resumed else []
        settings = dict(
            data=on_device,
            P=P,
            epochs=epochs,
            batch=batch,
            lr=lr,
            weight_decay=weight_decay,
            augment=augment,
            padding=padding,
            n_classes=data.n_classes,
            progress=progress,
        )

        groups = []  # (width, seeds) trained together: a width's ensemble, or one seed alone
        for c in widths:
            groups += [(c, list(seeds))] if use_ensemble else [(c, [s]) for s in seeds]
        for c, group in groups[len(frames) :]:  # the groups a resumed run has finished are in `frames`
            init_seeds = [derive_seed("convnet-init", data.name, c, s) for s in group]
            streams = [BatchStream(subsets[s], derive_seed("image-batches", data.name, s), padding) for s in group]
            train = _train_ensemble if use_ensemble else _train_single
            resume, resumed = (resumed["group"] if resumed else None), None  # only the first group resumes

            def checkpoint_after(epoch, group_state, c=c):  # group_state() builds the state only when saving
                if saver.due(epoch, check_every=1):
                    saver.save({"step": f"width {c}, epoch {epoch}", "frames": frames, "group": group_state()})

            frames.append(
                train(c, group, init_seeds, streams, checkpoint_after=checkpoint_after, resume=resume, **settings)
            )
        return pd.concat(frames, ignore_index=True)[COLUMNS]


def forward(model: ConvNet, x: torch.Tensor) -> torch.Tensor:
    """ConvNet.forward computed faster on CPU, with the same values and gradients:
    - each max-pool comes before its ReLU (they commute exactly), so the ReLU sees 4× fewer elements;
    - without autograd (evaluation) the 2×2 max-pool is an element-wise maximum of four strided
      views, ~5× faster than max_pool2d for few channels."""
    x = F.relu(_max_pool(model.conv1(x)))
    x = F.relu(_max_pool(model.conv2(x)))
    x = F.relu(model.conv3(x))
    x = F.relu(model.fc1(x.flatten(1)))
    return model.fc2(x)


def _max_pool(x: torch.Tensor) -> torch.Tensor:
    """2×2 max-pool, stride 2, odd edges dropped (max_pool2d's floor mode)."""
    if torch.is_grad_enabled():
        return F.max_pool2d(x, 2)  # its backward routes each gradient to the first maximum
    h, w = x.shape[2] // 2 * 2, x.shape[3] // 2 * 2
    top = torch.maximum(x[:, :, 0:h:2, 0:w:2], x[:, :, 0:h:2, 1:w:2])
    return torch.maximum(top, torch.maximum(x[:, :, 1:h:2, 0:w:2], x[:, :, 1:h:2, 1:w:2]))


def _train_single(c, seeds, init_seeds, streams, *, data: DeviceData, n_classes, **settings) -> pd.DataFrame:
    """One ConvNet, alone (the CPU path)."""
    model = ConvNet.create(c, tuple(data.train_x.shape[1:]), n_classes, init_seeds[0])
    model = model.to(data.train_x.device, memory_format=data.memory_format)

    def losses(x, y):
        logits = forward(model, x)
        loss = F.cross_entropy(logits, y)
        return loss.unsqueeze(0), (logits.argmax(1) == y).sum().unsqueeze(0)

    def evaluate(net, x, y):
        logits = forward(net, x)
        return F.cross_entropy(logits, y, reduction="sum").unsqueeze(0), (logits.argmax(1) == y).sum().unsqueeze(0)

    nchw = data.train_x.device.type == "cpu" and c <= EVAL_NCHW_MAX_C
    eval_format = torch.contiguous_format if nchw else data.memory_format
    return _run(
        model,
        losses,
        evaluate,
        c,
        seeds,
        streams,
        stacked=False,
        data=data,
        n_classes=n_classes,
        eval_format=eval_format,
        **settings,
    )


def _train_ensemble(c, seeds, init_seeds, streams, *, data: DeviceData, n_classes, **settings) -> pd.DataFrame:
    """All seeds of width c as one ConvNetEnsemble, each member on its own batches (the CUDA path)."""
    model = ConvNetEnsemble.create(c, init_seeds, tuple(data.train_x.shape[1:]), n_classes)
    model = model.to(data.train_x.device)

    def losses(x, y):  # x (E, B, C, H, W), y (E, B)
        logits = model(x)
        return member_losses(logits, y), (logits.argmax(2) == y).sum(1)

    def evaluate(net, x, y):  # x (B, C, H, W) shown to every member
        logits = net(x)
        e, b, k = logits.shape
        loss = F.cross_entropy(logits.reshape(e * b, k), y.repeat(e), reduction="none").view(e, b).sum(1)
        return loss, (logits.argmax(2) == y).sum(1)

    return _run(
        model,
        losses,
        evaluate,
        c,
        seeds,
        streams,
        stacked=True,
        data=data,
        n_classes=n_classes,
        eval_format=data.memory_format,
        **settings,
    )


def _run(
    model,
    losses,
    evaluate,
    c,
    seeds,
    streams,
    *,
    stacked: bool,
    data: DeviceData,
    P,
    epochs,
    batch,
    lr,
    weight_decay,
    augment,
    padding,
    n_classes,
    progress,
    checkpoint_after,
    resume,
    eval_format,
) -> pd.DataFrame:
    """The loop shared by both paths: E = len(seeds) members, losses() giving per-member means;
    `stacked` batches are (E, B, ...), else the one member's (B, ...); evaluate(net, x, y) runs on
    the test images in `eval_format`.

    Metrics accumulate in device tensors and are read once per epoch, so a CUDA step never waits.
    After an epoch, checkpoint_after(epoch, state) may save state() (built only then); `resume` (such a
    state) continues one.
    """
    dev = data.train_x.device
    e = len(seeds)
    n_params = param_count(c, tuple(data.train_x.shape[1:]), n_classes)
    # fused: one kernel per tensor, the step 3-4x faster on CPU; same update as the default loop
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay, fused=True)
    diverged = [False] * e
    rows = []
    first_epoch, seconds_before = 1, 0.0
    if resume is not None:
        model.load_state_dict(resume["model"])
        optimizer.load_state_dict(resume["optimizer"])
        for stream, generator_state in zip(streams, resume["generators"]):
            stream.generator.set_state(generator_state)
        rows, diverged = resume["rows"], resume["diverged"]
        first_epoch, seconds_before = resume["epoch"] + 1, resume["seconds"]
    started = time.perf_counter() - seconds_before
    for epoch in range(first_epoch, epochs + 1):
        draws = [stream.epoch() for stream in streams]
        order = torch.stack([d[0] for d in draws])  # (E, P)
        flip = torch.stack([d[1] for d in draws])
        shift = torch.stack([d[2] for d in draws], dim=1)  # (2, E, P)
        loss_sum = torch.zeros(e, dtype=torch.float64, device=dev)
        correct = torch.zeros(e, dtype=torch.int64, device=dev)
        model.train()
        for start in range(0, P, batch):
            part = slice(start, start + batch)
            index = order[:, part] if stacked else order[0, part]
            x, y = data.batch(index, flip[:, part], shift[:, :, part], augment, padding)
            loss, hits = losses(x, y)
            optimizer.zero_grad(set_to_none=True)
            loss.sum().backward()
            optimizer.step()
            loss_sum += loss.detach() * y.shape[-1]
            correct += hits
        val_loss, val_correct = _evaluate(model, evaluate, data, e, eval_format)
        model.train()
        train_loss = (loss_sum / P).tolist()
        train_acc = (correct.double() / P).tolist()
        val_loss = (val_loss / len(data.test_y)).tolist()
        val_acc = (val_correct.double() / len(data.test_y)).tolist()
        seconds = time.perf_counter() - started
        for m, seed in enumerate(seeds):
            row = dict(
                width=c,
                N=n_params,
                P=P,
                seed=seed,
                epoch=epoch,
                samples=P * epoch,
                train_loss=train_loss[m],
                train_acc=train_acc[m],
                val_loss=val_loss[m],
                val_acc=val_acc[m],
                seconds=seconds,
            )
            diverged[m] = diverged[m] or not (math.isfinite(row["train_loss"]) and math.isfinite(row["val_loss"]))
            if diverged[m]:
                row.update(train_loss=float("nan"), train_acc=float("nan"), val_loss=float("nan"), val_acc=float("nan"))
            rows.append(row)
            if progress is not None:
                progress(row)
        if epoch < epochs and not all(diverged):
            checkpoint_after(
                epoch,
                lambda: {
                    "epoch": epoch,
                    "seconds": seconds,
                    "rows": rows,
                    "diverged": diverged,
                    "model": model.state_dict(),
                    "optimizer": optimizer.state_dict(),
                    "generators": [stream.generator.get_state() for stream in streams],
                },
            )
        if all(diverged):  # nothing left to learn; the remaining epochs are NaN rows
            last = rows[-e:]
            for later in range(epoch + 1, epochs + 1):
                rows.extend([dict(row, epoch=later, samples=P * later) for row in last])
            break
    frame = pd.DataFrame(rows)
    bad = {seed for seed, d in zip(seeds, diverged) if d}
    frame["status"] = ["diverged" if s in bad else "ok" for s in frame["seed"]]
    return frame


@torch.inference_mode()
def _evaluate(model, evaluate, data: DeviceData, e: int, eval_format) -> tuple[torch.Tensor, torch.Tensor]:
    """Summed cross-entropy and correct count of every member over the clean test set, with the
    model and images in `eval_format` (a copy of the model where that is not its training layout)."""
    model.eval()
    net = model if eval_format == data.memory_format else copy.deepcopy(model).to(memory_format=eval_format)
    dev = data.test_x.device
    chunk = EVAL_CHUNK["cpu" if dev.type == "cpu" else "other"]
    loss = torch.zeros(e, dtype=torch.float64, device=dev)
    correct = torch.zeros(e, dtype=torch.int64, device=dev)
    for start in range(0, len(data.test_y), chunk):
        x = data.test_x[start : start + chunk].contiguous(memory_format=eval_format)
        chunk_loss, chunk_correct = evaluate(net, x, data.test_y[start : start + chunk])
        loss += chunk_loss
        correct += chunk_correct
    return loss, correct


# ---------------------------------------------------------------- checks


def _check_augment(augment) -> str:
    if augment is True:
        return "flip_crop"
    if augment is False:
        return "none"
    if augment not in AUGMENTATIONS:
        raise UserError(f"unknown augmentation {augment!r}; choose one of {', '.join(AUGMENTATIONS)}")
    return augment


def _check_cells(widths, seeds, epochs, batch) -> tuple[list[int], list[int]]:
    widths, seeds = [int(c) for c in widths], [int(s) for s in seeds]
    if not widths or min(widths) < 1:
        raise UserError(f"widths must be a non-empty list of channel counts >= 1, got {widths}")
    if not seeds or len(set(seeds)) != len(seeds):
        raise UserError(f"seeds must be a non-empty list of distinct integers, got {seeds}")
    if epochs < 1 or batch < 1:
        raise UserError(f"epochs and batch must be at least 1, got epochs={epochs}, batch={batch}")
    return widths, seeds
