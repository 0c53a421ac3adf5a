"""Helpers for the metric tests (no tests here): a model whose score depends on one known region,
and straightforward unbatched reference implementations of the metrics."""
from __future__ import annotations

import numpy as np
import torch
from scipy.ndimage import gaussian_filter
from torch import nn

SIZE = 16
REGION = (slice(4, 8), slice(6, 12))  # rows, columns: the only pixels the score depends on


class RegionModel(nn.Module):
    """Two classes: s = 2 · (mean of the input over ``REGION``, all channels) − 2, and −s. The
    class-0 probability is sigmoid(2s): only region pixels matter."""

    def __init__(self, size: int = SIZE) -> None:
        super().__init__()
        mask = torch.zeros(1, 1, size, size)
        mask[0, 0][REGION] = 1.0
        self.register_buffer("mask", mask)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = 2.0 * (x * self.mask).sum(dim=(1, 2, 3)) / (self.mask.sum() * x.shape[1]) - 2.0
        return torch.stack([s, -s], dim=1)


def region_mask(size: int = SIZE) -> np.ndarray:
    mask = np.zeros((size, size), np.float32)
    mask[REGION] = 1.0
    return mask


def bright_region_images(n: int, size: int = SIZE, seed: int = 0) -> np.ndarray:
    """Background in [0, 1], region in [1.5, 2.5]: replacing region pixels by 0, by the image mean
    or by a blur always lowers the class-0 score (s ≈ 2 on the image, −2 with the region at 0)."""
    rng = np.random.default_rng(seed)
    x = rng.random((n, 3, size, size))
    x[:, :, REGION[0], REGION[1]] += 1.5
    return x.astype(np.float32)


def softmax_probability(model: nn.Module, image: np.ndarray, target: int) -> float:
    with torch.no_grad():
        scores = model(torch.from_numpy(np.ascontiguousarray(image[None], dtype=np.float32))).double()
    return float(torch.softmax(scores, dim=1)[0, target])


def reference_substrate(image: np.ndarray, kind: str, sigma: float = 5.0) -> np.ndarray:
    if kind == "zeros":
        return np.zeros_like(image)
    if kind == "mean":
        return np.broadcast_to(image.mean(axis=(1, 2), keepdims=True), image.shape).copy()
    radius = int(np.ceil(2 * sigma))
    return np.stack([gaussian_filter(c.astype(np.float64), sigma, mode="nearest", truncate=radius / sigma) for c in image]).astype(np.float32)


def reference_pixel_curve(model, image, saliency, target, steps, kind, insert, sigma=5.0):
    """(curve, x, auc) of deletion (``insert`` False) or insertion, one image, one step at a time."""
    height, width = saliency.shape
    pixels = height * width
    order = np.argsort(-saliency.ravel(), kind="stable")
    background = reference_substrate(image, kind, sigma)
    curve, xs = [], []
    for k in range(steps + 1):
        count = k * pixels // steps
        changed = np.zeros(pixels, bool)
        changed[order[:count]] = True
        changed = changed.reshape(height, width)
        shown = np.where(changed, image, background) if insert else np.where(changed, background, image)
        curve.append(softmax_probability(model, shown, target))
        xs.append(count / pixels)
    curve, xs = np.array(curve), np.array(xs)
    auc = sum((curve[i] + curve[i + 1]) / 2 * (xs[i + 1] - xs[i]) for i in range(steps))
    return curve, xs, auc


def reference_linear_impute(image: np.ndarray, remove: np.ndarray) -> np.ndarray:
    """Noisy-linear imputation without noise, one equation per removed pixel, dense solve."""
    channels, height, width = image.shape
    weights = {(-1, 0): 1 / 6, (1, 0): 1 / 6, (0, -1): 1 / 6, (0, 1): 1 / 6,
               (-1, -1): 1 / 12, (-1, 1): 1 / 12, (1, -1): 1 / 12, (1, 1): 1 / 12}
    unknown = [(r, c) for r in range(height) for c in range(width) if remove[r, c]]
    index = {p: i for i, p in enumerate(unknown)}
    a = np.zeros((len(unknown), len(unknown)))
    b = np.zeros((len(unknown), channels))
    for i, (r, c) in enumerate(unknown):
        for (dr, dc), w in weights.items():
            rr, cc = r + dr, c + dc
            if 0 <= rr < height and 0 <= cc < width:
                a[i, i] += w
                if remove[rr, cc]:
                    a[i, index[(rr, cc)]] -= w
                else:
                    b[i] += w * image[:, rr, cc]
    solved = np.linalg.solve(a, b)
    out = image.astype(np.float64).copy()
    for i, (r, c) in enumerate(unknown):
        out[:, r, c] = solved[i]
    return out


def reference_road(model, image, saliency, target, fractions):
    """(morf, lerf) probability curves with noise 0, one imputed image at a time."""
    pixels = saliency.size
    order = np.argsort(-saliency.ravel(), kind="stable")
    curves = {"morf": [], "lerf": []}
    for f in fractions:
        count = int(round(f * pixels))
        for name, chosen in (("morf", order[:count]), ("lerf", order[pixels - count:])):
            remove = np.zeros(pixels, bool)
            remove[chosen] = True
            imputed = reference_linear_impute(image, remove.reshape(saliency.shape))
            curves[name].append(softmax_probability(model, imputed.astype(np.float32), target))
    return np.array(curves["morf"]), np.array(curves["lerf"])
