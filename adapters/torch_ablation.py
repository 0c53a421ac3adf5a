"""Replacing a layer's output in a PyTorch model, for ablation: only what follows the layer runs per
replacement.

A forward hook on the layer returns the batch of replacement activations instead of the layer's
output, so the network after the layer runs on the whole batch while the layers before it run on
the single input once per batch ("prefix once"). That is exact when the layers after the target
treat the batch dimension independently and only broadcast tensors from before the layer (a
residual ``x + f(x)`` across the layer broadcasts its batch-1 term). A model that mixes the batch
with tensors from before the layer (``torch.cat`` of a skip connection, a ``view(input.size(0), ...)``)
fails that way or gives other scores; the first call per (model, layer) checks this against the
plain way, the input repeated once per replacement, and falls back to the plain way when they
differ. Hooks are removed in ``finally``; the model is never modified.
"""
from __future__ import annotations

import weakref
from typing import Any, Callable

import torch

from vexplain.core.errors import InvalidTarget, ModelLoadError

#: per model: (layer, module structure) -> "prefix once" or "repeat input"
_MODES: "weakref.WeakKeyDictionary[torch.nn.Module, dict[tuple, str]]" = weakref.WeakKeyDictionary()
PREFIX_ONCE = "prefix once"
REPEAT_INPUT = "repeat input"


class _Replace:
    """A forward hook returning ``self.value`` in place of the module's output."""

    def __init__(self) -> None:
        self.value: torch.Tensor | None = None
        self.fired = False

    def __call__(self, module: torch.nn.Module, args: Any, output: Any) -> Any:
        self.fired = True
        if isinstance(output, tuple) and output and isinstance(output[0], torch.Tensor):  # a Hugging Face block's (hidden, ...)
            return (self.value, *output[1:])
        return self.value


def _run(module: torch.nn.Module, call: Callable[[torch.Tensor], torch.Tensor], inputs: torch.Tensor, activations: torch.Tensor) -> torch.Tensor:
    hook = _Replace()
    hook.value = activations.clone()  # layers after the target may work in place (ReLU(inplace=True))
    handle = module.register_forward_hook(hook)
    try:
        with torch.no_grad():
            scores = call(inputs)
    finally:
        handle.remove()
    if not hook.fired:
        raise ModelLoadError("the layer to ablate did not run in the forward pass; pick another layer (`vexplain layers MODEL`)")
    return scores


def replaced_scores(
    model: torch.nn.Module,
    module: torch.nn.Module,
    call: Callable[[torch.Tensor], torch.Tensor],
    layer: str,
    inputs: torch.Tensor,
    activations: torch.Tensor,
) -> tuple[torch.Tensor, str]:
    """``(scores (B, K), mode)``: ``call`` (the model under eval mode, scores out) on the single
    input ``inputs`` ``(1, C, H, W)`` with ``module``'s output replaced by each row of
    ``activations`` ``(B, c, h, w)``. ``mode`` says how: "prefix once" or "repeat input"."""
    if len(activations) == 1:  # one replacement: both ways are the same computation
        return _run(module, call, inputs, activations), PREFIX_ONCE
    modes = _MODES.setdefault(model, {})
    key = (layer, tuple((name, id(m)) for name, m in model.named_modules()))  # a changed structure probes again
    mode = modes.get(key)
    if mode is None:
        mode = _probe(model, module, call, inputs, activations)
        modes[key] = mode
    if mode == PREFIX_ONCE:
        return _run(module, call, inputs, activations), mode
    repeated = inputs.expand(len(activations), *inputs.shape[1:])
    return _run(module, call, repeated, activations), mode


def _probe(model: torch.nn.Module, module: torch.nn.Module, call: Callable[[torch.Tensor], torch.Tensor], inputs: torch.Tensor, activations: torch.Tensor) -> str:
    """"prefix once" when it gives the plain way's scores on (up to) the first two replacements."""
    sample = activations[:2]
    plain = _run(module, call, inputs.expand(len(sample), *inputs.shape[1:]), sample)
    try:
        once = _run(module, call, inputs, sample)
    except (RuntimeError, InvalidTarget):  # the batch mixes with a batch-1 tensor from before the layer
        return REPEAT_INPUT
    if once.shape != plain.shape or not torch.allclose(once, plain, rtol=1e-4, atol=1e-5):
        return REPEAT_INPUT
    return PREFIX_ONCE
