"""Token-grid layers: a transformer's ``(N, T, D)`` tokens or a channels-last ``(N, H, W, C)`` map
read as a ``(N, C, h, w)`` feature map for the CAM family.

Definitions. The *patch stride* ``(sh, sw)`` is the stride of the model's patch embedding (its
first ``Conv2d`` whose stride equals its kernel size and exceeds 1; the adapter finds it). For an
input of size ``H × W`` the candidate grids are ``(⌈H/sh/2^k⌉, ⌈W/sw/2^k⌉)`` for k = 0, 1, 2, ...
(k > 0: after k patch-merging stages, as in Swin). Tokens ``(N, T, D)`` are *prefix* tokens (class,
distillation, register tokens) followed by a row-major ``h × w`` patch grid: at k = 0 the prefix is
``T − h·w`` (0 ≤ prefix ≤ h·w); after merging (k > 0) there is no prefix. A 4-D output
``(N, A, B, C)`` is channels-last when ``(A, B)`` is a candidate grid and ``(B, C)`` is not;
otherwise it is the usual channels-first map.

When no candidate fits, or the model has no such convolution (a ViT embedding patches with a
``Linear``), the grid comes from the token count: the grids ``(⌈H/s⌉, ⌈W/s⌉)`` and
``(⌊H/s⌋, ⌊W/s⌋)`` for every *effective stride* s that is a multiple of the patch stride (any
integer without one) whose prefix ``T − h·w`` is at most :data:`MAX_INFERRED_PREFIX` and under half
the grid. This covers hybrids, whose patch embedding runs on a CNN's downsampled map (ViT-hybrid:
effective stride = the CNN's stride × the embedding's). ``grid=(h, w)`` and ``prefix=k`` override
the inference; a case that fits no grid, or several, is ``InvalidOption`` naming the option to set.
"""
from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Any

import torch

from .errors import InvalidOption

TOKENS = "tokens"
CHANNELS_LAST = "channels_last"
CHANNELS_FIRST = "channels_first"

#: the most prefix tokens a grid inferred from the token count alone may have (class, distillation
#: and register tokens: DeiT has 2, DINOv2 with registers 5)
MAX_INFERRED_PREFIX = 8


