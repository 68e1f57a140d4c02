"""Training the deep nets for the implicit-bias laws (D'Amico, Bocchi & Negri), as the authors trained
them, with Bartlett's spectral complexity logged along training.

Training (train_runs): cross-entropy, batch 128 with the last partial batch kept, a fixed number of
epochs, the seeded stratified subset of P training images (image_data.subset_indices, nested across P
for one seed), tensors resident on the device (no DataLoader). At log-spaced optimiser steps from
step 0 (the initial network) to the last, it records the spectral complexity (log R; spectral.py,
power iteration warm-started from the previous log point), test error and loss on the test split,
and train error and loss on the training subset (eval mode, full pass): one tidy row per point.
Log-spaced steps put most points in the first epochs, where the norm is small and the
early-training law ε ≈ k1·λ^-γ1 lives.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from scalinglab.core.checkpoint import Checkpointer, fingerprint
from scalinglab.core.errors import UserError
from scalinglab.core.progress import Progress
from scalinglab.core.seeding import derive_seed
from scalinglab.datasets.image_data import ImageData, subset_indices, to_float
from scalinglab.deep_nets.models import AUTHORS_DEPTH, AUTHORS_WIDTH, build
from scalinglab.deep_nets.spectral import spectral_complexity

# the authors' optimisers and learning rates (github Francill99/deep_norm); weight decay 0 throughout
AUTHORS_LR = {"cnn": 1e-3, "resnet": 1e-3, "vit": 3e-4}
OPTIMIZER = {"cnn": torch.optim.Adam, "resnet": torch.optim.Adam, "vit": torch.optim.AdamW}
EVAL_CHUNK = 1000
COLUMNS = [
    "model",
    "dataset",
    "width",
    "depth",
    "N",
    "P",
    "seed",
    "step",
    "epoch",
    "samples",
    "log_norm",
    "norm",
    "test_error",
    "test_loss",
    "train_error",
    "train_loss",
    "spectral_converged",
    "status",
    "seconds",
]


# ---------------------------------------------------------------- training


def log_steps(total: int, n_logs: int) -> list[int]:
    """Step 0 (the initial network) and up to n_logs - 1 log-spaced steps in 1..total, total included."""
    if total < 1 or n_logs < 2:
        raise UserError(f"need at least one step and two log points, got {total} steps, {n_logs} log points")
    spaced = np.unique(np.round(np.geomspace(1, total, n_logs - 1)).astype(int))
    return [0, *spaced.tolist()]


@dataclass
class Split:
    """Normalised images and labels on the training device."""

    x: torch.Tensor
    y: torch.Tensor


@torch.no_grad()
def evaluate(net: nn.Module, split: Split) -> tuple[float, float]:
    """(error, mean cross-entropy) of `net` in eval mode over a whole split."""
    was_training = net.training
    net.eval()
    loss, wrong = 0.0, 0
    for start in range(0, len(split.y), EVAL_CHUNK):
        x, y = split.x[start : start + EVAL_CHUNK], split.y[start : start + EVAL_CHUNK]
        logits = net(x)
        loss += float(F.cross_entropy(logits, y, reduction="sum"))
        wrong += int((logits.argmax(1) != y).sum())
    net.train(was_training)
    return wrong / len(split.y), loss / len(split.y)


def train_runs(
    data: ImageData,
    *,
    model: str,
    P: int,
    seeds: Sequence[int],
    epochs: int,
    batch: int = 128,
    lr: float | None = None,
    width: int | None = None,
    depth: int | None = None,
    n_logs: int = 40,
    test_size: int | None = None,
    device: str | torch.device = "cpu",
    progress: Callable[[dict], None] | None = None,
    on_log: Callable[[nn.Module, dict], None] | None = None,
    checkpoint=None,
    checkpoint_every_s: float = 300.0,
    label: str | None = None,
) -> pd.DataFrame:
    """Train one network per seed on P images of `data`; one row per log point, columns COLUMNS.

    test_size: evaluate on a fixed stratified subset of this many test images (None: all).
    progress(row) is called at every log point; on_log(network, row) too, with the network as it is
    there (for checks; do not modify it). label: name the job in progress lines on stderr (rate and
    ETA over all seeds' optimiser steps, core/progress.py); None: silent.
    A run whose training loss turns NaN/inf stops there; all its rows get status "diverged".
    checkpoint: a file where the state after an epoch is saved every checkpoint_every_s seconds (the
    finished seeds' rows included); a rerun of the same call resumes there and returns the numbers
    an uninterrupted call gives (except `seconds`). The caller removes the file once it has stored the
    result (so a crash in between loses nothing).
    """
    if data.train_x.dim() != 4:
        raise UserError(f"{data.name}: the deep-net families need images (N, C, H, W); its examples are {data.shape}")
    seeds = [int(s) for s in seeds]
    if not seeds or len(set(seeds)) != len(seeds):
        raise UserError(f"seeds must be a non-empty list of distinct integers, got {seeds}")
    if not 1 <= int(P) <= data.n_train:
        raise UserError(f"P = {P} is outside 1..{data.n_train} (the training set of {data.name})")
    if epochs < 1 or batch < 1:
        raise UserError(f"epochs and batch must be at least 1, got epochs={epochs}, batch={batch}")
    P, lr = int(P), AUTHORS_LR[model] if lr is None else float(lr)
    dev = torch.device(device)
    test_x, test_y = data.test_x, data.test_y
    if test_size is not None and test_size < len(test_y):
        keep = subset_indices(test_y, int(test_size), derive_seed("deepnets-test", data.name))
        test_x, test_y = test_x[keep], test_y[keep]
    test = Split(to_float(test_x, data.mean, data.std, dev), test_y.to(dev))
    key = (
        fingerprint(
            data.train_x, data.train_y, test_y, model, P, seeds, epochs, batch, lr, width, depth, n_logs, dev.type
        )
        if checkpoint
        else ""
    )  # hashing the data costs
    with Checkpointer(checkpoint, checkpoint_every_s, key) as saver:  # its lock is held until training ends
        resumed = saver.load()
        frames = list(resumed["frames"]) if resumed else []
        per_seed = epochs * math.ceil(P / batch)
        done = len(frames) * per_seed + (resumed["run"]["step"] if resumed else 0)
        watch = Progress(label, len(seeds) * per_seed, "steps", done=done)
        for s in seeds[len(frames) :]:  # a resumed call has the finished seeds' frames already
            base = len(frames) * per_seed  # steps of the seeds before this one
            run_state, resumed = (resumed["run"] if resumed else None), None  # only the first run resumes

            def checkpoint_after(epoch, run_state, s=s):  # run_state() builds the state only when saving
                if saver.due(epoch, check_every=1):
                    state = run_state()
                    saver.save({"step": f"seed {s}, step {state['step']}", "frames": frames, "run": state})

            frames.append(
                _train_one(
                    data,
                    test,
                    model=model,
                    P=P,
                    seed=s,
                    epochs=epochs,
                    batch=batch,
                    lr=lr,
                    width=width,
                    depth=depth,
                    n_logs=n_logs,
                    dev=dev,
                    progress=progress,
                    on_log=on_log,
                    checkpoint_after=checkpoint_after,
                    resume=run_state,
                    after_epoch=lambda step, row, s=s, base=base: watch.update(base + step, lambda: _note(s, row)),
                )
            )
        watch.finish()
        return pd.concat(frames, ignore_index=True)[COLUMNS]


def _note(seed, row: dict) -> str:
    """The last logged point of a run, for progress lines."""
    return f"seed {seed} at step {row['step']}: log R {row['log_norm']:.3f}, test error {row['test_error']:.4f}"


def _train_one(
    data: ImageData,
    test: Split,
    *,
    model,
    P,
    seed,
    epochs,
    batch,
    lr,
    width,
    depth,
    n_logs,
    dev,
    progress,
    on_log,
    checkpoint_after,
    resume: dict | None,
    after_epoch=None,
) -> pd.DataFrame:
    """One seed: its subset (nested across P), init and batch order all derived from the cell's keys.
    After an epoch, checkpoint_after(epoch, state) may save state() (built only then); `resume` (such a
    state) continues one."""
    idx = subset_indices(data.train_y, P, derive_seed("deepnets-subset", data.name, seed))
    train = Split(to_float(data.train_x[idx], data.mean, data.std, dev), data.train_y[idx].to(dev))
    net = build(
        model, data.shape, data.n_classes, width, depth, seed=derive_seed("deepnets-init", model, data.name, seed)
    )
    net = net.to(dev)
    n_params = sum(p.numel() for p in net.parameters())
    optimizer = OPTIMIZER[model](net.parameters(), lr=lr, weight_decay=0.0)  # AdamW's default would be 0.01
    order_gen = torch.Generator(device="cpu").manual_seed(derive_seed("deepnets-batches", data.name, seed))
    per_epoch = math.ceil(P / batch)
    total = epochs * per_epoch
    logs = set(log_steps(total, n_logs))
    keys = dict(
        model=model,
        dataset=data.name,
        width=width or AUTHORS_WIDTH[model],
        depth=depth or AUTHORS_DEPTH[model],
        N=n_params,
        P=P,
        seed=seed,
    )
    rows, state, status = [], None, "ok"
    first_epoch, step, seconds_before = 0, 0, 0.0
    if resume is not None:
        net.load_state_dict(resume["net"])
        optimizer.load_state_dict(resume["optimizer"])
        order_gen.set_state(resume["order_gen"])
        rows, state = resume["rows"], resume["spectral"]
        first_epoch, step, seconds_before = resume["epoch"], resume["step"], resume["seconds"]
    started = time.perf_counter() - seconds_before

    def record(step):
        nonlocal state
        spectral = spectral_complexity(net, state=state)
        state = spectral.state
        test_error, test_loss = evaluate(net, test)
        train_error, train_loss = evaluate(net, train)
        samples = (step // per_epoch) * P + min((step % per_epoch) * batch, P)
        row = dict(
            keys,
            step=step,
            epoch=step / per_epoch,
            samples=samples,
            log_norm=spectral.log_r,
            norm=spectral.r if spectral.r is not None else math.inf,
            test_error=test_error,
            test_loss=test_loss,
            train_error=train_error,
            train_loss=train_loss,
            spectral_converged=spectral.converged,
            seconds=time.perf_counter() - started,
        )
        rows.append(row)
        if progress is not None:
            progress(row)
        if on_log is not None:
            on_log(net, row)

    if resume is None:
        record(0)
    net.train()
    for epoch in range(first_epoch, epochs):
        order = torch.randperm(P, generator=order_gen).to(dev)
        for start in range(0, P, batch):
            part = order[start : start + batch]
            loss = F.cross_entropy(net(train.x[part]), train.y[part])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            step += 1
            if step in logs:
                if not math.isfinite(loss.item()):
                    status = "diverged"
                    break
                record(step)
        if status != "ok":
            break
        if after_epoch is not None:
            after_epoch(step, rows[-1])
        if epoch + 1 < epochs:
            checkpoint_after(
                epoch + 1,
                lambda: {
                    "epoch": epoch + 1,
                    "step": step,
                    "rows": rows,
                    "spectral": state,
                    "net": net.state_dict(),
                    "optimizer": optimizer.state_dict(),
                    "order_gen": order_gen.get_state(),
                    "seconds": time.perf_counter() - started,
                },
            )
    frame = pd.DataFrame(rows)
    frame["status"] = status
    return frame
