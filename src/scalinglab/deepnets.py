"""Deep nets for the implicit-bias laws (D'Amico, Bocchi & Negri): CNN, ResNet and ViT families,
trained as the authors trained them, with Bartlett's spectral complexity logged along training.

The families follow the authors' code (github Francill99/deep_norm), with one size knob each:
  - cnn(width w): conv3x3(w) ReLU conv3x3(2w) ReLU maxpool2 conv3x3(4w) ReLU -> FC 16w ReLU -> FC
    classes (their CNNClassifier with conv_channels [c, 32, 64, 128], pool_every 2, MLP [512]
    is w = 32); PyTorch's default init; Adam.
  - resnet(width w, depth b): conv3x3(w)+BN+ReLU stem, four stages of b BasicBlocks of widths
    w, 2w, 4w, 8w with strides 1, 2, 2, 2, global average pool, FC (theirs: w = 64, b = 2, the
    ResNet-18 layout); Kaiming-normal (fan_out) convs, FC N(0, 0.01); Adam.
  - vit(width d, depth L): patch embedding (a conv with stride = patch = side // 4, so 4x4 patches
    on any image: 7 px on MNIST, 8 on CIFAR, 2 on 8x8 digits), class token, learned positions,
    L pre-norm blocks (LN, multi-head attention, LN, GELU MLP 4d), LN, linear head on the class
    token (theirs on MNIST: d = 128, L = 4, 4 heads); truncated-normal(0.02) init; AdamW (3e-4,
    weight decay 0 as their runs).
Every family accepts any image shape (C, H, W) with H, W >= 4, so no upsampling is needed: the CNN
pools once, the ResNet's strided stages stop shrinking at 1x1, the ViT's patch follows the side.

Training (train_runs): cross-entropy, batch 128 with the last partial batch kept, a fixed number of
epochs, the seeded stratified subset of P training images (datasets.subset_indices, nested across P
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

from scalinglab.checkpoint import Checkpointer, fingerprint
from scalinglab.datasets import ImageData, subset_indices, to_float
from scalinglab.errors import UserError
from scalinglab.seeding import derive_seed
from scalinglab.spectral import spectral_complexity

FAMILIES = ("cnn", "resnet", "vit")
# the authors' optimisers and learning rates (reference.md); weight decay 0 throughout
DEFAULT_LR = {"cnn": 1e-3, "resnet": 1e-3, "vit": 3e-4}
OPTIMIZER = {"cnn": torch.optim.Adam, "resnet": torch.optim.Adam, "vit": torch.optim.AdamW}
DEFAULT_WIDTH = {"cnn": 32, "resnet": 64, "vit": 128}
DEFAULT_DEPTH = {"cnn": 3, "resnet": 2, "vit": 4}  # cnn: fixed at three conv layers
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


# ---------------------------------------------------------------- the three families


class CNN(nn.Module):
    """The authors' CNNClassifier at width w (w = 32 is theirs): see the module doc."""

    def __init__(self, in_shape: Sequence[int], n_classes: int, width: int = 32):
        super().__init__()
        c, h, w = in_shape
        self.features = nn.Sequential(
            nn.Conv2d(c, width, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(width, 2 * width, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(2 * width, 4 * width, 3, padding=1),
            nn.ReLU(),
        )
        flat = 4 * width * (h // 2) * (w // 2)
        self.classifier = nn.Sequential(
            nn.Flatten(), nn.Linear(flat, 16 * width), nn.ReLU(), nn.Linear(16 * width, n_classes)
        )

    def forward(self, x):
        return self.classifier(self.features(x))


class BasicBlock(nn.Module):
    """He et al.'s 3x3 + 3x3 residual block, as torchvision's (its import alone costs a job seconds):
    relu(bn2(conv2(relu(bn1(conv1 x)))) + shortcut x), the shortcut a 1x1 conv + BN where the shape changes."""

    def __init__(self, planes_in: int, planes: int, stride: int = 1, downsample: nn.Module | None = None):
        super().__init__()
        self.conv1 = nn.Conv2d(planes_in, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = downsample

    def forward(self, x):
        out = self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x)))))
        return F.relu(out + (x if self.downsample is None else self.downsample(x)))


