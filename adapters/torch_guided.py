"""Guided backpropagation for PyTorch models (Springenberg et al., 2015), without touching the model.

Inside ``guided_relu()`` every ReLU the model calls — ``nn.ReLU`` modules (which call
``F.relu``), ``F.relu``, ``torch.relu``, ``Tensor.relu`` and their in-place forms — runs as a
``GuidedReLU``: the same forward value, and a backward pass that lets a gradient through only
where both the input was positive and the incoming gradient is positive,
``grad_in = max(grad_out, 0) · [x > 0]``. This is Captum's ``GuidedBackprop`` (which hooks
``nn.ReLU`` modules) extended to functional ReLUs. It works by a thread-local
``TorchFunctionMode`` entered and left around the call, so no hook is ever registered on the model
and nothing is left behind after an error. TorchScript code does not dispatch to Python, so
TorchScript models do not offer this capability.
"""
from __future__ import annotations

import contextlib
from typing import Any, Iterator

import torch
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode

from vexplain.core.errors import ModelLoadError

_OUT_OF_PLACE = (F.relu, torch.relu, torch.Tensor.relu)
_IN_PLACE = (torch.relu_, torch.Tensor.relu_)


class GuidedReLU(torch.autograd.Function):
    """ReLU forward; backward ``max(grad, 0) · [x > 0]``."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor) -> torch.Tensor:
        out = torch.relu(x)
        ctx.save_for_backward(out > 0)  # a fresh mask, so a later in-place write to x or out is harmless
        return out

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
        (positive,) = ctx.saved_tensors
        return grad.clamp(min=0) * positive


class _GuidedMode(TorchFunctionMode):
    """Routes every ReLU call through ``GuidedReLU`` and counts them."""

    def __init__(self) -> None:
        super().__init__()
        self.calls = 0

    def __torch_function__(self, func: Any, types: Any, args: tuple = (), kwargs: dict | None = None) -> Any:
        kwargs = kwargs or {}
        in_place = func in _IN_PLACE or (func is F.relu and bool(kwargs.get("inplace", args[1] if len(args) > 1 else False)))
        if func not in _OUT_OF_PLACE and func not in _IN_PLACE:
            return func(*args, **kwargs)
        self.calls += 1
        x = args[0]
        out = GuidedReLU.apply(x)
        if in_place:
            return x.copy_(out)
        return out


@contextlib.contextmanager
def guided_relu(model: torch.nn.Module) -> Iterator[None]:
    """Every ReLU called inside the block is guided. Raises ``ModelLoadError`` when the model holds
    TorchScript submodules (their ReLUs never reach Python), or has ``nn.ReLU`` modules of which
    none was reached (e.g. compiled code), since the result would silently be a plain gradient."""
    scripted = [name for name, m in model.named_modules() if isinstance(m, torch.jit.ScriptModule)]
    if scripted:
        raise ModelLoadError(
            f"guided backpropagation cannot reach ReLUs inside TorchScript submodule '{scripted[0] or '<root>'}'; use the eager nn.Module"
        )
    mode = _GuidedMode()
    with mode:
        yield
    has_relu_modules = any(isinstance(m, torch.nn.ReLU) for m in model.modules())
    if has_relu_modules and mode.calls == 0:
        raise ModelLoadError(
            "guided backpropagation reached none of the model's ReLUs (compiled code?); use an eager nn.Module"
        )
