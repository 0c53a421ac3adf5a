"""Post-processing shared by every method: ReLU, bilinear upsampling, normalisation, colouring."""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from .errors import InvalidOption


def relu(maps: torch.Tensor) -> torch.Tensor:
    return torch.clamp(maps, min=0)


def upsample(maps: torch.Tensor, size: tuple[int, int], mode: str = "bilinear") -> torch.Tensor:
    """``(N, h, w)`` maps resized to ``size``: bilinearly with ``align_corners=False`` (default), or
    ``mode="nearest"``."""
    if tuple(maps.shape[-2:]) == tuple(size):
        return maps
    corners = {"align_corners": False} if mode == "bilinear" else {}
    return F.interpolate(maps.unsqueeze(1), size=tuple(size), mode=mode, **corners).squeeze(1)


def normalize(maps: np.ndarray, mode: str = "minmax") -> np.ndarray:
    """Each ``(H, W)`` map of ``(N, H, W)`` scaled on its own.

    ``minmax``: (m - min) / (max - min), a constant map becomes zeros; ``max``: m / max|m|, keeping
    signs; ``none``: unchanged.
    """
    maps = np.asarray(maps, dtype=np.float32)
    if mode == "none":
        return maps.copy()
    flat = maps.reshape(maps.shape[0], -1)
    if mode == "minmax":
        low = flat.min(axis=1, keepdims=True)
        span = flat.max(axis=1, keepdims=True) - low
        scaled = np.where(span > 0, (flat - low) / np.where(span > 0, span, 1), 0.0)
    elif mode == "max":
        peak = np.abs(flat).max(axis=1, keepdims=True)
        scaled = np.where(peak > 0, flat / np.where(peak > 0, peak, 1), 0.0)
    else:
        raise InvalidOption(f"normalisation mode must be 'minmax', 'max' or 'none'; got {mode!r}")
    return scaled.reshape(maps.shape).astype(np.float32)


def colorize(unit_map: np.ndarray, colormap: str = "jet") -> np.ndarray:
    """An ``(H, W)`` map in [0, 1] as an RGB uint8 image through an OpenCV colormap."""
    import cv2

    code = getattr(cv2, f"COLORMAP_{colormap.upper()}", None)
    if code is None:
        known = sorted(n[9:].lower() for n in dir(cv2) if n.startswith("COLORMAP_"))
        raise InvalidOption(f"unknown colormap {colormap!r}; choose one of: {', '.join(known)}")
    gray = np.clip(np.round(unit_map * 255), 0, 255).astype(np.uint8)
    return cv2.cvtColor(cv2.applyColorMap(gray, code), cv2.COLOR_BGR2RGB)


def as_rgb_uint8(image: np.ndarray) -> np.ndarray:
    """An ``(H, W, 3)`` image, uint8 or float in [0, 1], as uint8 RGB."""
    image = np.asarray(image)
    if image.ndim == 2:
        image = np.repeat(image[..., None], 3, axis=2)
    if image.ndim != 3 or image.shape[2] not in (1, 3):
        raise InvalidOption(f"overlay images must be (H, W, 3) RGB; got shape {image.shape}")
    if image.shape[2] == 1:
        image = np.repeat(image, 3, axis=2)
    if image.dtype != np.uint8:
        image = np.clip(np.round(image.astype(np.float32) * 255), 0, 255).astype(np.uint8)
    return image
