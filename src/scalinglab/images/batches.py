"""Image batches on the training device: uint8 images resident there, Liu's flip + crop
augmentation as one indexing op, normalisation fused into the gather, and each seed's epoch order
and augmentation draws from its own generator. No DataLoader and no per-image transforms: those
cost a plain loop ~200 µs per image on a small CPU, more than the model step (benchmarks/cnn.py).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from scalinglab.core.errors import UserError
from scalinglab.datasets.image_data import ImageData

MIN_SIDE = 12  # the family's smallest input: two 2x max-pools, then a 3x3 conv without padding


def upsample_small(data: ImageData) -> ImageData:
    """Images smaller than MIN_SIDE pixels blown up by the smallest integer factor (nearest
    neighbour, exact on uint8): sklearn's 8×8 digits become 16×16. Others are returned unchanged."""
    if data.train_x.dim() != 4:
        raise UserError(f"{data.name}: the ConvNet family needs images (N, C, H, W); its examples are {data.shape}")
    side = min(data.shape[1:])
    factor = -(-MIN_SIDE // side)
    if factor == 1:
        return data

    def up(x):
        return x.repeat_interleave(factor, dim=2).repeat_interleave(factor, dim=3)

    meta = {**data.meta, "upsampled": factor}
    return ImageData(data.name, up(data.train_x), data.train_y, up(data.test_x), data.test_y, data.classes, meta)


def default_padding(data: ImageData) -> int:
    """Liu's 4 pixels on 32×32 CIFAR scaled with the image: 4 on 28 or 32, 2 on 16."""
    return max(1, round(min(data.shape[1:]) / 8))


def flip_crop(x: torch.Tensor, flip: torch.Tensor | None, shift: torch.Tensor, padding: int) -> torch.Tensor:
    """torchvision's RandomHorizontalFlip then RandomCrop(size, padding) on a batch (N, C, H, W),
    with the draws given: image i mirrored left-right where flip[i] (no flips if flip is None),
    zero-padded by `padding` pixels, and cropped from row shift[0, i], column shift[1, i] (each in
    0..2·padding). Apply it to raw images, before normalising, so the padding is black as there.

    One indexing op over a strided view of all crop windows (2.5× faster than an explicit gather).
    """
    n, _, height, width = x.shape
    padded = F.pad(x, (padding, padding, padding, padding))
    if flip is None:
        sources, which = padded.unsqueeze(0), torch.zeros(n, dtype=torch.long, device=x.device)
    else:  # mirroring the padded image = padding the mirrored one
        sources, which = torch.stack([padded, padded.flip(-1)]), flip.long()
    windows = sources.unfold(3, height, 1).unfold(4, width, 1)  # (2, N, C, 2p+1, 2p+1, H, W), a view
    return windows[which, torch.arange(n, device=x.device), :, shift[0], shift[1]]


@dataclass
class DeviceData:
    """Training images as uint8 and the normalised test set, resident on the training device."""

    train_x: torch.Tensor
    train_y: torch.Tensor
    test_x: torch.Tensor  # float, normalised, in the models' memory format
    test_y: torch.Tensor
    scale: torch.Tensor  # normalise(x) = x·scale + shift, per channel: (x/255 - mean)/std
    shift: torch.Tensor
    memory_format: torch.memory_format

    @classmethod
    def build(cls, data: ImageData, device: torch.device, memory_format: torch.memory_format) -> DeviceData:
        mean, std = data.mean.to(device), data.std.to(device)
        scale, shift = 1.0 / (255.0 * std), -mean / std
        test_x = data.test_x.to(device).float().mul_(scale).add_(shift).contiguous(memory_format=memory_format)
        return cls(
            data.train_x.to(device),
            data.train_y.to(device),
            test_x,
            data.test_y.to(device),
            scale,
            shift,
            memory_format,
        )

    def batch(self, index: torch.Tensor, flip: torch.Tensor, shift: torch.Tensor, augment: str, padding: int):
        """Normalised, augmented images and labels for training indices `index` (any shape)."""
        lead = index.shape
        x = self.train_x[index.reshape(-1)]
        if augment != "none":
            x = flip_crop(x, flip.reshape(-1) if augment == "flip_crop" else None, shift.reshape(2, -1), padding)
        x = torch.addcmul(self.shift, x, self.scale)  # uint8 promotes to float here
        x = x.reshape(*lead, *x.shape[1:])
        if x.dim() == 4:
            x = x.contiguous(memory_format=self.memory_format)
        return x, self.train_y[index]


class BatchStream:
    """One seed's training subset, epoch order and augmentation draws, from its own generator.

    Every epoch draws a permutation of the subset, a flip bit and a crop offset per example, in
    that order and whatever the augmentation mode, so the batch order is the same across modes.
    """

    def __init__(self, indices: torch.Tensor, seed: int, padding: int):
        self.indices, self.padding = indices, padding
        self.generator = torch.Generator(device=indices.device).manual_seed(seed)

    def epoch(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(order (P,), flip (P,), shift (2, P)) for the next epoch."""
        n, g, dev = len(self.indices), self.generator, self.indices.device
        order = self.indices[torch.randperm(n, generator=g, device=dev)]
        flip = torch.rand(n, generator=g, device=dev) < 0.5
        shift = torch.randint(0, 2 * self.padding + 1, (2, n), generator=g, device=dev)
        return order, flip, shift
