"""Reference images for the baseline-based methods (DeepLift, DeepLiftShap, GradientShap).

A baseline option takes a number (a constant image, in preprocessed units) or an array of images
``(M, C, H, W)`` / ``(C, H, W)`` (numpy or torch; from Python, since the CLI passes literals only).
The SHAP-family default (``None``) is a background of ``BACKGROUND`` images of N(0, 1) noise drawn
from the method's ``seed``: in preprocessed units, random images with the data's mean and spread.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import torch

from vexplain.core.errors import InvalidOption
from vexplain.core.options import FLOAT32_MAX, Coercer

#: images in the default background of the SHAP family
BACKGROUND = 16


def images_or_number(allow_none: bool) -> Coercer:
    """A finite number, or finite float images ``(M, C, H, W)`` / ``(C, H, W)`` as a float32
    tensor ``(M, C, H, W)``; ``None`` too when ``allow_none``."""

    def coerce(value: Any) -> Any:
        if value is None and allow_none:
            return None
        if isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool):
            if not np.isfinite(float(value)) or abs(float(value)) > FLOAT32_MAX:
                raise ValueError(f"must be a finite number within float32's range (±{FLOAT32_MAX:.4g}) or an array of images")
            return float(value)
        if isinstance(value, (np.ndarray, torch.Tensor)):
            tensor = torch.as_tensor(np.asarray(value.detach().cpu() if isinstance(value, torch.Tensor) else value), dtype=torch.float32)
            if tensor.dim() == 3:
                tensor = tensor.unsqueeze(0)
            if tensor.dim() == 4 and len(tensor) > 0 and bool(torch.isfinite(tensor).all()):
                return tensor
        nothing = "None, " if allow_none else ""
        raise ValueError(f"must be {nothing}a finite number or finite images of shape (M, C, H, W) or (C, H, W)")

    return coerce


def reference_images(value: float | torch.Tensor | None, inputs: torch.Tensor, seed: int, option: str) -> torch.Tensor:
    """The references ``(M, C, H, W)`` on ``inputs``' device for an option value: a number gives one
    constant image, ``None`` the seeded noise background; images must match the inputs' (C, H, W)."""
    shape = tuple(inputs.shape[1:])
    if value is None:
        generator = torch.Generator().manual_seed(seed)
        return torch.randn((BACKGROUND, *shape), generator=generator).to(inputs.device, inputs.dtype)
    if isinstance(value, float):
        return torch.full((1, *shape), value, dtype=inputs.dtype, device=inputs.device)
    if tuple(value.shape[1:]) != shape:
        raise InvalidOption(f"option '{option}' has images of shape {tuple(value.shape[1:])}; the inputs are {shape}: give (M, {', '.join(map(str, shape))})")
    return value.to(inputs.device, inputs.dtype)