@dataclass(frozen=True)
class TokenLayout:
    """How one layer's output maps onto a ``(N, C, h, w)`` feature map."""

    kind: str
    grid: tuple[int, int]
    prefix: int = 0

    def to_map(self, output: torch.Tensor) -> torch.Tensor:
        """The layer output as ``(N, C, h, w)``; prefix tokens dropped."""
        h, w = self.grid
        if self.kind == TOKENS:
            return output[:, self.prefix :].reshape(len(output), h, w, -1).permute(0, 3, 1, 2)
        if self.kind == CHANNELS_LAST:
            return output.permute(0, 3, 1, 2)
        return output

    def from_map(self, maps: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        """``(M, C, h, w)`` maps back in the layer's own layout; prefix tokens copied from ``like`` (one output)."""
        if self.kind == TOKENS:
            patches = maps.permute(0, 2, 3, 1).reshape(len(maps), self.grid[0] * self.grid[1], -1)
            prefix = like[:1, : self.prefix].expand(len(maps), -1, -1).to(patches.dtype)
            return torch.cat([prefix, patches], dim=1)
        if self.kind == CHANNELS_LAST:
            return maps.permute(0, 2, 3, 1).contiguous()
        return maps

    def notes(self) -> dict[str, Any]:
        """What ``exp.options`` records: nothing for a channels-first map."""
        if self.kind == CHANNELS_FIRST:
            return {}
        return {"grid": list(self.grid), "prefix": self.prefix, "layout": self.kind}


def candidate_grids(input_size: tuple[int, int], patch_stride: tuple[int, int] | None, depth: int = 6) -> list[tuple[int, int]]:
    """``(⌈H/sh/2^k⌉, ⌈W/sw/2^k⌉)`` for k = 0 .. depth−1 (distinct, more than one cell), or [] without a patch stride."""
    if patch_stride is None:
        return []
    grids: list[tuple[int, int]] = []
    for k in range(depth):
        grid = (math.ceil(input_size[0] / patch_stride[0] / 2**k), math.ceil(input_size[1] / patch_stride[1] / 2**k))
        if grid[0] * grid[1] > 1 and grid not in grids:
            grids.append(grid)
    return grids


def count_grids(tokens: int, input_size: tuple[int, int], patch_stride: tuple[int, int] | None, prefix: int | None = None) -> list[tuple[int, int]]:
    """The grids ``tokens`` fit by their count (see the module docstring), largest first: one per
    distinct grid of an effective stride that is a multiple of ``patch_stride`` (or any stride)."""
    return list(_count_grids(tokens, tuple(input_size), None if patch_stride is None else tuple(patch_stride), prefix))


@functools.lru_cache(maxsize=1024)
def _count_grids(tokens: int, input_size: tuple[int, int], patch_stride: tuple[int, int] | None, prefix: int | None) -> tuple[tuple[int, int], ...]:
    base = patch_stride or (1, 1)
    found: list[tuple[int, int]] = []
    for multiple in range(1, max(input_size) // min(base) + 1):
        sh, sw = base[0] * multiple, base[1] * multiple
        for grid in ((math.ceil(input_size[0] / sh), math.ceil(input_size[1] / sw)), (input_size[0] // sh, input_size[1] // sw)):
            cells = grid[0] * grid[1]
            rest = tokens - cells
            fits = rest == prefix if prefix is not None else 0 <= rest <= MAX_INFERRED_PREFIX and 2 * rest < cells
            if cells > 1 and fits and grid not in found:
                found.append(grid)
    return tuple(found)


def grid_option(value: Any) -> tuple[int, int] | None:
    """``None``, or ``(h, w)`` from a pair of positive ints or a string ``"h,w"`` / ``"hxw"``."""
    if value is None:
        return None
    if isinstance(value, str):
        value = value.lower().replace("x", ",").split(",")
    try:
        h, w = (int(str(v).strip()) for v in value)
    except (TypeError, ValueError):
        raise ValueError("must be a grid (h, w) of two positive integers, e.g. grid=(14, 14) or --option grid=14,14") from None
    if h < 1 or w < 1:
        raise ValueError("must be a grid (h, w) of two positive integers, e.g. grid=(14, 14)")
    return (h, w)


def prefix_option(value: Any) -> int | None:
    """``None``, or a count of prefix tokens (an int ≥ 0)."""
    if value is None:
        return None
    if isinstance(value, bool) or not str(value).strip().isdigit():
        raise ValueError("must be a count of prefix tokens (an integer >= 0), e.g. prefix=1 for a class token")
    return int(value)


def token_layout(
    shape: tuple[int, ...], input_size: tuple[int, int], patch_stride: tuple[int, int] | None, layer: str,
    grid: tuple[int, int] | None = None, prefix: int | None = None,
) -> TokenLayout:
    """The layout of ``layer``'s output of ``shape`` (see the module docstring)."""
    shape = tuple(shape)
    if len(shape) == 4:
        return _layout_4d(shape, input_size, patch_stride, layer, grid)
    if len(shape) != 3:
        raise InvalidOption(f"layer '{layer}' outputs shape {shape}; CAM methods need a (N, C, h, w) map, (N, h, w, C) channels-last map or (N, T, D) tokens with more than one position")
    tokens = shape[1]
    if grid is not None:
        chosen = tokens - grid[0] * grid[1] if prefix is None else prefix
        if chosen < 0 or chosen + grid[0] * grid[1] != tokens:
            raise InvalidOption(f"layer '{layer}' has {tokens} tokens, which a grid {grid} with prefix {chosen} does not fit; set grid=(h, w) and prefix=k with prefix + h*w = {tokens}")
        return TokenLayout(TOKENS, grid, chosen)
    where = f"the input ({input_size[0]}x{input_size[1]})"
    fits = []
    for k, candidate in enumerate(candidate_grids(input_size, patch_stride)):
        rest = tokens - candidate[0] * candidate[1]
        if (prefix is None and (rest == 0 or (k == 0 and 0 < rest <= candidate[0] * candidate[1]))) or rest == prefix:
            fits.append(TokenLayout(TOKENS, candidate, rest))
    if not fits and shape[2] > 1:  # (N, C, 1) is a pooled vector, not C tokens
        fits = [TokenLayout(TOKENS, g, tokens - g[0] * g[1]) for g in count_grids(tokens, input_size, patch_stride, prefix)]
    if not fits:
        stride = f"patch stride {patch_stride} or a multiple of it" if patch_stride else "any stride (the model has no patch embedding, a Conv2d with stride = kernel size)"
        raise InvalidOption(
            f"layer '{layer}' outputs {tokens} tokens, which fit no patch grid of {where} with {stride}; set grid=(h, w) and prefix=k"
        )
    if len(fits) > 1:
        listed = ", ".join(f"grid={f.grid} prefix={f.prefix}" for f in fits)
        raise InvalidOption(f"layer '{layer}' outputs {tokens} tokens, which fit several grids ({listed}); set grid=(h, w)")
    return fits[0]


def _layout_4d(shape: tuple[int, ...], input_size: tuple[int, int], patch_stride: tuple[int, int] | None, layer: str, grid: tuple[int, int] | None) -> TokenLayout:
    first, last = shape[2:4], shape[1:3]
    if grid is not None:
        if first == grid:
            return TokenLayout(CHANNELS_FIRST, grid)
        if last == grid:
            return TokenLayout(CHANNELS_LAST, grid)
        raise InvalidOption(f"layer '{layer}' outputs shape {shape}, which has no {grid[0]}x{grid[1]} grid in (N, C, h, w) or (N, h, w, C) order; set grid= to its spatial size")
    grids = candidate_grids(input_size, patch_stride)
    if last in grids and first not in grids:
        return TokenLayout(CHANNELS_LAST, last)
    return TokenLayout(CHANNELS_FIRST, first)
