"""Liu's CIFAR-10 ConvNet family (github yuxi-liu-wired/scaling-law-by-data-manifold, a replication of
Sharma & Kaplan's CIFAR-10 study) and a batched ensemble of it.

ConvNet(c): conv3x3(c, pad 1) ReLU maxpool2 → conv3x3(2c, pad 1) ReLU maxpool2 → conv3x3(2c, no pad)
ReLU → flatten → FC 64 ReLU → FC classes. On CIFAR-10 (3×32×32, 10 classes) the spatial size goes
32 → 16 → 8 → 6 and the parameter count is 54c² + 4640c + 714: 5,408 at c = 1 … 115,114 at c = 20,
Liu's 20 sizes.

ConvNetEnsemble trains E members of the same c as one model: the members' channels are stacked
(grouped convolutions, groups = E) and the FC layers are batched matrix products. Every parameter
element belongs to one member, so element-wise optimisers (SGD, Adam, AdamW) update each member
exactly as if it were trained alone, provided the loss is the SUM of the members' losses
(see member_losses); anything that mixes members (global-norm gradient clipping) does not.
oneDNN's grouped convolutions are slow on CPU: there, separate ConvNets (channels_last) train
faster except at the smallest c and batch; the ensemble is meant for GPUs, where these small
convolutions are bound by kernel-launch overhead.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from scalinglab.core.errors import UserError

CIFAR_SHAPE = (3, 32, 32)
HIDDEN = 64
SEED_WIDTHS = tuple(range(1, 21))  # Liu's 20 channel counts: 5,408 … 115,114 parameters


def final_spatial(height: int, width: int) -> tuple[int, int]:
    """Spatial size after the three conv blocks (two 2× max-pools, then a 3×3 conv without padding)."""
    h, w = height // 2 // 2 - 2, width // 2 // 2 - 2
    if h < 1 or w < 1:
        raise UserError(f"images of {height}×{width} are too small for the ConvNet family; it needs at least 12×12")
    return h, w


def param_count(c: int, in_shape: Sequence[int] = CIFAR_SHAPE, n_classes: int = 10) -> int:
    """Closed-form parameter count of ConvNet(c); equals sum(p.numel())."""
    channels, height, width = in_shape
    h, w = final_spatial(height, width)
    conv1 = 9 * channels * c + c
    conv2 = 9 * c * 2 * c + 2 * c
    conv3 = 9 * 2 * c * 2 * c + 2 * c
    fc1 = 2 * c * h * w * HIDDEN + HIDDEN
    fc2 = HIDDEN * n_classes + n_classes
    return conv1 + conv2 + conv3 + fc1 + fc2


class ConvNet(nn.Module):
    """One member of the family; PyTorch's default layer initialisation."""

    def __init__(self, c: int, in_shape: Sequence[int] = CIFAR_SHAPE, n_classes: int = 10):
        super().__init__()
        if c < 1:
            raise UserError(f"ConvNet channel count must be at least 1, got {c}")
        channels, height, width = in_shape
        h, w = final_spatial(height, width)
        self.c, self.in_shape, self.n_classes = c, tuple(in_shape), n_classes
        self.conv1 = nn.Conv2d(channels, c, 3, padding=1)
        self.conv2 = nn.Conv2d(c, 2 * c, 3, padding=1)
        self.conv3 = nn.Conv2d(2 * c, 2 * c, 3)
        self.fc1 = nn.Linear(2 * c * h * w, HIDDEN)
        self.fc2 = nn.Linear(HIDDEN, n_classes)

    @classmethod
    def create(cls, c: int, in_shape: Sequence[int] = CIFAR_SHAPE, n_classes: int = 10, seed: int = 0) -> ConvNet:
        """A member initialised from `seed` without touching the caller's global RNG state."""
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            return cls(c, in_shape, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.max_pool2d(F.relu(self.conv1(x)), 2)
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)
        x = F.relu(self.conv3(x))
        x = F.relu(self.fc1(x.flatten(1)))
        return self.fc2(x)


