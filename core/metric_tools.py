"""Shared machinery of the metrics: pixel orders, substrates, batched class probabilities (the
many-forward metrics), and map peaks tested against ground truth (the pointing game; public as
``vexplain.evaluation.peaks`` / ``within``)."""
from __future__ import annotations

import math
from typing import Callable

import torch

from .adapter import Scorer
from .errors import InvalidOption
from .progress import progress
from .targets import gather_scores

SUBSTRATES = ("zeros", "mean", "blur")


def relevance_ranks(maps: torch.Tensor) -> torch.Tensor:
    """int64 ``(N, H*W)``: each pixel's position when pixels are sorted by decreasing map value
    (rank 0 = most relevant); ties keep row-major order (a stable sort)."""
    flat = maps.reshape(len(maps), -1)
    order = torch.sort(flat, dim=1, descending=True, stable=True).indices
    ranks = torch.empty_like(order)
    positions = torch.arange(flat.shape[1], device=maps.device).expand_as(order)
    return ranks.scatter_(1, order, positions)


def gaussian_blur(inputs: torch.Tensor, sigma: float) -> torch.Tensor:
    """``inputs`` ``(N, C, H, W)`` blurred per channel by a Gaussian of std ``sigma`` pixels,
    kernel size 2·ceil(2σ)+1, edges replicated."""
    if sigma <= 0:
        return inputs.clone()
    radius = int(math.ceil(2 * sigma))
    offsets = torch.arange(-radius, radius + 1, dtype=torch.float32, device=inputs.device)
    kernel = torch.exp(-(offsets**2) / (2 * sigma**2))
    kernel = kernel / kernel.sum()
    n, c, h, w = inputs.shape
    planes = inputs.reshape(n * c, 1, h, w)
    planes = torch.nn.functional.pad(planes, (radius, radius, radius, radius), mode="replicate")
    planes = torch.nn.functional.conv2d(planes, kernel.view(1, 1, 1, -1))
    planes = torch.nn.functional.conv2d(planes, kernel.view(1, 1, -1, 1))
    return planes.reshape(n, c, h, w)


def substrate(inputs: torch.Tensor, kind: str, sigma: float) -> torch.Tensor:
    """What removed pixels become: ``zeros`` (0 in preprocessed units, the data mean after
    normalisation), ``mean`` (each image's per-channel mean) or ``blur`` (``gaussian_blur``)."""
    if kind == "zeros":
        return torch.zeros_like(inputs)
    if kind == "mean":
        return inputs.mean(dim=(2, 3), keepdim=True).expand_as(inputs).clone()
    if kind == "blur":
        return gaussian_blur(inputs, sigma)
    raise InvalidOption(f"substrate must be one of {', '.join(SUBSTRATES)}; got {kind!r}")


def target_probabilities(
    scorer: Scorer,
    rows: int,
    build: Callable[[int, int, torch.Tensor], torch.Tensor],
    row_targets: torch.Tensor,
    batch_size: int,
    item_shape: tuple[int, ...],
    device: torch.device,
    description: str = "",
    softmax: bool = True,
) -> torch.Tensor:
    """float64 ``(rows,)``: the score of ``row_targets[r]`` for each perturbed row: its softmax
    probability when ``softmax`` (class targets; a model whose outputs are already probabilities,
    non-negative rows summing to 1 in the first batch, is not softmaxed twice), else the score as
    the scorer returns it (a target object's own score).

    ``build(start, stop, out)`` fills ``out`` (``(stop - start, *item_shape)``, a reused buffer)
    with rows ``start .. stop`` and returns it; rows run through ``scorer`` ``batch_size`` at a time,
    so memory stays bounded whatever the number of rows.
    """
    buffer = torch.empty((min(batch_size, rows), *item_shape), dtype=torch.float32, device=device)
    out = torch.empty(rows, dtype=torch.float64, device=device)
    starts = range(0, rows, batch_size)
    already_probabilities: bool | None = None
    for start in progress(starts, total=len(starts), description=description):
        stop = min(start + batch_size, rows)
        batch = build(start, stop, buffer[: stop - start])
        scores = scorer.run(batch).to(torch.float64)
        if not softmax:
            already_probabilities = True
        if already_probabilities is None:
            already_probabilities = bool((scores >= 0).all()) and bool(torch.allclose(scores.sum(dim=1), torch.ones(len(scores), dtype=torch.float64), atol=1e-4))
        probabilities = scores if already_probabilities else torch.softmax(scores, dim=1)
        out[start:stop] = gather_scores(probabilities, row_targets[start:stop].to(probabilities.device)).to(device)
    return out.cpu()


def trapezoid_auc(curves: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Area under each row of ``curves`` ``(N, T)`` over ``x`` ``(T,)`` by the trapezoid rule."""
    widths = x[1:] - x[:-1]
    return ((curves[:, 1:] + curves[:, :-1]) / 2 * widths).sum(dim=1)


def peaks(maps: torch.Tensor) -> torch.Tensor:
    """int64 ``(N, 2)``: (row, column) of each map's maximum, the first in row-major order on ties."""
    flat = maps.reshape(len(maps), -1).argmax(dim=1)
    return torch.stack([flat // maps.shape[2], flat % maps.shape[2]], dim=1)


def within(points: torch.Tensor, masks: torch.Tensor, tolerance: int) -> torch.Tensor:
    """bool ``(N,)``: whether each (row, column) point lies within ``tolerance`` pixels (Euclidean)
    of some pixel of its mask."""
    height, width = masks.shape[1:]
    points = points.to(masks.device)
    rows = torch.arange(height, device=masks.device)[None, :, None] - points[:, 0, None, None]
    cols = torch.arange(width, device=masks.device)[None, None, :] - points[:, 1, None, None]
    near = rows**2 + cols**2 <= tolerance**2
    return (masks.bool() & near).flatten(1).any(dim=1).cpu()
