"""Which modules of a PyTorch model output feature maps: one hooked forward pass, hooks removed after."""
from __future__ import annotations

from typing import Any, Callable

import torch


def feature_map_shapes(model: torch.nn.Module, run: Callable[[], Any]) -> dict[str, tuple[int, ...]]:
    """``{module name: output shape}`` for every named module whose output during ``run()`` is a
    4-D tensor of more than one position, ordered by when each last ran."""
    shapes: dict[str, tuple[int, ...]] = {}

    def make_hook(name: str):
        def hook(module: torch.nn.Module, args: Any, output: Any) -> None:
            if isinstance(output, torch.Tensor) and output.dim() == 4 and output.shape[2] * output.shape[3] > 1:
                shapes.pop(name, None)
                shapes[name] = tuple(output.shape)

        return hook

    handles = [m.register_forward_hook(make_hook(n)) for n, m in model.named_modules() if n]
    try:
        run()
    finally:
        for handle in handles:
            handle.remove()
    return shapes
