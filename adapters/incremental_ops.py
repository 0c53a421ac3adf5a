"""The layers incremental occlusion can recompute on a patch, one rule per kind.

A rule turns the :class:`Patched` inputs of one graph node into its :class:`Patched` output. Once
a patch would cover most of its feature map (``FULL_FRACTION``) it is widened to the whole map:
from there on the layer runs on full maps, still through the rule (channels-last, no gathers).
Layers without a rule get full maps and run as the model defines them.
"""
from __future__ import annotations

import operator
from dataclasses import dataclass
from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_weights

from .incremental_geometry import (
    Patched, channels_last, covers_map, gather_cached, place_patch, read_region, union, window_affected,
)

#: recompute a patch only while it is smaller than this fraction of its feature map (ResNet-18 at
#: 224², window 16, stride 4: 0.6 to 0.95 within 5% of each other, 0.4 about 15% slower)
FULL_FRACTION = 0.8


def _pair(value: Any) -> tuple[int, int]:
    return (value, value) if isinstance(value, int) else (int(value[0]), int(value[1]))


def truncate(affected: tuple[torch.Tensor, torch.Tensor], length: int, limit: float | None) -> tuple[torch.Tensor, torch.Tensor]:
    """Projective-field thresholding (approximate, Krypton): each changed range is cut to at most
    ``limit`` × ``length`` positions around its centre; changes beyond it are ignored."""
    if limit is None:
        return affected
    start, stop = affected
    cap = max(1, int(round(limit * length)))
    over = (stop - start - cap).clamp(min=0)
    start = start + torch.div(over, 2, rounding_mode="floor")
    return start, torch.minimum(stop, start + cap)


def _placed(affected: tuple[torch.Tensor, torch.Tensor], length: int, other: tuple[torch.Tensor, torch.Tensor], other_length: int):
    """Patch size and starts on both axes, widened to the whole map once it is nearly all of it."""
    size_h, top = place_patch(affected, length)
    size_w, left = place_patch(other, other_length)
    if size_h * size_w >= FULL_FRACTION * length * other_length:
        return length, torch.zeros_like(top), other_length, torch.zeros_like(left)
    return size_h, top, size_w, left


@dataclass
class WindowRule:
    """A sliding-window layer (convolution, max or average pooling): the output patch covers every
    output whose window reads a changed input; it is computed from the input region under it.
    ``compute(region, padding)`` runs the layer with the given zero/−∞ padding."""

    kernel: tuple[int, int]
    stride: tuple[int, int]
    padding: tuple[int, int]
    dilation: tuple[int, int]
    pad_value: float
    compute: Callable[[torch.Tensor, tuple[int, int]], torch.Tensor]
    #: multiply-adds per output position (convolutions; 0 for pooling), and the tallies of those
    #: computed and of those full inference would have computed
    macs_per_position: int = 0
    computed_macs: int = 0
    full_macs: int = 0

    def apply(self, sources: list[Patched], out: torch.Tensor, limit: float | None = None) -> Patched:
        (source,) = sources
        out_h, out_w = out.shape[1:]
        rows = window_affected(source.rows, self.kernel[0], self.stride[0], self.padding[0], self.dilation[0], out_h)
        cols = window_affected(source.cols, self.kernel[1], self.stride[1], self.padding[1], self.dilation[1], out_w)
        rows, cols = truncate(rows, out_h, limit), truncate(cols, out_w, limit)
        size_h, top, size_w, left = _placed(rows, out_h, cols, out_w)
        self.computed_macs += len(top) * size_h * size_w * self.macs_per_position
        self.full_macs += len(top) * out_h * out_w * self.macs_per_position
        if covers_map(source) and (size_h, size_w) == (out_h, out_w):
            return Patched(out, self.compute(source.patch, self.padding), top, left, rows, cols)
        region = read_region(
            source,
            top * self.stride[0] - self.padding[0],
            left * self.stride[1] - self.padding[1],
            (size_h - 1) * self.stride[0] + self.dilation[0] * (self.kernel[0] - 1) + 1,
            (size_w - 1) * self.stride[1] + self.dilation[1] * (self.kernel[1] - 1) + 1,
            self.pad_value,
        )
        return Patched(out, self.compute(region, (0, 0)), top, left, rows, cols)


