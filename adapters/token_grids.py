"""Token-grid layers of a PyTorch model: its patch stride, the layers whose output is a token grid,
and the default CAM layer of a ViT-like model (see ``vexplain.core.token_grids`` for the layouts).
"""
from __future__ import annotations

from typing import Any, Callable

import torch

from vexplain.core.errors import InvalidOption
from vexplain.core.token_grids import CHANNELS_FIRST, token_layout

#: modules whose output is a normalisation of the block before them, never the default layer
_NORMS = (torch.nn.LayerNorm, torch.nn.GroupNorm, torch.nn.BatchNorm1d)


def find_patch_stride(model: torch.nn.Module) -> tuple[int, int] | None:
    """The stride of the first ``Conv2d`` (module order) whose stride equals its kernel size and
    exceeds 1, the patch embedding of a ViT, Swin or ConvNeXt; ``None`` when there is none."""
    for module in model.modules():
        if isinstance(module, torch.nn.Conv2d) and tuple(module.stride) == tuple(module.kernel_size) and max(module.stride) > 1:
            return (int(module.stride[0]), int(module.stride[1]))
    return None


def first_tensor(output: Any) -> torch.Tensor | None:
    """A module's output tensor: the output itself, or the first entry of a tuple (Hugging Face blocks)."""
    if isinstance(output, tuple) and output:
        output = output[0]
    return output if isinstance(output, torch.Tensor) else None


def grid_layers(
    model: torch.nn.Module, run: Callable[[], Any], count: int, input_size: tuple[int, int],
) -> dict[str, tuple[tuple[int, ...], dict[str, Any]]]:
    """``{name: (output shape, layout notes)}`` for every named module whose output during
    ``run()`` (``count`` inputs) is a token grid, a channels-last map that fits a patch grid of
    the input (notes: grid, prefix, layout) or a channels-first map (notes empty), ordered by
    when each last ran. Without a patch embedding, token grids are inferred from their count alone
    (``core.token_grids.count_grids``) and channels-last maps are not recognised."""
    stride = find_patch_stride(model)
    found: dict[str, tuple[tuple[int, ...], dict[str, Any]]] = {}

    def make_hook(name: str):
        def hook(module: torch.nn.Module, args: Any, output: Any) -> None:
            tensor = first_tensor(output)
            if tensor is None or tensor.dim() not in (3, 4) or len(tensor) != count or not tensor.is_floating_point() or tensor.shape[-1] < 2:
                return
            try:
                layout = token_layout(tuple(tensor.shape), input_size, stride, name)
            except InvalidOption:
                return
            if layout.kind != CHANNELS_FIRST or (tensor.dim() == 4 and tensor.shape[2] * tensor.shape[3] > 1):
                found.pop(name, None)
                found[name] = (tuple(tensor.shape), layout.notes())

        return hook

    modules = dict(model.named_modules())
    handles = [m.register_forward_hook(make_hook(n)) for n, m in modules.items() if n]
    try:
        run()
    finally:
        for handle in handles:
            handle.remove()
    return found


def default_token_layer(model: torch.nn.Module, found: dict[str, Any]) -> str | None:
    """The last token-grid layer to run that is not a normalisation (the last block's output
    before the final norm), when it ran after every channels-first map; else ``None`` (a CNN's
    last feature map is then the default). When that block has prefix tokens (a class token),
    the score depends on its patch tokens only through the prefix, so their gradients are zero
    (pytorch-grad-cam #511/#513): the default is then the last block's first LayerNorm (its input
    normalised, ``blocks[-1].norm1`` in pytorch-grad-cam's ViT example), else the block."""
    modules = dict(model.named_modules())
    names = list(found)
    tokens = [i for i, n in enumerate(names) if found[n][1] and not isinstance(modules[n], _NORMS)]
    maps = [i for i, n in enumerate(names) if not found[n][1]]
    if not tokens or (maps and maps[-1] > tokens[-1]):
        return None
    block = names[tokens[-1]]
    if not found[block][1]["prefix"]:
        return block
    inside = [n for n in names[: names.index(block)] if n.startswith(block + ".") and isinstance(modules[n], torch.nn.LayerNorm)]
    firsts = [n for n in inside if _parent(n) and next(m for m in inside if _parent(m) == _parent(n)) == n]
    return firsts[-1] if firsts else block


def _parent(name: str) -> str:
    return name.rpartition(".")[0]
