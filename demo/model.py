"""``DemoCNN``: a small CAM-friendly classifier for the demo scenes.

Architecture: five conv/BatchNorm/ReLU blocks with two stride-2 convolutions
(64x64 input -> 16x16 last feature map), global average pooling and one linear
layer, so class activation maps are exactly ``sum_k w[t, k] * A_k``.

The bundled weights live in :data:`ASSETS` and are produced by
``python -m vexplain.demo.train``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from .scenes import CLASS_NAMES

ASSETS: Path = Path(__file__).parent / "assets"
WEIGHTS_FILE = "demo_cnn.pt"
ONNX_FILE = "demo_cnn.onnx"
METADATA_FILE = "demo_cnn.json"

# (out_channels, stride) of each 3x3 convolution; each is followed by BatchNorm and ReLU.
_LAYERS: tuple[tuple[int, int], ...] = ((16, 2), (32, 1), (32, 2), (64, 1), (64, 1))


class DemoCNN(nn.Module):
    """Conv/BatchNorm/ReLU features -> global average pool -> linear classifier."""

    def __init__(self, num_classes: int = len(CLASS_NAMES), in_channels: int = 3) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        c_in = in_channels
        for c_out, stride in _LAYERS:
            layers += [nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU()]
            c_in = c_out
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(c_in, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Map normalised NCHW images to unnormalised class scores (N, classes)."""
        return self.classifier(torch.flatten(self.pool(self.features(x)), 1))


def build(num_classes: int = len(CLASS_NAMES)) -> DemoCNN:
    """Factory for ``"vexplain.demo.model:build"``: an untrained ``DemoCNN``."""
    return DemoCNN(num_classes=num_classes)


def load_metadata() -> dict[str, Any]:
    """Read ``assets/demo_cnn.json`` (class names, input size, mean/std, ...), schema-checked."""
    from vexplain.core.model_metadata import read_metadata_file

    return read_metadata_file(ASSETS / METADATA_FILE)


def load_demo_model() -> DemoCNN:
    """Build ``DemoCNN`` with the bundled trained weights, in eval mode."""
    meta = load_metadata()
    model = build(len(meta["class_names"]))
    state = torch.load(ASSETS / WEIGHTS_FILE, map_location="cpu", weights_only=True)
    model.load_state_dict(state)
    return model.eval()


def demo_adapter():
    """The shipped model behind a ``TorchAdapter`` named "demo_cnn", with its metadata (class names,
    input size, mean and std, and how photos are resized and cropped: shorter side + centre crop)."""
    from vexplain.core.api import adapt

    meta = load_metadata()
    adapter = adapt(load_demo_model(), name="demo_cnn")
    adapter.metadata = {k: meta[k] for k in ("class_names", "input_size", "mean", "std", "resize", "crop") if k in meta}
    return adapter


def preprocess(
    images: np.ndarray,
    mean: Any = None,
    std: Any = None,
) -> np.ndarray:
    """Convert uint8 NHWC (or a single HWC) RGB images to normalised float32 NCHW.

    Computes ``(img / 255 - mean) / std`` per channel.  ``mean``/``std`` default
    to the values in the bundled metadata.
    """
    if mean is None or std is None:
        meta = load_metadata()
        mean = meta["mean"] if mean is None else mean
        std = meta["std"] if std is None else std
    x = np.asarray(images)
    if x.ndim == 3:
        x = x[None]
    if x.ndim != 4 or x.shape[-1] != 3:
        raise ValueError(f"expected (N, H, W, 3) images, got shape {x.shape}")
    m = np.asarray(mean, np.float32).reshape(1, 1, 1, 3)
    s = np.asarray(std, np.float32).reshape(1, 1, 1, 3)
    x = (x.astype(np.float32) / np.float32(255.0) - m) / s
    return np.ascontiguousarray(x.transpose(0, 3, 1, 2))
