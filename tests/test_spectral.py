"""Spectral complexity: power iteration against an SVD computation on small CNN, ResNet and ViT."""

import math

import pytest
import torch
from torch import nn
from torchvision.models.resnet import BasicBlock

from scalinglab.deep_nets.spectral import layer_matrices, power_iteration, spectral_complexity

REL = 1e-4


def direct_complexity(matrices):
    """R from exact spectral norms (SVD) of an explicitly listed set of matrices, in float64."""
    mats = [m.detach().to(torch.float64) for m in matrices]
    sigma = torch.stack([torch.linalg.matrix_norm(m, ord=2) for m in mats])
    norm_21 = torch.stack([m.T.norm(dim=0).sum() for m in mats])  # l2 norms of the columns of A^T
    return float(sigma.prod() * ((norm_21 / sigma) ** (2 / 3)).sum() ** 1.5)


def tiny_cnn():
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(8, 16, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(16 * 2 * 2, 32),
        nn.ReLU(),
        nn.Linear(32, 10),
    )
    expected = [model[0].weight.reshape(8, -1), model[3].weight.reshape(16, -1), model[7].weight, model[9].weight]
    return model, expected


class TinyResNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(8)
        down = nn.Sequential(nn.Conv2d(8, 16, 1, stride=2, bias=False), nn.BatchNorm2d(16))
        self.blocks = nn.Sequential(BasicBlock(8, 8), BasicBlock(8, 16, stride=2, downsample=down))
        self.fc = nn.Linear(16, 10)

    def forward(self, x):
        x = self.blocks(torch.relu(self.bn(self.stem(x))))
        return self.fc(x.mean((2, 3)))


def tiny_resnet():
    torch.manual_seed(1)
    model = TinyResNet()
    b0, b1 = model.blocks
    convs = [model.stem, b0.conv1, b0.conv2, b1.conv1, b1.conv2, b1.downsample[0]]
    expected = [c.weight.reshape(c.weight.shape[0], -1) for c in convs] + [model.fc.weight]
    return model, expected


class TinyViT(nn.Module):
    def __init__(self, dim=16, heads=2, patch=4, image=8, classes=10):
        super().__init__()
        self.patch = nn.Conv2d(3, dim, patch, stride=patch)
        self.cls = nn.Parameter(torch.randn(1, 1, dim) * 0.02)
        self.pos = nn.Parameter(torch.randn(1, 1 + (image // patch) ** 2, dim) * 0.02)
        self.norm1, self.norm2, self.norm = nn.LayerNorm(dim), nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.attn = nn.MultiheadAttention(dim, heads, batch_first=True)
        self.mlp = nn.Sequential(nn.Linear(dim, 2 * dim), nn.GELU(), nn.Linear(2 * dim, dim))
        self.head = nn.Linear(dim, classes)

    def forward(self, x):
        x = self.patch(x).flatten(2).transpose(1, 2)
        x = torch.cat([self.cls.expand(len(x), -1, -1), x], 1) + self.pos
        y = self.norm1(x)
        x = x + self.attn(y, y, y, need_weights=False)[0]
        x = x + self.mlp(self.norm2(x))
        return self.head(self.norm(x)[:, 0])


def tiny_vit():
    torch.manual_seed(2)
    model = TinyViT()
    q, k, v = model.attn.in_proj_weight.chunk(3)
    expected = [
        model.patch.weight.reshape(16, -1),
        q,
        k,
        v,
        model.attn.out_proj.weight,
        model.mlp[0].weight,
        model.mlp[2].weight,
        model.head.weight,
    ]
    return model, expected


@pytest.mark.parametrize("build", [tiny_cnn, tiny_resnet, tiny_vit], ids=["cnn", "resnet", "vit"])
def test_matches_svd_computation(build):
    model, expected = build()
    model(torch.randn(2, 3, 8, 8))  # the models are real, runnable networks
    result = spectral_complexity(model)
    assert result.converged
    # the layer selection is exactly the hand-listed one (biases, norms, tokens excluded)
    assert len(result.layers) == len(expected)
    for got, want in zip(layer_matrices(model), expected):
        assert torch.equal(got[1], want.detach())
    assert result.r == pytest.approx(direct_complexity(expected), rel=REL)
    assert result.log_r == pytest.approx(math.log(direct_complexity(expected)), abs=REL)


def test_norm_21_sums_row_norms():
    model = nn.Linear(2, 3, bias=False)
    with torch.no_grad():
        model.weight.copy_(torch.tensor([[3.0, 4.0], [0.0, 0.0], [0.0, 1.0]]))
    layers = spectral_complexity(model).layers
    assert layers.norm_21[0] == pytest.approx(6.0)  # rows 5 + 0 + 1; columns would give 3 + sqrt(17)
    assert layers.spectral_norm[0] == pytest.approx(float(torch.linalg.matrix_norm(model.weight.detach().double(), 2)))


def test_scaling_one_layer_scales_r_by_the_same_factor():
    model, _ = tiny_cnn()
    before = spectral_complexity(model).log_r
    with torch.no_grad():
        model[3].weight.mul_(7.0)
    # the ratio terms are scale free, the product of spectral norms picks up the factor once
    assert spectral_complexity(model).log_r - before == pytest.approx(math.log(7.0), abs=1e-8)


def test_warm_start_reuses_singular_vectors():
    model, expected = tiny_resnet()
    cold = spectral_complexity(model, seed=3)
    warm = spectral_complexity(model, state=cold.state)
    assert warm.log_r == pytest.approx(cold.log_r, abs=1e-9)
    assert warm.layers.iterations.max() <= 3 < cold.layers.iterations.max()


def test_log_space_survives_overflow():
    torch.manual_seed(4)
    layers = [nn.Linear(8, 8, bias=False) for _ in range(300)]
    with torch.no_grad():
        for layer in layers:
            layer.weight.mul_(50.0)
    model = nn.Sequential(*layers)
    result = spectral_complexity(model)
    assert result.r is None
    expected = sum(math.log(float(torch.linalg.matrix_norm(layer.weight.detach().double(), 2))) for layer in layers)
    ratios = sum(
        (
            float(layer.weight.detach().double().norm(dim=1).sum())
            / float(torch.linalg.matrix_norm(layer.weight.detach().double(), 2))
        )
        ** (2 / 3)
        for layer in layers
    )
    assert result.log_r == pytest.approx(expected + 1.5 * math.log(ratios), rel=1e-8)
    assert result.log_r > 710  # R itself would overflow a float64


def test_power_iteration_reports_non_convergence():
    a = torch.diag(torch.tensor([1.0, 0.999999]))
    sigma, _, iters, ok = power_iteration(a, torch.tensor([1.0, 1.0]), tol=1e-15, max_iter=5)
    assert not ok and iters == 5
    assert sigma <= 1.0
