"""Tiny models for the test suite: fixed hand-set weights (for hand-computed expectations) and
small seeded CNNs (for agreement with Captum and across backends).

Importable from tests as ``from models import ...`` (tests/conftest.py puts this folder on
sys.path), and as factories ``"models:seeded_cnn"`` for ``vx.adapt(..., weights=...)``.
"""
from __future__ import annotations

import io
import warnings

import numpy as np
import torch
from torch import nn

from vexplain.core.concurrency import GLOBAL_RNG

# --------------------------------------------------------------------------------------------
# Hand-weighted CAM model: 1x4x4 input -> conv 2x2 stride 2 (2 channels, no bias) -> ReLU
# -> global average pool -> Linear(2 -> 3).
# --------------------------------------------------------------------------------------------

#: the input used by the hand-computed tests, (1, 1, 4, 4)
HAND_X = np.array(
    [
        [1.0, 2.0, 0.0, -1.0],
        [0.0, 1.0, 3.0, 1.0],
        [-2.0, 0.0, 1.0, 1.0],
        [1.0, -1.0, 0.0, 2.0],
    ],
    dtype=np.float32,
)[None, None]

#: conv kernels: k0 = main diagonal, k1 = top-right minus bottom-left
HAND_CONV = np.array([[[[1.0, 0.0], [0.0, 1.0]]], [[[0.0, 1.0], [-1.0, 0.0]]]], dtype=np.float32)
#: classifier (3 classes x 2 channels) and its bias
HAND_FC_W = np.array([[1.0, -1.0], [-0.5, 2.0], [0.25, 0.5]], dtype=np.float32)
HAND_FC_B = np.array([0.0, 0.1, -0.2], dtype=np.float32)


class HandCamNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(1, 2, kernel_size=2, stride=2, bias=False), nn.ReLU())
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(2, 3)
        with torch.no_grad():
            self.features[0].weight.copy_(torch.from_numpy(HAND_CONV))
            self.fc.weight.copy_(torch.from_numpy(HAND_FC_W))
            self.fc.bias.copy_(torch.from_numpy(HAND_FC_B))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(self.pool(self.features(x)), 1))


class LinearNet(nn.Module):
    """y = W · flatten(x) + b with hand-set W (K, C*H*W): gradients and occlusion drops are exact sums."""

    def __init__(self, weight: np.ndarray, bias: np.ndarray | None = None) -> None:
        super().__init__()
        weight = np.asarray(weight, dtype=np.float32)
        self.fc = nn.Linear(weight.shape[1], weight.shape[0])
        with torch.no_grad():
            self.fc.weight.copy_(torch.from_numpy(weight))
            self.fc.bias.copy_(torch.zeros(weight.shape[0]) if bias is None else torch.as_tensor(bias, dtype=torch.float32))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(x, 1))


# --------------------------------------------------------------------------------------------
# Seeded CNNs
# --------------------------------------------------------------------------------------------


class SmallCNN(nn.Module):
    """conv -> ReLU -> conv -> ReLU -> GAP -> Linear: the shape CAM, Grad-CAM and Captum all take."""

    def __init__(self, channels: int = 3, classes: int = 5, width: int = 8) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(channels, width, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(width, 2 * width, 3, padding=1, stride=2),
            nn.ReLU(),
        )
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(2 * width, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(self.pool(self.features(x)), 1))


def seeded_cnn(seed: int = 0, channels: int = 3, classes: int = 5, width: int = 8) -> SmallCNN:
    """A ``SmallCNN`` with weights drawn from ``seed``, in eval mode (also a factory: ``models:seeded_cnn``)."""
    with GLOBAL_RNG:  # seeding and drawing from torch's global generator: threads building models at once would interleave
        torch.manual_seed(seed)
        model = SmallCNN(channels, classes, width).eval()
    # Calibrate the bias so that no class wins on every input: scores become W (g - mean g) for
    # pooled features g, and the top class varies between inputs.
    with torch.no_grad():
        for conv in (model.features[0], model.features[2]):  # keep activations O(1) through the stack
            conv.weight.mul_(2.0)
        model.fc.weight.mul_(4.0)
        reference = torch.from_numpy(images(64, channels, 16, seed=10_000 + seed))
        pooled = torch.flatten(model.pool(model.features(reference)), 1).mean(0)
        model.fc.bias.copy_(-model.fc.weight @ pooled)
    return model


def other_seeded_cnn() -> SmallCNN:
    return seeded_cnn(seed=1)


class TrainFlagCNN(nn.Module):
    """A CNN with BatchNorm and Dropout (train mode changes results and buffers) and a switchable
    failure after the feature stack."""

    def __init__(self, classes: int = 4) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 6, 3, padding=1),
            nn.BatchNorm2d(6),
            nn.ReLU(inplace=True),
            nn.Conv2d(6, 8, 3, padding=1),
            nn.ReLU(inplace=True),
        )
        self.boom = Boom()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.drop = nn.Dropout(0.5)
        self.fc = nn.Linear(8, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.drop(torch.flatten(self.pool(self.boom(self.features(x))), 1)))


class Boom(nn.Module):
    """Identity, or raises ``RuntimeError('boom')`` when ``armed``."""

    def __init__(self) -> None:
        super().__init__()
        self.armed = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.armed:
            raise RuntimeError("boom")
        return x


def train_flag_cnn(seed: int = 0) -> TrainFlagCNN:
    torch.manual_seed(seed)
    model = TrainFlagCNN()
    with torch.no_grad():  # non-trivial running statistics, so eval and train modes differ
        bn = model.features[1]
        bn.running_mean.copy_(torch.randn(6) * 0.1)
        bn.running_var.copy_(torch.rand(6) + 0.5)
    return model


