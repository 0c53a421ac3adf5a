"""Models that exercise every layer kind incremental occlusion reasons about (shared by the CPU
and CUDA tests)."""
from __future__ import annotations

import torch
from torch import nn

from models import seeded_cnn


class ResidualNet(nn.Module):
    """Stride-2 stem with max pooling, a residual block with a strided 1x1 shortcut, in-place ReLUs."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 8, 5, stride=2, padding=2, bias=False), nn.BatchNorm2d(8), nn.ReLU(inplace=True), nn.MaxPool2d(3, 2, 1))
        self.conv1 = nn.Conv2d(8, 16, 3, stride=2, padding=1)
        self.bn1 = nn.BatchNorm2d(16)
        self.conv2 = nn.Conv2d(16, 16, 3, padding=1)
        self.shortcut = nn.Conv2d(8, 16, 1, stride=2)
        self.relu = nn.ReLU(inplace=True)
        self.pool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(16, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.conv2(out) + self.shortcut(x)
        out = self.relu(out)
        return self.fc(torch.flatten(self.pool(out), 1))


class BranchNet(nn.Module):
    """Inception-style concatenation, dilation, groups, average pooling, functional activations,
    arithmetic with numbers, and a mean over (H, W) as the global pool."""

    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Conv2d(3, 6, 3, padding=1)
        self.b = nn.Conv2d(3, 6, 3, padding=2, dilation=2)
        self.grouped = nn.Conv2d(12, 12, 3, padding=1, groups=3)
        self.avg = nn.AvgPool2d(2, 2)
        self.act = nn.LeakyReLU(0.1)
        self.fc = nn.Linear(12, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.cat([torch.relu(self.a(x)), nn.functional.silu(self.b(x))], dim=1)
        x = self.act(self.grouped(x)) * 0.5 + 1.0
        x = self.avg(x)
        return self.fc(x.mean(dim=(2, 3)))


class VggHead(nn.Module):
    """A flatten + linear head on the spatial map (no global pooling): full maps are rebuilt there."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(4, 4, 3, padding=1), nn.Tanh())
        self.fc = nn.Linear(4 * 8 * 8, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(self.features(x), 1))


def seeded(cls: type, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    model = cls()
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.running_mean.uniform_(-0.5, 0.5)
            module.running_var.uniform_(0.5, 2.0)
    return model.eval()


ARCHITECTURES = {"residual": ResidualNet, "branches": BranchNet, "vgg_head": VggHead, "small_cnn": None}


def architecture(name: str) -> nn.Module:
    """One of ``ARCHITECTURES`` with fixed random weights and batch-norm statistics, in eval mode."""
    return seeded_cnn(seed=3) if ARCHITECTURES[name] is None else seeded(ARCHITECTURES[name])
