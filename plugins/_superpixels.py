"""Superpixels: the features of the feature-based methods (feature ablation, Shapley sampling,
KernelSHAP, LIME).

``segments="grid"`` (the default, needs nothing): ``cells × cells`` rectangles, row band
⌊i·cells/H⌋ and column band ⌊j·cells/W⌋ (bands differ by at most one pixel). ``"slic"`` and
``"quickshift"``: scikit-image's SLIC (about cells² segments, compactness 10) or quickshift
(its defaults: kernel_size 5, max_dist 10, ratio 1), run on each image min-max scaled to [0, 1]
(preprocessed values are not colours); scikit-image is an optional extra, imported only then.
Labels are renumbered 0..F−1 in order of first appearance, row-major.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import torch

from vexplain.core.errors import InvalidOption
from vexplain.core.options import Option, choice, integer

SEGMENTATIONS = ("grid", "slic", "quickshift")


def superpixel_options(cells: int = 8) -> dict[str, Option]:
    """The ``segments`` and ``cells`` options."""
    return {
        "segments": Option("grid", choice(*SEGMENTATIONS), "features: a fixed grid, or scikit-image's slic / quickshift superpixels"),
        "cells": Option(cells, integer(1), "grid: cells × cells rectangles; slic: about cells² segments"),
    }


def grid_labels(size: tuple[int, int], cells: int, device: torch.device) -> torch.Tensor:
    """``(H, W)`` labels of a cells × cells grid (at most H × W distinct cells)."""
    height, width = size
    rows = torch.arange(height, device=device) * min(cells, height) // height
    cols = torch.arange(width, device=device) * min(cells, width) // width
    return rows[:, None] * min(cells, width) + cols[None, :]


def _renumbered(labels: np.ndarray) -> np.ndarray:
    _, first, inverse = np.unique(labels.ravel(), return_index=True, return_inverse=True)
    order = np.argsort(np.argsort(first))  # rank of each label by first appearance
    return order[inverse].reshape(labels.shape)


def _skimage_labels(image: torch.Tensor, segments: str, cells: int) -> np.ndarray:
    try:
        from skimage import segmentation
    except ImportError:
        raise InvalidOption(f"segments='{segments}' needs scikit-image (pip install 'vexplain[superpixels]'); segments='grid' needs nothing") from None
    array = image.detach().to("cpu", torch.float64).numpy()
    low, high = array.min(), array.max()
    array = (array - low) / (high - low) if high > low else np.zeros_like(array)
    channels = array.shape[0]
    if segments == "slic":
        return segmentation.slic(array, n_segments=cells * cells, compactness=10.0, channel_axis=0, start_label=0, convert2lab=channels == 3)
    if channels != 3:
        raise InvalidOption(f"segments='quickshift' needs 3-channel images; these have {channels}: use 'slic' or 'grid'")
    return segmentation.quickshift(np.moveaxis(array, 0, -1), convert2lab=True)


def feature_labels(inputs: torch.Tensor, options: dict[str, Any]) -> list[torch.Tensor]:
    """One ``(H, W)`` long label map per input, on the inputs' device."""
    segments, cells = options["segments"], options["cells"]
    if segments == "grid":
        grid = grid_labels(tuple(inputs.shape[2:]), cells, inputs.device)
        return [grid] * len(inputs)
    return [torch.as_tensor(_renumbered(_skimage_labels(image, segments, cells)), dtype=torch.long, device=inputs.device) for image in inputs]
