"""Geometry of incremental occlusion: which part of a feature map an occluded box changes, and
how to read a region of a feature map that is "cached everywhere except a recomputed patch".

Every tensor here is batched over B occlusion windows (one image). A changed region is a pair of
half-open ranges per window, ``rows = (r0, r1)`` and ``cols = (c0, c1)``, each a ``(B,)`` long
tensor. Geometry (ranges, patch corners) always lives on the CPU: it depends only on where the
windows are, so deciding sizes never waits for a GPU; only per-axis index rows are sent to the
feature maps' device, where they are broadcast into full gather indices.

A *patch* is a rectangle of uniform size for all B windows, placed per window, holding the exact
values of the feature map there for that window's occluded input; everything outside the patch
equals the clean image's cached activation.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass
class Patched:
    """A feature map of B occluded inputs: ``cached`` ``(C, H, W)`` from the clean image, and
    ``patch`` ``(B, C, ph, pw)`` placed at rows ``top``, cols ``left`` (inside the map), which holds
    the true values there. ``rows``/``cols`` bound what actually changed (inside the patch)."""

    cached: torch.Tensor
    patch: torch.Tensor
    top: torch.Tensor
    left: torch.Tensor
    rows: tuple[torch.Tensor, torch.Tensor]
    cols: tuple[torch.Tensor, torch.Tensor]

    @property
    def batch(self) -> int:
        return self.patch.shape[0]


def _ceil_div(numerator: torch.Tensor, denominator: int) -> torch.Tensor:
    return -torch.div(-numerator, denominator, rounding_mode="floor")


def window_affected(
    changed: tuple[torch.Tensor, torch.Tensor], kernel: int, stride: int, padding: int, dilation: int, length_out: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Output positions of a sliding-window op (1-D) whose window reads a changed input position:
    o with o*s − p + d(k−1) ≥ r0 and o*s − p ≤ r1 − 1, clipped to the output."""
    start, stop = changed
    first = _ceil_div(start + padding - dilation * (kernel - 1), stride).clamp(0, length_out)
    last = (torch.div(stop - 1 + padding, stride, rounding_mode="floor") + 1).clamp(0, length_out)
    return first, torch.maximum(first, last)


def place_patch(affected: tuple[torch.Tensor, torch.Tensor], length: int) -> tuple[int, torch.Tensor]:
    """One patch size for the batch (the widest changed range, at least 1, at most the map) and
    each window's start, shifted inward so the patch stays inside the map and still covers it."""
    start, stop = affected
    size = int(min(length, max(1, int((stop - start).max()))))
    return size, torch.minimum(start, torch.full_like(start, length - size))