@dataclass
class PointwiseRule:
    """A layer acting on each position alone (activation, batch norm with running statistics,
    arithmetic with a number): the patch is transformed where it is."""

    function: Callable[[torch.Tensor], torch.Tensor]

    def apply(self, sources: list[Patched], out: torch.Tensor, limit: float | None = None) -> Patched:
        (source,) = sources
        return Patched(out, self.function(source.patch), source.top, source.left, source.rows, source.cols)


@dataclass
class MergeRule:
    """Several same-size maps combined position by position (residual sum, channel concatenation):
    the output patch covers the union of what changed in any input."""

    combine: Callable[[list[torch.Tensor]], torch.Tensor]

    def apply(self, sources: list[Patched], out: torch.Tensor, limit: float | None = None) -> Patched:
        out_h, out_w = out.shape[1:]
        if any(s.cached.shape[1:] != out.shape[1:] for s in sources):
            return None
        rows, cols = sources[0].rows, sources[0].cols
        for source in sources[1:]:
            rows, cols = union(rows, source.rows), union(cols, source.cols)
        rows, cols = truncate(rows, out_h, limit), truncate(cols, out_w, limit)
        size_h, top, size_w, left = _placed(rows, out_h, cols, out_w)
        regions = [read_region(s, top, left, size_h, size_w, 0.0) for s in sources]
        return Patched(out, self.combine(regions), top, left, rows, cols)


@dataclass
class GlobalMeanRule:
    """Mean over all positions (global average pooling): the clean mean plus the patch's change,
    so the full maps are never built."""

    keepdim: bool

    def apply(self, sources: list[Patched], out: torch.Tensor, limit: float | None = None) -> torch.Tensor:
        (source,) = sources
        if covers_map(source):
            return source.patch.mean(dim=(2, 3), keepdim=self.keepdim)
        cached = source.cached
        patch_h, patch_w = source.patch.shape[2:]
        under = gather_cached(cached, source.top, source.left, patch_h, patch_w, 0.0)
        change = (source.patch - under).sum(dim=(2, 3)) / (cached.shape[1] * cached.shape[2])
        mean = out.float().reshape(1, -1) + change  # ``out``: the clean image's mean
        return mean[:, :, None, None] if self.keepdim else mean


_ACTIVATIONS: dict[type, Callable[[nn.Module], Callable[[torch.Tensor], torch.Tensor]]] = {
    nn.ReLU: lambda m: torch.relu,
    nn.ReLU6: lambda m: lambda x: F.hardtanh(x, 0.0, 6.0),
    nn.LeakyReLU: lambda m: lambda x: F.leaky_relu(x, m.negative_slope),
    nn.Hardtanh: lambda m: lambda x: F.hardtanh(x, m.min_val, m.max_val),
    nn.ELU: lambda m: lambda x: F.elu(x, m.alpha),
    nn.SiLU: lambda m: F.silu,
    nn.Hardswish: lambda m: F.hardswish,
    nn.Hardsigmoid: lambda m: F.hardsigmoid,
    nn.GELU: lambda m: lambda x: F.gelu(x, approximate=m.approximate),
    nn.Sigmoid: lambda m: torch.sigmoid,
    nn.Tanh: lambda m: torch.tanh,
    nn.Identity: lambda m: lambda x: x,
    nn.Dropout: lambda m: lambda x: x,  # run in eval mode only
    nn.Dropout2d: lambda m: lambda x: x,
}
_POINTWISE_FUNCTIONS = {torch.relu, F.relu, torch.sigmoid, F.sigmoid, torch.tanh, F.tanh, F.silu, F.gelu, F.hardswish, F.relu6, F.leaky_relu, F.elu, F.hardtanh}
_POINTWISE_METHODS = {"relu", "sigmoid", "tanh"}
_ARITHMETIC = {operator.add: torch.add, torch.add: torch.add, operator.mul: torch.mul, torch.mul: torch.mul, operator.sub: torch.sub, torch.sub: torch.sub}


def foldable_batch_norm(module: nn.Module) -> bool:
    """A batch norm that is an affine map per channel in eval mode (it has running statistics)."""
    return isinstance(module, nn.BatchNorm2d) and module.running_mean is not None and module.running_var is not None


