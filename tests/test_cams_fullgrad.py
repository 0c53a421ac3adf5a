"""FullGrad: hand-computed maps on a fixed-weight conv → BatchNorm → ReLU → pool → linear model,
the full-gradient completeness identity, and agreement with pytorch-grad-cam 1.5.7's ``FullGrad``
(``postprocess="per_channel"``) on a ResNet-18 with random BatchNorm statistics."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import vexplain as vx
from vexplain.core.targets import TargetRequest
from vexplain.plugins.fullgrad import psi

from models import assert_untouched, close, hook_counts, images, onnx_bytes, seeded_cnn, snapshot
from pgc_reference import pytorch_grad_cam

X = np.array([[1.0, -1.0], [0.5, 2.0]], dtype=np.float32)[None, None]


class HandBiasNet(nn.Module):
    """z = 2x + 0.5 (1x1 conv), u = BN(z) = 4 (z − 1)/√(3 + 1) + 0.5 = 2z − 1.5 (implicit bias −1.5),
    y = 3 mean(ReLU(u)) + 0.1."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 1, 1)
        self.bn = nn.BatchNorm2d(1, eps=1.0)
        self.fc = nn.Linear(1, 1)
        with torch.no_grad():
            self.conv.weight.fill_(2.0), self.conv.bias.fill_(0.5)
            self.bn.running_mean.fill_(1.0), self.bn.running_var.fill_(3.0), self.bn.weight.fill_(4.0), self.bn.bias.fill_(0.5)
            self.fc.weight.fill_(3.0), self.fc.bias.fill_(0.1)
        self.eval()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.relu(self.bn(self.conv(x))).mean(dim=(2, 3)))


def test_hand_computed_map_and_decomposition():
    # u = [[3.5, -4.5], [1.5, 7.5]]: ReLU passes (0,0), (1,0), (1,1); y = 3 · 12.5 / 4 + 0.1 = 9.475
    # dy/du = 0.75, dy/dz = 1.5, dy/dx = 3 where active.
    # input term |x · 3| = [[3, 0], [1.5, 6]] → [[0.5, 0], [0.25, 1]]
    # conv bias |0.5 · 1.5| and BN implicit bias |−1.5 · 0.75|, both constant where active → [[1, 0], [1, 1]] each
    model = HandBiasNet()
    exp = vx.explain(model, X, method="fullgrad", targets=0)
    close(exp.maps, [[[2.5, 0.0], [2.25, 3.0]]], atol=1e-6)
    close(exp.scores, [[9.475]], atol=1e-5)
    assert exp.options["bias_layers"] == 2 and exp.options["postprocess"] == "paper"
    result = vx.adapt(model).bias_gradients(torch.from_numpy(X), TargetRequest(0, 1))
    assert result.layers == ["conv", "bn", "fc"] and result.channel_axes == [1, 1, -1]
    close(torch.stack([b[0] for b in result.biases]), [0.5, -1.5, 0.1], atol=1e-6)
    # completeness: Σ ∇x·x = 3 (1 + 0.5 + 2) = 10.5, conv 1.5·3·0.5 = 2.25, BN 0.75·3·(−1.5) = −3.375, fc 0.1
    parts = [float((result.input_gradients * torch.from_numpy(X)).sum())]
    parts += [float((g * (b[None, :, None, None] if g.dim() == 4 else b)).sum()) for g, b in zip(result.gradients, result.biases)]
    close(parts, [10.5, 2.25, -3.375, 0.1], atol=1e-5)


def test_psi_scales_per_term_or_per_channel():
    values = torch.tensor([[[[1.0, -3.0]], [[0.0, 0.5]]]])  # (1, 2, 1, 2)
    close(psi(values, (1, 2), "paper"), [[[1 / 3, 7 / 6]]], atol=1e-6)  # joint min 0, max 3
    close(psi(values, (1, 2), "per_channel"), [[[0.0, 2.0]]], atol=1e-6)  # each channel to [0, 1]


def resnet18(seed: int = 0) -> nn.Module:
    """torchvision's ResNet-18 (10 classes), random weights and random BatchNorm statistics and
    affine parameters (at their defaults every implicit bias would be 0)."""
    pytorch_grad_cam()  # makes torchvision importable beside the CPU torch
    import torchvision

    torch.manual_seed(seed)
    model = torchvision.models.resnet18(num_classes=10)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.running_mean.uniform_(-0.5, 0.5), module.running_var.uniform_(0.5, 2.0)
                module.weight.uniform_(0.5, 1.5), module.bias.uniform_(-0.3, 0.3)
    return model.eval()


