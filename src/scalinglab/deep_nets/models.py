"""The deep-net families of D'Amico, Bocchi & Negri: CNN, ResNet and ViT, one size knob each.

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
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from scalinglab.core.errors import UserError

FAMILIES = ("cnn", "resnet", "vit")
# the authors' sizes (github Francill99/deep_norm): what build() makes when no width or depth is given
AUTHORS_WIDTH = {"cnn": 32, "resnet": 64, "vit": 128}
AUTHORS_DEPTH = {"cnn": 3, "resnet": 2, "vit": 4}  # cnn: fixed at three conv layers


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
    width = AUTHORS_WIDTH[model] if width is None else int(width)
    depth = AUTHORS_DEPTH[model] if depth is None else int(depth)
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
