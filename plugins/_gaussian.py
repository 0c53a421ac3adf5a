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


def blur_matrices(size: int, sigmas: list[float], device: torch.device, radius=scipy_radius) -> torch.Tensor:
    """``(len(sigmas), size, size)`` float64: matrix k is B with ``B @ v`` the 1-D blur of v by
    σ = ``sigmas[k]``: weights exp(−d²/2σ²) normalised over |d| ≤ ``radius(σ)``, zeros outside the
    signal; σ = 0 gives the identity. Each distinct σ is built once, all of them in one pass."""
    distinct = sorted(set(float(v) for v in sigmas))
    sigma = torch.tensor(distinct, dtype=torch.float64, device=device)
    reach = torch.tensor([radius(v) if v > 0 else 0 for v in distinct], dtype=torch.float64, device=device)
    scale = torch.where(sigma > 0, sigma, torch.ones((), dtype=torch.float64, device=device))[:, None, None] ** 2
    widest = int(reach.max().item())
    taps = torch.arange(-widest, widest + 1, dtype=torch.float64, device=device)[None, None]
    total = torch.where(taps.abs() <= reach[:, None, None], torch.exp(-0.5 * taps**2 / scale), 0.0).sum(dim=2, keepdim=True)
    offset = (torch.arange(size, device=device)[None, :] - torch.arange(size, device=device)[:, None]).to(torch.float64)[None]
    matrices = torch.where(offset.abs() <= reach[:, None, None], torch.exp(-0.5 * offset**2 / scale), 0.0) / total
    position = {v: i for i, v in enumerate(distinct)}
    index = torch.tensor([position[float(v)] for v in sigmas], device=device)
    return matrices[index]


def blur_matrix(size: int, sigma: float, device: torch.device, radius=scipy_radius) -> torch.Tensor:
    """``(size, size)`` float64 B with ``B @ v`` the 1-D blur of v by σ (see :func:`blur_matrices`)."""
    return blur_matrices(size, [sigma], device, radius)[0]


def blurred(images: torch.Tensor, sigmas: list[float], radius=scipy_radius) -> torch.Tensor:
    """``(B, C, H, W)`` float64: image b of ``images`` ``(B, C, H, W)`` blurred over its two spatial
    axes with σ = ``sigmas[b]`` and zero padding (``radius=scipy_radius``: scipy's
    ``gaussian_filter(mode="constant")``; ``ceil_radius``: TorchRay's ``imsmooth``)."""
    height, width = images.shape[-2:]
    rows = blur_matrices(height, sigmas, images.device, radius)
    cols = blur_matrices(width, sigmas, images.device, radius)
    return rows[:, None] @ images.double() @ cols[:, None].transpose(-1, -2)