def module_rule(module: nn.Module, folded: nn.BatchNorm2d | None = None) -> WindowRule | PointwiseRule | GlobalMeanRule | None:
    """The rule for a layer module, or None when it must run on full maps as the model defines it.
    ``folded``: a batch norm applied right after this convolution, computed here and skipped there.
    Convolution weights are copied (channels-last, folded) when the rule is made: make rules per call."""
    if isinstance(module, nn.Conv2d):
        if isinstance(module.padding, str) or module.padding_mode != "zeros":
            return None
        weight, bias = module.weight.detach(), None if module.bias is None else module.bias.detach()
        if folded is not None:
            detached = [None if t is None else t.detach() for t in (folded.weight, folded.bias)]
            weight, bias = (t.detach() for t in fuse_conv_bn_weights(
                weight, bias, folded.running_mean.detach(), folded.running_var.detach(), folded.eps, *detached
            ))
        weight = channels_last(weight)
        return WindowRule(
            _pair(module.kernel_size), _pair(module.stride), _pair(module.padding), _pair(module.dilation), 0.0,
            lambda region, padding, m=module: F.conv2d(region, weight, bias, m.stride, padding, m.dilation, m.groups),
            macs_per_position=module.weight[0].numel() * module.out_channels,
        )
    if isinstance(module, nn.MaxPool2d):
        if module.ceil_mode or module.return_indices:
            return None
        return WindowRule(
            _pair(module.kernel_size), _pair(module.stride or module.kernel_size), _pair(module.padding), _pair(module.dilation),
            float("-inf"), lambda region, padding, m=module: F.max_pool2d(region, m.kernel_size, m.stride, padding, m.dilation),
        )
    if isinstance(module, nn.AvgPool2d):
        if module.ceil_mode or not module.count_include_pad or module.divisor_override is not None:
            return None
        return WindowRule(
            _pair(module.kernel_size), _pair(module.stride or module.kernel_size), _pair(module.padding), (1, 1), 0.0,
            lambda region, padding, m=module: F.avg_pool2d(region, m.kernel_size, m.stride, padding),
        )
    if isinstance(module, nn.BatchNorm2d):
        if not foldable_batch_norm(module):
            return None  # without running statistics eval mode still normalises by the batch
        return PointwiseRule(module)
    if isinstance(module, nn.AdaptiveAvgPool2d) and _pair(module.output_size) == (1, 1):
        return GlobalMeanRule(keepdim=True)
    maker = _ACTIVATIONS.get(type(module))
    return PointwiseRule(maker(module)) if maker else None


def has_call_rule(kind: str, target: Any) -> bool:
    """Whether a function or method call can have a rule (whether it does depends on its arguments)."""
    if kind == "call_function":
        return target in _POINTWISE_FUNCTIONS or target in _ARITHMETIC or target in (torch.cat, torch.mean)
    return kind == "call_method" and (target in _POINTWISE_METHODS or target == "mean")


def _without_inplace(kwargs: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in kwargs.items() if k != "inplace"}


def call_rule(kind: str, target: Any, args: tuple, kwargs: dict[str, Any], patched: list[bool]) -> Any:
    """The rule for a function or method call whose arguments marked in ``patched`` are patched
    feature maps (the rest are plain values), or None."""
    number = (int, float)
    if kind == "call_function" and target in _POINTWISE_FUNCTIONS and patched[0] and not any(patched[1:]):
        rest, options = args[1:], _without_inplace(kwargs)
        return PointwiseRule(lambda x: target(x, *rest, **options))
    if kind == "call_method" and target in _POINTWISE_METHODS and len(args) == 1 and not kwargs:
        return PointwiseRule(lambda x: getattr(x, target)())
    if kind == "call_function" and target in _ARITHMETIC and len(args) == 2 and not kwargs:
        op = _ARITHMETIC[target]
        if all(patched):
            return MergeRule(lambda regions: op(regions[0], regions[1]))
        if patched[0] and isinstance(args[1], number):
            return PointwiseRule(lambda x: op(x, args[1]))
        if patched[1] and isinstance(args[0], number):
            return PointwiseRule(lambda x: op(args[0], x))
        return None
    if kind == "call_function" and target is torch.cat and len(args) >= 1 and isinstance(args[0], (list, tuple)):
        dim = args[1] if len(args) > 1 else kwargs.get("dim", 0)
        if dim in (1, -3) and set(kwargs) <= {"dim"} and all(patched):
            return MergeRule(lambda regions: torch.cat(regions, dim=1))
        return None
    if target in (torch.mean, "mean") and patched[0] and not any(patched[1:]):
        dims = args[1] if len(args) > 1 else kwargs.get("dim")
        keepdim = kwargs.get("keepdim", args[2] if len(args) > 2 else False)
        if dims is not None and {d % 4 for d in (dims if isinstance(dims, (list, tuple)) else (dims,))} == {2, 3}:
            return GlobalMeanRule(keepdim=bool(keepdim))
    return None