class ResNet(nn.Module):
    """BasicBlock ResNet, stages of `depth` blocks at widths w, 2w, 4w, 8w (w = 64, depth 2: ResNet-18)."""

    def __init__(self, in_shape: Sequence[int], n_classes: int, width: int = 64, depth: int = 2):
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(in_shape[0], width, 3, padding=1, bias=False), nn.BatchNorm2d(width), nn.ReLU()
        )
        blocks, planes = [], width
        for k, stride in enumerate((1, 2, 2, 2)):
            out = width * 2**k
            for i in range(depth):
                s = stride if i == 0 else 1
                down = None
                if s != 1 or planes != out:
                    down = nn.Sequential(nn.Conv2d(planes, out, 1, stride=s, bias=False), nn.BatchNorm2d(out))
                blocks.append(BasicBlock(planes, out, stride=s, downsample=down))
                planes = out
        self.blocks = nn.Sequential(*blocks)
        self.fc = nn.Linear(planes, n_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        nn.init.normal_(self.fc.weight, std=0.01)
        nn.init.zeros_(self.fc.bias)

    def forward(self, x):
        x = self.blocks(self.stem(x))
        return self.fc(x.mean((2, 3)))


class EncoderBlock(nn.Module):
    """Pre-norm transformer block: x + MHA(LN x), then x + MLP(LN x)."""

    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.norm1, self.norm2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.attn = nn.MultiheadAttention(dim, heads, batch_first=True)
        self.mlp = nn.Sequential(nn.Linear(dim, 4 * dim), nn.GELU(), nn.Linear(4 * dim, dim))

    def forward(self, x):
        y = self.norm1(x)
        x = x + self.attn(y, y, y, need_weights=False)[0]
        return x + self.mlp(self.norm2(x))


class ViT(nn.Module):
    """Vision transformer on 4x4 patches of any image, embedding width `width`, `depth` blocks."""

    def __init__(self, in_shape: Sequence[int], n_classes: int, width: int = 128, depth: int = 4):
        super().__init__()
        c, h, w = in_shape
        heads = vit_heads(width)
        patch = max(1, min(h, w) // 4)
        self.patch = nn.Conv2d(c, width, patch, stride=patch)  # border pixels beyond 4 patches are dropped
        tokens = (h // patch) * (w // patch)
        self.cls = nn.Parameter(torch.zeros(1, 1, width))
        self.pos = nn.Parameter(torch.zeros(1, 1 + tokens, width))
        self.blocks = nn.Sequential(*[EncoderBlock(width, heads) for _ in range(depth)])
        self.norm = nn.LayerNorm(width)
        self.head = nn.Linear(width, n_classes)
        nn.init.trunc_normal_(self.cls, std=0.02)
        nn.init.trunc_normal_(self.pos, std=0.02)
        for m in self.modules():
            if isinstance(m, (nn.Linear, nn.Conv2d)):
                nn.init.trunc_normal_(m.weight, std=0.02)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
        # nn.MultiheadAttention keeps its Q, K, V projections in in_proj_weight, not a Linear
        for block in self.blocks:
            nn.init.trunc_normal_(block.attn.in_proj_weight, std=0.02)

    def forward(self, x):
        x = self.patch(x).flatten(2).transpose(1, 2)
        x = torch.cat([self.cls.expand(len(x), -1, -1), x], 1) + self.pos
        x = self.norm(self.blocks(x))
        return self.head(x[:, 0])


def vit_heads(width: int) -> int:
    """Heads of 32 dimensions each (the authors' MNIST ViT: 128 / 4); one head below 64."""
    return max(1, width // 32)


def build(
    model: str,
    in_shape: Sequence[int],
    n_classes: int,
    width: int | None = None,
    depth: int | None = None,
    seed: int = 0,
) -> nn.Module:
    """One network of a family, initialised from `seed` without touching the global RNG."""
    if model not in FAMILIES:
        raise UserError(f"unknown model family {model!r}; choose one of {', '.join(FAMILIES)}")
    if len(in_shape) != 3 or min(in_shape[1:]) < 4:
        raise UserError(f"the deep-net families need images (C, H, W) of at least 4x4 pixels, got {tuple(in_shape)}")
    width = DEFAULT_WIDTH[model] if width is None else int(width)
    depth = DEFAULT_DEPTH[model] if depth is None else int(depth)
    if width < 1 or depth < 1:
        raise UserError(f"{model}: width and depth must be at least 1, got width={width}, depth={depth}")
    if model == "vit" and width % vit_heads(width):
        raise UserError(f"vit: width {width} must be a multiple of 32 (heads of 32 dimensions) or below 64")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        if model == "cnn":
            return CNN(in_shape, n_classes, width)
        if model == "resnet":
            return ResNet(in_shape, n_classes, width, depth)
        return ViT(in_shape, n_classes, width, depth)


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
) -> pd.DataFrame:
    """Train one network per seed on P images of `data`; one row per log point, columns COLUMNS.

    test_size: evaluate on a fixed stratified subset of this many test images (None: all).
    progress(row) is called at every log point; on_log(network, row) too, with the network as it is
    there (for checks; do not modify it).
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
    P, lr = int(P), DEFAULT_LR[model] if lr is None else float(lr)
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
    saver = Checkpointer(checkpoint, checkpoint_every_s, key)
    resumed = saver.load()
    frames = list(resumed["frames"]) if resumed else []
    for s in seeds[len(frames) :]:  # a resumed call has the finished seeds' frames already
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
            )
        )
    return pd.concat(frames, ignore_index=True)[COLUMNS]


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
        width=width or DEFAULT_WIDTH[model],
        depth=depth or DEFAULT_DEPTH[model],
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
