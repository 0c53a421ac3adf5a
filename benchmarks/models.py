"""Models for the benchmarks: a ResNet-18-shaped network in plain torch, and the demo model.

torchvision is not installable in this sandbox, so ``resnet18_shaped`` rebuilds the ResNet-18
layout from scratch (He et al., 2016): stem conv 7x7/2 + BN + ReLU + maxpool 3x3/2, four stages of
two BasicBlocks (64-128-256-512 channels, stride 2 from stage 2 on, 1x1 conv + BN shortcut when the
shape changes), global average pooling and ``Linear(512, 1000)``. Same parameter count as
torchvision's ``resnet18`` (11.69 M). Weights are random (seeded) with non-trivial BatchNorm
statistics so the network is not degenerate; the model is returned in eval mode.
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, c_in: int, c_out: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.downsample = None
        if stride != 1 or c_in != c_out:
            self.downsample = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride=stride, bias=False), nn.BatchNorm2d(c_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class ResNet18Shaped(nn.Module):
    def __init__(self, num_classes: int = 1000, blocks: tuple[int, ...] = (2, 2, 2, 2), widths: tuple[int, ...] = (64, 128, 256, 512)) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        c_in = 64
        for index, (count, width) in enumerate(zip(blocks, widths)):
            stride = 1 if index == 0 else 2
            stage = [BasicBlock(c_in, width, stride)] + [BasicBlock(width, width) for _ in range(count - 1)]
            setattr(self, f"layer{index + 1}", nn.Sequential(*stage))
            c_in = width
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(c_in, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(self.avgpool(x), 1))


def resnet18_shaped(seed: int = 0) -> ResNet18Shaped:
    """A ResNet-18-shaped model with seeded random weights, in eval mode."""
    generator = torch.Generator().manual_seed(seed)
    model = ResNet18Shaped()
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.Conv2d):
                fan_out = module.out_channels * module.kernel_size[0] * module.kernel_size[1]
                module.weight.normal_(0.0, (2.0 / fan_out) ** 0.5, generator=generator)
            elif isinstance(module, nn.BatchNorm2d):
                module.weight.uniform_(0.5, 1.0, generator=generator)
                module.bias.normal_(0.0, 0.1, generator=generator)
                module.running_mean.normal_(0.0, 0.1, generator=generator)
                module.running_var.uniform_(0.5, 1.5, generator=generator)
            elif isinstance(module, nn.Linear):
                bound = 1.0 / module.in_features**0.5
                module.weight.uniform_(-bound, bound, generator=generator)
                module.bias.uniform_(-bound, bound, generator=generator)
    return model.eval()


#: VGG-11's layout (Simonyan & Zisserman, 2015) at a quarter of its width: 16-32-64-128 channels
VGG_LAYOUT = (16, "M", 32, "M", 64, 64, "M", 128, 128, "M", 128, 128, "M")


class VggShaped(nn.Module):
    """3x3 conv + ReLU stacks with 2x2 max pooling, then a flatten + linear head on the 7x7 map
    (no global pooling): the shape where early, high-resolution layers dominate the cost."""

    def __init__(self, num_classes: int = 1000) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        channels = 3
        for item in VGG_LAYOUT:
            if item == "M":
                layers.append(nn.MaxPool2d(2))
            else:
                layers += [nn.Conv2d(channels, int(item), 3, padding=1), nn.ReLU(inplace=True)]
                channels = int(item)
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Sequential(nn.Linear(channels * 7 * 7, 512), nn.ReLU(inplace=True), nn.Linear(512, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.features(x), 1))


def vgg_shaped(seed: int = 0) -> VggShaped:
    """A quarter-width VGG-11 for 224x224 inputs with seeded He-initialised weights, in eval mode."""
    generator = torch.Generator().manual_seed(seed)
    model = VggShaped()
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, (nn.Conv2d, nn.Linear)):
                fan_in = module.weight[0].numel()
                module.weight.normal_(0.0, (2.0 / fan_in) ** 0.5, generator=generator)
                module.bias.normal_(0.0, 0.01, generator=generator)
    return model.eval()


def resnet_inputs(batch: int, size: int = 224, seed: int = 1) -> torch.Tensor:
    """Standard-normal images ``(batch, 3, size, size)`` (stand-ins for normalised photos)."""
    return torch.randn((batch, 3, size, size), generator=torch.Generator().manual_seed(seed))


def demo_model() -> tuple[torch.nn.Module, str]:
    """The shipped demo model with its trained weights, or (when the assets are not there yet)
    ``DemoCNN`` with seeded random weights. Returns ``(model, which)``: which is "trained" or
    "random (assets missing)"."""
    from vexplain.demo import model as demo

    if (demo.ASSETS / demo.WEIGHTS_FILE).is_file() and (demo.ASSETS / demo.METADATA_FILE).is_file():
        return demo.load_demo_model(), "trained"
    torch.manual_seed(0)
    return demo.build().eval(), "random (assets missing)"


def demo_inputs(batch: int, seed: int = 7) -> torch.Tensor:
    """``batch`` demo scenes (64x64), preprocessed as the demo model expects."""
    from vexplain.demo import model as demo
    from vexplain.demo.scenes import generate_dataset

    images, _, _ = generate_dataset(batch, seed=seed)
    if (demo.ASSETS / demo.METADATA_FILE).is_file():
        array = demo.preprocess(images)
    else:
        array = demo.preprocess(images, mean=[0.5, 0.5, 0.5], std=[0.25, 0.25, 0.25])
    return torch.from_numpy(np.ascontiguousarray(array))


def resnet50_torchvision(seed: int = 0) -> nn.Module:
    """torchvision's ResNet-50 with random (seeded) weights, in eval mode: the model of the issue's
    GPU reference points. Only where torchvision imports (not beside torch 2.13 on PyPI)."""
    from torchvision.models import resnet50

    torch.manual_seed(seed)
    return resnet50(weights=None).eval()


def case_model(name: str, batch: int, size: int, cache: dict) -> tuple[torch.nn.Module, str, torch.Tensor]:
    """``(model, which weights, inputs)`` for a benchmark case: "demo" (the shipped model on demo
    scenes), "resnet18", "vgg" or "resnet50" (``resnet18_shaped`` / ``vgg_shaped`` /
    ``resnet50_torchvision`` on ``resnet_inputs``); models are kept in ``cache``."""
    if name not in cache:
        random_weights = {"resnet18": resnet18_shaped, "vgg": vgg_shaped, "resnet50": resnet50_torchvision}
        cache[name] = demo_model() if name == "demo" else (random_weights[name](), "random (seeded)")
    model, weights = cache[name]
    inputs = demo_inputs(batch) if name == "demo" else resnet_inputs(batch, size)
    return model, weights, inputs

