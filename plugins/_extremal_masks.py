"""The pieces of extremal perturbations that need no model: the smooth-max mask generator, the
area-rank constraint and the perturbation pyramid (Fong, Patrick & Vedaldi, ICCV 2019, as
TorchRay builds them)."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from ._gaussian import blurred, ceil_radius

#: the softmax "coldness" of the smooth max over overlapping bumps (TorchRay's)
COLDNESS = 20.0


def bump(z: torch.Tensor) -> torch.Tensor:
    """The mask bump at distance z (in units of σ): 1 up to ½, then exp(−2 (z − ½)²)."""
    return torch.exp(-2 * (z - 0.5).clamp(min=0) ** 2)


class MaskGenerator:
    """Smooth masks from a coarse parameter grid m̄ of ⌈H/step⌉ × ⌈W/step⌉ cells in [0, 1].

    Cell (i, j) has its centre at (σ + step·i, σ + step·j) on an output canvas with a margin of σ
    pixels. Each output pixel u looks at the (2r+1)² cells around the cell it falls in
    (r = 1 + ⌈σ/step⌉; cells beyond the grid count as 0) and takes the smooth max
    Σ_k v_k softmax_k(20 v_k) of v_k = m̄_k · bump(‖u − centre_k‖/σ); clamped to [0, 1]. The
    full canvas is what the area constraint ranks; the mask is the canvas cropped by the margin
    to H × W.
    """

    def __init__(self, shape: tuple[int, int], step: int, sigma: float, device: torch.device) -> None:
        self.shape, self.step, self.sigma = shape, step, sigma
        self.margin = sigma
        self.padding, self.radius, self.shape_in, self.shape_mid, self.shape_up, self.shape_out = self.geometry(shape, step, sigma)
        mid, up = self.shape_mid, self.shape_up
        taps = torch.arange(2 * self.radius + 1, device=device)
        dy = self._offsets(mid[0], up[0], self.shape_out[0], taps, device)
        dx = self._offsets(mid[1], up[1], self.shape_out[1], taps, device)
        delta = torch.sqrt(dy[:, None, :, None] ** 2 + dx[None, :, None, :] ** 2)
        self.weight = bump(delta / sigma)  # (2r+1, 2r+1, out_h, out_w)
        self.flat_weight = self.weight.flatten(0, 1)  # taps in unfold's order (row, then column)

    @staticmethod
    def geometry(shape: tuple[int, int], step: int, sigma: float) -> tuple[int, int, list[int], list[int], list[int], list[int]]:
        """(padding, r, parameter grid, padded grid, upsampled size, canvas size) of the masks."""
        padding = 1 + math.ceil(2 * sigma / step)
        radius = 1 + math.ceil(sigma / step)
        shape_in = [math.ceil(z / step) for z in shape]
        mid = [z + 2 * padding - 2 * radius for z in shape_in]
        up = [step * z for z in mid]
        return padding, radius, shape_in, mid, up, [z - step + 1 for z in up]

    @classmethod
    def bytes_per_mask(cls, shape: tuple[int, int], step: int, sigma: float) -> int:
        """float32 bytes of the (2r+1)² × canvas table each generated mask gathers."""
        _, radius, _, _, up, out = cls.geometry(shape, step, sigma)
        return 4 * (2 * radius + 1) ** 2 * out[0] * out[1] + 8 * (up[0] + up[1])

    def _offsets(self, mid: int, up: int, out: int, taps: torch.Tensor, device: torch.device) -> torch.Tensor:
        """Per tap and output coordinate along one axis: the offset from the centre of the cell the
        tap reads (the cell the coordinate is nearest-upsampled from, plus the tap), as TorchRay
        computes it (float32)."""
        coordinate = torch.arange(out, dtype=torch.float32, device=device)
        scale = torch.tensor(mid, dtype=torch.float32) / torch.tensor(up, dtype=torch.float32)
        cell = torch.floor(scale.to(device) * coordinate)[None, :] + taps[:, None] - self.padding
        return coordinate[None, :] - (self.margin + self.step * cell)

    def generate(self, params: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(mask, canvas)`` for parameters ``(B, h_in, w_in)``: ``(B, H, W)`` and ``(B, out_h, out_w)``."""
        # each canvas pixel reads the (2r+1)² cells around the one it is nearest-upsampled from:
        # unfold on the coarse grid, then upsample: the same values as an indexed gather, whose
        # backward (an accumulating scatter) made forward + backward 1.14× slower at 64², 1.57× at 224²
        taps = F.unfold(params[:, None], (2 * self.radius + 1,) * 2, padding=self.padding)
        taps = taps.reshape(len(params), -1, *self.shape_mid)
        upsampled = F.interpolate(taps, size=self.shape_up, mode="nearest")[:, :, : self.shape_out[0], : self.shape_out[1]]
        values = upsampled * self.flat_weight
        canvas = (values * torch.softmax(COLDNESS * values, dim=1)).sum(dim=1).clamp(0, 1)
        top = round(self.margin)
        return canvas[:, top : top + self.shape[0], top : top + self.shape[1]], canvas


def area_reference(area: float, size: int, device: torch.device) -> torch.Tensor:
    """The sorted mask the area constraint pulls towards: ⌊size·(1 − area)⌋ zeros, then ones."""
    reference = torch.ones(size, device=device)
    reference[: int(size * (1 - area))] = 0
    return reference


def area_penalty(canvas: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """``(B,)`` mean over pixels of (sort(canvas_b) − reference_b)²: 0 exactly when the mask is
    binary with the target area; ``reference`` is ``(B, out_h·out_w)``."""
    ranked = canvas.reshape(len(canvas), -1).sort(dim=1).values
    return ((ranked - reference) ** 2).mean(dim=1)


def pyramid(images: torch.Tensor, levels: int, kind: str, max_blur: float) -> torch.Tensor:
    """``(N, L, C, H, W)`` increasingly strong perturbations, level L − 1 the image itself: level l
    blurs with σ_l = (1 − l/(L − 1))·max_blur (TorchRay's Gaussian: radius ⌈4σ⌉, zero padding), or
    fades to l/(L − 1)·x with ``kind="fade"``."""
    steps = [level / (levels - 1) for level in range(levels)]
    if kind == "fade":
        return torch.stack([images * s for s in steps], dim=1)
    out = torch.stack([blurred(images, [(1 - s) * max_blur] * len(images), ceil_radius) for s in steps], dim=1)
    return out.to(images.dtype)


def perturbed(levels: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """``(B, C, H, W)``: each pixel read from ``levels`` ``(B, L, C, H, W)`` at level mask·(L − 1),
    linearly interpolated between the two levels around it (mask 1: the image, 0: the strongest)."""
    count = levels.shape[1]
    position = mask[:, None, None] * (count - 1)
    low = position.floor()
    fraction = position - low
    low = low.long().expand(-1, 1, levels.shape[2], -1, -1)
    below = torch.gather(levels, 1, low)
    above = torch.gather(levels, 1, (low + 1).clamp(max=count - 1))
    return ((1 - fraction) * below + fraction * above)[:, 0]