class ConvNetEnsemble(nn.Module):
    """E ConvNets of the same c evaluated as one network.

    Parameters: conv weights stacked along the output channels (E·c_out, c_in, 3, 3), member e owning
    block e; FC weights as (E, in, out) and biases as (E, 1, out) for baddbmm.
    forward(x): x (B, C, H, W) is shown to every member, x (E, B, C, H, W) gives each member its
    own batch; returns logits (E, B, classes).
    """

    def __init__(self, n_members: int, c: int, in_shape: Sequence[int] = CIFAR_SHAPE, n_classes: int = 10):
        super().__init__()
        channels, height, width = in_shape
        h, w = final_spatial(height, width)
        e = n_members
        self.n_members, self.c, self.in_shape, self.n_classes = e, c, tuple(in_shape), n_classes
        self.conv1_w = nn.Parameter(torch.empty(e * c, channels, 3, 3))
        self.conv1_b = nn.Parameter(torch.empty(e * c))
        self.conv2_w = nn.Parameter(torch.empty(e * 2 * c, c, 3, 3))
        self.conv2_b = nn.Parameter(torch.empty(e * 2 * c))
        self.conv3_w = nn.Parameter(torch.empty(e * 2 * c, 2 * c, 3, 3))
        self.conv3_b = nn.Parameter(torch.empty(e * 2 * c))
        self.fc1_w = nn.Parameter(torch.empty(e, 2 * c * h * w, HIDDEN))
        self.fc1_b = nn.Parameter(torch.empty(e, 1, HIDDEN))
        self.fc2_w = nn.Parameter(torch.empty(e, HIDDEN, n_classes))
        self.fc2_b = nn.Parameter(torch.empty(e, 1, n_classes))

    @classmethod
    def create(
        cls, c: int, seeds: Sequence[int], in_shape: Sequence[int] = CIFAR_SHAPE, n_classes: int = 10
    ) -> ConvNetEnsemble:
        """One member per seed, each initialised exactly as ConvNet.create(c, ..., seed)."""
        return cls.from_members([ConvNet.create(c, in_shape, n_classes, seed) for seed in seeds])

    @classmethod
    def from_members(cls, members: Sequence[ConvNet]) -> ConvNetEnsemble:
        first = members[0]
        if any((m.c, m.in_shape, m.n_classes) != (first.c, first.in_shape, first.n_classes) for m in members):
            raise UserError("ensemble members must share channel count, input shape and number of classes")
        ens = cls(len(members), first.c, first.in_shape, first.n_classes).to(first.fc1.weight)
        with torch.no_grad():
            for name in ("conv1", "conv2", "conv3"):
                getattr(ens, f"{name}_w").copy_(torch.cat([getattr(m, name).weight for m in members]))
                getattr(ens, f"{name}_b").copy_(torch.cat([getattr(m, name).bias for m in members]))
            for name in ("fc1", "fc2"):
                getattr(ens, f"{name}_w").copy_(torch.stack([getattr(m, name).weight.T for m in members]))
                getattr(ens, f"{name}_b").copy_(torch.stack([getattr(m, name).bias for m in members]).unsqueeze(1))
        return ens

    def member(self, i: int) -> ConvNet:
        """A standalone copy of member i (same device and dtype)."""
        if not 0 <= i < self.n_members:
            raise IndexError(f"member {i} out of range 0..{self.n_members - 1}")
        net = ConvNet(self.c, self.in_shape, self.n_classes).to(self.fc1_w)
        with torch.no_grad():
            for name in ("conv1", "conv2", "conv3"):
                weight = getattr(self, f"{name}_w")
                block = weight.shape[0] // self.n_members
                getattr(net, name).weight.copy_(weight[i * block : (i + 1) * block])
                getattr(net, name).bias.copy_(getattr(self, f"{name}_b")[i * block : (i + 1) * block])
            for name in ("fc1", "fc2"):
                getattr(net, name).weight.copy_(getattr(self, f"{name}_w")[i].T)
                getattr(net, name).bias.copy_(getattr(self, f"{name}_b")[i, 0])
        return net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        e = self.n_members
        if x.dim() == 4:  # one batch for all members: conv1 is an ordinary conv with E·c outputs
            h = F.conv2d(x, self.conv1_w, self.conv1_b, padding=1)
        elif x.dim() == 5 and x.shape[0] == e:  # member e sees x[e]: members' inputs side by side
            _, b, c_in, height, width = x.shape
            h = F.conv2d(
                x.transpose(0, 1).reshape(b, e * c_in, height, width), self.conv1_w, self.conv1_b, padding=1, groups=e
            )
        else:
            raise ValueError(f"expected input (B, C, H, W) or ({e}, B, C, H, W), got {tuple(x.shape)}")
        h = F.max_pool2d(F.relu(h), 2)
        h = F.max_pool2d(F.relu(F.conv2d(h, self.conv2_w, self.conv2_b, padding=1, groups=e)), 2)
        h = F.relu(F.conv2d(h, self.conv3_w, self.conv3_b, groups=e))
        # (B, E·2c, h, w) → (E, B, 2c·h·w): each member's block flattened in ConvNet's order.
        h = h.reshape(h.shape[0], e, -1).transpose(0, 1)
        h = F.relu(torch.baddbmm(self.fc1_b, h, self.fc1_w))
        return torch.baddbmm(self.fc2_b, h, self.fc2_w)


def member_losses(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy of each member, shape (E,); backpropagate their SUM so each member's
    gradient equals the one it would get alone. `labels` is (B,) shared or (E, B)."""
    e, b, k = logits.shape
    labels = labels.expand(e, b)
    return F.cross_entropy(logits.reshape(e * b, k), labels.reshape(e * b), reduction="none").view(e, b).mean(1)
