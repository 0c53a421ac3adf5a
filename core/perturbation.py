"""Shared machinery of perturbation methods: batch sizes from a memory budget, masked batches."""
from __future__ import annotations

import torch

#: a forward pass needs this many times the input's bytes for activations, as a rough bound
ACTIVATION_FACTOR = 32
MAX_BATCH = 64


def batch_size_for(input_shape: tuple[int, ...], memory_mb: float) -> int:
    """How many perturbed ``(C, H, W)`` inputs fit in ``memory_mb`` with their activations (1 .. 64)."""
    channels, height, width = input_shape[-3:]
    per_item = channels * height * width * 4 * ACTIVATION_FACTOR
    return int(max(1, min(MAX_BATCH, (memory_mb * 2**20) // per_item)))


def window_starts(length: int, window: int, stride: int) -> list[int]:
    """Start offsets of windows along one axis, every ``stride``, plus one flush with the far edge
    when the stride does not land there, so every pixel is covered."""
    starts = list(range(0, length - window + 1, stride))
    if starts[-1] + window < length:
        starts.append(length - window)
    return starts


def box_masks(
    tops: torch.Tensor, lefts: torch.Tensor, size: tuple[int, int], window: tuple[int, int], device: torch.device
) -> torch.Tensor:
    """Float masks ``(B, 1, H, W)``: 1 inside each ``window`` box at (top, left), 0 elsewhere."""
    height, width = size
    rows = torch.arange(height, device=device)
    cols = torch.arange(width, device=device)
    inside_rows = (rows[None, :] >= tops[:, None]) & (rows[None, :] < tops[:, None] + window[0])
    inside_cols = (cols[None, :] >= lefts[:, None]) & (cols[None, :] < lefts[:, None] + window[1])
    return (inside_rows[:, :, None] & inside_cols[:, None, :]).unsqueeze(1).to(torch.float32)


def apply_masks(image: torch.Tensor, masks: torch.Tensor, baseline: float) -> torch.Tensor:
    """``image`` ``(C, H, W)`` with each mask's region set to ``baseline``: a ``(B, C, H, W)`` batch."""
    return image.unsqueeze(0) * (1 - masks) + baseline * masks
