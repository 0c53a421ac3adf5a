"""XRAI's two steps: the over-segmentation (Felzenszwalb at several scales, dilated) and the
greedy region ranking by attribution density. Both follow PAIR saliency's ``XRAI``."""
from __future__ import annotations

import math

import numpy as np
import torch

from vexplain.core.extras import require_extra

#: Felzenszwalb scales, σ, minimum segment size and working size (PAIR's constants)
SCALES = (50, 100, 150, 250, 500, 1200)
SIGMA = 0.8
MIN_SEGMENT = 150
WORKING_SIZE = (224, 224)


def dilated(masks: torch.Tensor, radius: int) -> torch.Tensor:
    """``(K, H, W)`` bool masks dilated by a disk of ``radius`` (skimage's ``disk``: offsets with
    i² + j² ≤ r²); outside the image counts as empty. One convolution for all masks."""
    if radius == 0 or len(masks) == 0:
        return masks
    radius = min(radius, sum(masks.shape[1:]))  # a disk wider than the image's diagonal reaches every pixel already
    offsets = torch.arange(-radius, radius + 1, device=masks.device)
    disk = ((offsets[:, None] ** 2 + offsets[None, :] ** 2) <= radius**2).float()[None, None]
    hits = torch.nn.functional.conv2d(masks[:, None].float(), disk, padding=radius)
    return hits[:, 0] > 0.5


def felzenszwalb_masks(image: torch.Tensor, dilation: int) -> torch.Tensor:
    """``(K, H, W)`` bool masks of one ``(C, H, W)`` image: the image min-max scaled to [−1, 1] and
    resized to 224² (bicubic, anti-aliased), segmented by scikit-image's Felzenszwalb at each of
    ``SCALES`` (σ 0.8, min size 150), each label map resized back (nearest) and every label from
    its min to its max made a mask (in that order, scale by scale), each dilated by ``dilation``."""
    segmentation = require_extra("skimage.segmentation", "superpixels", "method 'xrai' (its Felzenszwalb segments)")
    transform = require_extra("skimage.transform", "superpixels", "method 'xrai' (its Felzenszwalb segments)")
    array = np.moveaxis(image.detach().to("cpu", torch.float64).numpy(), 0, -1)
    low, high = array.min(), array.max()
    array = (array - low) / (high - low) * 2.0 - 1.0 if high > low else np.zeros_like(array)
    size = array.shape[:2]
    working = transform.resize(array, WORKING_SIZE, order=3, mode="constant", preserve_range=True, anti_aliasing=True)
    masks = []
    for scale in SCALES:
        labels = segmentation.felzenszwalb(working, scale=scale, sigma=SIGMA, min_size=MIN_SEGMENT)
        labels = transform.resize(labels, size, order=0, preserve_range=True, mode="constant", anti_aliasing=False).astype(int)
        labels = torch.from_numpy(labels).to(image.device)
        values = torch.arange(int(labels.min()), int(labels.max()) + 1, device=image.device)
        masks.append(labels[None] == values[:, None, None])
    return dilated(torch.cat(masks), dilation)


def ranked_regions(attr: torch.Tensor, masks: torch.Tensor, area: float, min_pixel_diff: int) -> torch.Tensor:
    """XRAI's map ``(H, W)`` float64 for a pixel attribution ``attr`` ``(H, W)``: starting from the
    empty set, repeatedly add the region whose not-yet-covered pixels have the largest mean
    attribution (the first such region on ties), dropping regions that would add fewer than
    ``min_pixel_diff`` pixels, until the covered fraction exceeds ``area`` or no region is left;
    each pixel takes the gain of the region that first covered it, and uncovered pixels the mean
    attribution over all of them. Counts and sums over uncovered pixels are updated only for the
    pixels each step covers, so the whole ranking costs one pass over regions × pixels."""
    attr = attr.double().reshape(-1)
    flat = masks.reshape(len(masks), -1)
    counts = flat.sum(dim=1)
    sums = flat.double() @ attr
    active = torch.ones(len(masks), dtype=torch.bool, device=attr.device)
    covered = torch.zeros_like(attr, dtype=torch.bool)
    output = torch.full_like(attr, -math.inf)
    fraction = 0.0
    while fraction <= area:
        active &= counts >= min_pixel_diff
        if not bool(active.any()):
            break
        gains = torch.where(active, sums / counts.clamp(min=1), -math.inf)
        best = int(torch.argmax(gains))
        newly = flat[best] & ~covered
        output[newly] = gains[best]
        covered |= newly
        active[best] = False
        index = newly.nonzero()[:, 0]
        counts -= flat[:, index].sum(dim=1)
        sums -= flat[:, index].double() @ attr[index]
        fraction = covered.double().mean().item()
    rest = output == -math.inf
    if bool(rest.any()):
        output[rest] = attr[rest].mean()
    return output.reshape(masks.shape[1:])