def images(n: int, channels: int = 3, size: int = 16, seed: int = 0) -> np.ndarray:
    """``n`` seeded float32 images ``(n, channels, size, size)``."""
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, channels, size, size)).astype(np.float32)


def onnx_bytes(model: nn.Module, input_shape: tuple[int, int, int], dynamic_batch: bool = True) -> bytes:
    """``model`` exported with the TorchScript exporter; ``dynamic_batch=False`` fixes batch 1."""
    buffer = io.BytesIO()
    dynamic = {"input": {0: "batch"}, "scores": {0: "batch"}} if dynamic_batch else None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model.eval(),
            (torch.zeros((1, *input_shape)),),
            buffer,
            dynamo=False,
            input_names=["input"],
            output_names=["scores"],
            dynamic_axes=dynamic,
            opset_version=17,
        )
    return buffer.getvalue()


# --------------------------------------------------------------------------------------------
# Snapshots for the "model left unmodified" checks
# --------------------------------------------------------------------------------------------


def hook_counts(model: nn.Module) -> dict[str, int]:
    """Non-empty hook dictionaries of every module, by ``"<module>.<kind>"``."""
    kinds = (
        "_forward_hooks",
        "_forward_pre_hooks",
        "_backward_hooks",
        "_backward_pre_hooks",
        "_state_dict_hooks",
        "_load_state_dict_pre_hooks",
    )
    found = {}
    for name, module in model.named_modules():
        for kind in kinds:
            hooks = getattr(module, kind, None)
            if hooks:
                found[f"{name or '<root>'}.{kind}"] = len(hooks)
    return found


def snapshot(model: nn.Module) -> dict:
    """Parameters and buffers (cloned), training flags, devices and grads of ``model``."""
    return {
        "tensors": {k: v.detach().clone() for k, v in model.state_dict(keep_vars=True).items()},
        "training": {n: m.training for n, m in model.named_modules()},
        "devices": {n: p.device for n, p in model.named_parameters()},
        "grads": {n: p.grad for n, p in model.named_parameters()},
        "requires_grad": {n: p.requires_grad for n, p in model.named_parameters()},
    }


def assert_untouched(model: nn.Module, before: dict) -> None:
    """No hooks left, tensors bit-identical, flags and devices as before, no ``.grad`` written."""
    assert hook_counts(model) == {}, f"hooks left behind: {hook_counts(model)}"
    after = snapshot(model)
    assert after["training"] == before["training"], "training flags changed"
    assert after["devices"] == before["devices"], "parameters moved"
    assert after["requires_grad"] == before["requires_grad"], "requires_grad changed"
    assert all(g is None for g in after["grads"].values()), "a parameter's .grad was written"
    assert after["tensors"].keys() == before["tensors"].keys()
    for name, tensor in before["tensors"].items():
        now = after["tensors"][name]
        assert now.dtype == tensor.dtype and now.shape == tensor.shape, name
        assert torch.equal(now, tensor), f"{name} changed"


def not_a_model():
    """A factory that returns something other than an ``nn.Module`` (for loading errors)."""
    return 42


# --------------------------------------------------------------------------------------------
# Gradient family and callable targets
# --------------------------------------------------------------------------------------------


class QuadraticNet(nn.Module):
    """y_k = Σ V_k ⊙ x² with hand-set V (K, C*H*W): the gradient 2 V_k ⊙ x depends on x, so
    noise (SmoothGrad) and the path (Integrated Gradients) have hand-computable effects."""

    def __init__(self, weight: np.ndarray) -> None:
        super().__init__()
        self.register_buffer("weight", torch.as_tensor(np.asarray(weight, dtype=np.float32)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.flatten(x, 1).pow(2) @ self.weight.T


class LinearSegNet(nn.Module):
    """Per-pixel linear segmentation: output (N, K, H, W) = 1x1 convolution with hand-set
    weight (K, C) and bias (K,)."""

    def __init__(self, weight: np.ndarray, bias: np.ndarray) -> None:
        super().__init__()
        weight = np.asarray(weight, dtype=np.float32)
        self.head = nn.Conv2d(weight.shape[1], weight.shape[0], 1)
        with torch.no_grad():
            self.head.weight.copy_(torch.from_numpy(weight)[:, :, None, None])
            self.head.bias.copy_(torch.as_tensor(bias, dtype=torch.float32))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(x)


class TinySegNet(nn.Module):
    """conv 3x3 -> ReLU -> conv 3x3 -> ReLU (functional) -> 1x1 conv: a segmentation-style output (N, K, H, W)."""

    def __init__(self, channels: int = 3, classes: int = 3, width: int = 6) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(channels, width, 3, padding=1)
        self.relu = nn.ReLU()
        self.conv2 = nn.Conv2d(width, width, 3, padding=1)
        self.head = nn.Conv2d(width, classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.nn.functional.relu(self.conv2(self.relu(self.conv1(x)))))


def tiny_seg_net(seed: int = 0) -> TinySegNet:
    """A ``TinySegNet`` with weights drawn from ``seed``, in eval mode."""
    torch.manual_seed(seed)
    return TinySegNet().eval()


def close(actual, expected, atol: float = 1e-6) -> None:
    """``actual`` equals ``expected`` within ``atol`` everywhere (no relative slack)."""
    np.testing.assert_allclose(np.asarray(actual), np.asarray(expected, dtype=np.float64), rtol=0, atol=atol)


def quick_options() -> dict[str, dict]:
    """Each registered method's ``quick_options`` (from ``vx.methods()``): registry-wide tests start
    their cheap settings from these, so a slow method registered later is cheap there too."""
    import vexplain as vx

    return {info.name: dict(info.quick_options) for info in vx.methods() if info.quick_options}
