"""Adaptive drill-down for occlusion (after Krypton, Nakandala et al., SIGMOD 2019): evaluate a
coarse grid of windows, then only the fine windows where the coarse map is large; the drops of the
fine windows left out are interpolated from the coarse grid."""
from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F


def _axis_weights(coarse: list[int], fine: list[int], device: torch.device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """For each fine position: the coarse neighbours below/above and the weight of the upper one
    (linear interpolation, constant beyond the ends)."""
    c = torch.tensor(coarse, dtype=torch.float64, device=device)
    f = torch.tensor(fine, dtype=torch.float64, device=device)
    if len(c) == 1:
        zeros = torch.zeros(len(f), dtype=torch.long, device=device)
        return zeros, zeros, torch.zeros(len(f), dtype=torch.float64, device=device)
    upper = torch.searchsorted(c, f, right=True).clamp(1, len(c) - 1)
    lower = upper - 1
    weight = ((f - c[lower]) / (c[upper] - c[lower])).clamp(0, 1)
    return lower, upper, weight


def interpolate_grid(coarse_values: torch.Tensor, coarse: dict[str, Any], fine: dict[str, Any]) -> torch.Tensor:
    """Values on the fine window grid, bilinear in window position from the coarse grid's values
    (exact at positions the two grids share)."""
    device = coarse_values.device
    grid = coarse_values.reshape(len(coarse["rows"]), len(coarse["cols"])).double()
    lo, hi, t = _axis_weights(coarse["rows"], fine["rows"], device)
    grid = grid[lo] * (1 - t)[:, None] + grid[hi] * t[:, None]
    lo, hi, t = _axis_weights(coarse["cols"], fine["cols"], device)
    grid = grid[:, lo] * (1 - t)[None, :] + grid[:, hi] * t[None, :]
    return grid.reshape(-1).to(coarse_values.dtype)


def drilldown_selection(coarse_map: torch.Tensor, fine: dict[str, Any], window: tuple[int, int], fraction: float, known: torch.Tensor) -> torch.Tensor:
    """Indices of the fine windows to evaluate: the ``ceil(fraction × count)`` windows whose box
    has the largest mean ``|coarse_map|``, leaving out those already ``known`` exactly."""
    box_means = F.avg_pool2d(coarse_map.abs()[None, None], window, stride=1)[0, 0]
    importance = box_means[fine["tops"], fine["lefts"]].clone()
    importance[known] = -math.inf
    budget = min(int(math.ceil(fraction * len(importance))), int((~known).sum()))
    return torch.topk(importance, budget).indices.sort().values
