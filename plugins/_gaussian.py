"""Separable Gaussian blurs with zero padding, as exact ``(size, size)`` matrices: a blur of a
``(C, H, W)`` image is B_H · X · B_Wᵀ, two small matrix products whatever σ (a kernel wider than
the image costs nothing extra), and every image of a batch may take its own σ."""
from __future__ import annotations

import math

import torch

#: the widest σ (pixels) an option may ask for: 10⁴ is far wider than any image a vision model
#: takes, and keeps a kernel at 8·10⁴ taps (a σ of 10⁹ would need gigabytes of taps)
MAX_SIGMA = 10_000.0


def scipy_radius(sigma: float) -> int:
    """scipy's ``gaussian_filter`` kernel radius: ⌊4σ + ½⌋ (its ``truncate=4``)."""
    return int(4.0 * sigma + 0.5)


def ceil_radius(sigma: float) -> int:
    """TorchRay's ``imsmooth`` kernel radius: ⌈4σ⌉."""
    return math.ceil(4.0 * sigma)


def blur_matrix(size: int, sigma: float, device: torch.device, radius=scipy_radius) -> torch.Tensor:
    """``(size, size)`` float64 B with ``B @ v`` the 1-D blur of v: weights exp(−k²/2σ²)
    normalised over |k| ≤ ``radius(σ)``, zeros outside the signal. σ = 0 gives the identity."""
    if sigma == 0:
        return torch.eye(size, dtype=torch.float64, device=device)
    reach = radius(sigma)
    taps = torch.arange(-reach, reach + 1, dtype=torch.float64, device=device)
    weights = torch.exp(-0.5 * taps**2 / sigma**2)
    weights /= weights.sum()
    offset = torch.arange(size, device=device)[None, :] - torch.arange(size, device=device)[:, None]
    inside = offset.abs() <= reach
    return torch.where(inside, weights[(offset + reach).clamp(0, 2 * reach)], torch.zeros((), dtype=torch.float64, device=device))


def blurred(images: torch.Tensor, sigmas: list[float], radius=scipy_radius) -> torch.Tensor:
    """``(B, C, H, W)`` float64: image b of ``images`` ``(B, C, H, W)`` blurred over its two spatial
    axes with σ = ``sigmas[b]`` and zero padding (``radius=scipy_radius``: scipy's
    ``gaussian_filter(mode="constant")``; ``ceil_radius``: TorchRay's ``imsmooth``)."""
    height, width = images.shape[-2:]
    device = images.device
    rows = torch.stack([blur_matrix(height, s, device, radius) for s in sigmas])
    cols = torch.stack([blur_matrix(width, s, device, radius) for s in sigmas])
    return rows[:, None] @ images.double() @ cols[:, None].transpose(-1, -2)
