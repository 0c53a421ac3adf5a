"""Hessian-vector products on a layer's activations, for ShapleyCAM's second-order term.

For the layer output A and the explained score y, one forward pass, then g = ∂y/∂A with
``create_graph=True``, then H·A = ∂(g · A)/∂A with A held constant (a second backward pass). A
piecewise-linear path from A to y (ReLU, max-pooling, average pooling, linear layers) has zero
second derivative almost everywhere; autograd then leaves g without a graph, and H·A is zeros.
The forward pass runs with PyTorch's math attention kernel: the fused (flash, memory-efficient)
``scaled_dot_product_attention`` kernels have no second derivative; the math kernel computes the
same attention with ordinary differentiable ops.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch.nn.attention import SDPBackend, sdpa_kernel

from vexplain.core.adapter import ActivationResult
from vexplain.core.errors import InvalidTarget, ModelLoadError
from vexplain.core.targets import TargetRequest, gather_scores

from .torch_eval import eval_mode

if TYPE_CHECKING:
    from .torch import TorchAdapter


def activation_hessian(adapter: "TorchAdapter", inputs: torch.Tensor, layer: str, targets: TargetRequest) -> ActivationResult:
    """``layer``'s output A, g = ∂y_t/∂A and H·A for ``inputs`` (on the adapter's device), in the
    adapter's batches; the hook is removed in ``finally``."""
    from .torch import _Capture

    module = adapter._module(layer)
    acts, grads, products, scores, chosen = [], [], [], [], []
    capture = _Capture(for_grad=True)
    handle = module.register_forward_hook(capture)
    try:
        with eval_mode(adapter.model), torch.enable_grad(), sdpa_kernel([SDPBackend.MATH]):
            for part in adapter._batches(len(inputs)):
                capture.output = None
                batch_scores = adapter._scores(adapter._call(inputs[part]))
                activation = adapter._captured(capture, layer)
                if not activation.requires_grad:
                    raise ModelLoadError(f"layer '{layer}' outputs {activation.dtype} values, which carry no gradients; pick a layer with a float output")
                batch_targets = targets.select(batch_scores.detach(), part.start)
                target_scores = gather_scores(batch_scores, batch_targets)
                grad = None
                if target_scores.requires_grad:
                    (grad,) = torch.autograd.grad(target_scores.sum(), activation, create_graph=True, allow_unused=True)
                if grad is None:
                    raise InvalidTarget(f"the explained score does not depend on layer '{layer}' (no path from the layer to it); pick a layer that feeds that score")
                product = None
                if grad.requires_grad:
                    (product,) = torch.autograd.grad(grad, activation, grad_outputs=activation.detach(), allow_unused=True)
                acts.append(activation.detach().float())
                grads.append(grad.detach().float())
                products.append(torch.zeros_like(acts[-1]) if product is None else product.detach().float())
                scores.append(batch_scores.detach())
                chosen.append(batch_targets)
    finally:
        handle.remove()
    return ActivationResult(torch.cat(acts), torch.cat(scores), torch.cat(chosen), torch.cat(grads), torch.cat(products))