def union(a: tuple[torch.Tensor, torch.Tensor], b: tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """The smallest range holding both (empty ranges ignored)."""
    a_empty, b_empty = a[1] <= a[0], b[1] <= b[0]
    start = torch.where(a_empty, b[0], torch.where(b_empty, a[0], torch.minimum(a[0], b[0])))
    stop = torch.where(a_empty, b[1], torch.where(b_empty, a[1], torch.maximum(a[1], b[1])))
    return start, stop


def channels_last(tensor: torch.Tensor) -> torch.Tensor:
    """``tensor`` (4-D) stored channels-last: the layout convolutions run fastest in on the CPU."""
    return tensor.contiguous(memory_format=torch.channels_last)


def _on(device: torch.device, *rows: torch.Tensor) -> list[torch.Tensor]:
    """CPU index rows (all one shape) on ``device``, sent in one copy."""
    if device.type == "cpu":
        return list(rows)
    return list(torch.stack(rows).to(device, non_blocking=True).unbind(0))


def _padded_hwc(
    hwc: torch.Tensor, top: torch.Tensor, left: torch.Tensor, height: int, width: int, pad_value: float
) -> tuple[torch.Tensor, int, int]:
    """``hwc`` (``(..., H, W, C)``) padded with ``pad_value`` just enough for every region at
    (``top``, ``left``) of ``height`` × ``width`` to lie inside, with the top and left pads."""
    map_h, map_w = hwc.shape[-3:-1]
    pad_top, pad_left = max(0, -int(top.min())), max(0, -int(left.min()))
    pad_bottom = max(0, int(top.max()) + height - map_h)
    pad_right = max(0, int(left.max()) + width - map_w)
    if pad_top or pad_bottom or pad_left or pad_right:
        hwc = F.pad(hwc, (0, 0, pad_left, pad_right, pad_top, pad_bottom), value=pad_value)
    return hwc, pad_top, pad_left


def _gather(maps: torch.Tensor, top: torch.Tensor, left: torch.Tensor, height: int, width: int, pad_value: float) -> torch.Tensor:
    """Regions of ``maps`` ``(M, C, H, W)`` (M = 1: shared by all windows; M = B: one per window)
    at per-window (``top``, ``left``): ``(B, C, height, width)``, channels-last, ``pad_value``
    outside the map."""
    count, channels = maps.shape[:2]
    hwc, pad_top, pad_left = _padded_hwc(maps.permute(0, 2, 3, 1), top, left, height, width, pad_value)
    padded_w = hwc.shape[2]
    device = maps.device
    (rows,) = _on(device, (top + pad_top)[:, None] + torch.arange(height))
    (cols,) = _on(device, (left + pad_left)[:, None] + torch.arange(width))
    flat = (rows[:, :, None] * padded_w + cols[:, None, :]).reshape(len(top), -1)
    if count > 1:
        flat = flat + torch.arange(count, device=device)[:, None] * (hwc.shape[1] * padded_w)
    picked = hwc.reshape(-1, channels).index_select(0, flat.reshape(-1))
    return picked.reshape(len(top), height, width, channels).permute(0, 3, 1, 2)


def gather_cached(cached: torch.Tensor, top: torch.Tensor, left: torch.Tensor, height: int, width: int, pad_value: float) -> torch.Tensor:
    """``(B, C, height, width)`` regions of one ``(C, H, W)`` map at per-window (``top``, ``left``),
    ``pad_value`` where a region reaches outside the map."""
    return _gather(cached[None], top, left, height, width, pad_value)


def covers_map(source: Patched) -> bool:
    return tuple(source.patch.shape[2:]) == tuple(source.cached.shape[1:])


def read_region(source: Patched, top: torch.Tensor, left: torch.Tensor, height: int, width: int, pad_value: float) -> torch.Tensor:
    """The ``(B, C, height, width)`` regions at (``top``, ``left``) of each window's feature map:
    patch values inside the patch, cached values elsewhere, ``pad_value`` outside the map."""
    patch = source.patch
    if covers_map(source):
        if (height, width) == tuple(patch.shape[2:]) and not bool(top.any()) and not bool(left.any()):
            return patch  # the whole map of every window (a merge of full maps)
        return _gather(patch, top, left, height, width, pad_value)
    channels = source.cached.shape[0]
    batch, _, patch_h, patch_w = patch.shape
    device = patch.device
    hwc, pad_top, pad_left = _padded_hwc(source.cached.permute(1, 2, 0), top, left, height, width, pad_value)
    padded_h, padded_w = hwc.shape[:2]
    # one table of pixel rows, the cached map's then every window's patch's, read by one index
    table = torch.cat([hwc.reshape(-1, channels), patch.permute(0, 2, 3, 1).reshape(-1, channels)])
    rows = top[:, None] + torch.arange(height)
    cols = left[:, None] + torch.arange(width)
    patch_rows, patch_cols = rows - source.top[:, None], cols - source.left[:, None]
    row_cached, row_patch, row_inside = _on(
        device, rows + pad_top, patch_rows.clamp(0, patch_h - 1), ((patch_rows >= 0) & (patch_rows < patch_h)).long()
    )
    col_cached, col_patch, col_inside = _on(
        device, cols + pad_left, patch_cols.clamp(0, patch_w - 1), ((patch_cols >= 0) & (patch_cols < patch_w)).long()
    )
    from_cached = row_cached[:, :, None] * padded_w + col_cached[:, None, :]
    from_patch = (
        padded_h * padded_w
        + torch.arange(batch, device=device)[:, None, None] * (patch_h * patch_w)
        + row_patch[:, :, None] * patch_w
        + col_patch[:, None, :]
    )
    inside = (row_inside[:, :, None] * col_inside[:, None, :]).bool()
    index = torch.where(inside, from_patch, from_cached).reshape(-1)
    return table.index_select(0, index).reshape(batch, height, width, channels).permute(0, 3, 1, 2)


def materialize(source: Patched) -> torch.Tensor:
    """The full ``(B, C, H, W)`` feature maps."""
    if covers_map(source):
        return source.patch
    zeros = torch.zeros(source.batch, dtype=torch.long)
    return read_region(source, zeros, zeros, source.cached.shape[1], source.cached.shape[2], 0.0)
