"""The full-gradient decomposition of a PyTorch model (Srinivas & Fleuret, NeurIPS 2019).

For a network built of linear maps with biases and piecewise-linear activations,
y(x) = ∇ₓy · x + Σ_b ∇_b y · b: the input gradient times the input plus, for every bias b, its
gradient times itself. ∇_b y is d(y)/d(module output) summed over the positions the bias is added
at, so the spatial "bias-gradient" of a convolution is b_c · d(y)/d(output)_c at each position.

Bias modules: every convolution and ``nn.Linear`` with a bias, and every BatchNorm. In eval mode
a BatchNorm is the affine map z ↦ γ (z − μ)/√(σ² + ε) + β, whose implicit bias is
β − γ μ/√(σ² + ε) (the paper's treatment, also its authors' code and pytorch-grad-cam's); one
without running statistics normalises with the batch's own and is refused.
"""
from __future__ import annotations

from typing import Any, Callable, Iterator

import torch
from torch import nn

from vexplain.core.adapter import BiasGradientResult
from vexplain.core.errors import InvalidTarget, ModelLoadError
from vexplain.core.targets import TargetRequest, gather_scores


def module_bias(name: str, module: nn.Module) -> torch.Tensor | None:
    """The bias ``(C,)`` ``module`` adds to its output (a BatchNorm's implicit one), or None."""
    if isinstance(module, nn.modules.batchnorm._BatchNorm):
        if module.running_mean is None or module.running_var is None:
            raise ModelLoadError(f"BatchNorm '{name}' has no running statistics (track_running_stats=False), so its bias depends on the batch; fullgrad needs BatchNorm layers with running statistics")
        mean, var = module.running_mean.detach(), module.running_var.detach()
        weight = module.weight.detach() if module.weight is not None else torch.ones_like(mean)
        shift = module.bias.detach() if module.bias is not None else torch.zeros_like(mean)
        return shift - mean * weight / torch.sqrt(var + module.eps)
    if isinstance(module, (nn.modules.conv._ConvNd, nn.Linear)) and isinstance(module.bias, torch.Tensor):
        return module.bias.detach()
    return None


def bias_modules(model: nn.Module) -> dict[nn.Module, tuple[str, torch.Tensor, int]]:
    """Every module adding a bias: ``{module: (name, bias, channel axis of its output)}``
    (axis 1 for convolutions and BatchNorm, -1 for ``nn.Linear``)."""
    found: dict[nn.Module, tuple[str, torch.Tensor, int]] = {}
    for name, module in model.named_modules():
        bias = module_bias(name, module)
        if bias is not None and module not in found:
            found[module] = (name, bias.float(), -1 if isinstance(module, nn.Linear) else 1)
    return found


class _Outputs:
    """Forward hooks keeping each bias module's output, in the order the modules ran. The forward
    continues from a clone, so an in-place op after the module (``ReLU(inplace=True)``) cannot
    change the kept tensor, whose gradient is then d(y)/d(module output) itself."""

    def __init__(self, modules: dict[nn.Module, tuple[str, torch.Tensor, int]]):
        self.modules = modules
        self.outputs: list[tuple[nn.Module, torch.Tensor]] = []

    def __call__(self, module: nn.Module, args: Any, output: Any) -> Any:
        if not isinstance(output, torch.Tensor) or not output.is_floating_point():
            return None
        self.outputs.append((module, output))
        return output.clone()


def bias_gradients(
    model: nn.Module, scores_of: Callable[[torch.Tensor], torch.Tensor], inputs: torch.Tensor, targets: TargetRequest, batches: Iterator[slice]
) -> BiasGradientResult:
    """``BiasGradientResult`` for ``inputs`` in ``batches``, one forward and one backward pass each;
    ``scores_of(batch)`` runs the model (in eval mode, set by the caller) to scores ``(B, K)``.
    A module's gradient is zeros where its output does not reach the score."""
    modules = bias_modules(model)
    recorder = _Outputs(modules)
    handles = [module.register_forward_hook(recorder) for module in modules]
    input_grads, scores, chosen = [], [], []
    per_batch: list[list[tuple[nn.Module, torch.Tensor]]] = []
    try:
        with torch.enable_grad():
            for part in batches:
                recorder.outputs = []
                batch = inputs[part].detach().clone().requires_grad_(True)
                batch_scores = scores_of(batch)
                batch_targets = targets.select(batch_scores.detach(), part.start)
                target_scores = gather_scores(batch_scores, batch_targets)
                if not target_scores.requires_grad:
                    raise InvalidTarget("the explained scores do not depend on the model's output (a detached or constant callable target?); return a tensor computed from the output")
                outputs = [output for _, output in recorder.outputs]
                grads = torch.autograd.grad(target_scores.sum(), [batch, *outputs], allow_unused=True)
                input_grads.append(torch.zeros_like(batch) if grads[0] is None else grads[0])
                per_batch.append([(module, (torch.zeros_like(out) if g is None else g).float()) for (module, out), g in zip(recorder.outputs, grads[1:])])
                scores.append(batch_scores.detach())
                chosen.append(batch_targets)
    finally:
        for handle in handles:
            handle.remove()
    order = [module for module, _ in per_batch[0]]
    if any([module for module, _ in batch] != order for batch in per_batch):
        raise ModelLoadError("the model ran its bias layers in a different order for different batches; fullgrad needs the same layers on every input")
    names, biases, gradients, axes = [], [], [], []
    for index, module in enumerate(order):
        name, bias, axis = modules[module]
        names.append(name)
        biases.append(bias.to(inputs.device))
        axes.append(axis)
        gradients.append(torch.cat([batch[index][1] for batch in per_batch]))
    return BiasGradientResult(torch.cat(input_grads).float(), names, biases, gradients, torch.cat(scores), torch.cat(chosen), axes)
