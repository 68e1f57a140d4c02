"""Image datasets in memory: the prepared tensor file read back, seeded stratified subsets along the
data-size axis, and normalisation on the training device. sources.py makes the file."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch

from scalinglab.core.errors import UserError, one_line

FORMAT_VERSION = 1
DATA_FILE = "data.pt"


@dataclass
class ImageData:
    """A dataset in memory: x is uint8 (N, C, H, W) for images, float32 (N, 1, 40) for mnist1d."""

    name: str
    train_x: torch.Tensor
    train_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor
    classes: list[str]
    meta: dict = field(default_factory=dict)

    @property
    def n_classes(self) -> int:
        return len(self.classes)

    @property
    def shape(self) -> tuple[int, ...]:
        """Shape of one example, (C, H, W) or (C, L)."""
        return tuple(self.train_x.shape[1:])

    @property
    def n_train(self) -> int:
        return len(self.train_y)

    @property
    def mean(self) -> torch.Tensor:
        """Per-channel mean of the full training set (in [0, 1] units for uint8), shaped (C, 1, ...)."""
        return _channel_view(self.meta["mean"], len(self.shape))

    @property
    def std(self) -> torch.Tensor:
        return _channel_view(self.meta["std"], len(self.shape))


def read(path: str | os.PathLike) -> ImageData:
    """Read a prepared data.pt (what `prepare` wrote; workflow rules get its path as their input)."""
    path = Path(path)
    if not path.exists():
        raise UserError(
            f"{path}: no prepared dataset there; run the prepare_dataset rule "
            "(or scalinglab.datasets.sources.prepare) first"
        )
    try:
        blob = torch.load(path, weights_only=True)
    except Exception as exc:  # a truncated or foreign file raises many types
        raise UserError(f"{path}: cannot read it ({one_line(exc)}); delete it and rerun to rebuild it") from None
    meta = blob.get("meta", {}) if isinstance(blob, dict) else {}
    if meta.get("format") != FORMAT_VERSION:
        raise UserError(f"{path}: written by another version of scalinglab; delete it and rerun to rebuild it")
    return ImageData(
        name=meta["name"],
        train_x=blob["train_x"],
        train_y=blob["train_y"],
        test_x=blob["test_x"],
        test_y=blob["test_y"],
        classes=list(meta["classes"]),
        meta=meta,
    )


def subset_indices(labels: torch.Tensor, size: int, seed: int) -> torch.Tensor:
    """Indices of a seeded, stratified subset of `size` examples, nested across sizes.

    Classes are drawn in a fixed sequence: step k takes the class furthest below its share
    k·n_c/N (ties broken by a seeded order), and within a class the examples come in a seeded
    random order. So every class holds its proportional share to within one example (checked
    in the tests), and for one seed a smaller subset lies inside every larger one, which keeps
    sampling noise from masquerading as a data-size effect.
    """
    labels_np = torch.as_tensor(labels).cpu().numpy()
    n = len(labels_np)
    if not 1 <= size <= n:
        raise UserError(f"subset size {size} is outside 1..{n} (the number of training examples)")
    if size == n:
        return torch.arange(n)
    rng = np.random.default_rng(int(seed))
    classes, inverse = np.unique(labels_np, return_inverse=True)
    counts = np.bincount(inverse)
    in_class_order = [rng.permutation(np.flatnonzero(inverse == c)) for c in range(len(classes))]
    tie_break = rng.permutation(len(classes)) * 1e-9 / len(classes)  # far below any real deficit gap
    share = counts / n
    taken = np.zeros(len(classes), dtype=np.int64)
    chosen = np.empty(size, dtype=np.int64)
    for k in range(size):
        deficit = (k + 1) * share - taken + tie_break
        deficit[taken >= counts] = -np.inf
        c = int(np.argmax(deficit))
        chosen[k] = in_class_order[c][taken[c]]
        taken[c] += 1
    return torch.from_numpy(np.sort(chosen))


def subset(data: ImageData, size: int, seed: int) -> ImageData:
    """`data` with a seeded stratified subset of `size` training examples; test set and the
    normalisation statistics (from the full training set) unchanged."""
    idx = subset_indices(data.train_y, size, seed)
    meta = {**data.meta, "subset_size": int(size), "subset_seed": int(seed)}
    return replace(data, train_x=data.train_x[idx], train_y=data.train_y[idx], meta=meta)


def to_float(
    x: torch.Tensor,
    mean: torch.Tensor | Sequence[float] | float,
    std: torch.Tensor | Sequence[float] | float,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """Move `x` to `device` and normalise: uint8 is scaled to [0, 1] first, float data is used as is.

    `mean`/`std` are per channel; pass ImageData.mean/.std (shaped to broadcast) or plain
    sequences, which are taken as image channels (axis -3).
    """
    x = x.to(device, non_blocking=True) if device is not None else x
    scaled = x.float() / 255.0 if x.dtype == torch.uint8 else x.float()
    mean_t = _as_channels(mean, scaled.device)
    std_t = _as_channels(std, scaled.device)
    return (scaled - mean_t) / std_t


def _channel_view(values: Sequence[float], sample_dims: int) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.float32).reshape(-1, *([1] * (sample_dims - 1)))


def _as_channels(value, device: torch.device) -> torch.Tensor:
    t = torch.as_tensor(value, dtype=torch.float32, device=device)
    if t.dim() == 1:  # a plain per-channel list: image channels on axis -3
        t = t.reshape(-1, 1, 1)
    return t