def test_completeness_on_a_resnet():
    model, x = resnet18(), torch.from_numpy(images(2, size=32, seed=1))
    result = vx.adapt(model).bias_gradients(x, TargetRequest([3, 7], 2))
    total = (result.input_gradients * x).sum(dim=(1, 2, 3))
    for g, b, axis in zip(result.gradients, result.biases, result.channel_axes):
        shape = [1] * g.dim()
        shape[axis] = len(b)
        total = total + (g * b.reshape(shape)).flatten(1).sum(dim=1)
    expected = model(x).detach()[[0, 1], [3, 7]]
    close(total, expected, atol=1e-4 * float(expected.abs().max()))
    assert len(result.layers) == 20 + 1  # no convolution has a bias: 20 BatchNorms and the fc


def test_agrees_with_pytorch_grad_cam_per_channel():
    pgc = pytorch_grad_cam()
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    model, x, targets = resnet18(), images(3, size=64, seed=2), [1, 4, 9]
    reference = pgc.FullGrad(model=model, target_layers=[])(input_tensor=torch.from_numpy(x), targets=[ClassifierOutputTarget(t) for t in targets])
    exp = vx.explain(model, x, method="fullgrad", targets=targets, postprocess="per_channel")
    assert np.std(reference) > 0.05 and exp.options["bias_layers"] == 20
    close(exp.normalized("minmax"), reference, atol=1e-4)
    paper = vx.explain(model, x, method="fullgrad", targets=targets)
    assert np.abs(paper.normalized("minmax") - reference).max() > 0.05  # the definitions really differ


def test_model_left_unmodified_and_errors():
    model = resnet18()
    before, hooks = snapshot(model), hook_counts(model)
    vx.explain(model, images(1, size=32), method="fullgrad")
    assert_untouched(model, before)
    assert hook_counts(model) == hooks
    with pytest.raises(vx.InvalidOption, match="postprocess"):
        vx.explain(model, images(1, size=32), method="fullgrad", postprocess="channel")
    onnx = vx.adapt(onnx_bytes(seeded_cnn(seed=2), (3, 16, 16)))
    with pytest.raises(vx.UnsupportedCapability, match="bias_gradients"):
        vx.explain(onnx, images(1), method="fullgrad")


def test_batchnorm_without_running_statistics_refused():
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4, track_running_stats=False), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 2))
    with pytest.raises(vx.ModelLoadError, match="running statistics"):
        vx.explain(model, images(2), method="fullgrad")


def test_model_without_spatial_biases_warns():
    from models import HAND_X, HandCamNet

    exp = vx.explain(HandCamNet(), HAND_X, method="fullgrad")
    assert exp.options["bias_layers"] == 0 and any("input-gradient term alone" in w for w in exp.warnings)


class TwoBranch(nn.Module):
    """y = fc(mean(ReLU(bn_b(conv_b(x))) + ReLU(bn_a(conv_a(x))))), branch b run first; with
    ``b_first`` False its modules are also registered after branch a's (registration order differs
    from execution order, as in a residual block whose shortcut runs before the main branch)."""

    def __init__(self, b_first: bool) -> None:
        super().__init__()
        torch.manual_seed(5)
        convs = [nn.Conv2d(3, 4, 3, padding=1) for _ in range(2)]
        norms = [nn.BatchNorm2d(4) for _ in range(2)]
        for norm in norms:
            with torch.no_grad():
                norm.running_mean.uniform_(-0.5, 0.5), norm.running_var.uniform_(0.5, 2), norm.bias.uniform_(-0.5, 0.5)
        with torch.no_grad():  # branch a's channel 0 has no bias: under per-channel scaling only zeros tell biases apart
            norms[0].running_mean[0], norms[0].bias[0] = 0.0, 0.0
        order = ["b", "a"] if b_first else ["a", "b"]
        for name in order:
            index = 0 if name == "a" else 1
            setattr(self, f"conv_{name}", convs[index])
            setattr(self, f"bn_{name}", norms[index])
        self.fc = nn.Linear(4, 3)
        self.eval()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b = torch.relu(self.bn_b(self.conv_b(x)))
        a = torch.relu(self.bn_a(self.conv_a(x)))
        return self.fc((a + b).mean(dim=(2, 3)))


def test_pytorch_grad_cam_pairs_biases_by_module_order():
    # pytorch-grad-cam lists biases in module order and gradients in execution order: where the two
    # differ it multiplies each gradient by another layer's bias. vexplain pairs them by module.
    pgc = pytorch_grad_cam()
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    x = images(2, size=8, seed=4)
    results = {}
    for b_first in (True, False):
        model = TwoBranch(b_first)
        reference = pgc.FullGrad(model=model, target_layers=[])(input_tensor=torch.from_numpy(x), targets=[ClassifierOutputTarget(t) for t in (0, 2)])
        exp = vx.explain(model, x, method="fullgrad", targets=[0, 2], postprocess="per_channel")
        results[b_first] = (exp.normalized("minmax"), reference)
    close(results[True][0], results[False][0], atol=1e-6)  # registration order changes nothing for vexplain
    close(results[True][0], results[True][1], atol=1e-4)  # orders agree: pytorch-grad-cam agrees
    assert np.abs(results[False][0] - results[False][1]).max() > 0.05  # orders differ: it does not
